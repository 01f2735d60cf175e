/* gh_norm.c -- BatchNorm on the batch's statistics (training) on the CPU, one channel per unit.
 *
 * NumPy took five passes over the data for it, each its own temporary, on one thread: the mean over all
 * axes but the channel's, the squared deviations, their mean, and the normalisation (a subtraction, a
 * product, a sum). Measured in ResNet-18's training step at batch 16: 8.7 ms of its 141 (one thread). Here
 * each channel (a unit of gh_parallel_run in gh_threads.c) reads its values three times while they are
 * in cache: their sum, the sum of squared deviations from the mean (two passes: accurate when the mean is
 * large against the spread, unlike E[x^2] - E[x]^2), then the normalisation
 * y = (x - mean) * (gamma / sqrt(var + eps)) + beta (fix_gamma: (x - mean) / sqrt(var + eps) + beta),
 * computed in the data's type as ops/norm.py's NumPy formula computes it (the library is built without
 * contraction into fused multiply-adds, so y is NumPy's given the same statistics). The sums are carried
 * in double, eight at a time, so the statistics are at least as accurate as NumPy's pairwise float sums.
 *
 * The data is seen as (outer, channels, inner): the axes before the channel axis, the channel axis and the
 * axes after it, C-contiguous. Arrays: y (like the data), mean (channels), var (channels) -- the batch's
 * biased variance --, data, gamma, beta (channels).
 *
 * The same sums serve the reductions over every axis but the channel's that BatchNorm's gradient takes
 * (mode GH_NORM_CHANNEL_SUM / _MEAN; arrays: out (channels), data): the sums of the gradient and of the
 * gradient times the normalised data, the mean and variance again -- NumPy's reductions over those axes
 * took 6.7 ms of ResNet-18's training step at batch 16 on one thread.
 */
#include <math.h>
#include <stddef.h>

typedef struct { long long begin, end; } gh_span;
gh_span gh_part(long long n, long long grain);

enum { GH_NORM_BATCH = 0, GH_NORM_CHANNEL_SUM = 1, GH_NORM_CHANNEL_MEAN = 2 };

typedef struct {                /* every field 8 bytes: Python packs it as the kernel's scalars */
  long long is_double, mode, outer, channels, inner, fix_gamma;
  double eps;
} gh_norm_job;

#define GH_NORM_KERNELS(T, SUFFIX, SQRT)                                                                   \
  /* The sum of one channel's values, eight partial sums in double (independent additions). */            \
  static double channel_sum_##SUFFIX(const gh_norm_job* j, const T* x, long long c) {                      \
    const long long inner = j->inner, stride = j->channels * inner;                                        \
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                             \
    for (long long o = 0; o < j->outer; ++o) {                                                             \
      const T* row = x + o * stride + c * inner;                                                           \
      long long i = 0;                                                                                     \
      for (; i + 8 <= inner; i += 8)                                                                       \
        for (int k = 0; k < 8; ++k) part[k] += row[i + k];                                                 \
      for (; i < inner; ++i) part[i & 7] += row[i];                                                        \
    }                                                                                                      \
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));      \
  }                                                                                                        \
                                                                                                           \
  /* A reduction over every axis but the channel's: out[c] = the sum (or the mean) of channel c. */      \
  static void reduce_##SUFFIX(const gh_norm_job* j, long long c, void* const* arrays) {                    \
    const double sum = channel_sum_##SUFFIX(j, (const T*)arrays[1], c);                                    \
    ((T*)arrays[0])[c] = (T)(j->mode == GH_NORM_CHANNEL_MEAN ? sum / (double)(j->outer * j->inner) : sum);  \
  }                                                                                                        \
                                                                                                           \
  /* BatchNorm on channel c: its mean, biased variance and normalisation (arrays as at the top). */       \
  static void channel_##SUFFIX(const gh_norm_job* j, long long c, void* const* arrays) {                   \
    T* y = (T*)arrays[0];                                                                                  \
    T* mean_out = (T*)arrays[1];                                                                           \
    T* var_out = (T*)arrays[2];                                                                            \
    const T* x = (const T*)arrays[3];                                                                      \
    const T* gamma = (const T*)arrays[4];                                                                  \
    const T* beta = (const T*)arrays[5];                                                                   \
    const long long inner = j->inner, stride = j->channels * inner;                                        \
    const double count = (double)(j->outer * inner);                                                       \
    const T mean = (T)(channel_sum_##SUFFIX(j, x, c) / count);                                             \
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                             \
    for (long long o = 0; o < j->outer; ++o) {                                                             \
      const T* row = x + o * stride + c * inner;                                                           \
      long long i = 0;                                                                                     \
      for (; i + 8 <= inner; i += 8)                                                                       \
        for (int k = 0; k < 8; ++k) {                                                                      \
          const T d = row[i + k] - mean;                                                                   \
          part[k] += d * d;                                                                                \
        }                                                                                                  \
      for (; i < inner; ++i) {                                                                             \
        const T d = row[i] - mean;                                                                         \
        part[i & 7] += d * d;                                                                              \
      }                                                                                                    \
    }                                                                                                      \
    const T var = (T)((((part[0] + part[1]) + (part[2] + part[3])) +                                       \
                       ((part[4] + part[5]) + (part[6] + part[7]))) / count);                              \
    mean_out[c] = mean;                                                                                    \
    var_out[c] = var;                                                                                      \
    const T deviation = SQRT(var + (T)j->eps), shift = beta[c];                                            \
    if (j->fix_gamma) {                                                                                    \
      for (long long o = 0; o < j->outer; ++o) {                                                           \
        const T* row = x + o * stride + c * inner;                                                         \
        T* out = y + o * stride + c * inner;                                                               \
        for (long long i = 0; i < inner; ++i) out[i] = (row[i] - mean) / deviation + shift;                \
      }                                                                                                    \
    } else {                                                                                               \
      const T scale = gamma[c] / deviation;                                                                \
      for (long long o = 0; o < j->outer; ++o) {                                                           \
        const T* row = x + o * stride + c * inner;                                                         \
        T* out = y + o * stride + c * inner;                                                               \
        for (long long i = 0; i < inner; ++i) out[i] = (row[i] - mean) * scale + shift;                    \
      }                                                                                                    \
    }                                                                                                      \
  }

GH_NORM_KERNELS(float, f32, sqrtf)
GH_NORM_KERNELS(double, f64, sqrt)

/* The packed kernel (arrays as above; scalars: the job), over the channels. */
void gh_norm_packed(long long channels, void* const* arrays, const unsigned char* scalars) {
  const gh_norm_job* job = (const gh_norm_job*)scalars;
  gh_span span = gh_part(channels, 1);
  for (long long c = span.begin; c < span.end; ++c) {
    if (job->mode != GH_NORM_BATCH)
      job->is_double ? reduce_f64(job, c, arrays) : reduce_f32(job, c, arrays);
    else
      job->is_double ? channel_f64(job, c, arrays) : channel_f32(job, c, arrays);
  }
}

/* For ctypes callers: the size of the job, so that the Python mirror of the struct can be checked. */
size_t gh_norm_job_size(void) { return sizeof(gh_norm_job); }
