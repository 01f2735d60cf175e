/* gh_depthwise.c -- depthwise convolutions (one filter per channel) on the CPU, straight from the data.
 *
 * A depthwise convolution does K multiply-adds per output (K: the kernel's taps), so im2col's column
 * matrix (K times the data) costs more to write and read than the arithmetic: measured on this project's
 * 2-core machine, a direct loop over output rows was 2.5-20x faster than im2col + batched products. Each
 * kernel here walks one (sample, channel) plane (or, for the weight gradient, one channel over the batch)
 * per unit of gh_parallel_run (gh_threads.c), so units never write the same memory. Along the last axis
 * the range of outputs whose tap lands inside the data is worked out once per tap, so the innermost loop
 * has no bounds test and, at stride 1, vectorises.
 *
 * One job for the three kernels (every field 8 bytes: Python packs it as the kernel's scalars); 1-D and
 * 2-D convolutions are 3-D ones with leading spatial extents of 1. Arrays, by mode:
 *   forward:  out (N, C, *out), data (N, C, *in), weight (C, *kernel)
 *   data:     out (N, C, *in),  grad (N, C, *out), weight (C, *kernel)   -- the transposed convolution
 *   weight:   out (C, *kernel), data (N, C, *in), grad (N, C, *out)
 */
#include <stddef.h>

typedef struct { long long begin, end; } gh_span;
gh_span gh_part(long long n, long long grain);

enum { GH_DW_FORWARD = 0, GH_DW_DATA = 1, GH_DW_WEIGHT = 2 };

typedef struct {
  long long is_double, mode, batch, channels;
  long long in[3], out[3], kernel[3], stride[3], dilate[3], pad[3];
} gh_depthwise_job;

/* Outputs [*lo, *hi) of an axis of `outs` positions whose tap at `offset` (tap * dilate - pad) reads
 * inside an axis of `size` elements at `stride`. */
static void inside(long long offset, long long stride, long long size, long long outs, long long* lo,
                   long long* hi) {
  long long first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  long long last = size - 1 - offset < 0 ? -1 : (size - 1 - offset) / stride;
  *lo = first;
  *hi = last + 1 < outs ? last + 1 : outs;
  if (*hi < *lo) *hi = *lo;
}

/* The window walk the three kernels share: for every output row (od, oh) of a plane and every tap
 * (kd, kh, kw) whose input row (id, ih) lies inside the data, run the statement given as the macro's
 * remaining arguments with
 *   out_row, in_row  the offsets of the output row and of the input row the tap reads, in their planes;
 *   k                the tap's index in the (kd, kh, kw) kernel;
 *   offset, s        output ow reads input element ow * s + offset of the input row;
 *   [lo, hi)         the outputs of the row whose read lies inside the input row.
 * The statement is a macro argument (variadic, so commas inside it are fine) rather than a callback: the
 * innermost loops stay the compiler's to vectorise. */
#define GH_DW_EACH_TAP(j, ...)                                                                             \
  for (long long od = 0; od < (j)->out[0]; ++od)                                                           \
    for (long long oh = 0; oh < (j)->out[1]; ++oh) {                                                       \
      const long long out_row = (od * (j)->out[1] + oh) * (j)->out[2];                                      \
      for (long long kd = 0; kd < (j)->kernel[0]; ++kd) {                                                  \
        const long long id = od * (j)->stride[0] + kd * (j)->dilate[0] - (j)->pad[0];                      \
        if (id < 0 || id >= (j)->in[0]) continue;                                                          \
        for (long long kh = 0; kh < (j)->kernel[1]; ++kh) {                                                \
          const long long ih = oh * (j)->stride[1] + kh * (j)->dilate[1] - (j)->pad[1];                    \
          if (ih < 0 || ih >= (j)->in[1]) continue;                                                        \
          const long long in_row = (id * (j)->in[1] + ih) * (j)->in[2];                                     \
          for (long long kw = 0; kw < (j)->kernel[2]; ++kw) {                                              \
            const long long k = (kd * (j)->kernel[1] + kh) * (j)->kernel[2] + kw;                          \
            const long long offset = kw * (j)->dilate[2] - (j)->pad[2], s = (j)->stride[2];                \
            long long lo, hi;                                                                              \
            inside(offset, s, (j)->in[2], (j)->out[2], &lo, &hi);                                          \
            __VA_ARGS__                                                                                    \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
    }

/* forward: y[out] += w[k] * x[in]; data: dx[in] += w[k] * g[out]; weight: dw[k] += sum of g[out] * x[in].
 * At stride 1 the forward and data loops read and write through a shifted pointer (no multiply). */
#define GH_DEPTHWISE_KERNELS(T, SUFFIX)                                                                    \
  static void forward_##SUFFIX(const gh_depthwise_job* j, T* out, const T* data, const T* weight,         \
                               long long plane) {                                                          \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const T* x = data + plane * in_size;                                                                   \
    const long long c = plane % j->channels;                                                               \
    const T* w = weight + c * j->kernel[0] * j->kernel[1] * j->kernel[2];                                  \
    T* y = out + plane * out_size;                                                                         \
    for (long long i = 0; i < out_size; ++i) y[i] = 0;                                                     \
    GH_DW_EACH_TAP(j, {                                                                                    \
      const T tap = w[k];                                                                                  \
      T* row = y + out_row;                                                                                \
      const T* source = x + in_row;                                                                        \
      if (s == 1) {                                                                                        \
        const T* shifted = source + offset;                                                                \
        for (long long ow = lo; ow < hi; ++ow) row[ow] += tap * shifted[ow];                               \
      } else {                                                                                             \
        for (long long ow = lo; ow < hi; ++ow) row[ow] += tap * source[ow * s + offset];                   \
      }                                                                                                    \
    })                                                                                                     \
  }                                                                                                        \
                                                                                                           \
  static void data_##SUFFIX(const gh_depthwise_job* j, T* out, const T* grad, const T* weight,            \
                            long long plane) {                                                             \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const T* g = grad + plane * out_size;                                                                  \
    const long long c = plane % j->channels;                                                               \
    const T* w = weight + c * j->kernel[0] * j->kernel[1] * j->kernel[2];                                  \
    T* dx = out + plane * in_size;                                                                         \
    for (long long i = 0; i < in_size; ++i) dx[i] = 0;                                                     \
    GH_DW_EACH_TAP(j, {                                                                                    \
      const T tap = w[k];                                                                                  \
      const T* row = g + out_row;                                                                          \
      T* target = dx + in_row;                                                                             \
      if (s == 1) {                                                                                        \
        T* shifted = target + offset;                                                                      \
        for (long long ow = lo; ow < hi; ++ow) shifted[ow] += tap * row[ow];                               \
      } else {                                                                                             \
        for (long long ow = lo; ow < hi; ++ow) target[ow * s + offset] += tap * row[ow];                   \
      }                                                                                                    \
    })                                                                                                     \
  }                                                                                                        \
                                                                                                           \
  static void weight_##SUFFIX(const gh_depthwise_job* j, T* out, const T* data, const T* grad,            \
                              long long c) {                                                               \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    T* dw = out + c * taps;                                                                                \
    for (long long k = 0; k < taps; ++k) dw[k] = 0;                                                        \
    for (long long n = 0; n < j->batch; ++n) {                                                             \
      const T* x = data + (n * j->channels + c) * in_size;                                                 \
      const T* g = grad + (n * j->channels + c) * out_size;                                                \
      GH_DW_EACH_TAP(j, {                                                                                  \
        const T* row = g + out_row;                                                                        \
        const T* source = x + in_row;                                                                      \
        T sum = 0;                                                                                         \
        for (long long ow = lo; ow < hi; ++ow) sum += row[ow] * source[ow * s + offset];                   \
        dw[k] += sum;                                                                                      \
      })                                                                                                   \
    }                                                                                                      \
  }

GH_DEPTHWISE_KERNELS(float, float)
GH_DEPTHWISE_KERNELS(double, double)

/* The packed kernel (arrays: out, then the two operands of the mode; scalars: the job) over `units`:
 * planes (N * C) forward and for the data gradient, channels for the weight gradient. */
void gh_depthwise_packed(long long units, void* const* arrays, const unsigned char* scalars) {
  const gh_depthwise_job* job = (const gh_depthwise_job*)scalars;
  gh_span span = gh_part(units, 1);
  for (long long unit = span.begin; unit < span.end; ++unit) {
    if (job->is_double) {
      double* out = (double*)arrays[0];
      const double *a = (const double*)arrays[1], *b = (const double*)arrays[2];
      if (job->mode == GH_DW_FORWARD) forward_double(job, out, a, b, unit);
      else if (job->mode == GH_DW_DATA) data_double(job, out, a, b, unit);
      else weight_double(job, out, a, b, unit);
    } else {
      float* out = (float*)arrays[0];
      const float *a = (const float*)arrays[1], *b = (const float*)arrays[2];
      if (job->mode == GH_DW_FORWARD) forward_float(job, out, a, b, unit);
      else if (job->mode == GH_DW_DATA) data_float(job, out, a, b, unit);
      else weight_float(job, out, a, b, unit);
    }
  }
}

/* For ctypes callers: the size of the job, so that the Python mirror of the struct can be checked. */
size_t gh_depthwise_job_size(void) { return sizeof(gh_depthwise_job); }
