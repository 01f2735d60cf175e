/* gh_gemm.c -- matrix products over gpuhybrid's thread pool, each block one single-threaded BLAS call.
 *
 * A threaded BLAS (OpenBLAS's, MKL's) splits a GEMM into one share per thread and waits for all of them:
 * when another process keeps one core busy, the thread on that core finishes late and every GEMM waits
 * for it (measured: 7x slower). Here the output is cut into blocks of rows (or of columns, when that
 * repeats less packing of the other operand; the caller decides) that the caller and the pool's workers
 * claim one at a time (gh_parallel_run in gh_threads.c), so a slow worker delays only its own block
 * and the caller does the rest. Each block is one call of a sequential BLAS: MKL loaded with its
 * sequential layer (or, when the process already held MKL, held to one thread on the calling thread
 * while the block runs: job->set_local), or a private single-threaded instance of NumPy's OpenBLAS,
 * which leaves what the user's own numpy.dot does as it was (gpuhybrid/backend/gemm.py).
 *
 * The job names the BLAS function (cblas_sgemm or cblas_dgemm of the chosen library, with 32-bit or
 * 64-bit integers) and a batch of row-major products C[i] = alpha * op(A[i]) op(B[i]) + beta * C[i],
 * i < batch, with element strides between the matrices of a batch (0: the same matrix for every i).
 * gh_gemm_packed is a packed kernel like the generated ones (arrays: C, A, B; scalars: the job), so it
 * is launched the same way (the launcher extension or ctypes, through gh_parallel_run) over `units`:
 * (product, block) pairs, product-major. This library is loaded after gh_threads.c's (RTLD_GLOBAL), whose
 * gh_part it calls.
 */
#include <stddef.h>

typedef struct { long long begin, end; } gh_span;
typedef void (*gh_packed_kernel)(long long n, void* const* arrays, const unsigned char* scalars);
gh_span gh_part(long long n, long long grain);

enum { GH_ROW_MAJOR = 101, GH_NO_TRANS = 111, GH_TRANS = 112 };
enum {
  GH_GEMM_DOUBLE = 1, GH_GEMM_ILP64 = 2, GH_GEMM_TRANS_A = 4, GH_GEMM_TRANS_B = 8, GH_GEMM_SPLIT_COLUMNS = 16
};

typedef void (*sgemm_lp64)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                           float*, int);
typedef void (*sgemm_ilp64)(int, int, int, long long, long long, long long, float, const float*, long long,
                            const float*, long long, float, float*, long long);
typedef void (*dgemm_lp64)(int, int, int, int, int, int, double, const double*, int, const double*, int,
                           double, double*, int);
typedef void (*dgemm_ilp64)(int, int, int, long long, long long, long long, double, const double*, long long,
                            const double*, long long, double, double*, long long);
typedef int (*set_local_threads)(int);

typedef struct {                /* every field 8 bytes: Python packs it as the kernel's scalars */
  void* gemm;                   /* the BLAS's cblas_sgemm or cblas_dgemm (as flags say) */
  set_local_threads set_local;  /* holds the BLAS to one thread on this thread while a block runs; or NULL */
  long long flags;              /* GH_GEMM_* */
  long long m, n, k, lda, ldb, ldc;
  long long batch, stride_a, stride_b, stride_c;     /* elements between the matrices of a batch */
  long long block;              /* rows (or columns) per unit a thread claims */
  double alpha, beta;
} gh_gemm_job;

/* One BLAS call: rows [r0, r1) of C (columns, with GH_GEMM_SPLIT_COLUMNS) of the product number `item`. */
static void gemm_block(const gh_gemm_job* job, void* const* arrays, long long item, long long r0,
                       long long r1) {
  const int flags = (int)job->flags;
  const long long size = flags & GH_GEMM_DOUBLE ? 8 : 4;
  const int trans_a = (flags & GH_GEMM_TRANS_A) != 0, trans_b = (flags & GH_GEMM_TRANS_B) != 0;
  char* c = (char*)arrays[0] + item * job->stride_c * size;
  const char* a = (const char*)arrays[1] + item * job->stride_a * size;
  const char* b = (const char*)arrays[2] + item * job->stride_b * size;
  long long m = job->m, n = job->n;
  if (flags & GH_GEMM_SPLIT_COLUMNS) {          /* columns r0..r1 of op(B) and of C */
    b += (trans_b ? r0 * job->ldb : r0) * size;
    c += r0 * size;
    n = r1 - r0;
  } else {                                      /* rows r0..r1 of op(A) and of C */
    a += (trans_a ? r0 : r0 * job->lda) * size;
    c += r0 * job->ldc * size;
    m = r1 - r0;
  }
  const int ta = trans_a ? GH_TRANS : GH_NO_TRANS, tb = trans_b ? GH_TRANS : GH_NO_TRANS;
  switch (flags & (GH_GEMM_DOUBLE | GH_GEMM_ILP64)) {
    case 0:
      ((sgemm_lp64)job->gemm)(GH_ROW_MAJOR, ta, tb, (int)m, (int)n, (int)job->k, (float)job->alpha,
                              (const float*)a, (int)job->lda, (const float*)b, (int)job->ldb,
                              (float)job->beta, (float*)c, (int)job->ldc);
      break;
    case GH_GEMM_ILP64:
      ((sgemm_ilp64)job->gemm)(GH_ROW_MAJOR, ta, tb, m, n, job->k, (float)job->alpha, (const float*)a,
                               job->lda, (const float*)b, job->ldb, (float)job->beta, (float*)c, job->ldc);
      break;
    case GH_GEMM_DOUBLE:
      ((dgemm_lp64)job->gemm)(GH_ROW_MAJOR, ta, tb, (int)m, (int)n, (int)job->k, job->alpha, (const double*)a,
                              (int)job->lda, (const double*)b, (int)job->ldb, job->beta, (double*)c,
                              (int)job->ldc);
      break;
    default:
      ((dgemm_ilp64)job->gemm)(GH_ROW_MAJOR, ta, tb, m, n, job->k, job->alpha, (const double*)a, job->lda,
                               (const double*)b, job->ldb, job->beta, (double*)c, job->ldc);
  }
}

/* The packed kernel (arrays: C, A, B; scalars: the job): a chunk's units within one product become one
 * BLAS call. Called directly it computes every unit. */
void gh_gemm_packed(long long units, void* const* arrays, const unsigned char* scalars) {
  const gh_gemm_job* job = (const gh_gemm_job*)scalars;
  const long long extent = job->flags & GH_GEMM_SPLIT_COLUMNS ? job->n : job->m;
  const long long blocks = (extent + job->block - 1) / job->block;
  gh_span span = gh_part(units, 1);
  if (span.begin >= span.end || blocks <= 0) return;
  int previous = job->set_local ? job->set_local(1) : 0;
  for (long long item = span.begin / blocks; item * blocks < span.end; ++item) {
    long long first = span.begin > item * blocks ? span.begin - item * blocks : 0;
    long long last = span.end < (item + 1) * blocks ? span.end - item * blocks : blocks;
    long long r1 = last * job->block < extent ? last * job->block : extent;
    gemm_block(job, arrays, item, first * job->block, r1);
  }
  if (job->set_local) job->set_local(previous);
}

/* For ctypes callers: the size of the job, so that the Python mirror of the struct can be checked. */
size_t gh_gemm_job_size(void) { return sizeof(gh_gemm_job); }
