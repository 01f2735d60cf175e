// gh_multi_tensor.h -- loops of multi-tensor kernels: one launch over the elements of many tensors (an
// optimizer's update of every parameter of a group), from the same source for both targets.
//
// The tensors lie end to end in one index space [0, n): tensor t holds [offsets[t], offsets[t + 1]), its
// element j = i - offsets[t]. `offsets` is a table of the kernel's own text (kernels are specialised to
// their tensors' sizes); the tensors' pointers are kernel parameters, gathered into local arrays.
//
//   GH_TENSOR_TABLE                     storage of the offsets table (device global memory on CUDA)
//   GH_FOR_EACH_TENSOR_ELEMENT(t, i, n, offsets, count)
//        CUDA: a grid-stride loop over i; t follows i (a thread's i only grows, so t only moves forward)
//        CPU:  this thread's part of [0, n) (gh_part), tensor by tensor, a simd loop within each
//   Row kernels over tensors (a tensor's sum of squares) use gh_row.h with one row per tensor.
#ifndef GH_MULTI_TENSOR_H
#define GH_MULTI_TENSOR_H

#include "gh_row.h"

#ifdef GH_CUDA
#define GH_TENSOR_TABLE static __device__ const
// Moves t forward to the tensor holding element i.
GH_FN void gh_seek_tensor(gh_index& t, gh_index i, const gh_index* offsets) {
  while (offsets[t + 1] <= i) ++t;
}
#define GH_FOR_EACH_TENSOR_ELEMENT(t, i, n, offsets, count) \
  for (gh_index i = (gh_index)blockIdx.x * blockDim.x + threadIdx.x, t = 0; i < (n); \
       i += (gh_index)blockDim.x * gridDim.x) \
    if (gh_seek_tensor(t, i, offsets); true)
#else
#define GH_TENSOR_TABLE static const
#define GH_FOR_EACH_TENSOR_ELEMENT(t, i, n, offsets, count) \
  if (const gh_span gh_span_##i = gh_part((n), 16); true) \
  for (gh_index t = 0; t < (count); ++t) \
  if (const gh_index gh_lo_##i = \
          (gh_index)(offsets[t] > gh_span_##i.begin ? offsets[t] : gh_span_##i.begin), \
      gh_hi_##i = (gh_index)(offsets[t + 1] < gh_span_##i.end ? offsets[t + 1] : gh_span_##i.end); \
      gh_lo_##i < gh_hi_##i) \
  _Pragma("omp simd") for (gh_index i = gh_lo_##i; i < gh_hi_##i; ++i)
#endif

#endif  // GH_MULTI_TENSOR_H
