// The attention family's CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/attention.h. The FlashAttention-2 scheme on tiles: a block of query rows against
// blocks of keys (the sizes below). The forward's tile products (Q K^T, P V) are register
// tiles of our own (see `forward`); the backward's (Q K^T, dO V^T, P^T dO, dS K, dS^T Q) are
// GEMMs through the caller's BLAS (`gemm`); the work between them (mask, online softmax,
// probabilities from the saved log-sum-exp, the score gradient) is
// at::vec::Vectorized<acc_t>. The L x S matrix never exists: the scratch is one tile per
// thread, plus one key/value head (O(S)): the forward's packed V, the backward's gradients.
// Forward: at::parallel_for over (batch x heads x query blocks); backward: over (batch x
// key/value heads), each task owning the gradient of its key/value head (no reduction
// across threads: deterministic for any thread count). float16 / bfloat16 are computed in
// float (converted on the way in).

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

// Tile sizes. The forward takes 64 query rows x 256 keys: its transposed score tile (64 KiB
// in float) stays in L2 between the product that writes it, the exp pass and the product
// that reads it (at 4x8x4096x64 on one thread, 64-row tiles ran 10-20% faster than 128 or
// 256 rows). The backward (parallel over heads, so the tile size does not change its
// parallelism) takes 256 x 256 tiles: its dK and dV products are (keys x rows) x (rows x
// head dim), so more rows per tile means fewer passes over the dK/dV accumulators and
// deeper GEMMs (4x8x1024x64 fwd+bwd, 2 threads: 64 x 512 tiles 0.90-0.99x PyTorch,
// 256 x 256 1.05-1.11x; at L=4096 0.70-0.92x against 0.92-1.04x), and its three tile
// buffers stay at 256 KiB each.
constexpr int64_t kForwardBlockM = 64, kForwardBlockN = 256;
constexpr int64_t kBackwardBlockM = 256, kBackwardBlockN = 256;

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

  // x[j] = exp(x[j] - sub) over the row; returns the sum.
  static acc_t exp_sum(acc_t* x, int64_t n, acc_t sub) {
    int64_t j = 0;
    V vs(acc_t(0));
    const V vsub(sub);
    for (; j + W <= n; j += W) {
      const V e = ex(V::loadu(x + j) - vsub);
      e.store(x + j);
      vs += e;
    }
    acc_t s = at::vec::vec_reduce_all<acc_t>([](V& a, V& b) { return a + b; }, vs);
    for (; j < n; ++j) {
      x[j] = std::exp(x[j] - sub);
      s += x[j];
    }
    return s;
  }

  static void add_row(acc_t* x, const acc_t* y, int64_t n) {
    int64_t j = 0;
    for (; j + W <= n; j += W) (V::loadu(x + j) + V::loadu(y + j)).store(x + j);
    for (; j < n; ++j) x[j] += y[j];
  }

  // The scores of one row of a tile, in place: + mask, causal -inf for keys j > i.
  static void mask_row(const attention::Problem& job, acc_t* srow, int64_t b, int64_t h, int64_t i, int64_t j0,
                       int64_t bn) {
    if (job.mask != nullptr) {
      const acc_t* m = static_cast<const acc_t*>(job.mask) + b * job.mask_sb + h * job.mask_sh + i * job.mask_sl + j0;
      add_row(srow, m, bn);
    }
    if (job.causal) {
      for (int64_t j = std::max<int64_t>(0, i + 1 - j0); j < bn; ++j) srow[j] = kNegInf;
    }
  }

  // Keys visited by the query rows [i0, i0 + bm): all, or those j < i0 + bm when causal.
  static int64_t key_end(const attention::Problem& job, int64_t i0, int64_t bm) {
    return job.causal ? std::min(job.S, i0 + bm) : job.S;
  }

  static acc_t keep_scale(const attention::Problem& job) {
    return job.dropout_p < 1.0 ? static_cast<acc_t>(1.0 / (1.0 - job.dropout_p)) : acc_t(0);
  }

  // x[j] *= dropout factor of element (bh, i, j0 + j).
  static void dropout_row(const attention::Problem& job, acc_t* x, int64_t bh, int64_t i, int64_t j0, int64_t bn) {
    const acc_t ks = keep_scale(job);
    const uint64_t base = (static_cast<uint64_t>(bh) * job.L + i) * job.S + j0;
    for (int64_t j = 0; j < bn; ++j)
      x[j] *= math::dropout_keep(job.seed, base + j, job.dropout_p) ? ks : acc_t(0);
  }

  // ---------------------------------------------------------------------------------------
  // The forward: register-tiled products of our own instead of BLAS, with the scores of a
  // tile kept transposed (keys x query rows).
  //
  // Why: BLAS packs both operands of every tile product, and P (the tile of probabilities)
  // is the large one; here nothing is packed per tile. S^T = K Q^T reads K's rows in place
  // (broadcast operand) against Q^T (transposed once per query block, the vector operand);
  // O += P V reads P^T in place (its columns are the query rows: a broadcast per row) against
  // V packed once per key/value head into panels of kPanel columns. For a tile with neither
  // a mask nor the causal diagonal, the product's epilogue also gives each query column's
  // running max, so the online softmax is one pass (exp and sum) over the tile. Measured
  // at 4x8x{1024,4096}x64, float32, 2 threads: 1.16-1.18x PyTorch's CPU flash kernel, 1.35-1.5x
  // causal, where the BLAS tiles were at parity (benchmarks/results/2026-11-28-cpu-attention-own-tiles*.md).

  static constexpr int64_t kPanel = 2 * W;  // columns of a micro-tile (two vectors)
  static constexpr int kRows = 6;           // rows of a micro-tile: 12 accumulators

  static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

  // C[i, 0:kPanel) for i < R = alpha * sum_k A(i, k) * B[k * ldb + (0:kPanel)], plus
  // c_scale[i] * C[i, :] when c_scale is given (else C is overwritten); A(i, k) is
  // A[i * lda + k], or A[k * lda + i] when kAT. With colmax: colmax[0:kPanel) = max(colmax,
  // the new C's columns).
  template <int R, bool kAT>
  static void micro_tile(int64_t K, const acc_t* A, int64_t lda, const acc_t* B, int64_t ldb, acc_t* C, int64_t ldc,
                         acc_t alpha, const acc_t* c_scale, acc_t* colmax) {
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
                           acc_t* colmax) {
    for (int64_t c = 0; c < n; c += kPanel) {
      const acc_t* Bp = B + (c / kPanel) * panel_stride;
      acc_t* cm = colmax == nullptr ? nullptr : colmax + c;
      for (int64_t i = 0; i < m; i += kRows) {
        const acc_t* Ai = kAT ? A + i : A + i * lda;
        acc_t* Ci = C + i * ldc + c;
        const acc_t* cs = c_scale == nullptr ? nullptr : c_scale + i;
        switch (std::min<int64_t>(kRows, m - i)) {
          case 6: micro_tile<6, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
          case 5: micro_tile<5, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
          case 4: micro_tile<4, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
          case 3: micro_tile<3, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
          case 2: micro_tile<2, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
          default: micro_tile<1, kAT>(K, Ai, lda, Bp, ldb, Ci, ldc, alpha, cs, cm); break;
        }
      }
    }
  }

  // S^T (bn x bmp, column i = query row i0 + i, row j = key j0 + j) + the additive mask and
  // -inf for the causally masked keys; colmax = max(colmax, the masked columns).
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

  static void forward(const attention::Forward& job) {
    const int64_t L = job.L, S = job.S, E = job.E, Ev = job.Ev, H = job.H, G = job.H / job.Hk;
    const int64_t nqb = (L + kForwardBlockM - 1) / kForwardBlockM;
    const int64_t Evp = round_up(Ev, kPanel);  // V's columns padded to whole panels (zeros)
    // With E = 0 the scores are empty sums, 0 whatever the scale (as in BLAS, where the
    // default scale 1/sqrt(0) = inf never multiplies them).
    const acc_t scale = E == 0 ? acc_t(0) : static_cast<acc_t>(job.scale);
    const int64_t tm = std::min(kForwardBlockM, L), tmp = round_up(tm, kPanel), tn = std::min(kForwardBlockN, S);
    at::parallel_for(0, job.B * H * nqb, 1, [&](int64_t begin, int64_t end) {
      // vp: the packed V of one key/value head (kf: its K in acc_t, for float16/bfloat16);
      // qt: Q^T of the query block, its columns padded with zeros to bmp; st: S^T of a tile;
      // o: the unnormalised output; mx, l: each query column's running max and sum; alpha:
      // the factor of the old accumulators when the max moves; sub: what the exp subtracts.
      AlignedBuffer<acc_t> vp(S * Evp), kf, qt(E * tmp), st(tn * tmp), o(tm * Evp), mx(tmp), l(tmp), alpha(tmp),
          sub(tmp);
      int64_t packed = -1;  // the key/value head in vp (and kf)
      const acc_t* K = nullptr;  // its keys in acc_t
      for (int64_t t = begin; t < end; ++t) {
        const int64_t bh = t / nqb, i0 = (t % nqb) * kForwardBlockM, bm = std::min(kForwardBlockM, L - i0);
        const int64_t bmp = round_up(bm, kPanel), b = bh / H, h = bh % H, kvh = b * job.Hk + h / G;
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
        const scalar_t* Q = static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E;
        for (int64_t e = 0; e < E; ++e) {
          acc_t* row = qt.data() + e * bmp;
          for (int64_t r = 0; r < bm; ++r) row[r] = static_cast<acc_t>(Q[r * E + e]);
          std::fill(row + bm, row + bmp, acc_t(0));
        }
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
          tile_product<false>(bn, bmp, E, K + j0 * E, E, qt.data(), kPanel, bmp, St, bmp, scale, nullptr,
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
                             j0 == 0 ? nullptr : alpha.data(), nullptr);
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

  static void backward(const attention::Backward& job, attention::GemmFn<acc_t> gemm) {
    constexpr int64_t kBlockM = kBackwardBlockM, kBlockN = kBackwardBlockN;
    const int64_t L = job.L, S = job.S, E = job.E, Ev = job.Ev, H = job.H, Hk = job.Hk, G = H / Hk;
    const acc_t scale = static_cast<acc_t>(job.scale);
    const bool want_q = job.grad_q != nullptr, want_k = job.grad_k != nullptr, want_v = job.grad_v != nullptr;
    const bool want_ds = want_q || want_k || job.grad_mask != nullptr;
    const bool drop = job.dropout_p > 0.0;
    const int64_t tm = std::min(kBlockM, L), tn = std::min(kBlockN, S);  // buffers sized for this problem's tiles
    at::parallel_for(0, job.B * Hk, 1, [&](int64_t begin, int64_t end) {
      AlignedBuffer<acc_t> pbuf(tm * tn), dpbuf(tm * tn), pdbuf(drop ? tm * tn : 0);
      AlignedBuffer<acc_t> dk(want_k ? S * E : 0), dv(want_v ? S * Ev : 0), dq(want_q ? tm * E : 0), D(tm);
      AlignedBuffer<acc_t> qf, of, gf, kf, vf, oacc(kReduced ? tm * Ev : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / Hk, kvh = t;
        const acc_t* K = as_acc(static_cast<const scalar_t*>(job.k) + kvh * S * E, S, E, kf);
        const acc_t* Vm = as_acc(static_cast<const scalar_t*>(job.v) + kvh * S * Ev, S, Ev, vf);
        std::fill(dk.begin(), dk.end(), acc_t(0));
        std::fill(dv.begin(), dv.end(), acc_t(0));
        for (int64_t g = 0; g < G; ++g) {
          const int64_t h = (t % Hk) * G + g, bh = b * H + h;
          for (int64_t i0 = 0; i0 < L; i0 += kBlockM) {
            const int64_t bm = std::min(kBlockM, L - i0);
            const acc_t* Q = as_acc(static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E, bm, E, qf);
            const acc_t* dO = as_acc(static_cast<const scalar_t*>(job.grad_out) + (bh * L + i0) * Ev, bm, Ev, gf);
            const acc_t* Ob = kReduced ? nullptr : as_acc(static_cast<const scalar_t*>(job.out) + (bh * L + i0) * Ev, bm, Ev, of);
            const acc_t* lse = static_cast<const acc_t*>(job.lse) + bh * L + i0;
            const int64_t jend = key_end(job, i0, bm);
            if constexpr (kReduced) {
              // The output rounded to float16/bfloat16 would make D inexact, and dp - D
              // cancels: the output is recomputed in acc_t (two more GEMMs per tile).
              std::fill(oacc.begin(), oacc.end(), acc_t(0));
              for (int64_t j0 = 0; j0 < jend; j0 += kBlockN) {
                const int64_t bn = std::min(kBlockN, jend - j0);
                acc_t* P = pbuf.data();
                probs(job, P, Q, K, b, h, bh, i0, bm, j0, bn, lse, gemm, /*dropped=*/true);
                gemm(false, false, bm, Ev, bn, acc_t(1), P, bn, Vm + j0 * Ev, Ev, acc_t(1), oacc.data(), Ev);
              }
              Ob = oacc.data();
            }
            for (int64_t r = 0; r < bm; ++r) {  // D_i = dot(dO_i, O_i)
              acc_t d = 0;
              for (int64_t c = 0; c < Ev; ++c) d += dO[r * Ev + c] * Ob[r * Ev + c];
              D[r] = d;
            }
            if (want_q) std::fill(dq.begin(), dq.end(), acc_t(0));
            for (int64_t j0 = 0; j0 < jend; j0 += kBlockN) {
              const int64_t bn = std::min(kBlockN, jend - j0);
              acc_t* P = pbuf.data();
              acc_t* dP = dpbuf.data();
              probs(job, P, Q, K, b, h, bh, i0, bm, j0, bn, lse, gemm, /*dropped=*/false);
              const acc_t* Pd = P;  // the probabilities after dropout
              if (drop) {
                std::copy(P, P + bm * bn, pdbuf.data());
                for (int64_t r = 0; r < bm; ++r) dropout_row(job, pdbuf.data() + r * bn, bh, i0 + r, j0, bn);
                Pd = pdbuf.data();
              }
              if (want_v) gemm(true, false, bn, Ev, bm, acc_t(1), Pd, bn, dO, Ev, acc_t(1), dv.data() + j0 * Ev, Ev);
              if (!want_ds) continue;
              gemm(false, true, bm, bn, Ev, acc_t(1), dO, Ev, Vm + j0 * Ev, Ev, acc_t(0), dP, bn);
              for (int64_t r = 0; r < bm; ++r) {
                acc_t* dprow = dP + r * bn;
                if (drop) dropout_row(job, dprow, bh, i0 + r, j0, bn);
                score_grad_row(P + r * bn, dprow, bn, D[r]);
                if (job.grad_mask != nullptr) {
                  acc_t* gm = static_cast<acc_t*>(job.grad_mask) + (bh * L + i0 + r) * S + j0;
                  std::copy(dprow, dprow + bn, gm);
                }
              }
              if (want_q) gemm(false, false, bm, E, bn, scale, dP, bn, K + j0 * E, E, acc_t(1), dq.data(), E);
              if (want_k) gemm(true, false, bn, E, bm, scale, dP, bn, Q, E, acc_t(1), dk.data() + j0 * E, E);
            }
            if (want_q) {
              scalar_t* gq = static_cast<scalar_t*>(job.grad_q) + (bh * L + i0) * E;
              // Keys beyond the causal end contribute nothing; dq holds the full row.
              for (int64_t n = 0; n < bm * E; ++n) gq[n] = static_cast<scalar_t>(dq[n]);
            }
          }
        }
        if (want_k) {
          scalar_t* gk = static_cast<scalar_t*>(job.grad_k) + kvh * S * E;
          for (int64_t n = 0; n < S * E; ++n) gk[n] = static_cast<scalar_t>(dk[n]);
        }
        if (want_v) {
          scalar_t* gv = static_cast<scalar_t*>(job.grad_v) + kvh * S * Ev;
          for (int64_t n = 0; n < S * Ev; ++n) gv[n] = static_cast<scalar_t>(dv[n]);
        }
      }
    });
  }

  // P (bm x bn) = the attention probabilities of a tile from the saved log-sum-exp
  // (math::prob_from_lse, vectorised), after dropout when `dropped`.
  static void probs(const attention::Problem& job, acc_t* P, const acc_t* Q, const acc_t* K, int64_t b, int64_t h,
                    int64_t bh, int64_t i0, int64_t bm, int64_t j0, int64_t bn, const acc_t* lse,
                    attention::GemmFn<acc_t> gemm, bool dropped) {
    gemm(false, true, bm, bn, job.E, static_cast<acc_t>(job.scale), Q, job.E, K + j0 * job.E, job.E, acc_t(0), P, bn);
    for (int64_t r = 0; r < bm; ++r) {
      acc_t* prow = P + r * bn;
      mask_row(job, prow, b, h, i0 + r, j0, bn);
      if (lse[r] == kNegInf) {
        std::fill(prow, prow + bn, acc_t(0));
      } else {
        exp_sum(prow, bn, lse[r]);
      }
      if (dropped && job.dropout_p > 0.0) dropout_row(job, prow, bh, i0 + r, j0, bn);
    }
  }

  // dp[j] = p[j] * (dp[j] - D) (math::score_grad, vectorised).
  static void score_grad_row(const acc_t* p, acc_t* dp, int64_t n, acc_t D) {
    int64_t j = 0;
    const V vd(D);
    for (; j + W <= n; j += W) (V::loadu(p + j) * (V::loadu(dp + j) - vd)).store(dp + j);
    for (; j < n; ++j) dp[j] = math::score_grad(p[j], dp[j], D);
  }
};

}  // namespace

template <typename scalar_t>
void attention_forward(const attention::Forward& job) {
  AttentionKernels<scalar_t>::forward(job);
}

template <typename scalar_t>
void attention_backward(const attention::Backward& job, attention::GemmFn<at::opmath_type<scalar_t>> gemm) {
  AttentionKernels<scalar_t>::backward(job, gemm);
}

template void attention_forward<double>(const attention::Forward&);
template void attention_forward<float>(const attention::Forward&);
template void attention_forward<c10::BFloat16>(const attention::Forward&);
template void attention_forward<c10::Half>(const attention::Forward&);
template void attention_backward<double>(const attention::Backward&, attention::GemmFn<double>);
template void attention_backward<float>(const attention::Backward&, attention::GemmFn<float>);
template void attention_backward<c10::BFloat16>(const attention::Backward&, attention::GemmFn<float>);
template void attention_backward<c10::Half>(const attention::Backward&, attention::GemmFn<float>);

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
