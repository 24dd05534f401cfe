// CUDA kernels of divqat::div_kl_loss and divqat::divqat_loss (schemas in kl_loss_cpu.cpp,
// math in kl_loss.h).
//
// One block per row. Pass 1: each thread runs an online softmax (Milakov & Gimelshein 2018)
// over its strided slice of the row (16-byte vector loads when the row is aligned), then the
// per-thread states (maxima, rescaled sums, KL cross term, temperature-1 student sum) are
// combined by warp shuffles and one warp in a fixed order. Pass 2 writes the gradients of the
// reduced loss, so the backward is a scale. A one-block kernel sums the per-row losses in a
// fixed order. Everything runs on the current stream with no host synchronization; class
// indices out of range trip a device assertion.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

#include "kl_loss.h"

namespace divqat {
namespace {

constexpr int kWarp = 32;
constexpr int kFinishThreads = 1024;

// The online state of a slice of a row. a = logits of P, b = logits of Q, s = the student's
// (a in the reverse direction, b in the forward one).
template <typename A>
struct State {
  A ma, sum_a, w;  // max of a; sum exp((a - ma)/T); sum exp((a - ma)/T) (a - b)/T
  A mb, sum_b;     // max of b; sum exp((b - mb)/T)
  A sum_1;         // sum exp(s - ms) at temperature 1, ms = ma or mb
};

template <typename A>
__device__ __forceinline__ State<A> empty_state() {
  return {-INFINITY, A(0), A(0), -INFINITY, A(0), A(0)};
}

// Merge two states (exactly commutative, so the reduction order alone fixes the result).
template <typename A>
__device__ __forceinline__ State<A> merge(const State<A>& x, const State<A>& y, A inv_t, bool student_is_a) {
  State<A> r;
  r.ma = x.ma > y.ma ? x.ma : y.ma;
  r.mb = x.mb > y.mb ? x.mb : y.mb;
  const A xa = kl::rescale(x.ma, r.ma, inv_t), ya = kl::rescale(y.ma, r.ma, inv_t);
  const A xb = kl::rescale(x.mb, r.mb, inv_t), yb = kl::rescale(y.mb, r.mb, inv_t);
  r.sum_a = x.sum_a * xa + y.sum_a * ya;
  r.w = x.w * xa + y.w * ya;
  r.sum_b = x.sum_b * xb + y.sum_b * yb;
  const A xs = student_is_a ? x.ma : x.mb, ys = student_is_a ? y.ma : y.mb, rs = student_is_a ? r.ma : r.mb;
  r.sum_1 = x.sum_1 * kl::rescale(xs, rs, A(1)) + y.sum_1 * kl::rescale(ys, rs, A(1));
  return r;
}

template <typename A>
__device__ __forceinline__ State<A> shfl_down(const State<A>& x, int offset) {
  return {__shfl_down_sync(0xffffffffu, x.ma, offset),    __shfl_down_sync(0xffffffffu, x.sum_a, offset),
          __shfl_down_sync(0xffffffffu, x.w, offset),     __shfl_down_sync(0xffffffffu, x.mb, offset),
          __shfl_down_sync(0xffffffffu, x.sum_b, offset), __shfl_down_sync(0xffffffffu, x.sum_1, offset)};
}

// The whole block's state, the same in every thread (warp trees, then warp 0 over the warps).
template <typename A>
__device__ State<A> block_merge(State<A> x, A inv_t, bool student_is_a) {
  __shared__ State<A> warp_states[kWarp];
  __shared__ State<A> total;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x = merge(x, shfl_down(x, offset), inv_t, student_is_a);
  if (lane == 0) warp_states[warp] = x;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarp;
    x = lane < warps ? warp_states[lane] : empty_state<A>();
    for (int offset = kWarp / 2; offset > 0; offset /= 2) x = merge(x, shfl_down(x, offset), inv_t, student_is_a);
    if (lane == 0) total = x;
  }
  __syncthreads();
  return total;
}

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

struct KernelArgs {
  int64_t cols;
  double temperature;
  double kl_coef;
  double ce_coef;
  double cap;
  bool student_is_a;
};

// One block per row; VEC elements per load (VEC > 1 only when every row is 16-byte aligned).
template <typename scalar_t, int VEC, bool HAS_CE>
__global__ void kl_rows_kernel(const scalar_t* __restrict__ a_all, const scalar_t* __restrict__ b_all,
                               const int64_t* __restrict__ target, scalar_t* __restrict__ ga_all,
                               scalar_t* __restrict__ gb_all, acc_t<scalar_t>* __restrict__ kl_rows,
                               acc_t<scalar_t>* __restrict__ ce_rows, KernelArgs args) {
  using A = acc_t<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int64_t row = blockIdx.x;
  const int64_t cols = args.cols;
  const int64_t offset = row * cols;
  const scalar_t* a = a_all + offset;
  const scalar_t* b = b_all + offset;
  const A T = static_cast<A>(args.temperature);
  const A inv_t = A(1) / T;
  const bool student_is_a = args.student_is_a;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * VEC;

  // pass 1: online softmax over this thread's slice
  State<A> st = empty_state<A>();
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < cols; j += stride) {
    const P pa = *reinterpret_cast<const P*>(a + j);
    const P pb = *reinterpret_cast<const P*>(b + j);
    A la = -INFINITY, lb = -INFINITY;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      la = fmax(la, static_cast<A>(pa.v[k]));
      lb = fmax(lb, static_cast<A>(pb.v[k]));
    }
    const A ma = fmax(st.ma, la), mb = fmax(st.mb, lb);
    const A fa = kl::rescale(st.ma, ma, inv_t);
    st.sum_a *= fa;
    st.w *= fa;
    st.sum_b *= kl::rescale(st.mb, mb, inv_t);
    const A ms_old = student_is_a ? st.ma : st.mb, ms = student_is_a ? ma : mb;
    if (HAS_CE) st.sum_1 *= kl::rescale(ms_old, ms, A(1));
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const A av = static_cast<A>(pa.v[k]), bv = static_cast<A>(pb.v[k]);
      // centered_exp: a slice may hold only -inf so far (a masked class), its maximum -inf too
      const A ea = kl::centered_exp(av, ma, inv_t);
      st.sum_a += ea;
      st.w += kl::cross_term(ea, av, bv) * inv_t;
      st.sum_b += kl::centered_exp(bv, mb, inv_t);
      if (HAS_CE) st.sum_1 += kl::centered_exp(student_is_a ? av : bv, ms, A(1));
    }
    st.ma = ma;
    st.mb = mb;
  }
  st = block_merge(st, inv_t, student_is_a);

  const A kl_raw = kl::kl_from_online(st.w, st.ma, st.mb, inv_t, st.sum_a, st.sum_b);
  const A loss = T * T * kl_raw;
  const A ms = student_is_a ? st.ma : st.mb;
  int64_t y = -1;
  A r1 = 0;
  const A ce_coef = static_cast<A>(args.ce_coef);
  bool y_ok = true;
  if (HAS_CE) {
    y = target[row];
    y_ok = y >= 0 && y < cols;
    CUDA_KERNEL_ASSERT(y_ok && "divqat_loss: target holds a class index outside [0, C)");
    r1 = ce_coef / st.sum_1;
  }
  if (threadIdx.x == 0) {
    kl_rows[row] = loss;
    // (with device asserts compiled out, a bad index gives NaN rather than a stray read)
    if (HAS_CE)
      ce_rows[row] = y_ok ? kl::ce_from_partials(st.sum_1, static_cast<A>((student_is_a ? a : b)[y]) - ms) : NAN;
  }
  if (ga_all == nullptr && gb_all == nullptr) return;

  // pass 2: gradients of the reduced loss
  const A coef = kl::capped_coef(loss, static_cast<A>(args.cap), static_cast<A>(args.kl_coef));
  const A ra = coef * T / st.sum_a, rb = coef * T / st.sum_b;
  const A shift = kl::p_side_shift(st.sum_a, st.sum_b, kl_raw);
  scalar_t* ga = ga_all ? ga_all + offset : nullptr;
  scalar_t* gb = gb_all ? gb_all + offset : nullptr;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < cols; j += stride) {
    const P pa = *reinterpret_cast<const P*>(a + j);
    const P pb = *reinterpret_cast<const P*>(b + j);
    P oa, ob;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const A av = static_cast<A>(pa.v[k]), bv = static_cast<A>(pb.v[k]);
      const A ca = (av - st.ma) * inv_t, cb = (bv - st.mb) * inv_t;
      const A ea = kl::exp_nonpos(ca), eb = kl::exp_nonpos(cb);
      A gp = kl::p_side_grad(ra, ea, ca, cb, shift);
      A gq = kl::q_side_grad(ra, ea, rb, eb);
      if (HAS_CE) {
        const A ce = r1 * kl::exp_nonpos((student_is_a ? av : bv) - ms) - (j + k == y ? ce_coef : A(0));
        if (student_is_a) {
          gp += ce;
        } else {
          gq += ce;
        }
      }
      oa.v[k] = static_cast<scalar_t>(gp);
      ob.v[k] = static_cast<scalar_t>(gq);
    }
    if (ga) *reinterpret_cast<P*>(ga + j) = oa;
    if (gb) *reinterpret_cast<P*>(gb + j) = ob;
  }
}

// loss = scale * (sum_r ce_r - alpha * sum_r min(kl_r, cap)) (ce omitted when null), summed in
// a fixed order: thread i takes rows i, i + 1024, ..., then a fixed tree over the threads.
template <typename A, typename scalar_t>
__global__ void finish_kernel(const A* __restrict__ kl_rows, const A* __restrict__ ce_rows, int64_t rows,
                              double alpha, double cap, double scale, scalar_t* __restrict__ out) {
  __shared__ double partial[kFinishThreads];
  double total = 0;
  for (int64_t r = threadIdx.x; r < rows; r += kFinishThreads) {
    const double kl = static_cast<double>(kl_rows[r]);
    total += (ce_rows ? static_cast<double>(ce_rows[r]) : 0.0) - alpha * (kl > cap ? cap : kl);  // NaN stays
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int half = kFinishThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(partial[0] * scale);
}

int threads_for(int64_t vectors) {
  if (vectors >= 16384) return 1024;
  if (vectors >= 4096) return 512;
  if (vectors >= 1024) return 256;
  return 128;
}

template <typename scalar_t, bool HAS_CE>
void launch_rows(const kl::Plan& plan, kl::Buffers& buf, const int64_t* target, double temperature) {
  using A = acc_t<scalar_t>;
  if (plan.rows == 0) return;
  TORCH_CHECK(plan.rows <= std::numeric_limits<int32_t>::max(), "at most 2^31 - 1 rows, got ", plan.rows);
  // P = teacher, Q = student in the forward direction; swapped in the reverse one.
  const at::Tensor& a = plan.reverse ? buf.s : buf.t;
  const at::Tensor& b = plan.reverse ? buf.t : buf.s;
  at::Tensor& ga = plan.reverse ? buf.grad_student : buf.grad_teacher;
  at::Tensor& gb = plan.reverse ? buf.grad_teacher : buf.grad_student;
  constexpr int kVec = 16 / sizeof(scalar_t);
  auto aligned = [](const at::Tensor& x) {
    return x.numel() == 0 || reinterpret_cast<std::uintptr_t>(x.const_data_ptr()) % 16 == 0;
  };
  const bool vec = plan.cols % kVec == 0 && aligned(a) && aligned(b) && aligned(ga) && aligned(gb);
  const KernelArgs args{plan.cols, temperature, plan.kl_coef, plan.ce_coef, plan.cap, plan.reverse};
  const int threads = threads_for(vec ? plan.cols / kVec : plan.cols);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  scalar_t* ga_ptr = ga.numel() ? ga.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gb_ptr = gb.numel() ? gb.mutable_data_ptr<scalar_t>() : nullptr;
  A* kl_ptr = buf.kl_rows.mutable_data_ptr<A>();
  A* ce_ptr = buf.ce_rows.numel() ? buf.ce_rows.mutable_data_ptr<A>() : nullptr;
  if (vec) {
    kl_rows_kernel<scalar_t, kVec, HAS_CE><<<plan.rows, threads, 0, stream>>>(
        a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), target, ga_ptr, gb_ptr,
        kl_ptr, ce_ptr, args);
  } else {
    kl_rows_kernel<scalar_t, 1, HAS_CE><<<plan.rows, threads, 0, stream>>>(
        a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), target, ga_ptr, gb_ptr,
        kl_ptr, ce_ptr, args);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
at::Tensor finish(const at::Tensor& kl_rows, const at::Tensor& ce_rows, int64_t rows, double alpha, double cap,
                  double scale, const at::TensorOptions& options) {
  using A = acc_t<scalar_t>;
  at::Tensor loss = at::empty({}, options);
  finish_kernel<A, scalar_t><<<1, kFinishThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      kl_rows.const_data_ptr<A>(), ce_rows.numel() ? ce_rows.const_data_ptr<A>() : nullptr, rows, alpha, cap, scale,
      loss.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return loss;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> div_kl_loss_cuda(const at::Tensor& student_logits,
                                                                const at::Tensor& teacher_logits, double temperature,
                                                                c10::string_view reduction,
                                                                c10::string_view direction, bool student_grad,
                                                                bool teacher_grad) {
  const kl::Plan plan = kl::plan_div_kl(student_logits, teacher_logits, temperature, reduction, direction);
  const c10::cuda::CUDAGuard guard(student_logits.device());
  kl::Buffers b = kl::make_buffers(student_logits, teacher_logits, student_grad, teacher_grad, false);
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.s.scalar_type(), "div_kl_loss_cuda", [&] {
    launch_rows<scalar_t, false>(plan, b, nullptr, temperature);
    if (reduction == "none") {
      loss = b.kl_rows.to(b.s.scalar_type());
    } else {
      const double scale = reduction == "sum" ? 1.0 : 1.0 / static_cast<double>(plan.rows);
      // -alpha * min(kl, cap) with alpha = -1, cap = inf: the plain sum
      loss = finish<scalar_t>(b.kl_rows, b.ce_rows, plan.rows, -1.0, INFINITY, scale, b.s.options());
    }
  });
  return {loss, b.grad_student, b.grad_teacher};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> divqat_loss_cuda(const at::Tensor& student_logits,
                                                                const at::Tensor& teacher_logits,
                                                                const at::Tensor& target, double alpha,
                                                                double temperature, c10::string_view direction,
                                                                std::optional<double> kl_cap, bool student_grad,
                                                                bool teacher_grad) {
  const kl::Plan plan =
      kl::plan_divqat(student_logits, teacher_logits, target, alpha, temperature, direction, kl_cap);
  const c10::cuda::CUDAGuard guard(student_logits.device());
  const at::Tensor y = target.contiguous();
  kl::Buffers b = kl::make_buffers(student_logits, teacher_logits, student_grad, teacher_grad, true);
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.s.scalar_type(), "divqat_loss_cuda", [&] {
    launch_rows<scalar_t, true>(plan, b, y.const_data_ptr<int64_t>(), temperature);
    loss = finish<scalar_t>(b.kl_rows, b.ce_rows, plan.rows, alpha, plan.cap, 1.0 / static_cast<double>(plan.rows),
                            b.s.options());
  });
  return {loss, b.grad_student, b.grad_teacher};
}

}  // namespace
}  // namespace divqat

TORCH_LIBRARY_IMPL(divqat, CUDA, m) {
  m.impl("div_kl_loss", &divqat::div_kl_loss_cuda);
  m.impl("divqat_loss", &divqat::divqat_loss_cuda);
}
