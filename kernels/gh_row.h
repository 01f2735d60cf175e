// gh_row.h -- row-wise kernels (softmax, log_softmax, LayerNorm): one row per thread block on the GPU,
// one row per loop iteration (rows spread over gpuhybrid's kernel threads) on the CPU, from the same source.
//
//   GH_FOR_EACH_ROW(r, rows, cols)  CUDA: blocks stride over rows     CPU: loop over this thread's rows
//   GH_FOR_EACH_COL(j, cols)        CUDA: threads stride over a row   CPU: a simd loop over the row
//   GH_SUM_COLS(j, cols, acc)       the same, for a loop that adds into `acc` (a simd reduction)
//   GH_MAX_COLS(j, cols, acc, nan)  the same, for a loop that takes a running maximum into `acc` and
//   GH_MIN_COLS(j, cols, acc, nan)  ORs into `nan` whether an element was NaN (CPU: a simd max/min
//                                   reduction, which leaves NaN to the flag); GH_NAN is a quiet NaN.
//   gh_row_max(v) / gh_row_min(v) / gh_row_sum(v): combine each thread's partial value over the row
//   (CUDA: a block reduction whose result every thread gets; CPU: the partial already is the whole
//   row's value).
//   GH_ROW_LEADER                   true in the one thread that stores a row's own values
//   gh_acc_float: the accumulator for float rows (double on the CPU, whose sums run in sequence).
#ifndef GH_ROW_H
#define GH_ROW_H

#include "gh_kernel.h"

#define GH_PRAGMA(text) _Pragma(#text)

#ifdef GH_CUDA
typedef float gh_acc_float;
#define GH_FOR_EACH_ROW(r, rows, cols) for (gh_index r = blockIdx.x; r < (rows); r += gridDim.x)
#define GH_FOR_EACH_COL(j, cols) for (gh_index j = threadIdx.x; j < (cols); j += blockDim.x)
#define GH_SUM_COLS(j, cols, acc) GH_FOR_EACH_COL(j, cols)
#define GH_MAX_COLS(j, cols, acc, nan) GH_FOR_EACH_COL(j, cols)
#define GH_MIN_COLS(j, cols, acc, nan) GH_FOR_EACH_COL(j, cols)
#define GH_NAN __int_as_float(0x7fffffff)

template <typename T, typename Combine>
__device__ __forceinline__ T gh_block_reduce(T v, Combine combine, T identity) {
  __shared__ T partial[32];
  for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();                                   // `partial` may still be read from a last call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < warps ? partial[threadIdx.x] : identity;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if (threadIdx.x == 0) partial[0] = v;
  __syncthreads();
  return partial[0];
}
struct gh_max_op { template <typename T> __device__ T operator()(T a, T b) const { return gh_max(a, b); } };
struct gh_min_op { template <typename T> __device__ T operator()(T a, T b) const { return gh_min(a, b); } };
struct gh_sum_op { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
template <typename T> __device__ __forceinline__ T gh_row_max(T v) {
    return gh_block_reduce(v, gh_max_op(), (T)-GH_INFINITY);
}
template <typename T> __device__ __forceinline__ T gh_row_min(T v) {
    return gh_block_reduce(v, gh_min_op(), (T)GH_INFINITY);
}
template <typename T> __device__ __forceinline__ T gh_row_sum(T v) {
    return gh_block_reduce(v, gh_sum_op(), (T)0);
}
#define GH_ROW_LEADER (threadIdx.x == 0)
#else
typedef double gh_acc_float;
#define GH_FOR_EACH_ROW(r, rows, cols) \
  if (const gh_span gh_rows_##r = gh_part((rows), 1); true) \
  for (gh_index r = (gh_index)gh_rows_##r.begin; r < (gh_index)gh_rows_##r.end; ++r)
#define GH_FOR_EACH_COL(j, cols) _Pragma("omp simd") for (gh_index j = 0; j < (cols); ++j)
#define GH_SUM_COLS(j, cols, acc) GH_PRAGMA(omp simd reduction(+:acc)) for (gh_index j = 0; j < (cols); ++j)
#define GH_MAX_COLS(j, cols, acc, nan) \
  GH_PRAGMA(omp simd reduction(max:acc) reduction(|:nan)) for (gh_index j = 0; j < (cols); ++j)
#define GH_MIN_COLS(j, cols, acc, nan) \
  GH_PRAGMA(omp simd reduction(min:acc) reduction(|:nan)) for (gh_index j = 0; j < (cols); ++j)
#define GH_NAN NAN
template <typename T> static inline T gh_row_max(T v) { return v; }
template <typename T> static inline T gh_row_min(T v) { return v; }
template <typename T> static inline T gh_row_sum(T v) { return v; }
#define GH_ROW_LEADER true
#endif

#endif  // GH_ROW_H
