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
#include <string.h>

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

/* Per spatial axis of a tap: the offset it reads at (tap * dilate - pad) and the outputs [lo, hi) whose
 * read lands inside the data; a tap with an empty range on any axis reads only padding. */
static int tap_ranges(const gh_columns_job* j, long long tap, long long offset[3], long long lo[3],
                      long long hi[3]) {
  const long long k[3] = {tap / (j->kernel[1] * j->kernel[2]), tap / j->kernel[2] % j->kernel[1],
                          tap % j->kernel[2]};
  int empty = 0;
  for (int a = 0; a < 3; ++a) {
    offset[a] = k[a] * j->dilate[a] - j->pad[a];
    inside(offset[a], j->stride[a], j->in[a], j->out[a], &lo[a], &hi[a]);
    empty |= lo[a] == hi[a];
  }
  return !empty;
}

/* Rows of outputs up to which a row's bookkeeping costs more than its work (measured on this project's
 * machine): then the samples go innermost, in im2col from width 8 and in col2im (a strided
 * read-modify-write) from width 2. */
#define GH_NARROW 8
#define GH_NARROW_SUMS 2

#define GH_COLUMN_KERNELS(T, SUFFIX)                                                                       \
  /* One row (c, tap) of the columns: N * prod(out) values, each a tap's read or 0 (whole runs of zeros   \
   * are cleared with memset, so a tap's cost is its reads plus a few calls per sample). */                \
  static void im2col_row_##SUFFIX(const gh_columns_job* j, T* columns, const T* data, long long row) {     \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    const long long c = row / taps, tap = row % taps;                                                      \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long width = j->out[2], plane = j->out[1] * width, s = j->stride[2];                        \
    long long offset[3], lo[3], hi[3];                                                                     \
    T* target = columns + row * j->batch * out_size;                                                       \
    if (!tap_ranges(j, tap, offset, lo, hi)) {                                                             \
      memset(target, 0, sizeof(T) * (size_t)(j->batch * out_size));                                       \
      return;                                                                                              \
    }                                                                                                      \
    if (width <= GH_NARROW) {     /* short rows: the samples innermost, one loop per output position */    \
      const long long sample_stride = j->channels * in_size;                                               \
      const T* x = data + c * in_size;                                                                     \
      for (long long od = 0, at = 0; od < j->out[0]; ++od)                                                 \
        for (long long oh = 0; oh < j->out[1]; ++oh)                                                       \
          for (long long ow = 0; ow < width; ++ow, ++at) {                                                 \
            T* out = target + at;                                                                          \
            if (od < lo[0] || od >= hi[0] || oh < lo[1] || oh >= hi[1] || ow < lo[2] || ow >= hi[2]) {     \
              for (long long n = 0; n < j->batch; ++n) out[n * out_size] = 0;                              \
              continue;                                                                                    \
            }                                                                                              \
            const T* source = x + ((od * j->stride[0] + offset[0]) * j->in[1] + oh * j->stride[1] +        \
                                   offset[1]) * j->in[2] + ow * s + offset[2];                             \
            for (long long n = 0; n < j->batch; ++n) out[n * out_size] = source[n * sample_stride];        \
          }                                                                                                \
      return;                                                                                              \
    }                                                                                                      \
    for (long long n = 0; n < j->batch; ++n, target += out_size) {                                         \
      const T* x = data + (n * j->channels + c) * in_size + offset[2];                                     \
      if (lo[0] > 0) memset(target, 0, sizeof(T) * (size_t)(lo[0] * plane));                               \
      if (hi[0] < j->out[0])                                                                               \
        memset(target + hi[0] * plane, 0, sizeof(T) * (size_t)((j->out[0] - hi[0]) * plane));              \
      for (long long od = lo[0]; od < hi[0]; ++od) {                                                       \
        T* rows = target + od * plane;                                                                     \
        const T* depth = x + (od * j->stride[0] + offset[0]) * j->in[1] * j->in[2];                        \
        if (lo[1] > 0) memset(rows, 0, sizeof(T) * (size_t)(lo[1] * width));                               \
        if (hi[1] < j->out[1])                                                                             \
          memset(rows + hi[1] * width, 0, sizeof(T) * (size_t)((j->out[1] - hi[1]) * width));              \
        for (long long oh = lo[1]; oh < hi[1]; ++oh) {                                                     \
          T* out = rows + oh * width;                                                                      \
          const T* source = depth + (oh * j->stride[1] + offset[1]) * j->in[2];                            \
          for (long long ow = 0; ow < lo[2]; ++ow) out[ow] = 0;                                            \
          if (s == 1) {                                                                                    \
            for (long long ow = lo[2]; ow < hi[2]; ++ow) out[ow] = source[ow];                             \
          } else {                                                                                         \
            for (long long ow = lo[2]; ow < hi[2]; ++ow) out[ow] = source[ow * s];                         \
          }                                                                                                \
          for (long long ow = hi[2]; ow < width; ++ow) out[ow] = 0;                                        \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }                                                                                                        \
                                                                                                           \
  /* One plane (sample n, channel c) of the data: the sum of what every tap's columns put there, the taps  \
   * in order (the NumPy fallback's order: the same sums). */                                              \
  static void col2im_plane_##SUFFIX(const gh_columns_job* j, T* out, const T* columns, long long unit) {   \
    const long long c = unit / j->batch, n = unit % j->batch;                                              \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long width = j->out[2], s = j->stride[2];                                                   \
    T* plane = out + (n * j->channels + c) * in_size;                                                      \
    memset(plane, 0, sizeof(T) * (size_t)in_size);                                                        \
    for (long long tap = 0; tap < taps; ++tap) {                                                           \
      long long offset[3], lo[3], hi[3];                                                                   \
      if (!tap_ranges(j, tap, offset, lo, hi)) continue;                                                   \
      const T* source = columns + ((c * taps + tap) * j->batch + n) * out_size;                            \
      for (long long od = lo[0]; od < hi[0]; ++od) {                                                       \
        T* depth = plane + (od * j->stride[0] + offset[0]) * j->in[1] * j->in[2] + offset[2];              \
        for (long long oh = lo[1]; oh < hi[1]; ++oh) {                                                     \
          const T* row = source + (od * j->out[1] + oh) * width;                                           \
          T* target = depth + (oh * j->stride[1] + offset[1]) * j->in[2];                                  \
          if (s == 1) {                                                                                    \
            for (long long ow = lo[2]; ow < hi[2]; ++ow) target[ow] += row[ow];                            \
          } else {                                                                                         \
            for (long long ow = lo[2]; ow < hi[2]; ++ow) target[ow * s] += row[ow];                        \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }

#define GH_COL2IM_CHANNEL(T, SUFFIX)                                                                       \
  /* Short rows: one channel over every sample, the samples innermost (the taps still in order). */        \
  static void col2im_channel_##SUFFIX(const gh_columns_job* j, T* out, const T* columns, long long c) {    \
    const long long taps = j->kernel[0] * j->kernel[1] * j->kernel[2];                                     \
    const long long in_size = j->in[0] * j->in[1] * j->in[2], out_size = j->out[0] * j->out[1] * j->out[2]; \
    const long long sample_stride = j->channels * in_size, width = j->out[2];                              \
    T* planes = out + c * in_size;                                                                         \
    for (long long n = 0; n < j->batch; ++n)                                                               \
      memset(planes + n * sample_stride, 0, sizeof(T) * (size_t)in_size);                                  \
    for (long long tap = 0; tap < taps; ++tap) {                                                           \
      long long offset[3], lo[3], hi[3];                                                                   \
      if (!tap_ranges(j, tap, offset, lo, hi)) continue;                                                   \
      const T* source = columns + (c * taps + tap) * j->batch * out_size;                                  \
      for (long long od = lo[0]; od < hi[0]; ++od)                                                         \
        for (long long oh = lo[1]; oh < hi[1]; ++oh)                                                       \
          for (long long ow = lo[2]; ow < hi[2]; ++ow) {                                                   \
            const T* from = source + (od * j->out[1] + oh) * width + ow;                                   \
            T* to = planes + ((od * j->stride[0] + offset[0]) * j->in[1] + oh * j->stride[1] + offset[1]) * \
                                 j->in[2] + ow * j->stride[2] + offset[2];                                 \
            for (long long n = 0; n < j->batch; ++n) to[n * sample_stride] += from[n * out_size];          \
          }                                                                                                \
    }                                                                                                      \
  }

GH_COLUMN_KERNELS(float, float)
GH_COLUMN_KERNELS(double, double)
GH_COL2IM_CHANNEL(float, float)
GH_COL2IM_CHANNEL(double, double)

/* im2col over `rows` (C * prod(kernel)) units; arrays: columns, data. */
void gh_im2col_packed(long long rows, void* const* arrays, const unsigned char* scalars) {
  const gh_columns_job* job = (const gh_columns_job*)scalars;
  gh_span span = gh_part(rows, 1);
  for (long long row = span.begin; row < span.end; ++row) {
    if (job->is_double) im2col_row_double(job, (double*)arrays[0], (const double*)arrays[1], row);
    else im2col_row_float(job, (float*)arrays[0], (const float*)arrays[1], row);
  }
}

/* col2im over `planes` (C * N) units, channel-major (a thread's planes share rows of the columns), or,
 * for rows of at most GH_NARROW_SUMS outputs, over the C channels; arrays: data, columns. */
void gh_col2im_packed(long long planes, void* const* arrays, const unsigned char* scalars) {
  const gh_columns_job* job = (const gh_columns_job*)scalars;
  const int narrow = job->out[2] <= GH_NARROW_SUMS;
  gh_span span = gh_part(narrow ? job->channels : planes, 1);
  for (long long unit = span.begin; unit < span.end; ++unit) {
    if (job->is_double) {
      if (narrow) col2im_channel_double(job, (double*)arrays[0], (const double*)arrays[1], unit);
      else col2im_plane_double(job, (double*)arrays[0], (const double*)arrays[1], unit);
    } else {
      if (narrow) col2im_channel_float(job, (float*)arrays[0], (const float*)arrays[1], unit);
      else col2im_plane_float(job, (float*)arrays[0], (const float*)arrays[1], unit);
    }
  }
}

/* Runs in the result's order; (b, a) advanced by counting, not by a division per run (runs of one
 * element: a 2-D transpose, where two divisions per element cost more than the copy). */
#define GH_SWAP_RUNS(T)                                                                                    \
  {                                                                                                        \
    long long b = span.begin / job->first, a = span.begin % job->first;                                    \
    T* target = (T*)arrays[0] + span.begin * rest;                                                         \
    for (long long unit = span.begin; unit < span.end; ++unit, target += rest) {                           \
      const T* source = (const T*)arrays[1] + (a * job->second + b) * rest;                                \
      for (long long i = 0; i < rest; ++i) target[i] = source[i];                                          \
      if (++a == job->first) a = 0, ++b;                                                                   \
    }                                                                                                      \
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
