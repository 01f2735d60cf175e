/* gh_columns.c -- the copies of a CPU convolution's column route (graph.passes.conv_lower), on the CPU.
 *
 *   im2col:  data (N, C, *in) -> columns (C, *kernel, N, *out), straight from the unpadded data: a tap
 *            that lands in the padding writes a zero, so no padded copy of the data is made or cleared;
 *   col2im:  its adjoint, columns (C, *kernel, N, *out) summed into data (N, C, *in), zeros where no
 *            window reads;
 *   swap:    x seen as (A, B, rest) copied to (B, A, rest) (a product to batch-first layout and back).
 *
 * Each runs over gpuhybrid's thread pool (gh_threads.c: gh_part gives this thread its units), on units
 * that never write the same memory: im2col a row (c, tap) of the columns, col2im a (channel, sample)
 * plane of the data (its taps summed in the order (kd, kh, kw), the order of the NumPy fallback, so the
 * sums are the same bits), swap a run of `rest` elements of the result. Along the last axis the range of
 * outputs whose tap lands inside the data is worked out once per tap, so the inner loops have no bounds
 * test and, at stride 1, are plain copies or adds that vectorise.
 *
 * Geometries are 3-D: 1-D and 2-D ones have leading spatial extents of 1 (kernel 1, stride 1, pad 0).
 * Every job field is 8 bytes: Python packs the job as the kernel's scalars.
 */
#include <stddef.h>

typedef struct { long long begin, end; } gh_span;
gh_span gh_part(long long n, long long grain);

typedef struct {
  long long is_double, batch, channels;
  long long in[3], out[3], kernel[3], stride[3], dilate[3], pad[3];
} gh_columns_job;

typedef struct { long long first, second, rest, itemsize; } gh_swap_job;

/* Outputs [*lo, *hi) of an axis of `outs` positions whose tap at `offset` (tap * dilate - pad) reads
 * inside an axis of `size` elements at `stride`. */
static void inside(long long offset, long long stride, long long size, long long outs, long long* lo,
                   long long* hi) {
  long long first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  long long last = size - 1 - offset < 0 ? -1 : (size - 1 - offset) / stride;
  *lo = first < outs ? first : outs;
  *hi = last + 1 < outs ? last + 1 : outs;
  if (*hi < *lo) *hi = *lo;
}

#define GH_COLUMN_KERNELS(T, SUFFIX)                                                                       \
  /* One row (c, kd, kh, kw) of the columns: N * prod(out) values, each a tap's read or 0. */              \
  static void im2col_row_##SUFFIX(const gh_columns_job* j, T* columns, const T* data, long long row) {     \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    const long long c = row / taps, tap = row % taps;                                                      \
    const long long kd = tap / (j->kernel[1] * j->kernel[2]), kh = tap / j->kernel[2] % j->kernel[1];      \
    const long long kw = tap % j->kernel[2];                                                               \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long offset = kw * j->dilate[2] - j->pad[2], s = j->stride[2], width = j->out[2];           \
    long long lo, hi;                                                                                      \
    inside(offset, s, j->in[2], width, &lo, &hi);                                                          \
    T* target = columns + row * j->batch * out_size;                                                       \
    for (long long n = 0; n < j->batch; ++n) {                                                             \
      const T* x = data + (n * j->channels + c) * in_size;                                                 \
      for (long long od = 0; od < j->out[0]; ++od) {                                                       \
        const long long id = od * j->stride[0] + kd * j->dilate[0] - j->pad[0];                            \
        for (long long oh = 0; oh < j->out[1]; ++oh, target += width) {                                    \
          const long long ih = oh * j->stride[1] + kh * j->dilate[1] - j->pad[1];                          \
          if (id < 0 || id >= j->in[0] || ih < 0 || ih >= j->in[1]) {                                      \
            for (long long ow = 0; ow < width; ++ow) target[ow] = 0;                                       \
            continue;                                                                                      \
          }                                                                                                \
          const T* source = x + (id * j->in[1] + ih) * j->in[2] + offset;                                  \
          for (long long ow = 0; ow < lo; ++ow) target[ow] = 0;                                            \
          if (s == 1) {                                                                                    \
            for (long long ow = lo; ow < hi; ++ow) target[ow] = source[ow];                                \
          } else {                                                                                         \
            for (long long ow = lo; ow < hi; ++ow) target[ow] = source[ow * s];                            \
          }                                                                                                \
          for (long long ow = hi; ow < width; ++ow) target[ow] = 0;                                        \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }                                                                                                        \
                                                                                                           \
  /* One plane (sample n, channel c) of the data: the sum of what every tap's columns put there. */        \
  static void col2im_plane_##SUFFIX(const gh_columns_job* j, T* out, const T* columns, long long unit) {   \
    const long long c = unit / j->batch, n = unit % j->batch;                                              \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long s = j->stride[2], width = j->out[2];                                                   \
    T* plane = out + (n * j->channels + c) * in_size;                                                      \
    for (long long i = 0; i < in_size; ++i) plane[i] = 0;                                                  \
    for (long long tap = 0; tap < taps; ++tap) {                                                           \
      const long long kd = tap / (j->kernel[1] * j->kernel[2]), kh = tap / j->kernel[2] % j->kernel[1];    \
      const long long offset = (tap % j->kernel[2]) * j->dilate[2] - j->pad[2];                            \
      long long lo, hi;                                                                                    \
      inside(offset, s, j->in[2], width, &lo, &hi);                                                        \
      const T* source = columns + ((c * taps + tap) * j->batch + n) * out_size;                            \
      for (long long od = 0; od < j->out[0]; ++od) {                                                       \
        const long long id = od * j->stride[0] + kd * j->dilate[0] - j->pad[0];                            \
        if (id < 0 || id >= j->in[0]) continue;                                                            \
        for (long long oh = 0; oh < j->out[1]; ++oh) {                                                     \
          const long long ih = oh * j->stride[1] + kh * j->dilate[1] - j->pad[1];                          \
          if (ih < 0 || ih >= j->in[1]) continue;                                                          \
          const T* row = source + (od * j->out[1] + oh) * width;                                           \
          T* target = plane + (id * j->in[1] + ih) * j->in[2] + offset;                                    \
          if (s == 1) {                                                                                    \
            for (long long ow = lo; ow < hi; ++ow) target[ow] += row[ow];                                  \
          } else {                                                                                         \
            for (long long ow = lo; ow < hi; ++ow) target[ow * s] += row[ow];                              \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }

GH_COLUMN_KERNELS(float, float)
GH_COLUMN_KERNELS(double, double)

/* im2col over `rows` (C * prod(kernel)) units; arrays: columns, data. */
void gh_im2col_packed(long long rows, void* const* arrays, const unsigned char* scalars) {
  const gh_columns_job* job = (const gh_columns_job*)scalars;
  gh_span span = gh_part(rows, 1);
  for (long long row = span.begin; row < span.end; ++row) {
    if (job->is_double) im2col_row_double(job, (double*)arrays[0], (const double*)arrays[1], row);
    else im2col_row_float(job, (float*)arrays[0], (const float*)arrays[1], row);
  }
}

/* col2im over `planes` (C * N) units, channel-major (a thread's planes share rows of the columns);
 * arrays: data, columns. */
void gh_col2im_packed(long long planes, void* const* arrays, const unsigned char* scalars) {
  const gh_columns_job* job = (const gh_columns_job*)scalars;
  gh_span span = gh_part(planes, 1);
  for (long long unit = span.begin; unit < span.end; ++unit) {
    if (job->is_double) col2im_plane_double(job, (double*)arrays[0], (const double*)arrays[1], unit);
    else col2im_plane_float(job, (float*)arrays[0], (const float*)arrays[1], unit);
  }
}

#define GH_SWAP_RUNS(T)                                                                                    \
  for (long long unit = span.begin; unit < span.end; ++unit) {                                             \
    const long long b = unit / job->first, a = unit % job->first;                                          \
    T* target = (T*)arrays[0] + unit * rest;                                                               \
    const T* source = (const T*)arrays[1] + (a * job->second + b) * rest;                                  \
    for (long long i = 0; i < rest; ++i) target[i] = source[i];                                            \
  }

/* swap over `runs` (A * B) units, run (b, a) of the result being run (a, b) of x; arrays: result, x.
 * Elements (float32 or float64) are moved as integers of their size: the bits are kept. */
void gh_swap_packed(long long runs, void* const* arrays, const unsigned char* scalars) {
  const gh_swap_job* job = (const gh_swap_job*)scalars;
  const long long rest = job->rest;
  gh_span span = gh_part(runs, 1);
  if (job->itemsize == 8) {
    GH_SWAP_RUNS(unsigned long long)
  } else {
    GH_SWAP_RUNS(unsigned int)
  }
}

/* For ctypes callers: the sizes of the jobs, so that the Python mirrors of the structs can be checked. */
size_t gh_columns_job_size(void) { return sizeof(gh_columns_job); }
size_t gh_swap_job_size(void) { return sizeof(gh_swap_job); }
