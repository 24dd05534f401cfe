// CUDA kernels of divqat::fake_quant, fake_quant_backward, fake_quant_lsq_backward (schemas in
// fake_quant_cpu.cpp; per-element math shared with the CPU kernels in fake_quant.h).
//
// A tensor (made contiguous) is viewed as [outer, C, inner], C = x.shape[axis] (per tensor: C = 1).
// Scale and zero point are read from device memory (no host sync, CUDA-graph capturable); the
// kernels run on the current stream with int64 offsets and 16-byte vector loads when the
// pointers are aligned (and, per channel, when inner is a multiple of the vector width, so a
// vector never straddles two channels).
//
// LSQ reduces deterministically, without atomics: pass 1 writes one partial per block (long
// channel rows: a fixed chunk of a row, tree-reduced in shared memory; short rows, inner < 64:
// a fixed group of rows summed per position by one thread), pass 2 sums each channel's
// partials with one block in a fixed order. Block shapes depend on the tensor shape only.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "fake_quant.h"

namespace divqat {
namespace {

using fq::QParams;

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;     // elements of a long row per LSQ pass-1 block
constexpr int64_t kRowGroups = 256;  // row groups of the short-row LSQ pass 1

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

template <typename A>
__device__ __forceinline__ QParams<A> channel_params(const A* __restrict__ s, const A* __restrict__ zr, int64_t c,
                                                     A qmin, A qmax) {
  return fq::make_qparams<A>(s[c], zr[c], qmin, qmax);
}

// Elementwise kernels: y = fake_quant(x) (dy == nullptr) or dx = dy * mask(x).
// dy_scalar: dy holds one value that stands for every element's gradient (an expanded scalar).
template <typename scalar_t, typename A, int VEC>
__global__ void elementwise_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy, bool dy_scalar,
                                   scalar_t* __restrict__ out, const A* __restrict__ s, const A* __restrict__ zr,
                                   int64_t n, int64_t channels, int64_t inner, A qmin, A qmax) {
  const int64_t nvec = n / VEC;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const bool shared = channels == 1;
  const QParams<A> p0 = channel_params(s, zr, 0, qmin, qmax);
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += stride) {
    const int64_t i = v * VEC;
    const QParams<A> p = shared ? p0 : channel_params(s, zr, (i / inner) % channels, qmin, qmax);
    const Vec<scalar_t, VEC> xv = reinterpret_cast<const Vec<scalar_t, VEC>*>(x)[v];
    Vec<scalar_t, VEC> ov;
    if (dy == nullptr) {
#pragma unroll
      for (int k = 0; k < VEC; ++k)
        ov.v[k] = static_cast<scalar_t>(fq::fake_quant_value(static_cast<A>(xv.v[k]), p, qmin, qmax));
    } else {
      Vec<scalar_t, VEC> gv;
      if (dy_scalar) {
#pragma unroll
        for (int k = 0; k < VEC; ++k) gv.v[k] = dy[0];
      } else {
        gv = reinterpret_cast<const Vec<scalar_t, VEC>*>(dy)[v];
      }
#pragma unroll
      for (int k = 0; k < VEC; ++k)
        ov.v[k] = static_cast<scalar_t>(
            fq::straight_through(static_cast<A>(xv.v[k]), static_cast<A>(gv.v[k]), p, qmin, qmax));
    }
    reinterpret_cast<Vec<scalar_t, VEC>*>(out)[v] = ov;
  }
  // The tail (n % VEC elements), one per thread of the first block.
  const int64_t i = nvec * VEC + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blockIdx.x == 0 && i < n) {
    const QParams<A> p = shared ? p0 : channel_params(s, zr, (i / inner) % channels, qmin, qmax);
    const A xi = static_cast<A>(x[i]);
    out[i] = static_cast<scalar_t>(dy == nullptr ? fq::fake_quant_value(xi, p, qmin, qmax)
                                                 : fq::straight_through(xi, static_cast<A>(dy[dy_scalar ? 0 : i]), p,
                                                                        qmin, qmax));
  }
}

// Fixed-order tree reduction of two values over the block (blockDim.x == kThreads).
template <typename A>
__device__ __forceinline__ void block_sum2(A& a, A& b) {
  __shared__ A sa[kThreads];
  __shared__ A sb[kThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      sa[threadIdx.x] += sa[threadIdx.x + w];
      sb[threadIdx.x] += sb[threadIdx.x + w];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
}

// dx[i] and the LSQ terms of element i, added to ds / dz.
template <typename scalar_t, typename A>
__device__ __forceinline__ void lsq_element(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                                            int64_t dy_step, scalar_t* __restrict__ dx, int64_t i,
                                            const QParams<A>& p, A qmin, A qmax, A g, A& ds, A& dz) {
  A dxi, dsi, dzi;
  fq::lsq_terms(static_cast<A>(x[i]), static_cast<A>(dy[i * dy_step]), p, qmin, qmax, g, dxi, dsi, dzi);
  dx[i] = static_cast<scalar_t>(dxi);
  ds += dsi;
  dz += dzi;
}

// LSQ pass 1, long rows: block t = (row r, chunk k) of the [rows, inner] view; row r has channel r % C.
template <typename scalar_t, typename A>
__global__ void lsq_long_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy, int64_t dy_step,
                                scalar_t* __restrict__ dx, const A* __restrict__ s, const A* __restrict__ zr,
                                int64_t channels, int64_t inner, int64_t chunks, A qmin, A qmax, A g,
                                A* __restrict__ part_s, A* __restrict__ part_z) {
  const int64_t t = blockIdx.x;
  const int64_t r = t / chunks;
  const int64_t start = (t % chunks) * kChunk;
  const int64_t end = start + kChunk < inner ? start + kChunk : inner;
  const QParams<A> p = channel_params(s, zr, r % channels, qmin, qmax);
  A ds = 0, dz = 0;
  for (int64_t j = start + threadIdx.x; j < end; j += kThreads)
    lsq_element(x, dy, dy_step, dx, r * inner + j, p, qmin, qmax, g, ds, dz);
  block_sum2(ds, dz);
  if (threadIdx.x == 0) {
    part_s[t] = ds;
    part_z[t] = dz;
  }
}

// LSQ pass 1, short rows of width = C * inner: thread (group gi, position j) sums its rows in order.
template <typename scalar_t, typename A>
__global__ void lsq_short_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy, int64_t dy_step,
                                 scalar_t* __restrict__ dx, const A* __restrict__ s, const A* __restrict__ zr,
                                 int64_t outer, int64_t width, int64_t inner, int64_t groups, A qmin, A qmax, A g,
                                 A* __restrict__ part_s, A* __restrict__ part_z) {
  const int64_t col_blocks = (width + kThreads - 1) / kThreads;
  const int64_t gi = blockIdx.x / col_blocks;
  const int64_t j = (blockIdx.x % col_blocks) * kThreads + threadIdx.x;
  if (j >= width) return;
  const QParams<A> p = channel_params(s, zr, j / inner, qmin, qmax);
  A ds = 0, dz = 0;
  for (int64_t r = gi * outer / groups; r < (gi + 1) * outer / groups; ++r)
    lsq_element(x, dy, dy_step, dx, r * width + j, p, qmin, qmax, g, ds, dz);
  part_s[gi * width + j] = ds;
  part_z[gi * width + j] = dz;
}

// LSQ pass 2: block c sums columns [c*G, (c+1)*G) of the [R, W] partials.
template <typename A>
__global__ void lsq_reduce_kernel(const A* __restrict__ part_s, const A* __restrict__ part_z, int64_t R, int64_t W,
                                  int64_t G, A* __restrict__ out_s, A* __restrict__ out_z) {
  const int64_t c = blockIdx.x;
  A ds = 0, dz = 0;
  for (int64_t k = threadIdx.x; k < R * G; k += kThreads) {
    const int64_t i = (k / G) * W + c * G + k % G;
    ds += part_s[i];
    dz += part_z[i];
  }
  block_sum2(ds, dz);
  if (threadIdx.x == 0) {
    out_s[c] = ds;
    out_z[c] = dz;
  }
}

using fq::Layout;

// Scale (rounded to fp32 for fp16/bf16/fp32 x) and raw zero point, flat, in the compute dtype.
std::pair<at::Tensor, at::Tensor> device_params(const at::Tensor& x, const at::Tensor& scale,
                                                const at::Tensor& zero_point) {
  const auto dt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return {scale.to(dt).reshape(-1).contiguous(), zero_point.to(dt).reshape(-1).contiguous()};
}

int64_t grid_for(int64_t items) {
  return std::max<int64_t>(1, std::min<int64_t>((items + kThreads - 1) / kThreads, 65535LL * 8));
}

template <typename scalar_t, typename A, int VEC>
void launch_elementwise(const at::Tensor& x, const at::Tensor* dy, bool dy_scalar, at::Tensor& out,
                        const at::Tensor& s, const at::Tensor& z, const Layout& l, A qmin, A qmax) {
  const int64_t n = x.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  elementwise_kernel<scalar_t, A, VEC><<<grid_for(std::max<int64_t>(n / VEC, 1)), kThreads, 0, stream>>>(
      x.const_data_ptr<scalar_t>(), dy ? dy->const_data_ptr<scalar_t>() : nullptr, dy_scalar,
      out.mutable_data_ptr<scalar_t>(),
      s.const_data_ptr<A>(), z.const_data_ptr<A>(), n, l.channels, l.inner, qmin, qmax);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// y = fake_quant(x) when dy is null, else dx = dy * mask.
at::Tensor run_elementwise(const at::Tensor& x_in, const at::Tensor* dy_in, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                           c10::optional<int64_t> axis) {
  const Layout l = fq::check_and_layout(x_in, scale, zero_point, quant_min, quant_max, axis);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const bool dy_scalar = dy_in && fq::expanded_scalar(*dy_in);
  const at::Tensor dy = dy_in ? fq::gradient_values(*dy_in, x, dy_scalar) : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return out;
  auto [s, z] = device_params(x, scale, zero_point);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "divqat_fake_quant_cuda", [&] {
    using A = acc_t<scalar_t>;
    constexpr int VEC = 16 / sizeof(scalar_t);
    const bool vec_ok = aligned16(x.const_data_ptr()) && aligned16(out.const_data_ptr()) &&
                        (!dy_in || dy_scalar || aligned16(dy.const_data_ptr())) &&
                        (l.channels == 1 || l.inner % VEC == 0);
    const A qmin = static_cast<A>(quant_min), qmax = static_cast<A>(quant_max);
    if (vec_ok)
      launch_elementwise<scalar_t, A, VEC>(x, dy_in ? &dy : nullptr, dy_scalar, out, s, z, l, qmin, qmax);
    else
      launch_elementwise<scalar_t, A, 1>(x, dy_in ? &dy : nullptr, dy_scalar, out, s, z, l, qmin, qmax);
  });
  return out;
}

at::Tensor fake_quant_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                           int64_t quant_min, int64_t quant_max, c10::optional<int64_t> axis, double grad_factor) {
  return run_elementwise(x, nullptr, scale, zero_point, quant_min, quant_max, axis);
}

at::Tensor fake_quant_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
                                    const at::Tensor& zero_point, int64_t quant_min, int64_t quant_max,
                                    c10::optional<int64_t> axis) {
  return run_elementwise(x, &grad, scale, zero_point, quant_min, quant_max, axis);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_lsq_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& zero_point,
    int64_t quant_min, int64_t quant_max, c10::optional<int64_t> axis, double grad_factor) {
  const Layout l = fq::check_and_layout(x_in, scale, zero_point, quant_min, quant_max, axis);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const bool dy_scalar = fq::expanded_scalar(grad);
  const at::Tensor dy = fq::gradient_values(grad, x, dy_scalar);
  const int64_t dy_step = dy_scalar ? 0 : 1;
  at::Tensor dx = at::empty(x.sizes(), x.options());
  auto [s, z] = device_params(x, scale, zero_point);
  at::Tensor out_s = at::zeros({l.channels}, s.options());
  at::Tensor out_z = at::zeros({l.channels}, s.options());
  if (x.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "divqat_fake_quant_lsq_cuda", [&] {
      using A = acc_t<scalar_t>;
      const A qmin = static_cast<A>(quant_min), qmax = static_cast<A>(quant_max);
      const A g = static_cast<A>(grad_factor);
      int64_t R, W, G;
      at::Tensor part_s, part_z;
      if (l.short_rows()) {
        const int64_t width = l.channels * l.inner;
        const int64_t groups = std::min(l.outer, kRowGroups);
        part_s = at::empty({groups, width}, s.options());
        part_z = at::empty({groups, width}, s.options());
        const int64_t blocks = groups * ((width + kThreads - 1) / kThreads);
        lsq_short_kernel<scalar_t, A><<<blocks, kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(), dy_step, dx.mutable_data_ptr<scalar_t>(),
            s.const_data_ptr<A>(), z.const_data_ptr<A>(), l.outer, width, l.inner, groups, qmin, qmax, g,
            part_s.mutable_data_ptr<A>(), part_z.mutable_data_ptr<A>());
        R = groups, W = width, G = l.inner;
      } else {
        const int64_t chunks = (l.inner + kChunk - 1) / kChunk;
        const int64_t rows = l.outer * l.channels;
        part_s = at::empty({rows * chunks}, s.options());
        part_z = at::empty({rows * chunks}, s.options());
        lsq_long_kernel<scalar_t, A><<<rows * chunks, kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(), dy_step, dx.mutable_data_ptr<scalar_t>(),
            s.const_data_ptr<A>(), z.const_data_ptr<A>(), l.channels, l.inner, chunks, qmin, qmax, g,
            part_s.mutable_data_ptr<A>(), part_z.mutable_data_ptr<A>());
        R = l.outer, W = l.channels * chunks, G = chunks;
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      lsq_reduce_kernel<A><<<l.channels, kThreads, 0, stream>>>(part_s.const_data_ptr<A>(), part_z.const_data_ptr<A>(),
                                                                 R, W, G, out_s.mutable_data_ptr<A>(),
                                                                 out_z.mutable_data_ptr<A>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const auto zdt = zero_point.is_floating_point() ? zero_point.scalar_type() : at::kFloat;
  return {dx, out_s.to(scale.scalar_type()).reshape(scale.sizes()), out_z.to(zdt).reshape(zero_point.sizes())};
}

}  // namespace

TORCH_LIBRARY_IMPL(divqat, CUDA, m) {
  m.impl("fake_quant", &fake_quant_cuda);
  m.impl("fake_quant_backward", &fake_quant_backward_cuda);
  m.impl("fake_quant_lsq_backward", &fake_quant_lsq_backward_cuda);
}

}  // namespace divqat
