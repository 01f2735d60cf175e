/* gh_pool.c -- max pooling and its data gradient on the CPU, straight from the data.
 *
 * NumPy pools one kernel offset at a time: a padded copy of the data, then one strided pass per tap, and
 * the gradient a where() and a scatter-add per tap. Measured in ResNet-18's training step at batch 16 (the
 * stem's 3x3/2 max pooling over (16, 64, 16, 16)) that was 0.8 ms forward and 7.5 ms backward (CPU time,
 * this project's loaded 2-core machine), unthreaded; these loops take 0.8 and 2.1 ms on one thread and split
 * over gpuhybrid's thread pool (gh_parallel_run in gh_threads.c), one (sample, channel) plane per unit,
 * so units never write the same memory. The results are NumPy's bit for bit (ops/pool.py's _Windows):
 *   - forward: the maximum over the window's taps inside the data (padding is -inf, which never wins),
 *     NaN when any tap is NaN (numpy.maximum);
 *   - backward: each output's gradient goes to the first tap, in kernel-offset order, that is strictly
 *     greater than all before it (a padding tap counts as -inf and takes the gradient away when it is
 *     first and nothing beats it), and the contributions to one input position are added in
 *     kernel-offset order, as the scatter per offset adds them.
 * 1-D and 2-D poolings are 3-D ones with leading spatial extents of 1.
 *
 * Arrays, by mode:  forward: out (N, C, *out), data (N, C, *in);
 *                   backward: out (N, C, *in), a workspace of the output's shape (int32: each window's
 *                   winning tap), data (N, C, *in), grad (N, C, *out).
 * Each output loops over its window's taps (in registers, with selects rather than branches: which tap
 * wins is random, and mispredicted branches made a first version 2x slower than NumPy); the gradient adds
 * offset by offset over rows of outputs (an input gathers from the windows covering it instead where an
 * axis has more than GH_POOL_TABLE taps).
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

/* The taps [*lo, *hi) of an axis whose input (o * stride + tap - pad) lies inside the data. */
static inline void taps_inside(const gh_pool_job* j, int axis, long long o, long long* lo, long long* hi) {
  const long long start = o * j->stride[axis] - j->pad[axis];
  *lo = start < 0 ? -start : 0;
  *hi = j->in[axis] - start < j->kernel[axis] ? j->in[axis] - start : j->kernel[axis];
}

#define GH_POOL_TABLE 16             /* taps per axis up to which the gradient scatters offset by offset */

/* Per axis and tap, the outputs [lo, hi) whose tap reads inside the data; 0 (nothing filled) when an axis
 * has more than GH_POOL_TABLE taps. Once per chunk: two divisions each. */
static int output_ranges(const gh_pool_job* j, long long lo[3][GH_POOL_TABLE],
                         long long hi[3][GH_POOL_TABLE]) {
  for (int axis = 0; axis < 3; ++axis)
    if (j->kernel[axis] > GH_POOL_TABLE) return 0;
  for (int axis = 0; axis < 3; ++axis)
    for (long long k = 0; k < j->kernel[axis]; ++k) {
      const long long offset = k - j->pad[axis], s = j->stride[axis];
      const long long first = offset >= 0 ? 0 : (-offset + s - 1) / s;
      const long long last = j->in[axis] - 1 - offset < 0 ? -1 : (j->in[axis] - 1 - offset) / s;
      lo[axis][k] = first;
      hi[axis][k] = last + 1 < j->out[axis] ? last + 1 : j->out[axis];
      if (hi[axis][k] < lo[axis][k]) hi[axis][k] = lo[axis][k];
    }
  return 1;
}

/* Each output window of one plane of x, in output order: d0..d1, h0..h1, w0..w1 the taps per axis whose
 * input lies inside the data, `corner` where tap (0, 0, 0) would read (perhaps in the padding), `at` the
 * window's output index (T: the data's type); the body runs once per window. */
#define GH_POOL_EACH_WINDOW(T, j, x, ...)                                                                  \
  for (long long od = 0; od < (j)->out[0]; ++od) {                                                         \
    long long d0, d1;                                                                                      \
    taps_inside(j, 0, od, &d0, &d1);                                                                       \
    for (long long oh = 0; oh < (j)->out[1]; ++oh) {                                                       \
      long long h0, h1;                                                                                    \
      taps_inside(j, 1, oh, &h0, &h1);                                                                     \
      for (long long ow = 0; ow < (j)->out[2]; ++ow) {                                                     \
        long long w0, w1;                                                                                  \
        taps_inside(j, 2, ow, &w0, &w1);                                                                   \
        const long long at = (od * (j)->out[1] + oh) * (j)->out[2] + ow;                                   \
        const T* corner = (x) + ((od * (j)->stride[0] - (j)->pad[0]) * (j)->in[1]                          \
                                 + oh * (j)->stride[1] - (j)->pad[1]) * (j)->in[2]                         \
                          + ow * (j)->stride[2] - (j)->pad[2];                                             \
        __VA_ARGS__                                                                                        \
      }                                                                                                    \
    }                                                                                                      \
  }

#define GH_POOL_KERNELS(T, SUFFIX)                                                                         \
  /* y = the window maxima of one plane x: numpy.maximum over the taps inside (a NaN wins and stays). */   \
  static void max_plane_##SUFFIX(const gh_pool_job* j, const T* x, T* y) {                                 \
    GH_POOL_EACH_WINDOW(T, j, x, {                                                                         \
      T best = -INFINITY, nan = 0;                                                                         \
      int seen_nan = 0;                                                                                    \
      for (long long kd = d0; kd < d1; ++kd)                                                               \
        for (long long kh = h0; kh < h1; ++kh) {                                                           \
          const T* taps = corner + (kd * j->in[1] + kh) * j->in[2];                                        \
          for (long long kw = w0; kw < w1; ++kw) {                                                         \
            const T v = taps[kw];                                                                          \
            if (__builtin_expect(v != v, 0)) {   /* rare: a branch; the maximum below has none */          \
              nan = v;                                                                                     \
              seen_nan = 1;                                                                                \
            }                                                                                              \
            best = v > best ? v : best;                                                                    \
          }                                                                                                \
        }                                                                                                  \
      y[at] = seen_nan ? nan : best;                                                                       \
    })                                                                                                     \
  }                                                                                                        \
                                                                                                           \
  /* where = each window's winning tap (kernel-offset order) as _Windows.first_max: it starts from tap 0   \
   * (-inf in the padding, kept when it is NaN) and a later tap wins only when strictly greater. */        \
  static void argmax_plane_##SUFFIX(const gh_pool_job* j, const T* x, int* where) {                        \
    GH_POOL_EACH_WINDOW(T, j, x, {                                                                         \
      T best = d0 == 0 && h0 == 0 && w0 == 0 ? corner[0] : -INFINITY;                                      \
      int winner = 0;                                                                                      \
      for (long long kd = d0; kd < d1; ++kd)                                                               \
        for (long long kh = h0; kh < h1; ++kh) {                                                           \
          const T* taps = corner + (kd * j->in[1] + kh) * j->in[2];                                        \
          const int first = (int)((kd * j->kernel[1] + kh) * j->kernel[2]);                                \
          for (long long kw = w0; kw < w1; ++kw) {     /* selects, not branches: data is random */         \
            const T v = taps[kw];                                                                          \
            const int better = v > best;                                                                   \
            best = better ? v : best;                                                                      \
            winner = better ? first + (int)kw : winner;                                                    \
          }                                                                                                \
        }                                                                                                  \
      where[at] = winner;                                                                                  \
    })                                                                                                     \
  }                                                                                                        \
                                                                                                           \
  /* dx = for each input, the gradients of the windows whose winning tap it is, added in kernel-offset    \
   * order (the order of the scatter per offset) onto 0. */                                                \
  static void max_backward_plane_##SUFFIX(const gh_pool_job* j, const int* where, const T* g, T* dx) {     \
    /* per axis, for the input at hand: the first tap whose window covers it and that window (o0, k0), \
     * carried from input to input without a division */                                                 \
    long long k0[3], o0[3];                                                                                \
    for (int axis = 0; axis < 3; ++axis) {                                                                 \
      k0[axis] = j->pad[axis] % j->stride[axis];                                                           \
      o0[axis] = (j->pad[axis] - k0[axis]) / j->stride[axis];                                              \
    }                                                                                                      \
    const long long sd = j->stride[0], sh = j->stride[1], sw = j->stride[2];                               \
    long long kd0 = k0[0], od0 = o0[0];                                                                    \
    for (long long id = 0; id < j->in[0]; ++id) {                                                          \
      long long kh0 = k0[1], oh0 = o0[1];                                                                  \
      for (long long ih = 0; ih < j->in[1]; ++ih) {                                                        \
        long long kw0 = k0[2], ow0 = o0[2];                                                                \
        T* row = dx + (id * j->in[1] + ih) * j->in[2];                                                     \
        for (long long iw = 0; iw < j->in[2]; ++iw) {                                                      \
          T sum = 0;                                                                                       \
          for (long long kd = kd0, od = od0; kd < j->kernel[0] && od >= 0; kd += sd, --od) {              \
            if (od >= j->out[0]) continue;                                                                 \
            for (long long kh = kh0, oh = oh0; kh < j->kernel[1] && oh >= 0; kh += sh, --oh) {            \
              if (oh >= j->out[1]) continue;                                                               \
              const long long base = (od * j->out[1] + oh) * j->out[2];                                    \
              const long long tap = (kd * j->kernel[1] + kh) * j->kernel[2];                               \
              for (long long kw = kw0, ow = ow0; kw < j->kernel[2] && ow >= 0; kw += sw, --ow)            \
                if (ow < j->out[2])            /* a select, not a branch: which tap won is random */      \
                  sum += where[base + ow] == tap + kw ? g[base + ow] : (T)0;    /* sum is never -0 */   \
            }                                                                                              \
          }                                                                                                \
          row[iw] = sum;                                                                                   \
          if (++kw0 == sw) { kw0 = 0; ++ow0; }                                                             \
        }                                                                                                  \
        if (++kh0 == sh) { kh0 = 0; ++oh0; }                                                               \
      }                                                                                                    \
      if (++kd0 == sd) { kd0 = 0; ++od0; }                                                                 \
    }                                                                                                      \
  }                                                                                                        \
                                                                                                           \
  /* The same sums, offset by offset (the scatter's own order), for kernels of at most GH_POOL_TABLE taps \
   * per axis: `lo`/`hi` give per axis and tap the outputs whose tap lies inside the data. Each pass is a \
   * run of adds through selects over a row of outputs, half the work of gathering per input. */          \
  static void max_scatter_plane_##SUFFIX(const gh_pool_job* j, const long long (*lo)[GH_POOL_TABLE],      \
                                         const long long (*hi)[GH_POOL_TABLE], const int* where,           \
                                         const T* g, T* dx) {                                              \
    const long long in_size = j->in[0] * j->in[1] * j->in[2];                                              \
    for (long long i = 0; i < in_size; ++i) dx[i] = 0;                                                     \
    const long long sw = j->stride[2];                                                                     \
    int tap = 0;                                                                                           \
    for (long long kd = 0; kd < j->kernel[0]; ++kd)                                                        \
      for (long long kh = 0; kh < j->kernel[1]; ++kh)                                                      \
        for (long long kw = 0; kw < j->kernel[2]; ++kw, ++tap)                                             \
          for (long long od = lo[0][kd]; od < hi[0][kd]; ++od)                                             \
            for (long long oh = lo[1][kh]; oh < hi[1][kh]; ++oh) {                                         \
              const long long id = od * j->stride[0] + kd - j->pad[0];                                     \
              const long long ih = oh * j->stride[1] + kh - j->pad[1];                                     \
              T* row = dx + (id * j->in[1] + ih) * j->in[2] + kw - j->pad[2];                              \
              const long long first = (od * j->out[1] + oh) * j->out[2];                                   \
              const int* won = where + first;                                                              \
              const T* grad_row = g + first;                                                               \
              for (long long ow = lo[2][kw]; ow < hi[2][kw]; ++ow)   /* dx is never -0: adding 0 keeps it */ \
                row[ow * sw] += won[ow] == tap ? grad_row[ow] : (T)0;                                      \
            }                                                                                              \
  }                                                                                                        \
                                                                                                           \
  static void run_##SUFFIX(const gh_pool_job* j, void* const* arrays, gh_span span) {                      \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    T* out = (T*)arrays[0];                                                                                \
    if (j->mode == GH_POOL_MAX_FORWARD) {                                                                  \
      const T* data = (const T*)arrays[1];                                                                 \
      for (long long plane = span.begin; plane < span.end; ++plane)                                        \
        max_plane_##SUFFIX(j, data + plane * in_size, out + plane * out_size);                             \
      return;                                                                                              \
    }                                                                                                      \
    int* where = (int*)arrays[1];                                                                          \
    const T* data = (const T*)arrays[2];                                                                   \
    const T* grad = (const T*)arrays[3];                                                                   \
    long long lo[3][GH_POOL_TABLE], hi[3][GH_POOL_TABLE];                                                  \
    const int table = output_ranges(j, lo, hi);                                                            \
    for (long long plane = span.begin; plane < span.end; ++plane) {                                        \
      argmax_plane_##SUFFIX(j, data + plane * in_size, where + plane * out_size);                          \
      if (table)                                                                                           \
        max_scatter_plane_##SUFFIX(j, (const long long(*)[GH_POOL_TABLE])lo,                               \
                                   (const long long(*)[GH_POOL_TABLE])hi, where + plane * out_size,        \
                                   grad + plane * out_size, out + plane * in_size);                        \
      else                                                                                                 \
        max_backward_plane_##SUFFIX(j, where + plane * out_size, grad + plane * out_size,                  \
                                    out + plane * in_size);                                                \
    }                                                                                                      \
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
