// The normalization family's vectorised CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/norm.h. Raw pointers and vector loops only: the dtype dispatch, the checks and
// the scratch memory are in csrc/cpu/norm.cpp and csrc/norm.cpp. The formulas are
// torch_ops/norm_math.h, instantiated with at::vec::Vectorized and with the opmath scalar.
//
// Forward, per row: the statistics of s (x, or x + r for the residual variants; layer_norm:
// exact two-pass moments per L1-sized chunk, chunks combined with Chan's formula; rms_norm:
// the sum of squares), then y = (s - mean) * rstd * w + b, storing s = x + r with y.
// Backward, per row: one pass for the two row sums (and the weight/bias partial rows), one
// for grad_input. The weight/bias gradients: each fixed block of rows (norm::param_block_rows,
// a function of the shape only) sums its rows in order into a partial row; the partial rows are
// then added in block order. Bitwise identical results for any thread count.
#include "torch_ops/norm_math.h"

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace norm_k {

// Two opmath vectors from 2 * Vec::size() elements of p (bfloat16/half: converted).
template <typename T, typename Vec>
inline void nload2(const T* p, Vec& a, Vec& b) {
  if constexpr (at::vec::is_reduced_floating_point_v<T>) {
    at::vec::load_to_float<T>(p, a, b);
  } else {
    a = Vec::loadu(p);
    b = Vec::loadu(p + Vec::size());
  }
}

template <typename T, typename Vec>
inline void nstore2(T* p, const Vec& a, const Vec& b) {
  if constexpr (at::vec::is_reduced_floating_point_v<T>) {
    at::vec::convert_from_float<T>(a, b).store(p);
  } else {
    a.store(p);
    b.store(p + Vec::size());
  }
}

// The lanes of v added in lane order (deterministic).
template <typename T, typename Vec>
inline T lane_sum(const Vec& v) {
  alignas(64) T buf[Vec::size()];
  v.store(buf);
  T s = 0;
  for (int k = 0; k < Vec::size(); ++k) s += buf[k];
  return s;
}

// Elements per chunk of layer_norm's statistics (and of the backward's column chunks on
// long rows): small enough to stay in L1 between two passes.
constexpr int64_t kChunk = 2048;
// Rows at least this long take the backward's long-row path.
constexpr int64_t kLongRow = 16384;

// sum_j f(p[j]) over n elements in the opmath type: four vector accumulators (enough
// independent adds in flight to run at load speed), combined in a fixed order.
template <typename T, typename Vec, typename FV, typename FS>
inline typename Vec::value_type row_sum(const T* p, int64_t n, const FV& fv, const FS& fs) {
  using opmath_t = typename Vec::value_type;
  constexpr int64_t W = 2 * Vec::size();
  const Vec zero(opmath_t(0));
  Vec s0 = zero, s1 = zero, s2 = zero, s3 = zero;
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    Vec a, b, c, d;
    nload2(p + j, a, b);
    nload2(p + j + W, c, d);
    s0 += fv(a);
    s1 += fv(b);
    s2 += fv(c);
    s3 += fv(d);
  }
  for (; j + W <= n; j += W) {
    Vec a, b;
    nload2(p + j, a, b);
    s0 += fv(a);
    s1 += fv(b);
  }
  opmath_t tail = 0;
  for (; j < n; ++j) tail += fs(static_cast<opmath_t>(p[j]));
  return lane_sum<opmath_t>((s0 + s1) + (s2 + s3)) + tail;
}

// Non-temporal stores: an output much larger than the caches is written around them, with
// no read of the destination lines first (a plain store reads each line before writing
// it), a third less memory traffic for y = f(x). Used for float outputs of at least
// kStreamBytes, on rows whose start is vector-aligned; stream_fence orders them before
// the task ends (they are weakly ordered).
constexpr int64_t kStreamBytes = int64_t(8) << 20;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
template <typename T>
constexpr bool kCanStream = std::is_same_v<T, float>;
#else
template <typename T>
constexpr bool kCanStream = false;
#endif

template <typename T>
inline bool streamable(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % sizeof(at::vec::Vectorized<float>) == 0;
}

template <typename T, typename Vec>
inline void stream2(T* p, const Vec& a, const Vec& b) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_stream_ps(p, a);
    _mm512_stream_ps(p + Vec::size(), b);
    return;
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    _mm256_stream_ps(p, a);
    _mm256_stream_ps(p + Vec::size(), b);
    return;
  }
#endif
  nstore2(p, a, b);
}

inline void stream_fence() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

template <bool B>
using Bool = std::integral_constant<bool, B>;

// f(Bool<a>, Bool<b>) with the runtime flags a, b turned into compile-time ones.
template <typename F>
inline void with_flags(bool a, bool b, const F& f) {
  if (a) {
    if (b) f(Bool<true>{}, Bool<true>{});
    else f(Bool<true>{}, Bool<false>{});
  } else {
    if (b) f(Bool<false>{}, Bool<true>{});
    else f(Bool<false>{}, Bool<false>{});
  }
}

// One row of the backward over the columns [c0, c1), in one pass over x and dy, doing what
// the flags ask (the long- and short-row paths combine them differently):
//  kSums: the row sums of g = dy * w and of g * xhat, written to sums[0], sums[1];
//  kPart: the weight/bias partial rows pw, pb (either may be null): the block's first row
//         stores, the others add;
//  kDx:   grad_input = rstd * (g - c_g - xhat * c_gx) (+ ex), non-temporal stores if nt.
// (scalar_t and param_t are deduced from x and wt only; the other pointers may be null.)
template <bool kSums, bool kPart, bool kDx, bool kW, typename scalar_t, typename param_t,
          typename opmath_t = at::opmath_type<scalar_t>>
inline void backward_span(int64_t c0, int64_t c1, const scalar_t* x, const scalar_t* dy, const param_t* wt,
                          std::type_identity_t<opmath_t> mean, std::type_identity_t<opmath_t> rstd,
                          std::type_identity_t<opmath_t>* pw, std::type_identity_t<opmath_t>* pb, bool first,
                          std::type_identity_t<scalar_t>* dx, const std::type_identity_t<scalar_t>* ex,
                          std::type_identity_t<opmath_t> c_g, std::type_identity_t<opmath_t> c_gx, bool nt,
                          std::type_identity_t<opmath_t>* sums) {
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = 2 * Vec::size();
  const Vec vm(mean), vr(rstd), vcg(c_g), vcgx(c_gx), zero(opmath_t(0));
  const auto partial = [&](opmath_t* p, int64_t j, const Vec& v0, const Vec& v1) {
    if (first) {
      v0.store(p + j);
      v1.store(p + j + Vec::size());
    } else {
      (Vec::loadu(p + j) + v0).store(p + j);
      (Vec::loadu(p + j + Vec::size()) + v1).store(p + j + Vec::size());
    }
  };
  Vec sg0 = zero, sg1 = zero, sgx0 = zero, sgx1 = zero;
  opmath_t tg = 0, tgx = 0;
  int64_t j = c0;
  for (; j + W <= c1; j += W) {
    Vec x0, x1, d0, d1;
    nload2(x + j, x0, x1);
    nload2(dy + j, d0, d1);
    const Vec h0 = math::norm_xhat(x0, vm, vr), h1 = math::norm_xhat(x1, vm, vr);
    if constexpr (kPart) {
      if (pw) partial(pw, j, d0 * h0, d1 * h1);
      if (pb) partial(pb, j, d0, d1);
    }
    if constexpr (kSums || kDx) {
      if constexpr (kW) {
        Vec w0, w1;
        nload2(wt + j, w0, w1);
        d0 = d0 * w0;
        d1 = d1 * w1;
      }
      if constexpr (kSums) {
        sg0 += d0;
        sg1 += d1;
        sgx0 = at::vec::fmadd(d0, h0, sgx0);
        sgx1 = at::vec::fmadd(d1, h1, sgx1);
      }
      if constexpr (kDx) {
        Vec o0 = math::norm_grad_input(d0, h0, vr, vcg, vcgx);
        Vec o1 = math::norm_grad_input(d1, h1, vr, vcg, vcgx);
        if (ex) {
          Vec e0, e1;
          nload2(ex + j, e0, e1);
          o0 = o0 + e0;
          o1 = o1 + e1;
        }
        if (nt) {
          stream2(dx + j, o0, o1);
        } else {
          nstore2(dx + j, o0, o1);
        }
      }
    }
  }
  for (; j < c1; ++j) {
    const opmath_t d = static_cast<opmath_t>(dy[j]);
    const opmath_t h = math::norm_xhat(static_cast<opmath_t>(x[j]), mean, rstd);
    if constexpr (kPart) {
      if (pw) pw[j] = first ? d * h : pw[j] + d * h;
      if (pb) pb[j] = first ? d : pb[j] + d;
    }
    opmath_t g = d;
    if constexpr (kW) g = g * static_cast<opmath_t>(wt[j]);
    if constexpr (kSums) {
      tg += g;
      tgx += g * h;
    }
    if constexpr (kDx) {
      opmath_t o = math::norm_grad_input(g, h, rstd, c_g, c_gx);
      if (ex) o = o + static_cast<opmath_t>(ex[j]);
      dx[j] = static_cast<scalar_t>(o);
    }
  }
  if constexpr (kSums) {
    sums[0] = lane_sum<opmath_t>(sg0 + sg1) + tg;
    sums[1] = lane_sum<opmath_t>(sgx0 + sgx1) + tgx;
  }
}

}  // namespace norm_k

template <typename scalar_t, typename param_t>
void norm_forward_impl(const norm::Forward& job) {
  using namespace norm_k;
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = 2 * Vec::size();
  const int64_t N = job.N;
  const auto* X = static_cast<const scalar_t*>(job.x);
  const auto* R = static_cast<const scalar_t*>(job.r);
  const auto* Wt = static_cast<const param_t*>(job.w);
  const auto* Bs = static_cast<const param_t*>(job.b);
  auto* Y = static_cast<scalar_t*>(job.y);
  auto* S = static_cast<scalar_t*>(job.sum);
  auto* Mean = static_cast<opmath_t*>(job.mean);
  auto* Rstd = static_cast<opmath_t*>(job.rstd);
  const opmath_t eps = static_cast<opmath_t>(job.eps);
  const bool rms = job.rms;
  const int64_t grain = std::max<int64_t>(1, 16384 / N);
  const bool stream = kCanStream<scalar_t> && job.M * N * int64_t(sizeof(scalar_t)) >= kStreamBytes;
  with_flags(Wt != nullptr, Bs != nullptr, [&](auto has_w, auto has_b) {
    at::parallel_for(0, job.M, grain, [&](int64_t begin, int64_t end) {
      // The residual variants: s = x + r, rounded to the dtype (as x + r in torch). The
      // statistics read s chunk by chunk from this L1 buffer; the last pass computes s
      // again from x and r and stores it with y, so that s, like y, is written once, with
      // non-temporal stores when large (no read of the destination, no second pass over it).
      std::vector<scalar_t> chunk_buf(R ? kChunk : 0);
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* xrow = X + i * N;
        const scalar_t* rrow = R ? R + i * N : nullptr;
        scalar_t* srow = R ? S + i * N : nullptr;
        // The chunk [c0, c0 + n) of s, for the statistics.
        const auto chunk = [&](int64_t c0, int64_t n) -> const scalar_t* {
          if (!R) return xrow + c0;
          scalar_t* buf = chunk_buf.data();
          int64_t j = 0;
          for (; j + W <= n; j += W) {
            Vec a0, a1, b0, b1;
            nload2(xrow + c0 + j, a0, a1);
            nload2(rrow + c0 + j, b0, b1);
            nstore2(buf + j, a0 + b0, a1 + b1);
          }
          for (; j < n; ++j)
            buf[j] = static_cast<scalar_t>(static_cast<opmath_t>(xrow[c0 + j]) + static_cast<opmath_t>(rrow[c0 + j]));
          return buf;
        };
        // Statistics. layer_norm: per chunk of the row (kChunk elements, L1-resident),
        // the exact two-pass moments (the chunk's mean, then its centred sum of squares,
        // corrected by the centred sum: no cancellation), the chunks combined in order
        // with Chan's formula (welford_combine). No loop-carried chain longer than an
        // add, so the pass runs at load speed. rms_norm: the sum of squares.
        opmath_t mean = 0, var;
        if (!rms) {
          using Mom = math::Moments<opmath_t>;
          Mom total{opmath_t(0), opmath_t(0), opmath_t(0)};
          for (int64_t c0 = 0; c0 < N; c0 += kChunk) {
            const int64_t n = std::min<int64_t>(kChunk, N - c0);
            const scalar_t* p = chunk(c0, n);
            const opmath_t cmean = row_sum<scalar_t, Vec>(p, n, [](const Vec& a) { return a; },
                                                          [](opmath_t a) { return a; }) /
                                   static_cast<opmath_t>(n);
            const Vec vc(cmean);
            const Vec zero(opmath_t(0));
            Vec sd0 = zero, sd1 = zero, sd2 = zero, sd3 = zero, sq0 = zero, sq1 = zero, sq2 = zero, sq3 = zero;
            int64_t j = 0;
            for (; j + 2 * W <= n; j += 2 * W) {
              Vec a, b, c, d;
              nload2(p + j, a, b);
              nload2(p + j + W, c, d);
              a = a - vc;
              b = b - vc;
              c = c - vc;
              d = d - vc;
              sd0 += a;
              sd1 += b;
              sd2 += c;
              sd3 += d;
              sq0 = at::vec::fmadd(a, a, sq0);
              sq1 = at::vec::fmadd(b, b, sq1);
              sq2 = at::vec::fmadd(c, c, sq2);
              sq3 = at::vec::fmadd(d, d, sq3);
            }
            sd0 += sd2;
            sd1 += sd3;
            sq0 += sq2;
            sq1 += sq3;
            for (; j + W <= n; j += W) {
              Vec a, b;
              nload2(p + j, a, b);
              a = a - vc;
              b = b - vc;
              sd0 += a;
              sd1 += b;
              sq0 = at::vec::fmadd(a, a, sq0);
              sq1 = at::vec::fmadd(b, b, sq1);
            }
            opmath_t td = 0, tq = 0;
            for (; j < n; ++j) {
              const opmath_t d = static_cast<opmath_t>(p[j]) - cmean;
              td += d;
              tq += d * d;
            }
            const opmath_t sd = lane_sum<opmath_t>(sd0 + sd1) + td;
            const opmath_t sq = lane_sum<opmath_t>(sq0 + sq1) + tq;
            total = math::welford_combine(
                total, Mom{static_cast<opmath_t>(n), cmean + sd / static_cast<opmath_t>(n),
                           std::max(opmath_t(0), sq - sd * sd / static_cast<opmath_t>(n))});
          }
          mean = total.mean;
          var = total.m2 / static_cast<opmath_t>(N);
        } else {
          opmath_t sq = 0;
          for (int64_t c0 = 0; c0 < N; c0 += kChunk) {
            const int64_t n = std::min<int64_t>(kChunk, N - c0);
            sq += row_sum<scalar_t, Vec>(chunk(c0, n), n, [](const Vec& a) { return a * a; },
                                         [](opmath_t a) { return a * a; });
          }
          var = sq / static_cast<opmath_t>(N);
        }
        const opmath_t rstd = math::norm_rstd(var, eps);
        if (!rms) Mean[i] = mean;
        Rstd[i] = rstd;
        scalar_t* y = Y + i * N;
        const Vec vm(mean), vr(rstd);
        const auto normalise = [&](auto nt) {
          int64_t j = 0;
          for (; j + W <= N; j += W) {
            Vec a, b;
            nload2(xrow + j, a, b);
            if (R) {
              Vec c, d;
              nload2(rrow + j, c, d);
              a = a + c;
              b = b + d;
              if constexpr (at::vec::is_reduced_floating_point_v<scalar_t>) {
                nstore2(srow + j, a, b);
                nload2(srow + j, a, b);  // s as rounded to the dtype, as the statistics saw it
              } else if constexpr (decltype(nt)::value) {
                stream2(srow + j, a, b);
              } else {
                nstore2(srow + j, a, b);
              }
            }
            a = math::norm_xhat(a, vm, vr);
            b = math::norm_xhat(b, vm, vr);
            if constexpr (decltype(has_w)::value) {
              Vec w0, w1;
              nload2(Wt + j, w0, w1);
              a = a * w0;
              b = b * w1;
            }
            if constexpr (decltype(has_b)::value) {
              Vec c0, c1;
              nload2(Bs + j, c0, c1);
              a = a + c0;
              b = b + c1;
            }
            if constexpr (decltype(nt)::value) stream2(y + j, a, b);
            else nstore2(y + j, a, b);
          }
          return j;
        };
        const bool nt = stream && streamable(y) && (!R || streamable(srow));
        int64_t j = nt ? normalise(Bool<true>{}) : normalise(Bool<false>{});
        for (; j < N; ++j) {
          scalar_t sj = xrow[j];
          if (R) {
            sj = static_cast<scalar_t>(static_cast<opmath_t>(xrow[j]) + static_cast<opmath_t>(rrow[j]));
            srow[j] = sj;
          }
          opmath_t v = math::norm_xhat(static_cast<opmath_t>(sj), mean, rstd);
          if constexpr (decltype(has_w)::value) v = v * static_cast<opmath_t>(Wt[j]);
          if constexpr (decltype(has_b)::value) v = v + static_cast<opmath_t>(Bs[j]);
          y[j] = static_cast<scalar_t>(v);
        }
      }
      if (stream) stream_fence();
    });
  });
}

template <typename scalar_t, typename param_t>
void norm_backward_impl(const norm::Backward& job) {
  using namespace norm_k;
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = 2 * Vec::size();
  const int64_t M = job.M, N = job.N;
  const auto* DY = static_cast<const scalar_t*>(job.dy);
  const auto* X = static_cast<const scalar_t*>(job.x);
  const auto* Mean = static_cast<const opmath_t*>(job.mean);
  const auto* Rstd = static_cast<const opmath_t*>(job.rstd);
  const auto* Wt = static_cast<const param_t*>(job.w);
  const auto* EX = static_cast<const scalar_t*>(job.extra);
  auto* DX = static_cast<scalar_t*>(job.dx);
  auto* PW = static_cast<opmath_t*>(job.partial_w);
  auto* PB = static_cast<opmath_t*>(job.partial_b);
  const bool rms = job.rms;
  const int64_t BR = job.block_rows;
  const int64_t blocks = (M + BR - 1) / BR;
  const opmath_t inv_n = opmath_t(1) / static_cast<opmath_t>(N);

  with_flags(Wt != nullptr, PW != nullptr || PB != nullptr, [&](auto has_w, auto has_partials) {
    constexpr bool kW = decltype(has_w)::value, kP = decltype(has_partials)::value;
    // Blocks per task: enough elements that a small problem runs inline (no thread wake-up).
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, BR * N));
    const bool stream = kCanStream<scalar_t> && DX && M * N * int64_t(sizeof(scalar_t)) >= kStreamBytes;
    // The constants of grad_input from the row sums (rms_norm: no mean term).
    const auto constants = [&](const opmath_t* sums, opmath_t& c_g, opmath_t& c_gx) {
      c_g = rms ? opmath_t(0) : sums[0] * inv_n;
      c_gx = sums[1] * inv_n;
    };
    at::parallel_for(0, blocks, N >= kLongRow ? 1 : grain, [&](int64_t kb, int64_t ke) {
      std::vector<opmath_t> cg(BR), cgx(BR);
      for (int64_t blk = kb; blk < ke; ++blk) {
        const int64_t r0 = blk * BR, r1 = std::min(M, r0 + BR);
        opmath_t* pw = PW ? PW + blk * N : nullptr;
        opmath_t* pb = PB ? PB + blk * N : nullptr;
        const auto row = [&](int64_t i) {
          return std::tuple{X + i * N, DY + i * N, rms ? opmath_t(0) : Mean[i], Rstd[i]};
        };
        if (N >= kLongRow) {
          // Long rows (a row of x and dy does not stay in L2 between two passes): first the
          // two row sums of every row of the block (one pass over x, dy), then the block
          // column chunk by column chunk: grad_input and the weight/bias partial rows of the
          // chunk, which stay in L1 across the block's rows (read and written once per
          // block, not once per row). The partial rows add the rows in the same order as below.
          if (DX) {
            for (int64_t i = r0; i < r1; ++i) {
              const auto [x, dy, mean, rstd] = row(i);
              opmath_t sums[2] = {0, 0};
              backward_span<true, false, false, kW>(int64_t(0), N, x, dy, Wt, mean, rstd, nullptr, nullptr, false,
                                                    nullptr, nullptr, opmath_t(0),
                                                    opmath_t(0), false, sums);
              constants(sums, cg[i - r0], cgx[i - r0]);
            }
          }
          for (int64_t c0 = 0; c0 < N; c0 += kChunk) {
            const int64_t c1 = std::min(N, c0 + kChunk);
            for (int64_t i = r0; i < r1; ++i) {
              const auto [x, dy, mean, rstd] = row(i);
              if (DX) {
                scalar_t* dx = DX + i * N;
                backward_span<false, kP, true, kW>(c0, c1, x, dy, Wt, mean, rstd, pw, pb, i == r0, dx,
                                                   EX ? EX + i * N : nullptr, cg[i - r0], cgx[i - r0],
                                                   stream && streamable(dx + c0), nullptr);
              } else {
                backward_span<false, kP, false, kW>(c0, c1, x, dy, Wt, mean, rstd, pw, pb, i == r0,
                                                    nullptr, nullptr, opmath_t(0),
                                                    opmath_t(0), false, nullptr);
              }
            }
          }
          continue;
        }
        // Short rows, row by row: one pass for the row sums and the partial rows, one for
        // grad_input (the row is still in L1/L2).
        for (int64_t i = r0; i < r1; ++i) {
          const auto [x, dy, mean, rstd] = row(i);
          if (!DX) {
            backward_span<false, kP, false, kW>(int64_t(0), N, x, dy, Wt, mean, rstd, pw, pb, i == r0,
                                                nullptr, nullptr, opmath_t(0), opmath_t(0),
                                                false, nullptr);
            continue;
          }
          opmath_t sums[2] = {0, 0}, c_g, c_gx;
          backward_span<true, kP, false, kW>(int64_t(0), N, x, dy, Wt, mean, rstd, pw, pb, i == r0,
                                             nullptr, nullptr, opmath_t(0), opmath_t(0),
                                             false, sums);
          constants(sums, c_g, c_gx);
          scalar_t* dx = DX + i * N;
          backward_span<false, false, true, kW>(int64_t(0), N, x, dy, Wt, mean, rstd, nullptr, nullptr, false, dx,
                                                EX ? EX + i * N : nullptr, c_g, c_gx, stream && streamable(dx),
                                                nullptr);
        }
      }
      if (stream) stream_fence();
    });
  });

  // The partial rows added in block order, per column (any split of the columns gives
  // the same sums: the order over blocks is fixed).
  for (auto [P, out] : {std::pair<const opmath_t*, void*>{PW, job.dw}, {PB, job.db}}) {
    if (!P) continue;
    auto* D = static_cast<param_t*>(out);
    at::parallel_for(0, N, 4096, [&](int64_t c0, int64_t c1) {
      int64_t j = c0;
      for (; j + W <= c1; j += W) {
        Vec a = Vec::loadu(P + j), b = Vec::loadu(P + j + Vec::size());
        for (int64_t k = 1; k < blocks; ++k) {
          a = a + Vec::loadu(P + k * N + j);
          b = b + Vec::loadu(P + k * N + j + Vec::size());
        }
        nstore2(D + j, a, b);
      }
      for (; j < c1; ++j) {
        opmath_t a = P[j];
        for (int64_t k = 1; k < blocks; ++k) a = a + P[k * N + j];
        D[j] = static_cast<param_t>(a);
      }
    });
  }
}

// The entry points take (scalar_t, param_t) as one std::pair type, so that
// TORCH_OPS_CPU_KERNEL(norm_forward<SP>) has no comma in its argument.
template <typename SP>
void norm_forward(const norm::Forward& job) {
  norm_forward_impl<typename SP::first_type, typename SP::second_type>(job);
}
template <typename SP>
void norm_backward(const norm::Backward& job) {
  norm_backward_impl<typename SP::first_type, typename SP::second_type>(job);
}

#define TORCH_OPS_NORM_INSTANTIATE(S, P)                                                \
  template void norm_forward<std::pair<S, P>>(const torch_ops::norm::Forward& job);   \
  template void norm_backward<std::pair<S, P>>(const torch_ops::norm::Backward& job);
TORCH_OPS_NORM_INSTANTIATE(double, double)
TORCH_OPS_NORM_INSTANTIATE(float, float)
TORCH_OPS_NORM_INSTANTIATE(c10::BFloat16, c10::BFloat16)
TORCH_OPS_NORM_INSTANTIATE(c10::BFloat16, float)
TORCH_OPS_NORM_INSTANTIATE(c10::Half, c10::Half)
TORCH_OPS_NORM_INSTANTIATE(c10::Half, float)
#undef TORCH_OPS_NORM_INSTANTIATE

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
