// The attention family's CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/attention.h. The FlashAttention-2 scheme on tiles: a block of query rows against
// blocks of keys (the sizes below), the scores of a tile kept transposed (keys x query rows).
// Every tile product (forward: S^T = K Q^T, O += P V; backward: S^T, dP^T = V dO^T,
// dV += P^T dO, dQ += dS K, dK += dS^T Q) is a register-tiled product of our own
// (`tile_product`), none packed per tile; the work between them (mask, online softmax,
// probabilities from the saved log-sum-exp, the score gradient) is
// at::vec::Vectorized<acc_t> over the query columns. The L x S matrix never exists: the
// scratch is a few tiles per thread plus one key/value head (O(S)). Forward:
// at::parallel_for over (batch x heads x query blocks); backward: over (batch x key/value
// heads), each task owning the gradient of its key/value head (no reduction across threads:
// deterministic for any thread count). float16 / bfloat16 are computed in float (converted
// on the way in).
//
// Why not BLAS: BLAS packs both operands of every call, and the large one is the tile of
// probabilities (or of score gradients), which exists only for that call. With BLAS tiles
// (MKL, the calls PyTorch's own CPU flash kernel makes) the forward was at parity with
// PyTorch; with these it is 1.1-1.6x (benchmarks/results/2026-11-28-cpu-attention-own-tiles*.md).

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

// Tile sizes: 64 query rows x 256 keys, forward and backward. A transposed score tile is
// then 64 KiB in float and stays in L2 between the product that writes it, the row work
// and the products that read it (at 4x8x4096x64 on one thread, the forward with 64-row
// tiles ran 10-20% faster than with 128 or 256 rows; the backward's 64 x 256 was 0-8%
// faster than 128 x 256 or 256 x 256 at 4x8x1024x64 on 2 threads, and than 64 x 128 or
// 64 x 512 within noise). The products need no deep tiles to amortise packing.
constexpr int64_t kForwardBlockM = 64, kForwardBlockN = 256;
constexpr int64_t kBackwardBlockM = 64, kBackwardBlockN = 256;

template <typename scalar_t>
struct AttentionKernels {
  using acc_t = at::opmath_type<scalar_t>;
  using V = at::vec::Vectorized<acc_t>;
  static constexpr int64_t W = V::size();
  static constexpr bool kReduced = !std::is_same_v<scalar_t, acc_t>;
  static constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

  // A pointer to rows [r0, r0 + n) of a (rows, d) matrix as acc_t: the matrix itself when
  // scalar_t is acc_t, else a converted copy in `buf`.
  static const acc_t* as_acc(const scalar_t* src, int64_t n, int64_t d, AlignedBuffer<acc_t>& buf) {
    if constexpr (!kReduced) {
      return src;
    } else {
      if (static_cast<int64_t>(buf.size()) < n * d) buf.resize(n * d);
      for (int64_t i = 0; i < n * d; ++i) buf[i] = static_cast<acc_t>(src[i]);
      return buf.data();
    }
  }

  static V ex(const V& v) { return v.exp_u20(); }

  // Keys visited by the query rows [i0, i0 + bm): all, or those j < i0 + bm when causal.
  static int64_t key_end(const attention::Problem& job, int64_t i0, int64_t bm) {
    return job.causal ? std::min(job.S, i0 + bm) : job.S;
  }

  static acc_t keep_scale(const attention::Problem& job) {
    return job.dropout_p < 1.0 ? static_cast<acc_t>(1.0 / (1.0 - job.dropout_p)) : acc_t(0);
  }

  // ---------------------------------------------------------------------------------------
  // The tile products. A micro-tile is kRows rows x two vectors of columns (12 accumulators
  // of the 16 AVX2 registers): each step of the depth loads two vectors of B's row and
  // broadcasts one element of A per row. B must have its columns contiguous (a row-major
  // matrix, padded to whole panels, or panels packed once per head); A is read in place,
  // row-major or transposed, so a transposed score tile is the A operand of the products
  // that consume it as it stands.

  static constexpr int64_t kPanel = 2 * W;  // columns of a micro-tile (two vectors)
  static constexpr int kRows = 6;           // rows of a micro-tile: 12 accumulators

  static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

  // C[i, 0:kPanel) for i < R = alpha * sum_k A(i, k) * B[k * ldb + (0:kPanel)], plus
  // c_scale[i] * C[i, :] when c_scale is given, else plus C when `add` (else C is
  // overwritten); A(i, k) is A[i * lda + k], or A[k * lda + i] when kAT. With colmax:
  // colmax[0:kPanel) = max(colmax, the new C's columns).
  template <int R, bool kAT>
  static void micro_tile(int64_t K, const acc_t* A, int64_t lda, const acc_t* B, int64_t ldb, acc_t* C, int64_t ldc,
                         acc_t alpha, const acc_t* c_scale, bool add, acc_t* colmax) {
    V acc[R][2];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = V(acc_t(0));
#pragma GCC unroll 2
    for (int64_t k = 0; k < K; ++k) {
      const V b0 = V::loadu(B + k * ldb), b1 = V::loadu(B + k * ldb + W);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const V a(kAT ? A[k * lda + i] : A[i * lda + k]);
        acc[i][0] = at::vec::fmadd(a, b0, acc[i][0]);
        acc[i][1] = at::vec::fmadd(a, b1, acc[i][1]);
      }
    }
    const V va(alpha);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      acc_t* c = C + i * ldc;
      if (c_scale != nullptr) {
        const V s(c_scale[i]);
        acc[i][0] = at::vec::fmadd(acc[i][0], va, V::loadu(c) * s);
        acc[i][1] = at::vec::fmadd(acc[i][1], va, V::loadu(c + W) * s);
      } else if (add) {
        acc[i][0] = at::vec::fmadd(acc[i][0], va, V::loadu(c));
        acc[i][1] = at::vec::fmadd(acc[i][1], va, V::loadu(c + W));
      } else if (alpha != acc_t(1)) {
        acc[i][0] = acc[i][0] * va;
        acc[i][1] = acc[i][1] * va;
      }
      acc[i][0].store(c);
      acc[i][1].store(c + W);
    }
    if (colmax != nullptr) {
      V m0 = V::loadu(colmax), m1 = V::loadu(colmax + W);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        m0 = at::vec::maximum(m0, acc[i][0]);
        m1 = at::vec::maximum(m1, acc[i][1]);
      }
      m0.store(colmax);
      m1.store(colmax + W);
    }
  }

  // C (m x n, n a multiple of kPanel) as micro_tile, over all micro-tiles; the columns
  // [c, c + kPanel) of B start at B + (c / kPanel) * panel_stride.
  template <bool kAT>
  static void tile_product(int64_t m, int64_t n, int64_t K, const acc_t* A, int64_t lda, const acc_t* B,
                           int64_t panel_stride, int64_t ldb, acc_t* C, int64_t ldc, acc_t alpha, const acc_t* c_scale,
                           bool add, acc_t* colmax) {
    for (int64_t c = 0; c < n; c += kPanel) {
      const acc_t* Bp = B + (c / kPanel) * panel_stride;
      acc_t* cm = colmax == nullptr ? nullptr : colmax + c;
      for (int64_t i = 0; i < m; i += kRows) {
        const acc_t* Ai = kAT ? A + i : A + i * lda;
        acc_t* Ci = C + i * ldc + c;
        const acc_t* cs = c_scale == nullptr ? nullptr : c_scale + i;
        switch (std::min<int64_t>(kRows, m - i)) {
          case 6: micro_tile<6, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
          case 5: micro_tile<5, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
          case 4: micro_tile<4, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
          case 3: micro_tile<3, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
          case 2: micro_tile<2, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
          default: micro_tile<1, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, add, cm); break;
        }
      }
    }
  }

  // Rows [0, n) of a (n, d) matrix into dst (n x dp, dp >= d), in acc_t, zero-padded.
  static void copy_padded(const scalar_t* src, int64_t n, int64_t d, acc_t* dst, int64_t dp) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < d; ++c) dst[r * dp + c] = static_cast<acc_t>(src[r * d + c]);
      std::fill(dst + r * dp + d, dst + (r + 1) * dp, acc_t(0));
    }
  }

  // The transpose of rows [0, n) of a (n, d) matrix into dst (d x np), in acc_t, its columns
  // [n, np) zero.
  static void copy_transposed(const scalar_t* src, int64_t n, int64_t d, acc_t* dst, int64_t np) {
    for (int64_t c = 0; c < d; ++c) {
      acc_t* row = dst + c * np;
      for (int64_t r = 0; r < n; ++r) row[r] = static_cast<acc_t>(src[r * d + c]);
      std::fill(row + n, row + np, acc_t(0));
    }
  }

  // S^T (bn x bmp, column i = query row i0 + i, row j = key j0 + j) + the additive mask and
  // -inf for the causally masked keys; with colmax: colmax = max(colmax, the masked columns).
  static void mask_tile(const attention::Problem& job, acc_t* St, int64_t bmp, int64_t b, int64_t h, int64_t i0,
                        int64_t bm, int64_t j0, int64_t bn, bool diagonal, acc_t* colmax) {
    const acc_t* m = job.mask == nullptr ? nullptr
                                         : static_cast<const acc_t*>(job.mask) + b * job.mask_sb + h * job.mask_sh +
                                               i0 * job.mask_sl + j0;
    if (m != nullptr && job.mask_sl != 0) {
      // The mask's rows (queries) into the transposed tile, a cache line of keys at a time:
      // each mask row is read a line at once. Reading a column of the mask row by row would
      // miss L1 on every element (rows a page apart all map to the same cache set).
      constexpr int64_t kLine = 64 / sizeof(acc_t);
      for (int64_t jb = 0; jb < bn; jb += kLine) {
        const int64_t je = std::min(jb + kLine, bn);
        for (int64_t i = 0; i < bm; ++i) {
          const acc_t* mi = m + i * job.mask_sl;
          for (int64_t j = jb; j < je; ++j) St[j * bmp + i] += mi[j];
        }
      }
    }
    for (int64_t j = 0; j < bn; ++j) {
      acc_t* row = St + j * bmp;
      if (m != nullptr && job.mask_sl == 0) {  // one mask row for every query (a key-padding mask)
        const V mj(m[j]);
        for (int64_t c = 0; c < bmp; c += W) (V::loadu(row + c) + mj).store(row + c);
      }
      // Key j0 + j is masked for the rows i < j0 + j - i0.
      if (diagonal) std::fill(row, row + std::clamp<int64_t>(j0 + j - i0, 0, bmp), kNegInf);
      if (colmax == nullptr) continue;
      for (int64_t c = 0; c < bmp; c += W) at::vec::maximum(V::loadu(colmax + c), V::loadu(row + c)).store(colmax + c);
    }
  }

  // P^T *= the dropout factor of each element (bh, i0 + i, j0 + j), i < bm.
  static void dropout_tile(const attention::Problem& job, acc_t* Pt, int64_t bmp, int64_t bh, int64_t i0, int64_t bm,
                           int64_t j0, int64_t bn) {
    const acc_t ks = keep_scale(job);
    for (int64_t j = 0; j < bn; ++j) {
      acc_t* row = Pt + j * bmp;
      for (int64_t i = 0; i < bm; ++i) {
        const uint64_t idx = (static_cast<uint64_t>(bh) * job.L + i0 + i) * job.S + j0 + j;
        row[i] *= math::dropout_keep(job.seed, idx, job.dropout_p) ? ks : acc_t(0);
      }
    }
  }

  // One query row i (q: its E values in acc_t) against K and V (acc_t, rows in place):
  // the scores of a tile of keys by dot products over E into `s`; the
  // online softmax along the row; the output by axpys over V's rows into `o`. Each key is
  // read once per row and nothing is packed.
  static void forward_row(const attention::Forward& job, int64_t b, int64_t h, int64_t bh, int64_t i, const acc_t* q,
                          const acc_t* K, const acc_t* Vm, acc_t scale, AlignedBuffer<acc_t>& sbuf,
                          AlignedBuffer<acc_t>& obuf) {
    const int64_t S = job.S, E = job.E, Ev = job.Ev, jend = key_end(job, i, 1);
    const int64_t bN = kForwardBlockN;
    if (static_cast<int64_t>(sbuf.size()) < std::min(bN, S)) sbuf.resize(std::min(bN, S));
    if (static_cast<int64_t>(obuf.size()) < Ev) obuf.resize(Ev);
    acc_t* s = sbuf.data();
    acc_t* o = obuf.data();
    std::fill(o, o + Ev, acc_t(0));
    acc_t m = kNegInf, l = 0;
    const auto dot = [&](const acc_t* k) {
      int64_t e = 0;
      V acc(acc_t(0));
      for (; e + W <= E; e += W) acc = at::vec::fmadd(V::loadu(q + e), V::loadu(k + e), acc);
      acc_t d = at::vec::vec_reduce_all<acc_t>([](V& x, V& y) { return x + y; }, acc);
      for (; e < E; ++e) d += q[e] * k[e];
      return d;
    };
    for (int64_t j0 = 0; j0 < jend; j0 += bN) {
      const int64_t bn = std::min(bN, jend - j0);
      for (int64_t j = 0; j < bn; ++j) s[j] = scale * dot(K + (j0 + j) * E);
      if (job.mask != nullptr) {
        const acc_t* mrow =
            static_cast<const acc_t*>(job.mask) + b * job.mask_sb + h * job.mask_sh + i * job.mask_sl + j0;
        for (int64_t j = 0; j < bn; ++j) s[j] += mrow[j];
      }
      acc_t m_new = m;
      for (int64_t j = 0; j < bn; ++j) m_new = std::max(m_new, s[j]);
      if (m_new == kNegInf) continue;  // nothing attended to yet: p = 0
      int64_t j = 0;
      acc_t sum = 0;
      {
        V vs(acc_t(0));
        const V vm(m_new);
        for (; j + W <= bn; j += W) {
          const V e = ex(V::loadu(s + j) - vm);
          e.store(s + j);
          vs += e;
        }
        sum = at::vec::vec_reduce_all<acc_t>([](V& x, V& y) { return x + y; }, vs);
      }
      for (; j < bn; ++j) {
        s[j] = std::exp(s[j] - m_new);
        sum += s[j];
      }
      const acc_t alpha = std::exp(m - m_new);  // 0 when the old max was -inf
      if (alpha != acc_t(1))
        for (int64_t c = 0; c < Ev; ++c) o[c] *= alpha;
      l = l * alpha + sum;
      m = m_new;
      if (job.dropout_p > 0.0) dropout_tile(job, s, /*bmp=*/1, bh, i, /*bm=*/1, j0, bn);  // a one-column tile
      for (int64_t jj = 0; jj < bn; ++jj) {
        const acc_t* vrow = Vm + (j0 + jj) * Ev;
        const V p(s[jj]);
        int64_t c = 0;
        for (; c + W <= Ev; c += W) at::vec::fmadd(p, V::loadu(vrow + c), V::loadu(o + c)).store(o + c);
        for (; c < Ev; ++c) o[c] += s[jj] * vrow[c];
      }
    }
    const bool any = l > acc_t(0);
    const acc_t inv = any ? acc_t(1) / l : acc_t(0);
    scalar_t* out = static_cast<scalar_t*>(job.out) + (bh * job.L + i) * Ev;
    for (int64_t c = 0; c < Ev; ++c) out[c] = static_cast<scalar_t>(o[c] * inv);
    static_cast<acc_t*>(job.lse)[bh * job.L + i] = any ? m + std::log(l) : kNegInf;
  }

  static void forward(const attention::Forward& job) {
    const int64_t L = job.L, S = job.S, E = job.E, Ev = job.Ev, H = job.H, G = job.H / job.Hk;
    const int64_t nqb = (L + kForwardBlockM - 1) / kForwardBlockM;
    const int64_t Evp = round_up(Ev, kPanel);  // V's columns padded to whole panels (zeros)
    // With E = 0 the scores are empty sums, 0 whatever the scale (as PyTorch's: the
    // default scale 1/sqrt(0) = inf must not make them 0 * inf).
    const acc_t scale = E == 0 ? acc_t(0) : static_cast<acc_t>(job.scale);
    const int64_t tm = std::min(kForwardBlockM, L), tmp = round_up(tm, kPanel), tn = std::min(kForwardBlockN, S);
    // A few query rows (decoding: a new token against a long cache) would leave most columns
    // of a transposed tile padding (15 of 16 for one row): they go row by row (forward_row).
    const bool by_rows = 2 * L < kPanel;
    at::parallel_for(0, job.B * H * nqb, 1, [&](int64_t begin, int64_t end) {
      // vp: the packed V of one key/value head (kf: its K in acc_t, for float16/bfloat16);
      // qt: Q^T of the query block, its columns padded with zeros to bmp; st: S^T of a tile;
      // o: the unnormalised output; mx, l: each query column's running max and sum; alpha:
      // the factor of the old accumulators when the max moves; sub: what the exp subtracts.
      AlignedBuffer<acc_t> vp(by_rows ? 0 : S * Evp), kf, vf, qt(E * tmp), st(tn * tmp), o(tm * Evp), mx(tmp), l(tmp),
          alpha(tmp), sub(tmp);
      int64_t packed = -1;  // the key/value head in vp (and kf)
      const acc_t* K = nullptr;  // its keys in acc_t
      const acc_t* Vr = nullptr;  // by rows: its values in acc_t
      for (int64_t t = begin; t < end; ++t) {
        const int64_t bh = t / nqb, i0 = (t % nqb) * kForwardBlockM, bm = std::min(kForwardBlockM, L - i0);
        const int64_t bmp = round_up(bm, kPanel), b = bh / H, h = bh % H, kvh = b * job.Hk + h / G;
        if (by_rows) {
          if (kvh != packed) {
            K = as_acc(static_cast<const scalar_t*>(job.k) + kvh * S * E, S, E, kf);
            Vr = as_acc(static_cast<const scalar_t*>(job.v) + kvh * S * Ev, S, Ev, vf);
            packed = kvh;
          }
          const acc_t* Q = as_acc(static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E, bm, E, qt);
          for (int64_t r = 0; r < bm; ++r) forward_row(job, b, h, bh, i0 + r, Q + r * E, K, Vr, scale, st, o);
          continue;
        }
        if (kvh != packed) {  // consecutive tasks share a head: packed once per head and thread
          const scalar_t* Kh = static_cast<const scalar_t*>(job.k) + kvh * S * E;
          const scalar_t* Vh = static_cast<const scalar_t*>(job.v) + kvh * S * Ev;
          for (int64_t p = 0; p < Evp / kPanel; ++p) {
            acc_t* dst = vp.data() + p * S * kPanel;
            const int64_t c0 = p * kPanel, nc = std::min(kPanel, Ev - c0);
            for (int64_t j = 0; j < S; ++j) {
              for (int64_t c = 0; c < nc; ++c) dst[j * kPanel + c] = static_cast<acc_t>(Vh[j * Ev + c0 + c]);
              for (int64_t c = nc; c < kPanel; ++c) dst[j * kPanel + c] = acc_t(0);
            }
          }
          K = as_acc(Kh, S, E, kf);
          packed = kvh;
        }
        copy_transposed(static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E, bm, E, qt.data(), bmp);
        std::fill(mx.begin(), mx.end(), kNegInf);
        std::fill(l.begin(), l.end(), acc_t(0));
        const int64_t jend = key_end(job, i0, bm);
        for (int64_t j0 = 0; j0 < jend; j0 += kForwardBlockN) {
          const int64_t bn = std::min(kForwardBlockN, jend - j0);
          acc_t* St = st.data();
          // mx_new (in sub) = max(mx, the tile's column max after the mask).
          std::copy(mx.begin(), mx.begin() + bmp, sub.begin());
          const bool diagonal = job.causal && j0 + bn - 1 > i0;  // some key j > some row i
          const bool masked = diagonal || job.mask != nullptr;
          tile_product<false>(bn, bmp, E, K + j0 * E, E, qt.data(), kPanel, bmp, St, bmp, scale, nullptr, false,
                              masked ? nullptr : sub.data());
          if (masked) mask_tile(job, St, bmp, b, h, i0, bm, j0, bn, diagonal, sub.data());
          for (int64_t c = 0; c < bmp; c += W) {
            const V m_new = V::loadu(sub.data() + c), ninf(kNegInf);
            // A column with nothing attended to yet (max -inf) subtracts 0: its exps are 0.
            const V s = V::blendv(m_new, V(acc_t(0)), m_new == ninf);
            ex(V::loadu(mx.data() + c) - s).store(alpha.data() + c);
            s.store(sub.data() + c);
            m_new.store(mx.data() + c);
          }
          // P^T = exp(S^T - sub) in place, column blocks of one panel, and l = l alpha + sums.
          for (int64_t c = 0; c < bmp; c += kPanel) {
            const V s0 = V::loadu(sub.data() + c), s1 = V::loadu(sub.data() + c + W);
            V sum0(acc_t(0)), sum1(acc_t(0));
            acc_t* p = St + c;
            for (int64_t j = 0; j < bn; ++j, p += bmp) {
              const V e0 = ex(V::loadu(p) - s0), e1 = ex(V::loadu(p + W) - s1);
              e0.store(p);
              e1.store(p + W);
              sum0 += e0;
              sum1 += e1;
            }
            (at::vec::fmadd(V::loadu(l.data() + c), V::loadu(alpha.data() + c), sum0)).store(l.data() + c);
            (at::vec::fmadd(V::loadu(l.data() + c + W), V::loadu(alpha.data() + c + W), sum1)).store(l.data() + c + W);
          }
          if (job.dropout_p > 0.0) dropout_tile(job, St, bmp, bh, i0, bm, j0, bn);
          // O = alpha O + P V (O starts at the first tile).
          tile_product<true>(bm, Evp, bn, St, bmp, vp.data() + j0 * kPanel, S * kPanel, kPanel, o.data(), Evp, acc_t(1),
                             j0 == 0 ? nullptr : alpha.data(), false, nullptr);
        }
        scalar_t* out = static_cast<scalar_t*>(job.out) + (bh * L + i0) * Ev;
        acc_t* lse = static_cast<acc_t*>(job.lse) + bh * L + i0;
        for (int64_t r = 0; r < bm; ++r) {
          const bool any = l[r] > acc_t(0);
          const acc_t inv = any ? acc_t(1) / l[r] : acc_t(0);
          for (int64_t c = 0; c < Ev; ++c) out[r * Ev + c] = static_cast<scalar_t>(any ? o[r * Evp + c] * inv : acc_t(0));
          lse[r] = any ? mx[r] + std::log(l[r]) : kNegInf;
        }
      }
    });
  }

  // The backward on the forward's transposed tiles (keys x query rows), every product a
  // register-tiled one of our own (tile_product), none packed per tile: per query block,
  // Q^T and dO^T (the vector operands of S^T = K Q^T and dP^T = V dO^T) and Q, dO padded to
  // whole panels (those of dK += dS^T Q and dV += P^T dO); per key/value head, K and V
  // padded (those of dQ += dS K and, for float16/bfloat16, of O = P V).
  static void backward(const attention::Backward& job) {
    constexpr int64_t kBlockM = kBackwardBlockM, kBlockN = kBackwardBlockN;
    const int64_t L = job.L, S = job.S, E = job.E, Ev = job.Ev, H = job.H, Hk = job.Hk, G = H / Hk;
    const int64_t Ep = round_up(E, kPanel), Evp = round_up(Ev, kPanel);
    const acc_t scale = E == 0 ? acc_t(0) : static_cast<acc_t>(job.scale);  // as the forward's
    const bool want_q = job.grad_q != nullptr, want_k = job.grad_k != nullptr, want_v = job.grad_v != nullptr;
    const bool want_ds = want_q || want_k || job.grad_mask != nullptr;
    const bool drop = job.dropout_p > 0.0;
    const int64_t tm = std::min(kBlockM, L), tmp = round_up(tm, kPanel), tn = std::min(kBlockN, S);
    at::parallel_for(0, job.B * Hk, 1, [&](int64_t begin, int64_t end) {
      AlignedBuffer<acc_t> kp(S * Ep), vp(S * Evp), dk(want_k ? S * Ep : 0), dv(want_v ? S * Evp : 0);
      AlignedBuffer<acc_t> qt(E * tmp), qp(tm * Ep), gt(Ev * tmp), gp(tm * Evp), dq(want_q ? tm * Ep : 0);
      AlignedBuffer<acc_t> pt(tn * tmp), dpt(tn * tmp), pdt(drop ? tn * tmp : 0), oacc(kReduced ? tm * Evp : 0);
      AlignedBuffer<acc_t> D(tmp), sub(tmp);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / Hk, kvh = t;
        copy_padded(static_cast<const scalar_t*>(job.k) + kvh * S * E, S, E, kp.data(), Ep);
        copy_padded(static_cast<const scalar_t*>(job.v) + kvh * S * Ev, S, Ev, vp.data(), Evp);
        std::fill(dk.begin(), dk.end(), acc_t(0));
        std::fill(dv.begin(), dv.end(), acc_t(0));
        for (int64_t g = 0; g < G; ++g) {
          const int64_t h = (t % Hk) * G + g, bh = b * H + h;
          for (int64_t i0 = 0; i0 < L; i0 += kBlockM) {
            const int64_t bm = std::min(kBlockM, L - i0), bmp = round_up(bm, kPanel);
            const scalar_t* Q = static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E;
            const scalar_t* dO = static_cast<const scalar_t*>(job.grad_out) + (bh * L + i0) * Ev;
            copy_transposed(Q, bm, E, qt.data(), bmp);
            copy_transposed(dO, bm, Ev, gt.data(), bmp);
            copy_padded(Q, bm, E, qp.data(), Ep);
            copy_padded(dO, bm, Ev, gp.data(), Evp);
            // What the exp subtracts: the row's log-sum-exp; +inf for a row that attends to
            // nothing (lse -inf: its probabilities are 0) and for the padding columns.
            const acc_t* lse = static_cast<const acc_t*>(job.lse) + bh * L + i0;
            for (int64_t i = 0; i < bmp; ++i)
              sub[i] = i < bm && lse[i] != kNegInf ? lse[i] : std::numeric_limits<acc_t>::infinity();
            const int64_t jend = key_end(job, i0, bm);
            // P^T of the tile [j0, j0 + bn) into pt (after dropout into pdt when there is one).
            auto probs_t = [&](int64_t j0, int64_t bn) {
              acc_t* Pt = pt.data();
              tile_product<false>(bn, bmp, E, kp.data() + j0 * Ep, Ep, qt.data(), kPanel, bmp, Pt, bmp, scale, nullptr,
                                  false, nullptr);
              const bool diagonal = job.causal && j0 + bn - 1 > i0;  // some key j > some row i
              if (job.mask != nullptr || diagonal) mask_tile(job, Pt, bmp, b, h, i0, bm, j0, bn, diagonal, nullptr);
              for (int64_t j = 0; j < bn; ++j) {
                acc_t* row = Pt + j * bmp;
                for (int64_t c = 0; c < bmp; c += W) ex(V::loadu(row + c) - V::loadu(sub.data() + c)).store(row + c);
              }
              if (drop) {
                std::copy(Pt, Pt + bn * bmp, pdt.data());
                dropout_tile(job, pdt.data(), bmp, bh, i0, bm, j0, bn);
              }
            };
            // D_i = dot(dO_i, O_i), O the output in acc_t: for float16/bfloat16 recomputed
            // (the rounded output would make dp - D cancel), O = sum over tiles P_dropped V.
            const acc_t* Ob = nullptr;
            int64_t ldo = Ev;
            if constexpr (kReduced) {
              for (int64_t j0 = 0; j0 < jend; j0 += kBlockN) {
                const int64_t bn = std::min(kBlockN, jend - j0);
                probs_t(j0, bn);
                tile_product<true>(bm, Evp, bn, drop ? pdt.data() : pt.data(), bmp, vp.data() + j0 * Evp, kPanel, Evp,
                                   oacc.data(), Evp, acc_t(1), nullptr, j0 > 0, nullptr);
              }
              if (jend == 0) std::fill(oacc.begin(), oacc.end(), acc_t(0));
              Ob = oacc.data();
              ldo = Evp;
            } else {
              Ob = static_cast<const acc_t*>(job.out) + (bh * L + i0) * Ev;
            }
            for (int64_t i = 0; i < bmp; ++i) {
              acc_t d = 0;
              if (i < bm)
                for (int64_t c = 0; c < Ev; ++c) d += gp[i * Evp + c] * Ob[i * ldo + c];
              D[i] = d;
            }
            if (want_q) std::fill(dq.begin(), dq.end(), acc_t(0));
            for (int64_t j0 = 0; j0 < jend; j0 += kBlockN) {
              const int64_t bn = std::min(kBlockN, jend - j0);
              probs_t(j0, bn);
              const acc_t* Pt = pt.data();
              const acc_t* Pdt = drop ? pdt.data() : Pt;  // the probabilities after dropout
              // dV[j0:] += Pd^T dO
              if (want_v)
                tile_product<false>(bn, Evp, bm, Pdt, bmp, gp.data(), kPanel, Evp, dv.data() + j0 * Evp, Evp, acc_t(1),
                                    nullptr, true, nullptr);
              if (!want_ds) continue;
              // dP^T = V dO^T, then dS^T = P^T (dP^T - D) (dropout's factors on dP first).
              acc_t* dSt = dpt.data();
              tile_product<false>(bn, bmp, Ev, vp.data() + j0 * Evp, Evp, gt.data(), kPanel, bmp, dSt, bmp, acc_t(1),
                                  nullptr, false, nullptr);
              if (drop) dropout_tile(job, dSt, bmp, bh, i0, bm, j0, bn);
              for (int64_t j = 0; j < bn; ++j) {
                acc_t* row = dSt + j * bmp;
                const acc_t* prow = Pt + j * bmp;
                for (int64_t c = 0; c < bmp; c += W)
                  math::score_grad(V::loadu(prow + c), V::loadu(row + c), V::loadu(D.data() + c)).store(row + c);
              }
              if (job.grad_mask != nullptr) {  // the score gradient, (L, S) rows of this head
                acc_t* gm = static_cast<acc_t*>(job.grad_mask) + (bh * L + i0) * S + j0;
                for (int64_t i = 0; i < bm; ++i)
                  for (int64_t j = 0; j < bn; ++j) gm[i * S + j] = dSt[j * bmp + i];
              }
              // dQ += scale dS K; dK[j0:] += scale dS^T Q
              if (want_q)
                tile_product<true>(bm, Ep, bn, dSt, bmp, kp.data() + j0 * Ep, kPanel, Ep, dq.data(), Ep, scale, nullptr,
                                   true, nullptr);
              if (want_k)
                tile_product<false>(bn, Ep, bm, dSt, bmp, qp.data(), kPanel, Ep, dk.data() + j0 * Ep, Ep, scale,
                                    nullptr, true, nullptr);
            }
            if (want_q) {
              // Keys beyond the causal end contribute nothing; dq holds the full row.
              scalar_t* gq = static_cast<scalar_t*>(job.grad_q) + (bh * L + i0) * E;
              for (int64_t i = 0; i < bm; ++i)
                for (int64_t c = 0; c < E; ++c) gq[i * E + c] = static_cast<scalar_t>(dq[i * Ep + c]);
            }
          }
        }
        if (want_k) {
          scalar_t* gk = static_cast<scalar_t*>(job.grad_k) + kvh * S * E;
          for (int64_t j = 0; j < S; ++j)
            for (int64_t c = 0; c < E; ++c) gk[j * E + c] = static_cast<scalar_t>(dk[j * Ep + c]);
        }
        if (want_v) {
          scalar_t* gv = static_cast<scalar_t*>(job.grad_v) + kvh * S * Ev;
          for (int64_t j = 0; j < S; ++j)
            for (int64_t c = 0; c < Ev; ++c) gv[j * Ev + c] = static_cast<scalar_t>(dv[j * Evp + c]);
        }
      }
    });
  }
};

}  // namespace

template <typename scalar_t>
void attention_forward(const attention::Forward& job) {
  AttentionKernels<scalar_t>::forward(job);
}

template <typename scalar_t>
void attention_backward(const attention::Backward& job) {
  AttentionKernels<scalar_t>::backward(job);
}

template void attention_forward<double>(const attention::Forward&);
template void attention_forward<float>(const attention::Forward&);
template void attention_forward<c10::BFloat16>(const attention::Forward&);
template void attention_forward<c10::Half>(const attention::Forward&);
template void attention_backward<double>(const attention::Backward&);
template void attention_backward<float>(const attention::Backward&);
template void attention_backward<c10::BFloat16>(const attention::Backward&);
template void attention_backward<c10::Half>(const attention::Backward&);

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
