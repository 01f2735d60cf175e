// gh_kernel.h -- the prelude of every generated kernel: storage types, loads/stores, the kernel
// signature and the element loop, for both targets.
//
//   CUDA (NVRTC):      GH_KERNEL(name)(...) is a __global__ function; GH_FOR_EACH is a grid-stride loop.
//   CPU (host C++):    GH_KERNEL(name)(...) is an extern "C" function; GH_FOR_EACH is a "simd" loop over
//                      this thread's part of [0, n) (gh_part: all of it, unless gpuhybrid's thread
//                      pool, kernels/gh_threads.c, runs the kernel in chunks).
// Define GH_INDEX_32 before including this file when every index fits in 32 bits.
#ifndef GH_KERNEL_H
#define GH_KERNEL_H

#include "gh_scalar.h"

#ifdef GH_INDEX_32
typedef int gh_index;
#else
typedef long long gh_index;
#endif

// float16 is stored as its 16 bits and computed in float.
struct gh_half { unsigned short bits; };

#ifdef GH_CUDA
#define GH_RESTRICT __restrict__
#define GH_KERNEL(name) extern "C" __global__ void name
#define GH_FOR_EACH(i, n) \
  for (gh_index i = (gh_index)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (gh_index)blockDim.x * gridDim.x)
// One PTX conversion `op` of `in` into `out` (constraint letters out_c, in_c). GH_CUDA_EMU: the CPU
// emulator of this branch (kernels/emu/gh_emu.h) carries out the instruction the text names.
#ifdef GH_CUDA_EMU
#define GH_PTX_CVT(op, out_c, out, in_c, in) gh_emu_ptx_cvt(op, &(out), &(in))
#else
#define GH_PTX_CVT(op, out_c, out, in_c, in) asm("{ " op " %0, %1; }" : "=" out_c(out) : in_c(in))
#endif
GH_FN float gh_half_to_float(unsigned short h) {
  float f; GH_PTX_CVT("cvt.f32.f16", "f", f, "h", h); return f;
}
GH_FN unsigned short gh_float_to_half(float f) {
  unsigned short h; GH_PTX_CVT("cvt.rn.f16.f32", "h", h, "f", f); return h;
}
GH_FN unsigned short gh_double_to_half(double x) {   // one rounding, as __double2half
  unsigned short h; GH_PTX_CVT("cvt.rn.f16.f64", "h", h, "d", x); return h;
}
#else
#include <string.h>
#define GH_RESTRICT __restrict__
#define GH_KERNEL(name) extern "C" void name
// The part [begin, end) of [0, n) the calling thread runs, in multiples of `grain` (kernels/gh_threads.c).
struct gh_span { long long begin, end; };
extern "C" gh_span gh_part(long long n, long long grain);
// Chunks of 16 elements keep each thread's stores on whole vectors and cache lines.
#define GH_FOR_EACH(i, n) \
  if (const gh_span gh_span_##i = gh_part((n), 16); true) \
  _Pragma("omp simd") for (gh_index i = (gh_index)gh_span_##i.begin; i < (gh_index)gh_span_##i.end; ++i)
#ifndef __FLT16_MAX__
#error "this host C++ compiler has no _Float16; float16 kernels need GCC >= 12 or Clang >= 15"
#endif
static inline float gh_half_to_float(unsigned short h) { _Float16 v; memcpy(&v, &h, 2); return (float)v; }
static inline unsigned short gh_float_to_half(float f) {
  _Float16 v = (_Float16)f; unsigned short h; memcpy(&h, &v, 2); return h;
}
// double -> half rounded once (through float, it would round twice: 1 + 2^-11 + 2^-40 must give
// 1 + 2^-10, not 1). Float rounds to odd (truncate, then set the last bit when inexact), which keeps
// the sticky information; float's 24 bits are more than the 11 + 2 the second rounding needs, so
// rounding that to half to nearest even rounds the double once, whatever a compiler does for a
// direct double -> _Float16 conversion.
static inline unsigned short gh_double_to_half(double x) {
  float f = (float)x;
  if ((double)f != x && x == x && f - f == 0.0f) {     // inexact and finite
    unsigned int bits; memcpy(&bits, &f, 4);
    if (fabs((double)f) > fabs(x)) bits -= 1;         // rounded away from zero: step back toward it
    bits |= 1u;
    memcpy(&f, &bits, 4);
  }
  return gh_float_to_half(f);
}
#endif

// A value rounded to half precision (what storing it as float16 would keep), as a float; a double is
// rounded once, straight to half. Other values (bool, integers) convert to float first, which is exact
// wherever half is finite (|x| < 65520).
GH_FN float gh_round_half(float x) { return gh_half_to_float(gh_float_to_half(x)); }
GH_FN float gh_round_half(double x) { return gh_half_to_float(gh_double_to_half(x)); }
template <typename T> GH_FN float gh_round_half(T x) { return gh_round_half((float)x); }

// Loads give the compute value; stores convert back to the storage type.
template <typename T> GH_FN T gh_load(T x) { return x; }
GH_FN float gh_load(gh_half x) { return gh_half_to_float(x.bits); }

template <typename T> struct gh_store_as {
  template <typename C> GH_MEMBER T operator()(C v) const { return (T)v; }
};
template <> struct gh_store_as<gh_half> {
  template <typename C> GH_MEMBER gh_half operator()(C v) const {
    gh_half h; h.bits = gh_float_to_half((float)v); return h;
  }
  GH_MEMBER gh_half operator()(double v) const { gh_half h; h.bits = gh_double_to_half(v); return h; }
};
#define GH_STORE(T, value) gh_store_as<T>()(value)

#endif  // GH_KERNEL_H
