// gh_emu_runtime.cpp -- the runtime behind gh_emu.h: a fiber per CUDA thread, a scheduler per block,
// and, for kernels compiled in check mode (-fsanitize=thread,alignment,bounds,...), our own handlers
// for those instrumentation hooks (no libtsan/libubsan is linked):
//
//   racecheck   hazards on __shared__ and on registered global buffers between two threads with no
//               barrier between them (CUDA's rules: threads of other blocks are never ordered)
//   initcheck   reads of __shared__ bytes no thread of the block wrote, and of output bytes the launch
//               has not written yet
//   memcheck    accesses in a buffer's redzones, outside every buffer, misaligned (the GPU faults)
//   synccheck   a __syncthreads that not every thread of the block reaches, threads that meet at
//               different ones, shuffles whose lanes never arrive or read a lane that takes no part
//
// Compiled without instrumentation and linked into each kernel library. Fibers switch only at
// barriers and shuffles: other interleavings are covered by the shadow checker, not by running them.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace gh_emu {
struct dim3_value { unsigned int x, y, z; };

enum FiberState { RUNNABLE, AT_BARRIER, AT_SHUFFLE, EXITED };
enum Order { IN_ORDER = 0, REVERSED = 1, RANDOM = 2 };
enum ShuffleKind { SHUFFLE_XOR = 0, SHUFFLE_IDX = 1, SHUFFLE_UP = 2, SHUFFLE_DOWN = 3 };

struct Fiber {
  ucontext_t context;
  char* stack = nullptr;
  unsigned tid = 0;
  FiberState state = RUNNABLE;
  const char* file = "";
  int line = 0;
  unsigned mask = 0, size = 0;        // the shuffle this fiber waits in
  int arg = 0, width = 32, kind = 0;
  unsigned char value[16], result[16];
};

struct Cell {                 // the shadow of one byte
  uint32_t writer, write_epoch;   // last writer (global thread id + 1; 0: none) and its barrier epoch
  uint32_t reader, read_epoch;    // a reader since that write
  uint32_t write_pc, read_pc;     // code offsets in this library
  uint8_t many_readers, written;
};

struct Region {
  uintptr_t base, size, redzone;
  std::string name;
  bool shared, output;
  std::vector<Cell> shadow;       // empty: bounds checks only (large buffers)
};

static const size_t STACK_BYTES = 128 * 1024;
static const size_t SHADOW_LIMIT = 1 << 22;   // buffers above 4 MiB get bounds checks only

struct Launch {
  unsigned grid = 0, block = 0, current_block = 0;
  unsigned first_block = 0, end_block = ~0u;  // run only these blocks (blocks are independent)
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  ucontext_t scheduler;
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  uint32_t epoch = 0;
  int order = IN_ORDER;
  std::mt19937 rng;
  bool active = false, aborted = false;
};

static Launch L;
static std::vector<Region> regions;
static std::string report_text;
static std::map<std::string, int> seen_reports;
static long problems = 0;
static uintptr_t library_base = 0, tls_base = 0, tls_size = 0;
static unsigned long stat_blocks = 0, stat_switches = 0, stat_barriers = 0, stat_shuffles = 0;
static unsigned long stat_accesses = 0;

static std::string format(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string format(const char* f, ...) {
  char buffer[2048];
  va_list args;
  va_start(args, f);
  vsnprintf(buffer, sizeof buffer, f, args);
  va_end(args);
  return buffer;
}

// Every problem counts; each distinct one (its key) is described once.
static void report(const std::string& key, const std::string& text) {
  ++problems;
  if (seen_reports[key]++ == 0) report_text += text + "\n";
}

static std::string thread_name(uint32_t global_id) {   // global thread id + 1
  if (!global_id) return "(none)";
  return format("(block %u, thread %u)", (global_id - 1) / L.block, (global_id - 1) % L.block);
}
static std::string pc_name(uint32_t pc) { return format("@pc+0x%x", pc); }
static uint32_t current_id() { return L.current ? L.current_block * L.block + L.current->tid + 1 : 0; }

dim3_value thread_index() { return {L.current ? L.current->tid : 0u, 0u, 0u}; }
dim3_value block_index() { return {L.current_block, 0u, 0u}; }
dim3_value block_size() { return {L.block, 1u, 1u}; }
dim3_value grid_size() { return {L.grid, 1u, 1u}; }

void unknown_ptx(const char* op) {
  report(format("ptx %s", op), format("PTX: the emulator does not know the instruction '%s'", op));
}

static void to_scheduler() { swapcontext(&L.current->context, &L.scheduler); }

void sync_threads(const char* file, int line) {
  Fiber* f = L.current;
  f->state = AT_BARRIER;
  f->file = file;
  f->line = line;
  to_scheduler();
}

void shuffle(unsigned mask, const void* in, void* out, unsigned size, int arg, int width, int kind,
             const char* file, int line) {
  Fiber* f = L.current;
  f->state = AT_SHUFFLE;
  f->mask = mask;
  f->size = size;
  f->arg = arg;
  f->width = width;
  f->kind = kind;
  f->file = file;
  f->line = line;
  memcpy(f->value, in, size);
  to_scheduler();
  memcpy(out, f->result, size);
}

static void fiber_main() {
  L.body(L.arg);
  L.current->state = EXITED;      // uc_link returns to the scheduler
}

static const char* state_name(FiberState s) {
  return s == RUNNABLE     ? "running"
         : s == AT_BARRIER ? "at __syncthreads"
         : s == AT_SHUFFLE ? "at a shuffle"
                           : "exited";
}

// The lane `lane` reads from, by CUDA's rules for each shuffle kind (within segments of `width` lanes).
static int source_lane(const Fiber& f, int lane) {
  int segment = lane & ~(f.width - 1);
  switch (f.kind) {
    case SHUFFLE_XOR: { int s = lane ^ f.arg; return s < segment + f.width ? s : lane; }
    case SHUFFLE_IDX: return segment + (f.arg & (f.width - 1));
    case SHUFFLE_UP: { int s = lane - f.arg; return s < segment ? lane : s; }
    default: { int s = lane + f.arg; return s >= segment + f.width ? lane : s; }
  }
}

// Completes the shuffles of warp `w` whose lanes have all arrived; with `stuck` (nothing else can
// run), completes the rest anyway and reports the lanes that never came. Returns whether any completed.
static bool complete_shuffles(unsigned w, bool stuck) {
  unsigned first = w * 32, end = std::min(L.block, first + 32);
  std::map<unsigned, std::vector<Fiber*>> by_mask;
  for (unsigned t = first; t < end; ++t)
    if (L.fibers[t].state == AT_SHUFFLE) by_mask[L.fibers[t].mask].push_back(&L.fibers[t]);
  bool done = false;
  for (auto& [mask, lanes] : by_mask) {
    Fiber& a = *lanes[0];
    std::string site = format("%s:%d", a.file, a.line);
    bool all_here = true;
    std::string missing;
    for (unsigned lane = 0; lane < 32; ++lane) {
      if (!(mask >> lane & 1)) continue;
      if (first + lane >= L.block) {
        report("shuffle-beyond " + site,
               format("SYNCCHECK: shuffle at %s (block %u, warp %u): mask 0x%08x names lane %u, beyond "
                      "blockDim.x = %u", site.c_str(), L.current_block, w, mask, lane, L.block));
        continue;
      }
      const Fiber& g = L.fibers[first + lane];
      if (g.state != AT_SHUFFLE || g.mask != mask) {
        all_here = false;
        missing += format(" %u (%s)", lane, state_name(g.state));
      }
    }
    if (!all_here && !stuck) continue;
    if (!all_here)
      report("shuffle-divergent " + site,
             format("SYNCCHECK: shuffle at %s (block %u, warp %u), mask 0x%08x: lanes never arrive:%s",
                    site.c_str(), L.current_block, w, mask, missing.c_str()));
    for (Fiber* f : lanes) {
      if (strcmp(f->file, a.file) || f->line != a.line || f->kind != a.kind)
        report("shuffle-sites " + site,
               format("SYNCCHECK: warp %u: lanes of mask 0x%08x meet at different shuffles (%s and %s:%d)", w,
                      mask, site.c_str(), f->file, f->line));
      if (!(mask >> (f->tid - first) & 1))
        report("shuffle-self " + site,
               format("SYNCCHECK: shuffle at %s: lane %u's mask 0x%08x leaves the lane itself out",
                      site.c_str(), f->tid - first, mask));
    }
    for (Fiber* f : lanes) {
      int lane = f->tid - first, source = source_lane(*f, lane);
      unsigned t = first + source;
      bool takes_part = t < L.block && (mask >> source & 1);
      if (takes_part && L.fibers[t].state == AT_SHUFFLE && L.fibers[t].mask == mask) {
        memcpy(f->result, L.fibers[t].value, f->size);
      } else {
        memset(f->result, 0xFF, f->size);   // undefined on the GPU: poison
        report("shuffle-source " + site,
               format("SYNCCHECK: shuffle at %s: lane %d reads lane %d, which takes no part (value "
                      "undefined)", site.c_str(), lane, source));
      }
    }
    for (Fiber* f : lanes) f->state = RUNNABLE;
    ++stat_shuffles;
    done = true;
  }
  return done;
}

static bool release_barrier() {
  unsigned waiting = 0, exited = 0;
  std::map<std::string, int> sites;
  for (Fiber& f : L.fibers) {
    if (f.state == AT_BARRIER) { ++waiting; sites[format("%s:%d", f.file, f.line)]++; }
    if (f.state == EXITED) ++exited;
  }
  if (!waiting) return false;
  std::string where;
  for (auto& [site, count] : sites) where += format(" %s x%d", site.c_str(), count);
  if (exited)
    report("barrier-divergent " + sites.begin()->first,
           format("SYNCCHECK: divergent __syncthreads in block %u: %u thread(s) wait at%s; %u exited "
                  "without it", L.current_block, waiting, where.c_str(), exited));
  else if (sites.size() > 1)
    report("barrier-sites " + sites.begin()->first,
           format("SYNCCHECK: block %u: threads meet at different __syncthreads:%s", L.current_block,
                  where.c_str()));
  ++L.epoch;
  ++stat_barriers;
  for (Fiber& f : L.fibers)
    if (f.state == AT_BARRIER) f.state = RUNNABLE;
  return true;
}

static void poison_shared() {
  if (tls_size) memset((void*)tls_base, 0xFF, tls_size);   // fresh, undefined shared memory per block
  for (Region& r : regions)
    if (r.shared) std::fill(r.shadow.begin(), r.shadow.end(), Cell{});
}

static void run_block() {
  for (unsigned t = 0; t < L.block; ++t) {
    Fiber& f = L.fibers[t];
    f.tid = t;
    f.state = RUNNABLE;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = STACK_BYTES;
    f.context.uc_link = &L.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  L.epoch = 0;
  poison_shared();
  std::vector<unsigned> round;
  for (;;) {
    // One round: every runnable fiber, in the launch's order, runs to its next barrier or shuffle.
    round.clear();
    for (unsigned t = 0; t < L.block; ++t)
      if (L.fibers[t].state == RUNNABLE) round.push_back(t);
    if (L.order == REVERSED) std::reverse(round.begin(), round.end());
    if (L.order == RANDOM) std::shuffle(round.begin(), round.end(), L.rng);
    for (unsigned t : round) {
      L.current = &L.fibers[t];
      swapcontext(&L.scheduler, &L.current->context);
      ++stat_switches;
      L.current = nullptr;
      if (L.aborted) return;
    }
    bool progress = false;
    for (unsigned w = 0; w * 32 < L.block; ++w) progress |= complete_shuffles(w, false);
    if (progress) continue;
    bool shuffling = false;
    for (Fiber& f : L.fibers) shuffling |= f.state == AT_SHUFFLE;
    if (shuffling) {        // nothing can run, yet shuffles wait: their missing lanes never come
      for (unsigned w = 0; w * 32 < L.block; ++w) complete_shuffles(w, true);
      continue;
    }
    if (!release_barrier()) return;   // every fiber exited
  }
}

// A fatal memory error ends the launch, as on the GPU: the faulting fiber never resumes.
static void abort_launch() {
  L.aborted = true;
  L.current->state = EXITED;
  swapcontext(&L.current->context, &L.scheduler);
  abort();   // not reached
}

// __shared__ variables are this library's thread-local storage block.
extern "C" void* __tls_get_addr(void*);
struct TlsIndex { unsigned long module, offset; };
static int find_library(dl_phdr_info* info, size_t, void*) {
  if (info->dlpi_addr != library_base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_TLS && info->dlpi_phdr[i].p_memsz) {
      TlsIndex index{info->dlpi_tls_modid, 0};
      tls_base = (uintptr_t)__tls_get_addr(&index);
      tls_size = info->dlpi_phdr[i].p_memsz;
    }
  return 1;
}

// Finds this library's base and the calling thread's TLS block, once per thread that launches (a
// process with a thousand libraries loaded would otherwise pay for a walk over all of them per launch).
static void find_shared_memory() {
  static pthread_t known_thread;
  static bool known = false;
  if (known && pthread_equal(known_thread, pthread_self())) return;
  Dl_info self;
  dladdr((void*)&find_library, &self);
  library_base = (uintptr_t)self.dli_fbase;
  tls_base = tls_size = 0;
  dl_iterate_phdr(find_library, nullptr);
  known_thread = pthread_self();
  known = true;
}

static bool concurrent(uint32_t other, uint32_t other_epoch) {
  if ((other - 1) / L.block != L.current_block) return true;   // blocks of a launch are never ordered
  return other_epoch == L.epoch;                               // a block: ordered by a barrier between
}

// A hazard between an earlier access (`first` at `first_pc`) and this thread's, with no barrier between.
static void hazard(const char* kind, const char* space, const Region& r, unsigned long offset, uint32_t first,
                   uint32_t first_pc, uint32_t me, uint32_t pc) {
  report(format("%s %s %x %x", kind, space, first_pc, pc),
         format("RACECHECK: %s hazard on %s %s+%lu: %s %s, then %s %s, no barrier between", kind, space,
                r.name.c_str(), offset, thread_name(first).c_str(), pc_name(first_pc).c_str(),
                thread_name(me).c_str(), pc_name(pc).c_str()));
}

static void check_access(uintptr_t address, unsigned n, bool write, uintptr_t return_address) {
  if (!L.active || !L.current) return;
  ++stat_accesses;
  uint32_t me = current_id(), pc = (uint32_t)(return_address - library_base);
  for (Region& r : regions) {
    if (address + n <= r.base - r.redzone || address >= r.base + r.size + r.redzone) continue;
    if (address < r.base || address + n > r.base + r.size) {
      report(format("bounds %s %x", r.name.c_str(), pc),
             format("MEMCHECK: out-of-bounds %s of %u bytes at %s%+ld (%lu bytes) by %s %s",
                    write ? "write" : "read", n, r.name.c_str(), (long)(address - r.base),
                    (unsigned long)r.size, thread_name(me).c_str(), pc_name(pc).c_str()));
      return;
    }
    if (r.shadow.empty()) return;
    const char* space = r.shared ? "__shared__" : "global";
    for (unsigned k = 0; k < n; ++k) {
      unsigned long offset = address + k - r.base;
      Cell& c = r.shadow[offset];
      if (write) {
        if (c.writer && c.writer != me && concurrent(c.writer, c.write_epoch))
          hazard("write-after-write", space, r, offset, c.writer, c.write_pc, me, pc);
        if (c.reader && (c.reader != me || c.many_readers) && concurrent(c.reader, c.read_epoch))
          hazard("write-after-read", space, r, offset, c.reader, c.read_pc, me, pc);
        c.writer = me; c.write_epoch = L.epoch; c.write_pc = pc;
        c.reader = 0; c.many_readers = 0; c.written = 1;
      } else {
        if ((r.shared || r.output) && !c.written)
          report(format("uninitialised %s %x", space, pc),
                 format("INITCHECK: read of %s %s+%lu before any thread wrote it, by %s %s", space,
                        r.name.c_str(), offset, thread_name(me).c_str(), pc_name(pc).c_str()));
        if (c.writer && c.writer != me && concurrent(c.writer, c.write_epoch))
          hazard("read-after-write", space, r, offset, c.writer, c.write_pc, me, pc);
        if (!c.reader || !concurrent(c.reader, c.read_epoch)) {
          c.reader = me; c.read_epoch = L.epoch; c.read_pc = pc; c.many_readers = 0;
        } else if (c.reader != me) {
          c.many_readers = 1;
        }
      }
    }
    return;
  }
  // Not a buffer, its redzones or __shared__: the fiber's own stack and loaded images are fine.
  uintptr_t stack = (uintptr_t)L.current->stack;
  if (address >= stack && address + n <= stack + STACK_BYTES) return;
  Dl_info info;
  if (dladdr((void*)address, &info) && info.dli_fname) return;
  report(format("wild %x", pc),
         format("MEMCHECK: %s of %u bytes at %#lx, outside every buffer, by %s %s: launch aborted",
                write ? "write" : "read", n, (unsigned long)address, thread_name(me).c_str(),
                pc_name(pc).c_str()));
  abort_launch();
}
}  // namespace gh_emu

using namespace gh_emu;

// GCC's -fsanitize=thread instrumentation calls these.
// The caller's address: the instrumented access in the kernel library.
#define GH_EMU_CALLER ((uintptr_t)__builtin_return_address(0))
#define GH_EMU_HOOK(name, n, write) \
  extern "C" void __tsan_##name(void* a) { check_access((uintptr_t)a, n, write, GH_EMU_CALLER); }
#define GH_EMU_ACCESS_HOOKS(n)                                                           \
  GH_EMU_HOOK(read##n, n, false) GH_EMU_HOOK(write##n, n, true)                          \
  GH_EMU_HOOK(unaligned_read##n, n, false) GH_EMU_HOOK(unaligned_write##n, n, true)      \
  GH_EMU_HOOK(volatile_read##n, n, false) GH_EMU_HOOK(volatile_write##n, n, true)
GH_EMU_ACCESS_HOOKS(1) GH_EMU_ACCESS_HOOKS(2) GH_EMU_ACCESS_HOOKS(4) GH_EMU_ACCESS_HOOKS(8)
GH_EMU_ACCESS_HOOKS(16)
extern "C" void __tsan_read_range(void* a, unsigned long n) {
  check_access((uintptr_t)a, n, false, GH_EMU_CALLER);
}
extern "C" void __tsan_write_range(void* a, unsigned long n) {
  check_access((uintptr_t)a, n, true, GH_EMU_CALLER);
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}

// UBSan's handlers (-fsanitize=alignment,bounds,signed-integer-overflow,shift), in GCC's ABI.
struct SourceLocation { const char* file; uint32_t line, column; };
struct TypeDescriptor { uint16_t kind, info; char name[1]; };
struct TypeMismatchData {
  SourceLocation location;
  const TypeDescriptor* type;
  unsigned char log_alignment, check_kind;
};
struct OutOfBoundsData { SourceLocation location; const TypeDescriptor* array_type, * index_type; };
struct OverflowData { SourceLocation location; const TypeDescriptor* type; };
static std::string site_of(const SourceLocation& l) { return format("%s:%u", l.file, l.line); }
static std::string who() { return L.current ? thread_name(current_id()) : std::string("(host)"); }

extern "C" void __ubsan_handle_type_mismatch_v1(TypeMismatchData* d, uintptr_t pointer) {
  uintptr_t alignment = (uintptr_t)1 << d->log_alignment;
  if (!pointer)
    report("null " + site_of(d->location),
           format("MEMCHECK: null pointer access at %s by %s", site_of(d->location).c_str(), who().c_str()));
  else if (pointer & (alignment - 1))
    report("misaligned " + site_of(d->location),
           format("MEMCHECK: misaligned access to %s (needs %lu-byte alignment) at ...%03lx, %s by %s: "
                  "launch aborted",
                  d->type->name, (unsigned long)alignment, (unsigned long)(pointer & 0xfff),
                  site_of(d->location).c_str(), who().c_str()));
  else
    return;
  if (L.active && L.current) abort_launch();   // the GPU faults ("misaligned address")
}
extern "C" void __ubsan_handle_type_mismatch_v1_abort(TypeMismatchData* d, uintptr_t p) {
  __ubsan_handle_type_mismatch_v1(d, p);
}
extern "C" void __ubsan_handle_out_of_bounds(OutOfBoundsData* d, uintptr_t index) {
  report("array-bounds " + site_of(d->location),
         format("MEMCHECK: index %ld out of bounds for %s at %s by %s", (long)index, d->array_type->name,
                site_of(d->location).c_str(), who().c_str()));
}
extern "C" void __ubsan_handle_out_of_bounds_abort(OutOfBoundsData* d, uintptr_t i) {
  __ubsan_handle_out_of_bounds(d, i);
}
#define GH_EMU_OVERFLOW_HOOK(op)                                                                          \
  extern "C" void __ubsan_handle_##op##_overflow(OverflowData* d, uintptr_t, uintptr_t) {               \
    report("overflow " + site_of(d->location),                                                          \
           format("UB: signed %s overflows %s at %s by %s", #op, d->type->name,                        \
                  site_of(d->location).c_str(), who().c_str()));                                        \
  }                                                                                                     \
  extern "C" void __ubsan_handle_##op##_overflow_abort(OverflowData* d, uintptr_t a, uintptr_t b) {     \
    __ubsan_handle_##op##_overflow(d, a, b);                                                            \
  }
GH_EMU_OVERFLOW_HOOK(add) GH_EMU_OVERFLOW_HOOK(sub) GH_EMU_OVERFLOW_HOOK(mul)
extern "C" void __ubsan_handle_negate_overflow(OverflowData* d, uintptr_t) {
  std::string site = site_of(d->location);
  report("overflow " + site, format("UB: signed negation overflows at %s", site.c_str()));
}
extern "C" void __ubsan_handle_divrem_overflow(OverflowData* d, uintptr_t, uintptr_t) {
  std::string site = site_of(d->location);
  report("divrem " + site, format("UB: division overflows or divides by zero at %s", site.c_str()));
}
extern "C" void __ubsan_handle_shift_out_of_bounds(OverflowData* d, uintptr_t, uintptr_t) {
  std::string site = site_of(d->location);
  report("shift " + site, format("UB: shift out of bounds at %s", site.c_str()));
}

// ---------------------------------------------------------------- the driver's API (gpuhybrid/emu)
extern "C" __attribute__((visibility("default"))) void gh_emu_reset() {
  regions.clear();
  report_text.clear();
  seen_reports.clear();
  problems = 0;
  stat_blocks = stat_switches = stat_barriers = stat_shuffles = stat_accesses = 0;
  L.first_block = 0;
  L.end_block = ~0u;
}
// Registers a global buffer: accesses to its redzones are reported; `output`: reads before writes are.
extern "C" __attribute__((visibility("default")))
void gh_emu_add_buffer(void* base, unsigned long bytes, unsigned long redzone, const char* name, int output) {
  Region r{(uintptr_t)base, bytes, redzone, name, false, output != 0, std::vector<Cell>()};
  if (bytes <= SHADOW_LIMIT) r.shadow.resize(bytes);
  regions.push_back(std::move(r));
}
extern "C" __attribute__((visibility("default"))) void gh_emu_run_blocks(unsigned first, unsigned end) {
  L.first_block = first;
  L.end_block = end;
}
extern "C" __attribute__((visibility("default"))) const char* gh_emu_reports() { return report_text.c_str(); }
extern "C" __attribute__((visibility("default"))) long gh_emu_problems() { return problems; }
static std::string stats_text;
extern "C" __attribute__((visibility("default"))) const char* gh_emu_stats() {
  stats_text = format("blocks=%lu fiber-switches=%lu barriers=%lu shuffles=%lu checked-accesses=%lu",
                      stat_blocks, stat_switches, stat_barriers, stat_shuffles, stat_accesses);
  return stats_text.c_str();
}

// Runs the grid block by block (blocks in order: they are independent); the number of new problems.
extern "C" int gh_emu_launch(unsigned grid, unsigned block, void (*body)(void*), void* arg, int order,
                             unsigned seed) {
  long before = problems;
  find_shared_memory();
  regions.erase(std::remove_if(regions.begin(), regions.end(), [](const Region& r) { return r.shared; }),
                regions.end());
  if (tls_size)
    regions.push_back(Region{tls_base, tls_size, 0, "shared", true, false, std::vector<Cell>(tls_size)});
  if (block == 0 || block > 1024) {
    report("launch-block", format("LAUNCH: blockDim.x = %u is outside 1..1024", block));
    return (int)(problems - before);
  }
  if (grid == 0 || grid > 0x7fffffffu) {
    report("launch-grid", format("LAUNCH: gridDim.x = %u is outside 1..2^31-1", grid));
    return (int)(problems - before);
  }
  if (tls_size > 48 * 1024)
    report("launch-shared",
           format("LAUNCH: %lu bytes of static __shared__ exceed 48 KiB", (unsigned long)tls_size));
  L.grid = grid;
  L.block = block;
  L.body = body;
  L.arg = arg;
  L.order = order;
  L.rng.seed(seed);
  static std::vector<char*> stacks;     // kept between launches
  while (stacks.size() < block) stacks.push_back((char*)malloc(STACK_BYTES));
  L.fibers.assign(block, Fiber());
  for (unsigned t = 0; t < block; ++t) L.fibers[t].stack = stacks[t];
  L.active = true;
  L.aborted = false;
  for (unsigned b = std::min(L.first_block, grid); b < std::min(L.end_block, grid) && !L.aborted; ++b) {
    L.current_block = b;
    run_block();
    ++stat_blocks;
  }
  L.active = false;
  return (int)(problems - before);
}
