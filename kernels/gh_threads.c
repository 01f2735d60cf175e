/* gh_threads.c -- the threads of generated CPU kernels: a small pool of our own, not OpenMP.
 *
 * Why not OpenMP: a process may already hold another OpenMP runtime (PyTorch loads its own libgomp),
 * whose settings (OMP_WAIT_POLICY, read once when it loads) then decide whether our kernels' threads
 * spin against the BLAS threads that run the GEMMs between kernels. This pool's policy is ours:
 *
 *   - a launch whose arrays hold fewer than gh_parallel_min elements runs on the calling thread;
 *   - a larger one is cut into chunks that the caller and the workers claim one at a time, so the
 *     caller finishes the work alone when a worker is slow to wake (another process on its core);
 *   - a worker looks for the next job for a few microseconds, then sleeps on a condition variable:
 *     idle workers never spin against BLAS or other processes;
 *   - when the caller waited for a worker longer than it worked itself (the worker lost its core to
 *     another process in the middle of a chunk), or was itself off its core for more than half the
 *     launch (waking a worker when every core is taken hands the caller's core away), the next launches
 *     run on the caller alone: 16 of them, twice as many after each such launch (at most 4096), halved
 *     after each launch that went well;
 *   - one job at a time: a launch from a second thread while one runs goes serially on its thread;
 *   - after fork the child has no workers: they are started again at its first parallel launch;
 *   - a launch from a thread that asked for it (gh_set_thread_flush(1): gpuhybrid's optimizer updates)
 *     runs with subnormal floats flushed to zero (x86 MXCSR FTZ and DAZ, AArch64 FPCR FZ), on the
 *     caller and on the workers that take its chunks; every launch does after gh_set_flush_denormals(1).
 *     A value below FLT_MIN costs ~100 cycles per operation, and Adam's moments of weights whose
 *     gradient is 0 (dead relu units) decay into that range within ~700 steps, which made the
 *     batch-one MLP step 4x slower (276 -> 1100 µs CPU). The caller's own mode is restored after.
 *
 * Kernels learn their part through gh_part(n, grain) (GH_FOR_EACH and GH_FOR_EACH_ROW call it): the
 * whole range [0, n) when called directly, one chunk when called from gh_parallel_run. The library is
 * loaded with RTLD_GLOBAL before any kernel library, which resolves gh_part against it.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

typedef void (*gh_packed_kernel)(long long n, void* const* arrays, const unsigned char* scalars);
typedef struct { long long begin, end; } gh_span;

#define GH_MAX_WORKERS 63
#define GH_WORKER_SPINS 4000        /* a worker's look for the next job before it sleeps (~10 µs) */
#define GH_CHUNKS_PER_THREAD 4      /* more chunks than threads: a late worker leaves its share to others */
#define GH_BACKOFF_FIRST 16         /* serial launches after a launch that waited on a descheduled worker */
#define GH_BACKOFF_MOST 4096

static __thread int current_chunk, current_chunks;

/* What the pool did, counted since the library loaded (gh_pool_counts; benchmarks read the difference):
 * parallel launches, launches run serially while backing off, and back-offs begun because the caller
 * waited on a worker or because the caller itself was off its core. */
enum { GH_COUNT_PARALLEL, GH_COUNT_BACKOFF_SERIAL, GH_COUNT_WAITED, GH_COUNT_OFF_CORE, GH_COUNTS };
static atomic_llong counts[GH_COUNTS];     /* 0 chunks: the caller runs the whole range */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  atomic_ullong ticket;         /* generation << 32 | next chunk to claim */
  atomic_int chunks, done, busy, threads;
  atomic_llong parallel_min;
  unsigned generation;
  int started, stop;
  int backoff, serial_left;     /* (with busy held) serial launches owed after a slow parallel one */
  int flush;                    /* the job's chunks run with subnormals flushed */
  gh_packed_kernel kernel;
  long long n;
  void* const* arrays;
  const unsigned char* scalars;
  pthread_t workers[GH_MAX_WORKERS];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 1, 32768};

static atomic_int flush_all = 0;       /* every launch flushes subnormals (gh_set_flush_denormals) */
static __thread int flush_here = 0;    /* this thread's launches flush them (gh_set_thread_flush) */

#if defined(__aarch64__)
static inline unsigned long long get_fpcr(void) {
  unsigned long long value;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(value));
  return value;
}

static inline void set_fpcr(unsigned long long value) { __asm__ __volatile__("msr fpcr, %0" : : "r"(value)); }
#endif

/* Flush subnormals to zero on this thread when `flush` (see the top); returns the mode to restore. */
static inline unsigned long long flush_begin(int flush) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned saved = _mm_getcsr();
  unsigned wanted = flush ? saved | 0x8040u : saved & ~0x8040u;
  if (wanted != saved) _mm_setcsr(wanted);       /* bit 15 FTZ: results; bit 6 DAZ: inputs */
  return saved;
#elif defined(__aarch64__)
  unsigned long long saved = get_fpcr();
  unsigned long long wanted = flush ? saved | (1ull << 24) : saved & ~(1ull << 24);
  if (wanted != saved) set_fpcr(wanted);
  return saved;
#else
  (void)flush;
  return 0;
#endif
}

static inline void flush_end(unsigned long long saved) {
#if defined(__x86_64__) || defined(__i386__)
  if (_mm_getcsr() != (unsigned)saved) _mm_setcsr((unsigned)saved);
#elif defined(__aarch64__)
  if (get_fpcr() != saved) set_fpcr(saved);
#else
  (void)saved;
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

gh_span gh_part(long long n, long long grain) {
  gh_span span = {0, n};
  if (current_chunks > 0) {
    long long units = (n + grain - 1) / grain;
    span.begin = units * current_chunk / current_chunks * grain;
    span.end = current_chunk + 1 == current_chunks ? n : units * (current_chunk + 1) / current_chunks * grain;
    if (span.begin > n) span.begin = n;
    if (span.end > n) span.end = n;
  }
  return span;
}

/* Claim and run chunks of job `generation` until none is left (or a newer job has begun). */
static void run_chunks(unsigned generation) {
  for (;;) {
    unsigned long long ticket = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    int chunk = (int)(ticket & 0xffffffffu);
    int chunks = atomic_load_explicit(&pool.chunks, memory_order_relaxed);
    if ((unsigned)(ticket >> 32) != generation || chunk >= chunks) return;
    if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &ticket, ticket + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue;
    current_chunk = chunk;
    current_chunks = chunks;
    pool.kernel(pool.n, pool.arrays, pool.scalars);
    current_chunks = 0;
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
  }
}

static void* worker_main(void* unused) {
  (void)unused;
  unsigned seen = (unsigned)(atomic_load_explicit(&pool.ticket, memory_order_acquire) >> 32);
  for (;;) {
    unsigned long long ticket = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    for (int spin = 0; (unsigned)(ticket >> 32) == seen && spin < GH_WORKER_SPINS; ++spin) {
      cpu_relax();
      ticket = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    }
    if ((unsigned)(ticket >> 32) == seen) {
      pthread_mutex_lock(&pool.lock);
      while ((unsigned)(atomic_load(&pool.ticket) >> 32) == seen && !pool.stop)
        pthread_cond_wait(&pool.wake, &pool.lock);
      int stop = pool.stop;
      pthread_mutex_unlock(&pool.lock);
      if (stop) return NULL;
      ticket = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    }
    seen = (unsigned)(ticket >> 32);
    unsigned long long mode = flush_begin(pool.flush);
    run_chunks(seen);
    flush_end(mode);
  }
}

/* Start the workers (threads - 1 of them) if they are not running; call with pool.busy held. */
static void start_workers(void) {
  int wanted = atomic_load(&pool.threads) - 1;
  if (wanted > GH_MAX_WORKERS) wanted = GH_MAX_WORKERS;
  pthread_mutex_lock(&pool.lock);
  pool.stop = 0;
  while (pool.started < wanted && pthread_create(&pool.workers[pool.started], NULL, worker_main, NULL) == 0)
    ++pool.started;
  pthread_mutex_unlock(&pool.lock);
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.lock);
  pool.stop = 1;
  pthread_cond_broadcast(&pool.wake);
  int started = pool.started;
  pthread_mutex_unlock(&pool.lock);
  for (int k = 0; k < started; ++k) pthread_join(pool.workers[k], NULL);
  pool.started = 0;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void acquire_pool(void) {
  while (atomic_exchange(&pool.busy, 1)) sched_yield();
}

/* Call `kernel` over [0, n): on this thread alone, or in chunks over the pool when `work` (elements
 * touched) reaches the parallel threshold and the pool is free. */
static void parallel_run(gh_packed_kernel kernel, long long n, void* const* arrays,
                         const unsigned char* scalars, long long work) {
  int threads = atomic_load_explicit(&pool.threads, memory_order_relaxed);
  long long minimum = atomic_load_explicit(&pool.parallel_min, memory_order_relaxed);
  if (threads <= 1 || work < minimum || n < 2 || current_chunks > 0 || atomic_exchange(&pool.busy, 1)) {
    kernel(n, arrays, scalars);
    return;
  }
  if (pool.serial_left > 0) {             /* backing off after a launch that waited on a worker */
    --pool.serial_left;
    atomic_fetch_add_explicit(&counts[GH_COUNT_BACKOFF_SERIAL], 1, memory_order_relaxed);
    kernel(n, arrays, scalars);
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return;
  }
  if (pool.started < threads - 1) start_workers();
  int chunks = threads * GH_CHUNKS_PER_THREAD;
  long long by_work = work / (minimum / GH_CHUNKS_PER_THREAD > 0 ? minimum / GH_CHUNKS_PER_THREAD : 1);
  if (chunks > by_work) chunks = (int)by_work;
  if (chunks > n) chunks = (int)n;
  if (chunks < 2) chunks = 2;
  pool.kernel = kernel;
  pool.flush = flush_all || flush_here;
  pool.n = n;
  pool.arrays = arrays;
  pool.scalars = scalars;
  atomic_store_explicit(&pool.chunks, chunks, memory_order_relaxed);
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  long long start = now_ns(), start_cpu = thread_cpu_ns();
  pthread_mutex_lock(&pool.lock);
  unsigned generation = ++pool.generation;
  atomic_store_explicit(&pool.ticket, (unsigned long long)generation << 32, memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  run_chunks(generation);
  long long own = now_ns();
  for (int spin = 0; atomic_load_explicit(&pool.done, memory_order_acquire) < chunks; ++spin) {
    if (spin < 1000) cpu_relax();
    else sched_yield();          /* a worker holds a chunk but not a core: give it ours */
  }
  long long end = now_ns(), off_core = (end - start) - (thread_cpu_ns() - start_cpu);
  /* Back off when the caller waited longer than it worked (+20 µs), or spent more than half the launch
   * off its core: waking a worker on a machine whose cores are all taken costs the caller its core. */
  atomic_fetch_add_explicit(&counts[GH_COUNT_PARALLEL], 1, memory_order_relaxed);
  int waited = end - own > own - start + 20000, away = 2 * off_core > end - start + 40000;
  if (waited) atomic_fetch_add_explicit(&counts[GH_COUNT_WAITED], 1, memory_order_relaxed);
  else if (away) atomic_fetch_add_explicit(&counts[GH_COUNT_OFF_CORE], 1, memory_order_relaxed);
  if (waited || away) {
    pool.backoff = pool.backoff ? (pool.backoff * 2 > GH_BACKOFF_MOST ? GH_BACKOFF_MOST : pool.backoff * 2)
                                : GH_BACKOFF_FIRST;
    pool.serial_left = pool.backoff;
  } else {
    pool.backoff /= 2;
  }
  atomic_store_explicit(&pool.busy, 0, memory_order_release);
}

/* parallel_run with subnormals flushed where asked (see the top), the caller's mode restored after. */
void gh_parallel_run(gh_packed_kernel kernel, long long n, void* const* arrays, const unsigned char* scalars,
                     long long work) {
  if (!flush_here && !atomic_load_explicit(&flush_all, memory_order_relaxed)) {
    parallel_run(kernel, n, arrays, scalars, work);
    return;
  }
  unsigned long long mode = flush_begin(1);
  parallel_run(kernel, n, arrays, scalars, work);
  flush_end(mode);
}

/* 1: every launch runs with subnormal floats flushed to zero; 0 (the default): only where asked. */
void gh_set_flush_denormals(int flush) { atomic_store(&flush_all, flush != 0); }

int gh_get_flush_denormals(void) { return atomic_load(&flush_all); }

/* 1: this thread's launches flush subnormals (optimizer updates); returns the previous setting. */
int gh_set_thread_flush(int flush) {
  int previous = flush_here;
  flush_here = flush != 0;
  return previous;
}

/* The number of threads kernels use (caller included); 1 runs every kernel on its calling thread. */
void gh_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > GH_MAX_WORKERS + 1) threads = GH_MAX_WORKERS + 1;
  acquire_pool();
  if (threads != atomic_load(&pool.threads)) {
    stop_workers();
    atomic_store(&pool.threads, threads);
  }
  pool.backoff = pool.serial_left = 0;
  atomic_store_explicit(&pool.busy, 0, memory_order_release);
}

int gh_get_threads(void) { return atomic_load(&pool.threads); }

/* Launches touching fewer elements than this run on the calling thread. */
void gh_set_parallel_min(long long elements) {
  atomic_store(&pool.parallel_min, elements < 1 ? 1 : elements);
}

long long gh_get_parallel_min(void) { return atomic_load(&pool.parallel_min); }

int gh_started_workers(void) { return pool.started; }

/* The pool's counts (GH_COUNT_*) into `out`, which holds GH_COUNTS values; returns GH_COUNTS. */
int gh_pool_counts(long long* out) {
  for (int k = 0; k < GH_COUNTS; ++k) out[k] = atomic_load_explicit(&counts[k], memory_order_relaxed);
  return GH_COUNTS;
}

/* Serial launches still owed after a slow parallel one (tests and benchmarks read it). */
int gh_serial_left(void) { return pool.serial_left; }

/* In a forked child the workers are gone (only the forking thread survives): forget them. */
static void forget_workers_in_child(void) {
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
  pool.lock = lock;
  pool.wake = wake;
  pool.started = 0;
  pool.stop = 0;
  pool.backoff = pool.serial_left = 0;
  atomic_store(&pool.busy, 0);
}

__attribute__((constructor)) static void install_fork_handler(void) {
  pthread_atfork(NULL, NULL, forget_workers_in_child);
}
