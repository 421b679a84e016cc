/*
 * The rule engine's state: lines and pages of guest RAM, vCPUs, threads and processes.
 * Design in engine.h; QEMU glue in plugin.c.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "engine.h"

const struct arch_ops *g_arch;
struct vcpu_state g_vcpu[MAX_VCPUS];
unsigned g_granule = 64;

static uint64_t g_ram_base, g_ram_size;
static unsigned g_vcpus = 1;
/* log2 of g_granule and of the architecture's piece (both powers of two): the store path
   divides by shifting. */
static unsigned g_granule_shift = 6, g_piece_shift = 1;

/* Threads and processes (see engine_switch_task and below). */
#define TASKS 16384
#define PROCESSES 256
#define TASK_DSBS 16
struct task {
    uint64_t key, usync, mm;
    uint64_t dsb[TASK_DSBS], ndsb; /* the program's last DSBs, a ring */
    uint64_t since;                /* the event at which it was last switched in */
    uint64_t incarnation;          /* how many threads have had this task pointer */
    uint8_t episode, reborn, execing;
};
/* A thread's identity in records (a vCPU's current task, a store's or a maintenance's thread):
   the kernel's task pointer, 64-byte aligned, with its incarnation in the low bits, so that a
   record made by a thread that is gone is not taken for the next thread at that pointer. */
#define INCARNATION_MASK 63ULL
static struct task g_tasks[TASKS];
/* The indices of g_tasks' claimed slots, in claim order: scans over every thread (once per
   translated block of written code) touch these instead of the whole 3 MB table. */
static uint32_t g_claimed[TASKS];
static unsigned g_nclaimed;
static struct task g_vcpu_task[MAX_VCPUS]; /* fallbacks, and the thread before any switch is seen */
static struct task *g_cur[MAX_VCPUS];     /* owned by the vCPU thread */
static uint64_t g_untracked;
static struct { uint64_t mm, sync; uint8_t registered; } g_procs[PROCESSES];
static unsigned g_nprocs;
static uint64_t g_epoch = 1;
static bool g_overflow;
static uint64_t g_vcpu_thread[MAX_VCPUS]; /* the host thread of each started vCPU (0 = not started) */
static bool g_shared_thread;

/* ---- pages ----------------------------------------------------------------------------------

   Until code is translated from a page or cache maintenance names it, only which pieces (the
   architecture's smallest instruction, or 8 bytes where instructions are bytes) were stored to at the page's last
   store stamp, and before it, is kept: cheap for the many pages that never hold code. Then the
   page becomes "tracked" and its lines take over, seeded from that: pieces written at the last
   stamp get it, older ones the page's first stamp. That under-estimates their age on purpose: a
   later store elsewhere in the page (Linux's ftrace rewrites NOPs in module text after the
   module's icache flush) must not make the whole page look freshly written; the price is that an
   unsynchronized store buried under later stores to other pieces can go unreported.

   The bitmaps change together with the stamp, so they are updated under a per-page spin lock;
   a store that changes nothing (the common case in a copy loop) takes no lock. */
#define PIECE_WORDS (4096 / 2 / 64)
struct page {
    uint64_t cur[PIECE_WORDS];    /* pieces stored to at stamp seq */
    uint64_t before[PIECE_WORDS]; /* pieces stored to earlier (at seq_first or later) */
    uint64_t wpc, wtask, wva;
    uint64_t seq, seq_first;
    uint8_t wvcpu, tracked, lock;
    uint8_t mixed; /* the stores at stamp seq came from more than one vCPU or thread */
};
static struct line *g_lines; /* one record per granule of guest RAM */
static struct page *g_pages; /* one record per 4 KiB page of guest RAM */

static void page_lock(struct page *pg)
{
    /* Sequentially consistent: page_store's unlocked path relies on it (see there). */
    while (__atomic_exchange_n(&pg->lock, 1, __ATOMIC_SEQ_CST)) {
        while (__atomic_load_n(&pg->lock, RELAXED)) {
            sched_yield(); /* the holder's vCPU thread may be descheduled on a loaded host */
        }
    }
}

static void page_unlock(struct page *pg) { __atomic_store_n(&pg->lock, 0, __ATOMIC_RELEASE); }

bool engine_init(const struct arch_ops *arch, uint64_t ram_base, uint64_t ram_size, unsigned n_vcpus)
{
    g_arch = arch;
    g_epoch = 1;
    g_overflow = false;
    memset(g_vcpu, 0, sizeof(g_vcpu));
    memset(g_tasks, 0, sizeof(g_tasks));
    g_nclaimed = 0;
    memset(g_vcpu_task, 0, sizeof(g_vcpu_task));
    memset(g_cur, 0, sizeof(g_cur));
    memset(g_procs, 0, sizeof(g_procs));
    g_nprocs = 0;
    g_untracked = 0;
    memset(g_vcpu_thread, 0, sizeof(g_vcpu_thread));
    g_shared_thread = false;
    g_ram_base = ram_base;
    g_ram_size = ram_size;
    g_vcpus = n_vcpus < 1 ? 1 : n_vcpus > MAX_VCPUS ? MAX_VCPUS : n_vcpus;
    if (g_granule & (g_granule - 1) || arch->piece & (arch->piece - 1)) {
        fprintf(stderr, "jitprobe sanitizer: line size %u and piece %u must be powers of two\n", g_granule, arch->piece);
        return false;
    }
    g_granule_shift = (unsigned)__builtin_ctz(g_granule);
    g_piece_shift = (unsigned)__builtin_ctz(arch->piece);
    /* Reserved, not committed: only the lines and pages the guest writes are ever touched. */
    g_lines = mmap(NULL, ram_size / g_granule * sizeof(struct line), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    g_pages = mmap(NULL, ram_size / PAGE_SIZE * sizeof(struct page), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_lines == MAP_FAILED || g_pages == MAP_FAILED) {
        perror("jitprobe sanitizer: mmap of the line and page tables");
        return false;
    }
    return true;
}

unsigned engine_vcpus(void) { return g_vcpus; }

bool engine_vcpu_thread(unsigned vcpu, uint64_t thread)
{
    bool alone = true;
    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        if (v != vcpu && __atomic_load_n(&g_vcpu_thread[v], RELAXED) == thread) {
            alone = false;
        }
    }
    __atomic_store_n(&g_vcpu_thread[vcpu], thread, RELAXED);
    if (!alone) {
        __atomic_store_n(&g_shared_thread, true, RELAXED);
    }
    return alone;
}

bool engine_vcpus_share_thread(void) { return __atomic_load_n(&g_shared_thread, RELAXED); }

uint64_t engine_event(void)
{
    uint64_t s = __atomic_add_fetch(&g_epoch, 1, RELAXED);
    if (s >= SEQ_LIMIT) {
        __atomic_store_n(&g_overflow, true, RELAXED);
    }
    return s;
}

uint64_t engine_events(void) { return load64(&g_epoch); }

void engine_advance(uint64_t n)
{
    if (__atomic_add_fetch(&g_epoch, n, RELAXED) >= SEQ_LIMIT) {
        __atomic_store_n(&g_overflow, true, RELAXED);
    }
}
bool engine_overflowed(void) { return __atomic_load_n(&g_overflow, RELAXED); }

struct line *engine_line(uint64_t pa)
{
    uint64_t off = pa - g_ram_base;
    return off < g_ram_size ? &g_lines[off >> g_granule_shift] : NULL;
}

/* Raise chunk c of l to the stamp in w (bytes merged when equal) and its writer (PC, thread, the
   virtual page it stored through); never lowers. */
static void chunk_raise(struct line *l, unsigned c, uint64_t w, uint64_t pc, uint64_t task, uint64_t vpage)
{
    uint64_t old = load64(&l->chunk[c]);
    for (;;) {
        uint64_t want;
        if (chunk_seq(old) > chunk_seq(w)) {
            return;
        }
        if (chunk_seq(old) == chunk_seq(w)) {
            /* Zero only if every store at this stamp was: a copy loop's zero tail must not make
               the instruction it wrote before look unwritten (engine_unseen_writer). */
            want = chunk_word(chunk_seq(w), chunk_bytes(old) | chunk_bytes(w), chunk_vcpu(w),
                              chunk_zero(old) && chunk_zero(w));
        } else {
            want = w;
        }
        if (want == old) {
            break;
        }
        if (__atomic_compare_exchange_n(&l->chunk[c], &old, want, true, RELAXED, RELAXED)) {
            if (chunk_seq(old) != chunk_seq(want)) {
                __atomic_store_n(&l->older[c], old, RELAXED);
            }
            break;
        }
    }
    if (load64(&l->wpc[c]) != pc) {
        __atomic_store_n(&l->wpc[c], pc, RELAXED);
    }
    if (load64(&l->wtask[c]) != task) {
        __atomic_store_n(&l->wtask[c], task, RELAXED);
    }
    if (load64(&l->wva[c]) != vpage) {
        __atomic_store_n(&l->wva[c], vpage, RELAXED);
    }
}

static uint64_t full_mask(void) { return g_granule == 64 ? ~0ULL : (1ULL << g_granule) - 1; }

bool engine_page_tracked(uint64_t pa)
{
    uint64_t off = pa - g_ram_base;
    return off < g_ram_size && __atomic_load_n(&g_pages[off / PAGE_SIZE].tracked, __ATOMIC_ACQUIRE);
}

void engine_track_page(uint64_t pa)
{
    uint64_t off = pa - g_ram_base;
    if (off >= g_ram_size) {
        return;
    }
    struct page *pg = &g_pages[off / PAGE_SIZE];
    if (__atomic_load_n(&pg->tracked, __ATOMIC_ACQUIRE)) {
        return;
    }
    page_lock(pg);
    if (pg->tracked) {
        page_unlock(pg);
        return;
    }
    unsigned per = g_granule / CHUNKS, piece = g_arch->piece, step = piece < per ? piece : per;
    uint64_t base = off & ~(PAGE_SIZE - 1);
    for (uint64_t p = base; p < base + PAGE_SIZE; p += g_granule) {
        struct line *l = &g_lines[p / g_granule];
        for (unsigned c = 0; c < CHUNKS; c++) {
            /* The chunk's stamp is its newest piece's; its bytes, those of the pieces with it. */
            uint64_t seq = 0;
            unsigned bytes = 0;
            for (unsigned b = 0; b < per; b += step) {
                unsigned index = (p % PAGE_SIZE + c * per + b) / piece;
                uint64_t bit = 1ULL << (index % 64);
                uint64_t s = (__atomic_load_n(&pg->cur[index / 64], __ATOMIC_SEQ_CST) & bit) ? pg->seq
                           : (pg->before[index / 64] & bit) ? pg->seq_first : 0;
                unsigned piece_bytes = ((1u << step) - 1) << b;
                if (s > seq) {
                    seq = s;
                    bytes = piece_bytes;
                } else if (s && s == seq) {
                    bytes |= piece_bytes;
                }
            }
            if (seq) {
                /* The page's writer is known for these bytes only if it alone wrote at that stamp. */
                bool exact = seq == pg->seq && !__atomic_load_n(&pg->mixed, RELAXED);
                unsigned writer = exact ? __atomic_load_n(&pg->wvcpu, RELAXED) : UNKNOWN_WRITER;
                /* The page record does not keep stored values: never zero (no byte unseen). */
                chunk_raise(l, c, chunk_word(seq, bytes, writer, false), load64(&pg->wpc), exact ? load64(&pg->wtask) : 0,
                            exact ? load64(&pg->wva) : 0);
            }
        }
        __atomic_fetch_or(&l->mask, full_mask(), RELAXED);
    }
    __atomic_store_n(&pg->tracked, 1, __ATOMIC_RELEASE);
    page_unlock(pg);
}

static bool page_bits_set(const struct page *pg, unsigned first, unsigned last)
{
    for (unsigned i = first; i <= last; i++) {
        if (!(__atomic_load_n(&pg->cur[i / 64], RELAXED) & (1ULL << (i % 64)))) {
            return false;
        }
    }
    return true;
}

/* Set the bits of pieces first..last in cur. */
static void page_bits_or(struct page *pg, unsigned first, unsigned last, int order)
{
    for (unsigned w = first / 64; w <= last / 64; w++) {
        unsigned lo = w == first / 64 ? first % 64 : 0, hi = w == last / 64 ? last % 64 : 63;
        uint64_t m = (hi == 63 ? ~0ULL : (1ULL << (hi + 1)) - 1) & ~((1ULL << lo) - 1);
        if ((__atomic_load_n(&pg->cur[w], RELAXED) & m) != m) {
            __atomic_fetch_or(&pg->cur[w], m, order);
        }
    }
}

/* Note a store in an untracked page's record; false when the page turned out tracked. */
static bool page_store(struct page *pg, uint64_t pa, unsigned size, unsigned vcpu, uint64_t pc,
                       uint64_t task, uint64_t vpage, uint64_t epoch)
{
    unsigned first = (pa % PAGE_SIZE) >> g_piece_shift, last = (pa % PAGE_SIZE + size - 1) >> g_piece_shift;
    bool same_stamp = load64(&pg->seq) == epoch;
    bool changed = !same_stamp || !page_bits_set(pg, first, last);
    if (changed && same_stamp) {
        /* New pieces at the page's current stamp (a copy loop): set them without the lock. The
           lock's holders are the roll-over to a newer stamp below, which exchanges cur's words
           (a piece set meanwhile lands in before or in cur, as if set just before or after it
           under the lock), and engine_track_page, which reads cur under the lock and then sets
           tracked. Every access here and there to cur and the lock is sequentially consistent:
           a store that then finds the lock free and the page untracked at the same stamp was
           set before any later holder reads cur; otherwise it is done again under the lock. */
        page_bits_or(pg, first, last, __ATOMIC_SEQ_CST);
        changed = __atomic_load_n(&pg->lock, __ATOMIC_SEQ_CST) || __atomic_load_n(&pg->tracked, __ATOMIC_ACQUIRE) ||
                  load64(&pg->seq) != epoch;
    }
    if (changed) {
        page_lock(pg);
        if (pg->tracked) {
            page_unlock(pg);
            return false;
        }
        if (pg->seq < epoch) {
            for (unsigned i = 0; i < PIECE_WORDS; i++) {
                if (load64(&pg->cur[i])) {
                    pg->before[i] |= __atomic_exchange_n(&pg->cur[i], 0, __ATOMIC_SEQ_CST);
                }
            }
            __atomic_store_n(&pg->mixed, 0, RELAXED);
            __atomic_store_n(&pg->wvcpu, (uint8_t)vcpu, RELAXED);
            __atomic_store_n(&pg->wtask, task, RELAXED);
            if (!pg->seq_first) {
                pg->seq_first = epoch;
            }
            __atomic_store_n(&pg->seq, epoch, RELAXED);
        }
        page_bits_or(pg, first, last, __ATOMIC_SEQ_CST);
    }
    if (load64(&pg->wtask) != task || __atomic_load_n(&pg->wvcpu, RELAXED) != vcpu) {
        if (!__atomic_load_n(&pg->mixed, RELAXED)) {
            __atomic_store_n(&pg->mixed, 1, RELAXED);
        }
        __atomic_store_n(&pg->wtask, task, RELAXED);
        __atomic_store_n(&pg->wvcpu, (uint8_t)vcpu, RELAXED);
    }
    if (load64(&pg->wpc) != pc) {
        __atomic_store_n(&pg->wpc, pc, RELAXED);
    }
    if (load64(&pg->wva) != vpage) {
        __atomic_store_n(&pg->wva, vpage, RELAXED);
    }
    if (changed) {
        page_unlock(pg);
    }
    return true;
}

void engine_store(unsigned vcpu, uint64_t pa, uint64_t va, unsigned size, uint64_t pc, bool zero)
{
    uint64_t vpage = va & ~(PAGE_SIZE - 1);
    uint64_t epoch = load64(&g_epoch), task = load64(&g_vcpu[vcpu].task), off_ram = pa - g_ram_base;
    if (off_ram >= g_ram_size || !size) {
        return;
    }
    g_vcpu[vcpu].stores++;
    uint64_t to_page_end = PAGE_SIZE - (pa & (PAGE_SIZE - 1));
    size = size < to_page_end ? size : (unsigned)to_page_end; /* the next frame is not the next page */
    struct page *pg = &g_pages[off_ram / PAGE_SIZE];
    if (!__atomic_load_n(&pg->tracked, __ATOMIC_ACQUIRE) && page_store(pg, pa, size, vcpu, pc, task, vpage, epoch)) {
        return;
    }
    while (size) {
        struct line *l = &g_lines[(pa - g_ram_base) >> g_granule_shift];
        unsigned off = pa & (g_granule - 1), n = size < g_granule - off ? size : g_granule - off;
        uint64_t m = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << off;
        _Static_assert(CHUNKS == 8, "per_shift below");
        unsigned per = g_granule / CHUNKS, per_shift = g_granule_shift - 3;
        for (unsigned c = off >> per_shift; c <= (off + n - 1) >> per_shift; c++) {
            unsigned bytes = (m >> (c * per)) & ((1u << per) - 1);
            chunk_raise(l, c, chunk_word(epoch, bytes, vcpu, zero), pc, task, vpage);
        }
        if ((load64(&l->mask) & m) != m) {
            __atomic_fetch_or(&l->mask, m, RELAXED);
        }
        pa += n;
        size -= n;
    }
}

struct writer engine_writer(const struct line *l, uint64_t m)
{
    struct writer w = { 0 };
    unsigned per = g_granule / CHUNKS;
    for (unsigned c = 0; c < CHUNKS; c++) {
        unsigned in_chunk = (m >> (c * per)) & ((1u << per) - 1);
        uint64_t word = load64(&l->chunk[c]);
        if ((in_chunk & chunk_bytes(word)) && chunk_seq(word) > w.seq) {
            w.seq = chunk_seq(word);
            w.vcpu = chunk_vcpu(word);
            w.pc = load64(&l->wpc[c]);
            w.task = load64(&l->wtask[c]);
            w.va = load64(&l->wva[c]);
            w.chunk = c;
            w.bytes = chunk_bytes(word);
            w.zero = chunk_zero(word);
        }
    }
    return w;
}

bool engine_unseen_writer(struct writer w, uint64_t m, const uint8_t *insn)
{
    if (!w.seq || !w.zero || !m) {
        return false;
    }
    unsigned per = g_granule / CHUNKS, first = (unsigned)__builtin_ctzll(m);
    for (unsigned b = 0; b < per; b++) {
        unsigned at = w.chunk * per + b;
        if ((w.bytes >> b & 1) && (m >> at & 1) && insn[at - first]) {
            return true;
        }
    }
    return false;
}

uint64_t engine_older_seq(const struct line *l, uint64_t m)
{
    uint64_t seq = 0;
    unsigned per = g_granule / CHUNKS;
    for (unsigned c = 0; c < CHUNKS; c++) {
        uint64_t word = load64(&l->older[c]);
        if ((((m >> (c * per)) & ((1u << per) - 1)) & chunk_bytes(word)) && chunk_seq(word) > seq) {
            seq = chunk_seq(word);
        }
    }
    return seq;
}

uint64_t engine_settled(const struct line *l, struct writer w, bool by_program)
{
    uint64_t r = load64(&l->settled[w.chunk % CHUNKS]);
    return settled_seq(r) > w.seq && settled_tag(r) == (w.seq & SETTLED_TAG) && settled_program(r) == by_program
               ? settled_seq(r)
               : 0;
}

/* Before the maintenance record `leaving` (maint_word) of l is overwritten: record for each chunk
   whose newest store it followed whether that store's maintenance was complete for every PE (the
   record may have been part of it). Its program's judgement when user code wrote it. */
static void settle_line(struct line *l, uint64_t leaving)
{
    struct writer last = { 0 };
    uint64_t last_done = 0;
    for (unsigned c = 0; c < CHUNKS; c++) {
        uint64_t word = load64(&l->chunk[c]);
        if (!chunk_bytes(word) || chunk_seq(word) >= maint_seq(leaving)) {
            continue;
        }
        struct writer w = { .seq = chunk_seq(word), .vcpu = chunk_vcpu(word), .pc = load64(&l->wpc[c]),
                            .task = load64(&l->wtask[c]), .chunk = c };
        bool program = !g_arch->is_kernel_pc(w.pc);
        if (engine_settled(l, w, program)) {
            continue;
        }
        if (!(w.seq == last.seq && w.vcpu == last.vcpu && w.task == last.task && last.seq)) {
            last = w;
            last_done = g_arch->settle(l, w, program);
        }
        if (last_done) {
            __atomic_store_n(&l->settled[c], settled_word(last_done, program, w.seq), RELAXED);
        }
    }
}

void engine_maintain(unsigned vcpu, uint64_t pa, unsigned size, bool icache, bool kernel, uint64_t s)
{
    uint64_t task = load64(&g_vcpu[vcpu].task);
    engine_track_page(pa);
    for (unsigned off = 0; off < size; off += g_granule) {
        struct line *l = engine_line(pa + off);
        if (!l) {
            continue;
        }
        uint64_t slot = __atomic_fetch_add(icache ? &l->n_ic : &l->n_dc, 1, RELAXED) % MAINT_HISTORY;
        uint64_t leaving = load64(icache ? &l->ic[slot] : &l->dc[slot]);
        if (leaving && g_arch->settle) {
            settle_line(l, leaving);
        }
        __atomic_store_n(icache ? &l->ic_task[slot] : &l->dc_task[slot], task, RELAXED);
        __atomic_store_n(icache ? &l->ic[slot] : &l->dc[slot], maint_word(s, vcpu, kernel), RELAXED);
    }
}

bool engine_kernel_maintained(const struct line *l, uint64_t seq)
{
    for (unsigned i = 0; i < MAINT_HISTORY; i++) {
        uint64_t dc = load64(&l->dc[i]), ic = load64(&l->ic[i]);
        if ((maint_kernel(dc) && maint_seq(dc) > seq) || (maint_kernel(ic) && maint_seq(ic) > seq)) {
            return true;
        }
    }
    return false;
}

/* ---- vCPU events ------------------------------------------------------------------------- */

/* Append s to a ring of n entries whose count is *count (single writer). */
static void ring_push(uint64_t *ring, unsigned n, uint64_t *count, uint64_t s)
{
    uint64_t c = load64(count);
    __atomic_store_n(&ring[c % n], s, RELAXED);
    __atomic_store_n(count, c + 1, __ATOMIC_RELEASE);
}

/* The earliest DSB of a ring (dsb words) numbered after seq that has every DSB_* bit of need;
   seq + 1 when it may have left the ring (assume the best: never a false report); 0 if none. */
static uint64_t ring_after(const uint64_t *ring, unsigned n, const uint64_t *count, uint64_t seq, unsigned need)
{
    uint64_t c = __atomic_load_n(count, __ATOMIC_ACQUIRE), best = 0, oldest = UINT64_MAX;
    unsigned k = c < n ? (unsigned)c : n;
    for (unsigned i = 0; i < k; i++) {
        uint64_t w = load64(&ring[i]), d = dsb_seq(w);
        if (d > seq && (dsb_kind(w) & need) == need && (!best || d < best)) {
            best = d;
        }
        if (d < oldest) {
            oldest = d;
        }
    }
    return c > n && oldest > seq ? seq + 1 : best;
}

static struct task *current(unsigned vcpu);
static struct task *task_lookup(uint64_t key);

/* The record of the thread an identity names, if that thread still runs; NULL if it is unknown,
   exited, or its task pointer now belongs to a later thread (*gone then says which). */
static const struct task *live_thread(uint64_t id, bool *gone)
{
    const struct task *t = id ? task_lookup(id & ~INCARNATION_MASK) : NULL;
    *gone = t && (__atomic_load_n(&t->reborn, RELAXED) ||
                  (load64(&t->incarnation) & INCARNATION_MASK) != (id & INCARNATION_MASK));
    return t && !*gone ? t : NULL;
}

bool engine_by_program(const struct line *l, struct writer w, const struct exec_ctx *x)
{
    if (!x->user || g_arch->is_kernel_pc(w.pc) || engine_kernel_maintained(l, w.seq)) {
        return false;
    }
    bool gone;
    const struct task *t = live_thread(w.task, &gone);
    uint64_t writer_mm = t ? load64(&t->mm) : 0;
    if (writer_mm && x->mm && writer_mm != x->mm) {
        return false;
    }
    /* Stored through another virtual page than the one it runs from (a second mapping, or a page
       the kernel freed and gave back): if that page no longer maps this frame, the kernel unmapped
       it since, and what the frame holds now is the kernel's (a device may have refilled it,
       unseen: a heap page of the program that came back as its own text). The unmapping's TLB
       invalidation, completed by a DSB, completed every access made through it. Walked only for
       an execution (mm known), never when clearing a line for every CPU. */
    uint64_t pa, frame = (g_ram_base + (uint64_t)(l - g_lines) * g_granule) & ~(PAGE_SIZE - 1);
    if (w.va && x->mm && g_arch->user_translate && (w.va ^ x->vaddr) >= PAGE_SIZE &&
        (!g_arch->user_translate(x->vcpu, writer_mm ? writer_mm : x->mm, w.va, &pa) ||
         (pa & ~(PAGE_SIZE - 1)) != frame)) {
        return false;
    }
    return true;
}

void engine_dsb(unsigned vcpu, unsigned kind, bool by_program)
{
    uint64_t s = dsb_word(engine_event(), kind);
    struct vcpu_state *v = &g_vcpu[vcpu];
    ring_push(v->dsb, DSB_HISTORY, &v->dsb_count, s);
    if (by_program) {
        struct task *t = current(vcpu);
        ring_push(t->dsb, TASK_DSBS, &t->ndsb, s);
    }
}

uint64_t engine_dsb_after(unsigned v, uint64_t seq, unsigned need)
{
    return ring_after(g_vcpu[v].dsb, DSB_HISTORY, &g_vcpu[v].dsb_count, seq, need);
}

uint64_t engine_thread_dsb_after(uint64_t task, uint64_t seq, unsigned need)
{
    bool gone;
    const struct task *t = live_thread(task, &gone);
    if (gone) {
        /* Its steps were complete when it left: Linux's last switch away from a thread runs the
           DSB ISH of __switch_to (and its exit path more). The next thread at its pointer has
           its own ring and must not be asked for them. */
        return seq + 1;
    }
    return t ? ring_after(t->dsb, TASK_DSBS, &t->ndsb, seq, need) : UINT64_MAX;
}

/* ---- threads and processes ----------------------------------------------------------------

   A thread's record: its own latest synchronization (usync), its address space (mm, once
   seen) and why it last entered the kernel from user mode. Found by the architecture's thread
   identity (the kernel's task pointer) in an open-addressed table; a full table falls back to
   one record per vCPU (counted in the summary). A record is only written by the vCPU running
   the thread, and read by others. */
static struct task *task_find(uint64_t key)
{
    for (unsigned i = 0; i < TASKS; i++) {
        struct task *t = &g_tasks[(key / 64 + i) % TASKS];
        uint64_t k = load64(&t->key);
        if (k == key) {
            return t;
        }
        if (!k) {
            uint64_t expected = 0;
            if (__atomic_compare_exchange_n(&t->key, &expected, key, false, RELAXED, RELAXED)) {
                __atomic_store_n(&t->reborn, 1, RELAXED);
                /* A reader that sees the count before the index reads slot 0: counted twice or,
                   unclaimed, skipped; both harmless. */
                __atomic_store_n(&g_claimed[__atomic_fetch_add(&g_nclaimed, 1, RELAXED)], (uint32_t)(t - g_tasks),
                                 RELAXED);
                return t;
            }
            if (expected == key) {
                return t;
            }
        }
    }
    __atomic_add_fetch(&g_untracked, 1, RELAXED);
    return NULL;
}

static struct task *task_lookup(uint64_t key)
{
    for (unsigned i = 0; i < TASKS; i++) {
        struct task *t = &g_tasks[(key / 64 + i) % TASKS];
        uint64_t k = load64(&t->key);
        if (k == key) {
            return t;
        }
        if (!k) {
            return NULL;
        }
    }
    return NULL;
}

static struct task *current(unsigned vcpu)
{
    struct task *t = g_cur[vcpu];
    return t ? t : &g_vcpu_task[vcpu];
}

/* A new thread (or a task pointer reused after its thread exited) starts synchronized at `at`:
   it reaches user mode through the kernel's return from fork, which synchronizes. */
static void task_start(struct task *t, uint64_t at)
{
    __atomic_store_n(&t->incarnation, t->incarnation + 1, RELAXED);
    __atomic_store_n(&t->usync, at, RELAXED);
    __atomic_store_n(&t->episode, EPISODE_SYNC, RELAXED);
    __atomic_store_n(&t->mm, 0, RELAXED);
    __atomic_store_n(&t->execing, 0, RELAXED);
    __atomic_store_n(&t->ndsb, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&t->reborn, 0, RELAXED);
}

/* The vCPU's current thread identity (see INCARNATION_MASK). */
static void publish_identity(unsigned vcpu, uint64_t task, const struct task *t)
{
    uint64_t id = task | (t ? load64(&t->incarnation) & INCARNATION_MASK : 0);
    __atomic_store_n(&g_vcpu[vcpu].task, id, RELAXED);
}

void engine_switch_task(unsigned vcpu, uint64_t task)
{
    struct vcpu_state *v = &g_vcpu[vcpu];
    if ((load64(&v->task) & ~INCARNATION_MASK) == task) {
        return;
    }
    __atomic_store_n(&v->switches, v->switches + 1, RELAXED);
    struct task *t = task ? task_find(task) : NULL;
    g_cur[vcpu] = t;
    if (t) {
        uint64_t now = engine_event();
        __atomic_store_n(&t->since, now, RELAXED);
        if (__atomic_load_n(&t->reborn, RELAXED)) {
            task_start(t, now);
        }
    }
    publish_identity(vcpu, task, t);
}

void engine_thread_sync(unsigned vcpu) { engine_stamp(&current(vcpu)->usync); }

void engine_set_episode(unsigned vcpu, enum episode e) { __atomic_store_n(&current(vcpu)->episode, e, RELAXED); }
enum episode engine_episode(unsigned vcpu) { return __atomic_load_n(&current(vcpu)->episode, RELAXED); }

/* The process record of mm, created when create; NULL when the table is full or mm unknown. */
static unsigned proc_slot(uint64_t mm, bool create)
{
    unsigned n = __atomic_load_n(&g_nprocs, __ATOMIC_ACQUIRE);
    n = n < PROCESSES ? n : PROCESSES;
    for (unsigned i = 0; i < n; i++) {
        if (__atomic_load_n(&g_procs[i].mm, __ATOMIC_ACQUIRE) == mm) {
            return i;
        }
    }
    if (!create) {
        return PROCESSES;
    }
    unsigned slot = __atomic_fetch_add(&g_nprocs, 1, __ATOMIC_ACQ_REL);
    if (slot < PROCESSES) {
        __atomic_store_n(&g_procs[slot].mm, mm, __ATOMIC_RELEASE);
    }
    return slot;
}

void engine_process_register(uint64_t mm)
{
    unsigned i = mm ? proc_slot(mm, true) : PROCESSES;
    if (i < PROCESSES) {
        __atomic_store_n(&g_procs[i].registered, 1, RELAXED);
    }
}

void engine_process_sync(uint64_t mm)
{
    unsigned i = mm ? proc_slot(mm, false) : PROCESSES;
    if (i < PROCESSES && __atomic_load_n(&g_procs[i].registered, RELAXED)) {
        engine_stamp(&g_procs[i].sync);
    }
}

/* include/uapi/linux/membarrier.h */
#define MEMBARRIER_SYNC_CORE 32
#define MEMBARRIER_REGISTER_SYNC_CORE 64

/* A process record outlives its process: the next process may get the same page tables (mm), and
   must not inherit a registration it never made. Forgotten when a process ends with exit_group
   and when a thread's execve gives it an address space. */
static void process_forget(uint64_t mm)
{
    unsigned i = mm ? proc_slot(mm, false) : PROCESSES;
    if (i < PROCESSES) {
        __atomic_store_n(&g_procs[i].registered, 0, RELAXED);
        __atomic_store_n(&g_procs[i].sync, 0, RELAXED);
    }
}

/* The current thread runs in mm. A change of its known address space is an execve it made (a
   new address space, whose process record is forgotten) or, without one, a new thread in another
   process at the task pointer of a thread that died unseen (killed by a signal: no exit call),
   which starts synchronized like any new thread; its start is not seen, its last switch-in is
   the latest it can be. A first address space (none known) is a thread's first moment in user
   mode, synchronized the same way. The per-vCPU fallback records are shared by many threads:
   only mm. */
static void task_in_mm(unsigned vcpu, uint64_t mm)
{
    struct task *t = current(vcpu);
    uint64_t was = load64(&t->mm);
    if (!mm || was == mm) {
        return;
    }
    if (!was && g_cur[vcpu] && load64(&t->usync) < load64(&t->since)) {
        /* Its first moment in user mode: it got there by the kernel's return from fork or exec,
           after its last switch-in. A record a kernel thread left at this task pointer (its exit
           is unseen: it makes no system call) would otherwise keep that thread's old state. */
        __atomic_store_n(&t->usync, load64(&t->since), RELAXED);
    }
    if (was && g_cur[vcpu]) {
        if (__atomic_load_n(&t->execing, RELAXED)) {
            process_forget(mm);
            __atomic_store_n(&t->execing, 0, RELAXED);
        } else {
            task_start(t, load64(&t->since));
            publish_identity(vcpu, load64(&g_vcpu[vcpu].task) & ~INCARNATION_MASK, t);
        }
    }
    __atomic_store_n(&t->mm, mm, RELAXED);
}

void engine_thread_exit(unsigned vcpu, bool whole_process, uint64_t mm)
{
    struct task *self = current(vcpu);
    __atomic_store_n(&self->reborn, 1, RELAXED);
    if (!whole_process || !mm) {
        return;
    }
    process_forget(mm);
    unsigned n = __atomic_load_n(&g_nclaimed, RELAXED);
    for (unsigned i = 0; i < n; i++) {
        struct task *t = &g_tasks[__atomic_load_n(&g_claimed[i], RELAXED)];
        if (load64(&t->key) && load64(&t->mm) == mm) {
            __atomic_store_n(&t->reborn, 1, RELAXED);
        }
    }
}

void engine_syscall(unsigned vcpu, const struct syscall_numbers *nrs, uint64_t nr, uint64_t arg0, uint64_t mm)
{
    task_in_mm(vcpu, mm);
    /* Until its next system call: a failed execve returns to the same address space. */
    __atomic_store_n(&current(vcpu)->execing, nr == nrs->execve || nr == nrs->execveat, RELAXED);
    if (nr == nrs->exit || nr == nrs->exit_group) {
        engine_thread_exit(vcpu, nr == nrs->exit_group, mm);
    } else if (nr == nrs->membarrier && arg0 == MEMBARRIER_REGISTER_SYNC_CORE) {
        engine_process_register(mm);
    } else if (nr == nrs->membarrier && arg0 == MEMBARRIER_SYNC_CORE) {
        engine_process_sync(mm);
    }
}

bool engine_process_syncs(void) { return __atomic_load_n(&g_nprocs, RELAXED) > 0; }

static uint64_t process_sync(uint64_t mm)
{
    unsigned i = mm ? proc_slot(mm, false) : PROCESSES;
    return i < PROCESSES ? load64(&g_procs[i].sync) : 0;
}

static uint64_t task_sync(const struct task *t, uint64_t mm)
{
    uint64_t own = load64(&t->usync), proc = process_sync(mm ? mm : load64(&t->mm));
    return own > proc ? own : proc;
}

uint64_t engine_user_sync(unsigned vcpu, uint64_t mm)
{
    task_in_mm(vcpu, mm);
    return task_sync(current(vcpu), mm);
}

uint64_t engine_tasks_untracked(void) { return load64(&g_untracked); }

/* ---- checks ---------------------------------------------------------------------------------- */

void engine_exec_ctx(unsigned vcpu, bool user, struct exec_ctx *x)
{
    *x = (struct exec_ctx){ .user = user, .vcpu = vcpu, .task = load64(&g_vcpu[vcpu].task) };
    if (user) {
        x->mm = g_arch->user_mm ? g_arch->user_mm(vcpu) : 0;
        x->thread_sync = engine_user_sync(vcpu, x->mm);
    }
}

const struct rule *engine_check_in(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                   const struct exec_ctx *x)
{
    return g_arch->check(l, m, vcpu, flags, x);
}

const struct rule *engine_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags, uint64_t vaddr)
{
    struct exec_ctx x;
    engine_exec_ctx(vcpu, !g_arch->is_kernel_pc(vaddr), &x);
    x.vaddr = vaddr;
    return engine_check_in(l, m, vcpu, flags, &x);
}

/* Appends to buf at *at (bounded by n) as snprintf does; *at stops at n. */
static void append(char *buf, size_t n, size_t *at, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t n, size_t *at, const char *fmt, ...)
{
    if (*at >= n) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *at, n - *at, fmt, ap);
    va_end(ap);
    *at = k < 0 ? n : (*at + (size_t)k < n ? *at + (size_t)k : n);
}

static void explain_maint(char *buf, size_t n, size_t *at, const char *name, const uint64_t *ring,
                          const uint64_t *tasks)
{
    append(buf, n, at, ", \"%s\": [", name);
    const char *sep = "";
    for (unsigned i = 0; i < MAINT_HISTORY; i++) {
        uint64_t w = load64(&ring[i]);
        if (w) {
            append(buf, n, at, "%s{\"event\": %" PRIu64 ", \"vcpu\": %u, \"kernel\": %s, \"thread\": \"0x%" PRIx64 "\"}",
                   sep, maint_seq(w), maint_vcpu(w), maint_kernel(w) ? "true" : "false", load64(&tasks[i]));
            sep = ", ";
        }
    }
    append(buf, n, at, "]");
}

void engine_explain(const struct line *l, uint64_t m, unsigned vcpu, uint64_t vaddr, char *buf, size_t n)
{
    struct exec_ctx x;
    engine_exec_ctx(vcpu, !g_arch->is_kernel_pc(vaddr), &x);
    x.vaddr = vaddr;
    struct writer w = engine_writer(l, m);
    bool gone;
    const struct task *t = live_thread(w.task, &gone);
    size_t at = 0;
    append(buf, n, &at,
           "{\"now\": %" PRIu64 ", \"store\": {\"event\": %" PRIu64 ", \"vcpu\": %u, \"thread\": \"0x%" PRIx64
           "\", \"thread_state\": \"%s\", \"mm\": \"0x%" PRIx64 "\", \"va_page\": \"0x%" PRIx64 "\", \"zero\": %s}",
           engine_events(), w.seq, w.vcpu, w.task, t ? "live" : gone ? "gone" : "unknown", t ? load64(&t->mm) : 0, w.va,
           w.zero ? "true" : "false");
    explain_maint(buf, n, &at, "cleans", l->dc, l->dc_task);
    explain_maint(buf, n, &at, "invalidates", l->ic, l->ic_task);
    uint64_t cpu_dsb = w.vcpu < g_vcpus ? engine_dsb_after(w.vcpu, w.seq, DSB_STORES | DSB_SHARED) : 0;
    uint64_t thread_dsb = engine_thread_dsb_after(w.task, w.seq, DSB_STORES | DSB_SHARED);
    append(buf, n, &at,
           ", \"writer_cpu_dsb\": %" PRIu64 ", \"writer_thread_dsb\": %" PRId64 ", \"settled\": %" PRIu64
           ", \"judged_by\": \"%s\", \"executor\": {\"thread\": \"0x%" PRIx64 "\", \"mm\": \"0x%" PRIx64
           "\", \"thread_sync\": %" PRIu64 ", \"cpu_sync\": %" PRIu64 "}}",
           cpu_dsb, thread_dsb == UINT64_MAX ? (int64_t)-1 : (int64_t)thread_dsb, settled_seq(load64(&l->settled[w.chunk % CHUNKS])),
           engine_by_program(l, w, &x) ? "program" : "kernel", x.task, x.mm, x.thread_sync, load64(&g_vcpu[vcpu].csync));
    if (at >= n) {
        snprintf(buf, n, "{\"truncated\": true}"); /* still one JSON value for the reader */
    }
}

uint64_t engine_min_thread_sync(void)
{
    uint64_t least = UINT64_MAX;
    unsigned n = __atomic_load_n(&g_nclaimed, RELAXED);
    /* The per-vCPU fallback records first: one that never ran a thread holds 0, the least there
       is, and then the scan over every claimed thread can stop at once. */
    for (unsigned i = 0; i < n + MAX_VCPUS && least; i++) {
        const struct task *t = i < MAX_VCPUS ? &g_vcpu_task[i] : &g_tasks[__atomic_load_n(&g_claimed[i - MAX_VCPUS], RELAXED)];
        if ((i >= MAX_VCPUS && !load64(&t->key)) || __atomic_load_n(&t->reborn, RELAXED)) {
            continue; /* slot 0 read before its index was written, or a thread that exited */
        }
        uint64_t s = task_sync(t, 0);
        least = s < least ? s : least;
    }
    return least;
}

bool engine_clean_everywhere(const struct line *l, uint64_t m, unsigned flags, bool user, uint64_t least)
{
    struct exec_ctx x = { .user = user, .thread_sync = least };
    for (unsigned v = 0; v < g_vcpus; v++) {
        if (g_arch->check(l, m, v, flags, &x)) {
            return false;
        }
    }
    return true;
}
