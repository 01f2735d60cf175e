/* gh_pool.c -- max pooling and its data gradient on the CPU, straight from the data.
 *
 * NumPy pools one kernel offset at a time: a padded copy of the data, then one strided pass per tap, and
 * the gradient a where() and a scatter-add per tap. Measured in ResNet-18's training step at batch 16 (the
 * stem's 3x3/2 max pooling over (16, 64, 16, 16)) that was 0.65 ms forward and 3.8 ms backward on one
 * thread, unthreaded; these loops do it in one pass over the data, split over gpuhybrid's thread pool
 * (gh_parallel_run in gh_threads.c) one (sample, channel) plane per unit, so units never write the same
 * memory. The results are NumPy's bit for bit (ops/pool.py's _Windows):
 *   - forward: the maximum over the window's taps inside the data (padding is -inf, which never wins),
 *     NaN when any tap is NaN (numpy.maximum);
 *   - backward: each output's gradient goes to the first tap, in kernel-offset order, that is strictly
 *     greater than all before it (a padding tap counts as -inf and takes the gradient away when it is
 *     first and nothing beats it), and the contributions to one input position are added in
 *     kernel-offset order, as the scatter per offset adds them.
 * 1-D and 2-D poolings are 3-D ones with leading spatial extents of 1.
 *
 * Arrays, by mode:  forward: out (N, C, *out), data (N, C, *in);
 *                   backward: out (N, C, *in), two workspaces of the output's shape (the maxima, in
 *                   the data's type, and the winning taps, int32), data (N, C, *in), grad (N, C, *out).
 */
#include <math.h>
#include <stddef.h>

typedef struct { long long begin, end; } gh_span;
gh_span gh_part(long long n, long long grain);

enum { GH_POOL_MAX_FORWARD = 0, GH_POOL_MAX_BACKWARD = 1 };

typedef struct {                /* every field 8 bytes: Python packs it as the kernel's scalars */
  long long is_double, mode;
  long long in[3], out[3], kernel[3], stride[3], pad[3];
} gh_pool_job;

/* Outputs [*lo, *hi) of an axis of `outs` positions whose tap at `offset` (tap - pad) reads inside an axis
 * of `size` elements at `stride`. */
static void inside(long long offset, long long stride, long long size, long long outs, long long* lo,
                   long long* hi) {
  long long first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  long long last = size - 1 - offset < 0 ? -1 : (size - 1 - offset) / stride;
  *lo = first;
  *hi = last + 1 < outs ? last + 1 : outs;
  if (*hi < *lo) *hi = *lo;
}

/* max_plane: y = the window maxima of one plane x; with `where`, also the index (kernel-offset order) of
 * the first strictly greatest tap, as _Windows.first_max (which starts from tap 0, -inf in the padding,
 * and so keeps a NaN there). */
#define GH_POOL_KERNELS(T, SUFFIX)                                                                         \
  static void max_plane_##SUFFIX(const gh_pool_job* j, const T* x, T* y, int* where) {                     \
    const long long out_size = j->out[0] * j->out[1] * j->out[2];                                          \
    for (long long i = 0; i < out_size; ++i) y[i] = -INFINITY;                                             \
    if (where)                                                                                             \
      for (long long i = 0; i < out_size; ++i) where[i] = 0;                                               \
    long long tap = 0;                                                                                     \
    for (long long kd = 0; kd < j->kernel[0]; ++kd)                                                        \
      for (long long kh = 0; kh < j->kernel[1]; ++kh)                                                      \
        for (long long kw = 0; kw < j->kernel[2]; ++kw, ++tap) {                                           \
          long long d0, d1, h0, h1, w0, w1;                                                                \
          inside(kd - j->pad[0], j->stride[0], j->in[0], j->out[0], &d0, &d1);                             \
          inside(kh - j->pad[1], j->stride[1], j->in[1], j->out[1], &h0, &h1);                             \
          inside(kw - j->pad[2], j->stride[2], j->in[2], j->out[2], &w0, &w1);                             \
          for (long long od = d0; od < d1; ++od)                                                           \
            for (long long oh = h0; oh < h1; ++oh) {                                                       \
              const long long id = od * j->stride[0] + kd - j->pad[0];                                     \
              const long long ih = oh * j->stride[1] + kh - j->pad[1];                                     \
              const T* row = x + (id * j->in[1] + ih) * j->in[2] + kw - j->pad[2];                         \
              T* best = y + (od * j->out[1] + oh) * j->out[2];                                             \
              const long long s = j->stride[2];                                                            \
              if (where) {                                                                                 \
                int* at = where + (od * j->out[1] + oh) * j->out[2];                                       \
                if (tap == 0)                          /* tap 0 is where first_max starts, NaN or not */   \
                  for (long long ow = w0; ow < w1; ++ow) best[ow] = row[ow * s];                           \
                else                                                                                       \
                  for (long long ow = w0; ow < w1; ++ow) {                                                 \
                    const T v = row[ow * s];                                                               \
                    if (v > best[ow]) { best[ow] = v; at[ow] = (int)tap; }                                 \
                  }                                                                                        \
              } else {                                   /* numpy.maximum: NaN wins and stays */           \
                for (long long ow = w0; ow < w1; ++ow) {                                                   \
                  const T v = row[ow * s], b = best[ow];                                                   \
                  best[ow] = (v > b || v != v) ? v : b;                                                    \
                }                                                                                          \
              }                                                                                            \
            }                                                                                              \
        }                                                                                                  \
  }                                                                                                        \
                                                                                                           \
  /* dx (one zeroed plane of the input's shape) += each output's gradient at its window's first maximum,  \
   * offset by offset. A maximum in the padding (tap 0 there, nothing greater) is dropped. */             \
  static void max_backward_plane_##SUFFIX(const gh_pool_job* j, const T* x, const T* g, T* dx, T* y,      \
                                          int* where) {                                                    \
    const long long in_size = j->in[0] * j->in[1] * j->in[2];                                              \
    for (long long i = 0; i < in_size; ++i) dx[i] = 0;                                                     \
    max_plane_##SUFFIX(j, x, y, where);                                                                    \
    long long tap = 0;                                                                                     \
    for (long long kd = 0; kd < j->kernel[0]; ++kd)                                                        \
      for (long long kh = 0; kh < j->kernel[1]; ++kh)                                                      \
        for (long long kw = 0; kw < j->kernel[2]; ++kw, ++tap) {                                           \
          long long d0, d1, h0, h1, w0, w1;                                                                \
          inside(kd - j->pad[0], j->stride[0], j->in[0], j->out[0], &d0, &d1);                             \
          inside(kh - j->pad[1], j->stride[1], j->in[1], j->out[1], &h0, &h1);                             \
          inside(kw - j->pad[2], j->stride[2], j->in[2], j->out[2], &w0, &w1);                             \
          for (long long od = d0; od < d1; ++od)                                                           \
            for (long long oh = h0; oh < h1; ++oh) {                                                       \
              const long long id = od * j->stride[0] + kd - j->pad[0];                                     \
              const long long ih = oh * j->stride[1] + kh - j->pad[1];                                     \
              T* row = dx + (id * j->in[1] + ih) * j->in[2] + kw - j->pad[2];                              \
              const long long first = (od * j->out[1] + oh) * j->out[2];                                   \
              for (long long ow = w0; ow < w1; ++ow)                                                       \
                if (where[first + ow] == tap) row[ow * j->stride[2]] += g[first + ow];                     \
            }                                                                                              \
        }                                                                                                  \
  }                                                                                                        \
                                                                                                           \
  static void run_##SUFFIX(const gh_pool_job* j, void* const* arrays, gh_span span) {                      \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    if (j->mode == GH_POOL_MAX_FORWARD) {                                                                  \
      T* out = (T*)arrays[0];                                                                              \
      const T* data = (const T*)arrays[1];                                                                 \
      for (long long plane = span.begin; plane < span.end; ++plane)                                        \
        max_plane_##SUFFIX(j, data + plane * in_size, out + plane * out_size, NULL);                       \
      return;                                                                                              \
    }                                                                                                      \
    T* out = (T*)arrays[0];                                                                                \
    T* best = (T*)arrays[1];                                                                               \
    int* where = (int*)arrays[2];                                                                          \
    const T* data = (const T*)arrays[3];                                                                   \
    const T* grad = (const T*)arrays[4];                                                                   \
    for (long long plane = span.begin; plane < span.end; ++plane)                                          \
      max_backward_plane_##SUFFIX(j, data + plane * in_size, grad + plane * out_size,                      \
                                  out + plane * in_size, best + plane * out_size, where + plane * out_size); \
  }

GH_POOL_KERNELS(float, f32)
GH_POOL_KERNELS(double, f64)

/* The packed kernel (arrays as the mode says; scalars: the job), over `planes` (sample, channel) planes. */
void gh_pool_packed(long long planes, void* const* arrays, const unsigned char* scalars) {
  const gh_pool_job* job = (const gh_pool_job*)scalars;
  gh_span span = gh_part(planes, 1);
  if (span.begin >= span.end) return;
  if (job->is_double)
    run_f64(job, arrays, span);
  else
    run_f32(job, arrays, span);
}

/* For ctypes callers: the size of the job, so that the Python mirror of the struct can be checked. */
size_t gh_pool_job_size(void) { return sizeof(gh_pool_job); }
