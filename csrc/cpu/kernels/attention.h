// The attention family's CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/attention.h. The FlashAttention-2 scheme on tiles: a block of kBlockM query rows
// against blocks of keys (the sizes below); the block products (Q K^T, P V, and in the backward
// dO V^T, P^T dO, dS K, dS^T Q) are GEMMs through the caller's BLAS (`gemm`); the row work
// between them (mask, online softmax, probabilities from the saved log-sum-exp, the score
// gradient) is at::vec::Vectorized<acc_t>. The L x S matrix never exists: the scratch is
// O(kBlockM * kBlockN) per thread, plus, in the backward, the gradient of one key/value head
// (O(S)). Forward: at::parallel_for over (batch x heads x query blocks); backward: over
// (batch x key/value heads), each task owning the gradient of its key/value head (no
// reduction across threads: deterministic for any thread count). float16 / bfloat16 are
// computed in float (the tiles converted on the way in).

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

// Tile sizes. The forward takes 256 query rows per tile when that still gives every thread
// two tiles (fewer passes over K and V; measured 1.03-1.07x faster than 64 at 4x8x1024x64 on
// 2 threads), else 64, against 512 keys. The backward (parallel over heads, so the tile
// size does not change its parallelism) takes 256 x 256 tiles: its dK and dV products
// are (keys x rows) x (rows x head dim), so more rows per tile means fewer passes over the
// dK/dV accumulators and deeper GEMMs (4x8x1024x64 fwd+bwd, 2 threads: 64 x 512 tiles
// 0.90-0.99x PyTorch, 256 x 256 1.05-1.11x; at L=4096 0.70-0.92x against 0.92-1.04x), and
// its three tile buffers stay at 256 KiB each.
constexpr int64_t kBlockN = 512;  // keys per forward tile
constexpr int64_t kForwardBlockM = 256, kSmallBlockM = 64;
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

  static acc_t row_max(const acc_t* x, int64_t n) {
    int64_t j = 0;
    acc_t m = kNegInf;
    if (n >= W) {
      V vm(kNegInf);
      for (; j + W <= n; j += W) vm = at::vec::maximum(vm, V::loadu(x + j));
      m = at::vec::vec_reduce_all<acc_t>([](V& a, V& b) { return at::vec::maximum(a, b); }, vm);
    }
    for (; j < n; ++j) m = std::max(m, x[j]);
    return m;
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

  static void scale_row(acc_t* x, int64_t n, acc_t a) {
    int64_t j = 0;
    const V va(a);
    for (; j + W <= n; j += W) (V::loadu(x + j) * va).store(x + j);
    for (; j < n; ++j) x[j] *= a;
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

  static void forward(const attention::Forward& job, attention::GemmFn<acc_t> gemm) {
    const int64_t L = job.L, S = job.S, E = job.E, Ev = job.Ev, H = job.H, G = job.H / job.Hk;
    const int64_t big_tiles = job.B * H * ((L + kForwardBlockM - 1) / kForwardBlockM);
    const int64_t kBlockM = big_tiles >= 2 * at::get_num_threads() ? kForwardBlockM : kSmallBlockM;
    const int64_t nqb = (L + kBlockM - 1) / kBlockM;
    const acc_t scale = static_cast<acc_t>(job.scale);
    // Buffers sized for the tiles this problem has (a short sequence: small buffers, no
    // page faults of a fresh large allocation per call).
    const int64_t tm = std::min(kBlockM, L), tn = std::min(kBlockN, S);
    at::parallel_for(0, job.B * H * nqb, 1, [&](int64_t begin, int64_t end) {
      AlignedBuffer<acc_t> sbuf(tm * tn), obuf(tm * std::max<int64_t>(Ev, 1)), mbuf(tm), lbuf(tm), qf, kf, vf;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t bh = t / nqb, i0 = (t % nqb) * kBlockM, bm = std::min(kBlockM, L - i0);
        const int64_t b = bh / H, h = bh % H, kvh = b * job.Hk + h / G;
        const acc_t* Q = as_acc(static_cast<const scalar_t*>(job.q) + (bh * L + i0) * E, bm, E, qf);
        const scalar_t* K = static_cast<const scalar_t*>(job.k) + kvh * S * E;
        const scalar_t* Vm = static_cast<const scalar_t*>(job.v) + kvh * S * Ev;
        acc_t* O = obuf.data();
        std::fill(O, O + bm * Ev, acc_t(0));
        std::fill(mbuf.begin(), mbuf.end(), kNegInf);
        std::fill(lbuf.begin(), lbuf.end(), acc_t(0));
        const int64_t jend = key_end(job, i0, bm);
        for (int64_t j0 = 0; j0 < jend; j0 += kBlockN) {
          const int64_t bn = std::min(kBlockN, jend - j0);
          const acc_t* Kb = as_acc(K + j0 * E, bn, E, kf);
          const acc_t* Vb = as_acc(Vm + j0 * Ev, bn, Ev, vf);
          acc_t* Sb = sbuf.data();
          gemm(false, true, bm, bn, E, scale, Q, E, Kb, E, acc_t(0), Sb, bn);
          for (int64_t r = 0; r < bm; ++r) {
            acc_t* srow = Sb + r * bn;
            mask_row(job, srow, b, h, i0 + r, j0, bn);
            const acc_t m_new = std::max(mbuf[r], row_max(srow, bn));
            if (m_new == kNegInf) {  // nothing attended to yet: p = 0
              std::fill(srow, srow + bn, acc_t(0));
              continue;
            }
            const acc_t sum = exp_sum(srow, bn, m_new);
            const acc_t alpha = std::exp(mbuf[r] - m_new);  // 0 when the old max was -inf
            if (alpha != acc_t(1)) scale_row(O + r * Ev, Ev, alpha);
            lbuf[r] = lbuf[r] * alpha + sum;
            mbuf[r] = m_new;
            if (job.dropout_p > 0.0) dropout_row(job, srow, bh, i0 + r, j0, bn);
          }
          gemm(false, false, bm, Ev, bn, acc_t(1), Sb, bn, Vb, Ev, acc_t(1), O, Ev);
        }
        scalar_t* out = static_cast<scalar_t*>(job.out) + (bh * L + i0) * Ev;
        acc_t* lse = static_cast<acc_t*>(job.lse) + bh * L + i0;
        for (int64_t r = 0; r < bm; ++r) {
          const bool any = lbuf[r] > acc_t(0);
          const acc_t inv = any ? acc_t(1) / lbuf[r] : acc_t(0);
          for (int64_t c = 0; c < Ev; ++c) out[r * Ev + c] = static_cast<scalar_t>(O[r * Ev + c] * inv);
          lse[r] = any ? mbuf[r] + std::log(lbuf[r]) : kNegInf;
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
void attention_forward(const attention::Forward& job, attention::GemmFn<at::opmath_type<scalar_t>> gemm) {
  AttentionKernels<scalar_t>::forward(job, gemm);
}

template <typename scalar_t>
void attention_backward(const attention::Backward& job, attention::GemmFn<at::opmath_type<scalar_t>> gemm) {
  AttentionKernels<scalar_t>::backward(job, gemm);
}

template void attention_forward<double>(const attention::Forward&, attention::GemmFn<double>);
template void attention_forward<float>(const attention::Forward&, attention::GemmFn<float>);
template void attention_forward<c10::BFloat16>(const attention::Forward&, attention::GemmFn<float>);
template void attention_forward<c10::Half>(const attention::Forward&, attention::GemmFn<float>);
template void attention_backward<double>(const attention::Backward&, attention::GemmFn<double>);
template void attention_backward<float>(const attention::Backward&, attention::GemmFn<float>);
template void attention_backward<c10::BFloat16>(const attention::Backward&, attention::GemmFn<float>);
template void attention_backward<c10::Half>(const attention::Backward&, attention::GemmFn<float>);

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
