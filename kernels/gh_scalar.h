// gh_scalar.h -- scalar helpers used by the registry's C expressions.
//
// Generated kernels (eager GPU ops, fused groups, row groups) include it through gh_kernel.h; the same
// text compiles with NVRTC for the GPU and with the host C++ compiler for the CPU. Every helper is
// overloaded for float and double; half values are converted to float before they reach a helper, so
// math on float16 data happens in float32. Signed integers are computed in gh_wrap_int/gh_wrap_long,
// which wrap around on overflow as NumPy's integers do.
#ifndef GH_SCALAR_H
#define GH_SCALAR_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define GH_CUDA 1
#define GH_FN __device__ __forceinline__
#define GH_MEMBER __device__ __forceinline__
#define GH_INFINITY __int_as_float(0x7f800000)
#else
#include <math.h>
#include <string.h>
#define GH_FN static inline
#define GH_MEMBER inline
#define GH_INFINITY INFINITY
#if defined(__x86_64__) && defined(__GLIBC__) && defined(GH_USE_LIBMVEC)
// glibc's libmvec has vector versions of these; declaring them lets element loops that call them
// vectorise. (glibc itself declares them only under -ffast-math, which would break NaN handling.)
#define GH_VECTOR_LIBM 1
#define GH_SIMD_DECL(type, fn) extern "C" type fn(type) noexcept __attribute__((simd("notinbranch")));
#define GH_SIMD_PAIR(f32_fn, f64_fn) GH_SIMD_DECL(float, f32_fn) GH_SIMD_DECL(double, f64_fn)
GH_SIMD_PAIR(expf, exp) GH_SIMD_PAIR(logf, log) GH_SIMD_PAIR(tanhf, tanh) GH_SIMD_PAIR(sinf, sin)
GH_SIMD_PAIR(cosf, cos) GH_SIMD_PAIR(log1pf, log1p) GH_SIMD_PAIR(expm1f, expm1) GH_SIMD_PAIR(erff, erf)
#endif
#endif

// One overload pair per libm function: gh_NAME(float) -> NAMEf, gh_NAME(double) -> NAME.
#define GH_MATH_PAIR(gh_name, f32_fn, f64_fn) \
  GH_FN float gh_name(float x) { return f32_fn(x); } \
  GH_FN double gh_name(double x) { return f64_fn(x); }

#ifdef GH_CUDA
GH_MATH_PAIR(gh_exp, expf, exp)
#else
// float32 exp for the CPU, written out so that element loops inline and vectorise it (libm's expf is a
// call that only libmvec vectorises). exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in
// [-ln2/2, ln2/2] (ln 2 split in two, Cody-Waite, so that n * the high part is exact), exp(r) by its
// Taylor polynomial of degree 7 (truncation 5e-9, under 0.1 ulp), 2^n applied in two halves so that
// results in the subnormal range round once. x is clamped to [-104, 89]: beyond them exp is 0 or inf in
// float, and the clamped value still gives 0 or inf. Within 1 ulp of exp over every float (a sweep
// against float64; tests/test_fast_exp.py checks it); NaN in gives NaN.
GH_FN float gh_fma_float(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);        // one instruction: fused where the CPU has it, by request
#else
  return a * b + c;
#endif
}
GH_FN float gh_pow2_float(int k) {       // 2^k for k in [-126, 127], built from its exponent bits
  const unsigned int bits = (unsigned int)(k + 127) << 23;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
GH_FN float gh_exp_float(float x) {
  const float clamped = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
  const float round_magic = 12582912.0f;                // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = gh_fma_float(clamped, 1.44269504088896341f, round_magic);
  const float n = shifted - round_magic;
  int shifted_bits;
  memcpy(&shifted_bits, &shifted, 4);
  const int k = shifted_bits - 0x4b400000;              // n as an integer: the low bits of `shifted`
  float r = gh_fma_float(n, -0.693359375f, clamped);     // ln 2 = 0.693359375 - 2.12194440e-4 (+ ...)
  r = gh_fma_float(n, 2.12194440e-4f, r);
  float p = 1.0f / 5040.0f;
  p = gh_fma_float(p, r, 1.0f / 720.0f);
  p = gh_fma_float(p, r, 1.0f / 120.0f);
  p = gh_fma_float(p, r, 1.0f / 24.0f);
  p = gh_fma_float(p, r, 1.0f / 6.0f);
  p = gh_fma_float(p, r, 0.5f);
  p = gh_fma_float(p, r, 1.0f);
  p = gh_fma_float(p, r, 1.0f);
  const int half = k >> 1;
  const float y = p * gh_pow2_float(half) * gh_pow2_float(k - half);
  return x != x ? x : y;
}
// With libmvec, expf stays: its vector version is ~20% faster than gh_exp_float in cache (0.38 against
// 0.48 ns per value, AVX2), and a (4096, 1024) softmax runs the same with either. Without it (another
// libc or CPU, or a kernel that opts out of vector math, FusedSource.scalar_math), gh_exp_float keeps
// the loop vectorised; it gives the same bits in vector and scalar code, as those kernels need.
// GH_LIBM_EXP keeps libm's expf: the emulator's reference build (gpuhybrid/emu/build.py) compares the
// CPU branch bit for bit with the CUDA branch, whose expf it emulates with libm's.
#if defined(GH_VECTOR_LIBM) || defined(GH_LIBM_EXP)
GH_FN float gh_exp(float x) { return expf(x); }
#else
GH_FN float gh_exp(float x) { return gh_exp_float(x); }
#endif
GH_FN double gh_exp(double x) { return exp(x); }
#endif
GH_MATH_PAIR(gh_log, logf, log)
GH_MATH_PAIR(gh_log1p, log1pf, log1p)
GH_MATH_PAIR(gh_expm1, expm1f, expm1)
GH_MATH_PAIR(gh_sqrt, sqrtf, sqrt)
GH_MATH_PAIR(gh_tanh, tanhf, tanh)
GH_MATH_PAIR(gh_sin, sinf, sin)
GH_MATH_PAIR(gh_cos, cosf, cos)
GH_MATH_PAIR(gh_floor, floorf, floor)
GH_MATH_PAIR(gh_ceil, ceilf, ceil)
GH_MATH_PAIR(gh_rint, rintf, rint)   // round half to even, as NumPy's round
GH_MATH_PAIR(gh_erf, erff, erf)

GH_FN float gh_pow(float x, float y) { return powf(x, y); }
GH_FN double gh_pow(double x, double y) { return pow(x, y); }

#ifdef GH_CUDA
GH_FN float gh_rsqrt(float x) { return rsqrtf(x); }
GH_FN double gh_rsqrt(double x) { return rsqrt(x); }
#else
GH_FN float gh_rsqrt(float x) { return 1.0f / sqrtf(x); }
GH_FN double gh_rsqrt(double x) { return 1.0 / sqrt(x); }
#endif

// Type-generic helpers (ints, float, double). NaN propagates through max/min as in NumPy.
template <typename T> GH_FN T gh_abs(T x) { return x < T(0) ? -x : x; }
GH_FN float gh_abs(float x) { return fabsf(x); }      // |-0.0| is +0.0, as in NumPy
GH_FN double gh_abs(double x) { return fabs(x); }
template <typename T> GH_FN T gh_sign(T x) { return x != x ? x : T((T(0) < x) - (x < T(0))); }
template <typename T> GH_FN T gh_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> GH_FN T gh_min(T a, T b) { return (a < b || a != a) ? a : b; }
template <typename T> GH_FN T gh_relu(T x) { return x > T(0) ? x : (x != x ? x : T(0)); }
template <typename T> GH_FN T gh_clip(T x, T lo, T hi) { return gh_min(gh_max(x, lo), hi); }

// Activations, written to stay finite for large |x|. Each calls exp once, outside any branch, so
// that element loops stay branch-free and vectorise (a call under a condition stops GCC).
template <typename T> GH_FN T gh_sigmoid(T x) {
  const T e = gh_exp(-gh_abs(x));                  // exp(-|x|) in (0, 1]: never overflows
  const T r = T(1) / (T(1) + e);
  return x != x ? x : (x >= T(0) ? r : e * r);
}
template <typename T> GH_FN T gh_softplus(T x) {  // log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
  const T tail = gh_log1p(gh_exp(-gh_abs(x)));
  return x != x ? x : (x > T(0) ? x + tail : tail);
}
template <typename T> GH_FN T gh_softsign(T x) { return x / (T(1) + gh_abs(x)); }
template <typename T> GH_FN T gh_gelu(T x) {      // exact (erf) form, as MXNet's LeakyReLU(gelu)
  return T(0.5) * x * (T(1) + gh_erf(x * T(0.70710678118654752440)));
}
template <typename T> GH_FN T gh_leaky(T x, T slope) { return x > T(0) ? x : x * slope; }
template <typename T> GH_FN T gh_elu(T x, T alpha) { return x > T(0) ? x : alpha * gh_expm1(x); }
template <typename T> GH_FN T gh_selu(T x) {
  return T(1.0507009873554804934) * (x > T(0) ? x : T(1.6732632423543772848) * gh_expm1(x));
}

// Signed integers that wrap around on overflow, as NumPy's int32/int64 do. Signed overflow is undefined
// in C++ (a compiler may fold `x + 1 > x` to true) and NVRTC has no -fwrapv, so kernels compute signed
// values in this type: +, - and * go through the unsigned type, whose arithmetic wraps by definition.
// The constructor is explicit so that a literal mixed into an expression cannot pick a wrapping or a
// plain operator ambiguously; the value converts back to its plain type implicitly.
template <typename S, typename U> struct gh_wrapping {
  typedef gh_wrapping W;
  S v;
  gh_wrapping() = default;
  GH_MEMBER explicit gh_wrapping(S x) : v(x) {}
  GH_MEMBER operator S() const { return v; }
  GH_MEMBER W operator-() const { return W(S(U(0) - U(v))); }
  GH_MEMBER friend W operator+(W a, W b) { return W(S(U(a.v) + U(b.v))); }
  GH_MEMBER friend W operator-(W a, W b) { return W(S(U(a.v) - U(b.v))); }
  GH_MEMBER friend W operator*(W a, W b) { return W(S(U(a.v) * U(b.v))); }
  GH_MEMBER friend bool operator==(W a, W b) { return a.v == b.v; }
  GH_MEMBER friend bool operator!=(W a, W b) { return a.v != b.v; }
  GH_MEMBER friend bool operator<(W a, W b) { return a.v < b.v; }
  GH_MEMBER friend bool operator>(W a, W b) { return a.v > b.v; }
  GH_MEMBER friend bool operator<=(W a, W b) { return a.v <= b.v; }
  GH_MEMBER friend bool operator>=(W a, W b) { return a.v >= b.v; }
};
typedef gh_wrapping<int, unsigned int> gh_wrap_int;
typedef gh_wrapping<long long, unsigned long long> gh_wrap_long;

// Remainder with the divisor's sign, as NumPy's mod (and MXNet's broadcast_mod): floats follow
// npy_divmod (a zero remainder takes the divisor's sign, x mod 0 is NaN); integers give 0 for a zero
// divisor, as NumPy does, and x mod -1 is 0 without evaluating INT_MIN % -1 (which traps).
GH_FN float gh_mod(float a, float b) {
  const float r = fmodf(a, b);
  return r != 0.0f ? ((r < 0.0f) != (b < 0.0f) ? r + b : r) : copysignf(0.0f, b);
}
GH_FN double gh_mod(double a, double b) {
  const double r = fmod(a, b);
  return r != 0.0 ? ((r < 0.0) != (b < 0.0) ? r + b : r) : copysign(0.0, b);
}
template <typename S, typename U> GH_FN gh_wrapping<S, U> gh_mod(gh_wrapping<S, U> a, gh_wrapping<S, U> b) {
  if (b.v == S(0) || b.v == S(-1)) return gh_wrapping<S, U>(S(0));
  const S r = a.v % b.v;
  return gh_wrapping<S, U>(r != S(0) && ((r < S(0)) != (b.v < S(0))) ? S(r + b.v) : r);
}
GH_FN float gh_hypot(float a, float b) { return hypotf(a, b); }
GH_FN double gh_hypot(double a, double b) { return hypot(a, b); }
template <typename T> GH_FN T gh_log_sigmoid(T x) {  // -softplus(-x): finite for large |x|
  return -gh_softplus(-x);
}
template <typename T> GH_FN T gh_hard_sigmoid(T x, T alpha, T beta) {  // NaN stays NaN, as NumPy's clip
  const T y = alpha * x + beta;
  return y < T(0) ? T(0) : (y > T(1) ? T(1) : y);
}
template <typename T> GH_FN T gh_smooth_l1(T x, T sigma) {  // MXNet's: quadratic inside |x| < 1/sigma^2
  const T s2 = sigma * sigma;
  const T ax = gh_abs(x);
  return ax < T(1) / s2 ? T(0.5) * s2 * x * x : ax - T(0.5) / s2;
}

#endif  // GH_SCALAR_H
