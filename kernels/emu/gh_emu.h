// gh_emu.h -- compiles the CUDA branch (GH_CUDA) of gpuhybrid's generated kernels with the host C++
// compiler, to run on the CPU under the emulator's runtime (gh_emu_runtime.cpp).
//
//   g++ -include kernels/emu/gh_emu.h -Ikernels -fvisibility=hidden -fno-gnu-unique kernel.cu ...
//
// Each CUDA thread of a block runs as a fiber; __syncthreads is a block barrier, a warp shuffle waits
// until the lanes of its mask arrive, __shared__ storage is one instance per block (a function-scope
// `static thread_local`: all fibers of a block run on one OS thread; the runtime poisons it at each
// block's start). Only what the kernels use is here: anything else fails to compile, loudly.
#ifndef GH_EMU_H
#define GH_EMU_H

// System headers before __CUDACC_RTC__ is defined: glibc's headers look at __CUDACC__.
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace gh_emu {
struct dim3_value { unsigned int x, y, z; };
dim3_value thread_index();
dim3_value block_index();
dim3_value block_size();
dim3_value grid_size();
void sync_threads(const char* file, int line);
enum ShuffleKind { SHUFFLE_XOR = 0, SHUFFLE_IDX = 1, SHUFFLE_UP = 2, SHUFFLE_DOWN = 3 };
void shuffle(unsigned mask, const void* in, void* out, unsigned size, int arg, int width, int kind,
             const char* file, int line);
void unknown_ptx(const char* op);
}  // namespace gh_emu

typedef gh_emu::dim3_value uint3;
struct dim3 { unsigned int x, y, z; };

// Built-in variables read through the runtime (calls, so the checker never sees them as memory).
#define threadIdx (::gh_emu::thread_index())
#define blockIdx (::gh_emu::block_index())
#define blockDim (::gh_emu::block_size())
#define gridDim (::gh_emu::grid_size())
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __syncthreads() ::gh_emu::sync_threads(__FILE__, __LINE__)

// __builtin_FILE/LINE as default arguments name the kernel's line, not this one.
#define GH_EMU_SHUFFLE(name, kind)                                                                      \
  template <typename T>                                                                               \
  static inline T name(unsigned mask, T value, int arg, int width = 32,                               \
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) {            \
    static_assert(sizeof(T) <= 16, "a shuffle moves at most 16 bytes");                              \
    T out;                                                                                            \
    ::gh_emu::shuffle(mask, &value, &out, sizeof(T), arg, width, kind, file, line);                   \
    return out;                                                                                       \
  }
GH_EMU_SHUFFLE(__shfl_xor_sync, ::gh_emu::SHUFFLE_XOR)
GH_EMU_SHUFFLE(__shfl_sync, ::gh_emu::SHUFFLE_IDX)
GH_EMU_SHUFFLE(__shfl_up_sync, ::gh_emu::SHUFFLE_UP)
GH_EMU_SHUFFLE(__shfl_down_sync, ::gh_emu::SHUFFLE_DOWN)
#undef GH_EMU_SHUFFLE

// CUDA intrinsics the host lacks. CUDA's math library is replaced by the host libm: results may differ
// from a GPU's in the last ulps (CUDA documents its error bounds per function).
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }

// CUDA's vector types with CUDA's alignment: a misaligned float4 access is reported (-fsanitize=alignment).
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };

// The PTX conversions of gh_kernel.h (its GH_CUDA_EMU hook calls this with the instruction's text), done
// bit-exactly; an instruction not known here is reported and yields poison.
template <typename Out, typename In>
static inline void gh_emu_ptx_cvt(const char* op, Out* out, const In* in) {
  if (!strcmp(op, "cvt.f32.f16") && sizeof(Out) == 4 && sizeof(In) == 2) {            // exact
    _Float16 h; memcpy(&h, in, 2); float f = (float)h; memcpy(out, &f, 4);
  } else if (!strcmp(op, "cvt.rn.f16.f32") && sizeof(Out) == 2 && sizeof(In) == 4) {  // nearest even
    float f; memcpy(&f, in, 4); _Float16 h = (_Float16)f; memcpy(out, &h, 2);
  } else if (!strcmp(op, "cvt.rn.f16.f64") && sizeof(Out) == 2 && sizeof(In) == 8) {  // one rounding
    double d; memcpy(&d, in, 8); _Float16 h = (_Float16)d; memcpy(out, &h, 2);   // libgcc __truncdfhf2
  } else if (!strcmp(op, "cvt.rz.f16.f32") && sizeof(Out) == 2 && sizeof(In) == 4) {  // toward zero
    float f; memcpy(&f, in, 4); _Float16 h = (_Float16)f; unsigned short bits; memcpy(&bits, &h, 2);
    if (f == f && fabsf(f) != INFINITY && fabsf((float)h) > fabsf(f)) bits = (unsigned short)(bits - 1);
    memcpy(out, &bits, 2);
  } else {
    ::gh_emu::unknown_ptx(op);
    memset(out, 0xFF, sizeof(Out));
  }
}

// The kernel headers take their CUDA branch (gh_scalar.h tests __CUDACC_RTC__), and gh_kernel.h its
// emulator hook.
#define __CUDACC_RTC__ 1
#define GH_CUDA_EMU 1

extern "C" int gh_emu_launch(unsigned grid, unsigned block, void (*body)(void*), void* arg, int order,
                             unsigned seed);

#endif  // GH_EMU_H
