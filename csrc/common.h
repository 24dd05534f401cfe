// What every divqat kernel shares: the accumulation type and the inlining and
// instruction-set macros of the host/device math headers and the CPU loops.
#pragma once

#include <type_traits>

// Functions of the shared math headers (<op>.h), compiled for the host and, under nvcc, the
// device. always_inline on the host: the CPU loops are compiled for several instruction sets
// (DIVQAT_TARGET_CLONES), and GCC only inlines a function into a clone of another -march when
// forced to.
#ifdef __CUDACC__
#define DIVQAT_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define DIVQAT_HOST_DEVICE inline __attribute__((always_inline))
#else
#define DIVQAT_HOST_DEVICE inline
#endif

// Host loop helpers, and lambdas, inlined into their (cloned) caller.
#if defined(__GNUC__)
#define DIVQAT_INLINE inline __attribute__((always_inline))
#define DIVQAT_LAMBDA_INLINE __attribute__((always_inline))
#else
#define DIVQAT_INLINE inline
#define DIVQAT_LAMBDA_INLINE
#endif

// CPU loops compiled for AVX-512 and AVX2+FMA as well as the baseline, picked at load time
// (GCC ifunc).
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DIVQAT_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DIVQAT_TARGET_CLONES
#endif

namespace divqat {

// Accumulation type: float for fp16/bf16/fp32 tensors, double for double.
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

}  // namespace divqat
