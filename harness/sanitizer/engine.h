/*
 * jitprobe coherency sanitizer: the rule engine, independent of QEMU.
 *
 * The QEMU glue (plugin.c) turns guest activity into calls of this interface: stores with their
 * physical address, ordering events decoded by the architecture's rule file (arch_<arch>.c), and
 * checks of executed instructions. engine_test.c drives the same interface with written event
 * sequences, without QEMU, and under ThreadSanitizer.
 *
 * Model. Every event that can order code modification (a cache maintenance instruction, a
 * barrier, a context synchronization, a FENCE.I, a serializing instruction) takes a number from
 * one 64-bit counter. A store does not advance the counter; it stamps the chunks of the line it
 * writes with the counter's current value, so "event e happened after the last write to an
 * instruction's bytes" is e > the instruction's newest stamp. Stamps are kept per 1/8 line with
 * the bytes they cover and their writer (vCPU, thread, PC), each chunk's stamp, bytes and vCPU in
 * one atomic word, so a reader never pairs one store's stamp with another store's writer.
 *
 * Whose synchronization counts. An instruction's bytes written by user code are judged by the
 * protocol of the program: the executing *thread's* own context synchronizations (an
 * instruction-barrier it ran, a synchronous exception it took and its return) and the
 * synchronizations its process requested (membarrier SYNC_CORE). An asynchronous interrupt that
 * happened to arrive in between does not count, so a missing synchronization is reported whatever
 * the host's load. Bytes written by the kernel, and kernel code, are judged per vCPU with every
 * event (the kernel's own code patching relies on IPIs). README.md gives the manual sections.
 */
#ifndef JITPROBE_ENGINE_H
#define JITPROBE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_VCPUS 64
#define MAX_INSN_BYTES 16
#define PAGE_SIZE 4096ULL
#define CHUNKS 8
#define RELAXED __ATOMIC_RELAXED

/* Event numbers live in the top 48 bits of packed words; the engine refuses to go past them
   (engine_overflowed) rather than wrap and compare wrongly. */
#define SEQ_LIMIT (1ULL << 48)

/* A rule the architecture defines; checks return the broken one or NULL. */
struct rule {
    const char *name;
};

/* chunk word: seq << 16 | bytes << 8 | zero << 7 | vcpu, zero when every store stamped with seq
   there wrote only zero bytes. maint word (DC, IC): seq << 8 | kernel << 7 | vcpu. */
static inline uint64_t chunk_word(uint64_t seq, unsigned bytes, unsigned vcpu, bool zero)
{
    return seq << 16 | (uint64_t)(bytes & 0xff) << 8 | (uint64_t)zero << 7 | (vcpu & 0x7f);
}
static inline uint64_t chunk_seq(uint64_t w) { return w >> 16; }
static inline unsigned chunk_bytes(uint64_t w) { return (w >> 8) & 0xff; }
static inline unsigned chunk_vcpu(uint64_t w) { return w & 0x7f; }
static inline bool chunk_zero(uint64_t w) { return (w >> 7) & 1; }
static inline uint64_t maint_word(uint64_t seq, unsigned vcpu, bool kernel)
{
    return seq << 8 | (uint64_t)kernel << 7 | (vcpu & 0x7f);
}
static inline uint64_t maint_seq(uint64_t w) { return w >> 8; }
static inline unsigned maint_vcpu(uint64_t w) { return w & 0x7f; }
static inline bool maint_kernel(uint64_t w) { return (w >> 7) & 1; }
/* settled word (struct line's settled): the event by which the maintenance of a chunk's newest
   store was complete for every PE, seq << 16 | program << 15 | the low 15 bits of the store's
   stamp (which store it is for: a record made while another store raced in stays unused). */
#define SETTLED_TAG 0x7fffu
static inline uint64_t settled_word(uint64_t done, bool program, uint64_t store)
{
    return done << 16 | (uint64_t)program << 15 | (store & SETTLED_TAG);
}
static inline uint64_t settled_seq(uint64_t w) { return w >> 16; }
static inline bool settled_program(uint64_t w) { return (w >> 15) & 1; }
static inline unsigned settled_tag(uint64_t w) { return w & SETTLED_TAG; }
/* dsb word (the DSB rings): seq << 8 | kind (DSB_* bits). */
static inline uint64_t dsb_word(uint64_t seq, unsigned kind) { return seq << 8 | (kind & 0xff); }
static inline uint64_t dsb_seq(uint64_t w) { return w >> 8; }
static inline unsigned dsb_kind(uint64_t w) { return w & 0xff; }

#define MAINT_HISTORY 4

/* One tracked line of guest RAM (granule bytes, at most 64). */
struct line {
    uint64_t mask;            /* bytes written since the line was last found synchronized everywhere */
    uint64_t chunk[CHUNKS];   /* chunk_word of the newest store to each 1/8 line; 0 = none */
    uint64_t wpc[CHUNKS];     /* PC of that store (reports; kernel or user writer) */
    uint64_t wtask[CHUNKS];   /* thread of that store (0 = unknown) */
    uint64_t wva[CHUNKS];     /* virtual address it stored through (0 = unknown) */
    /* The last MAINT_HISTORY D-side cleans and I-side invalidates covering it (maint_word, ring by
       n_dc/n_ic), and the thread that issued each (0 = unknown). More than one is kept because
       threads whose code shares a line maintain it in turn: one thread's complete protocol must
       not be judged by another's later maintenance of its own bytes. */
    uint64_t dc[MAINT_HISTORY], ic[MAINT_HISTORY];
    uint64_t dc_task[MAINT_HISTORY], ic_task[MAINT_HISTORY];
    uint64_t n_dc, n_ic;
    /* Per chunk, settled_word: its newest store's complete maintenance, found when a DC or IC
       record was about to leave the history (0 = none). A line maintained again and again for
       one word (a live-patched branch) pushes out the records that completed its other bytes;
       their completion stays true, so it is kept here. */
    uint64_t settled[CHUNKS];
    /* Per chunk, the chunk_word it had before its newest store (0 = none): the newest covers
       only that store's bytes, and the INT3 protocol's last step writes an instruction's first
       byte alone, after its tail. */
    uint64_t older[CHUNKS];
};

/* The newest store to the bytes m of a line. vcpu is UNKNOWN_WRITER when the store was recorded
   before the page was tracked, in a stretch in which several vCPUs or threads wrote the page
   (its pieces are not attributed one by one then). */
#define UNKNOWN_WRITER 0x7f
struct writer {
    uint64_t seq, pc, task, va;
    unsigned vcpu;
    unsigned chunk; /* the 1/8 line that holds it */
    unsigned bytes; /* which bytes of that chunk it wrote (with the stores stamped as it) */
    bool zero;      /* they were all zero */
};

/* Per-vCPU state. Written only by its own vCPU thread, read (atomically) by the others. */
#define DSB_HISTORY 64
struct vcpu_state {
    uint64_t dsb[DSB_HISTORY]; /* the last DSBs, a ring (dsb_word) */
    uint64_t dsb_count;
    uint64_t csync;            /* any context synchronization, interrupts included (kernel judgements) */
    uint64_t task;             /* the thread now running (arch-defined identity, 0 = unknown) */
    uint64_t switches;         /* thread switches so far (a block validated for one thread is not for the next) */
    uint64_t stores, checks;   /* statistics */
    uint64_t line_ops, untranslated;
} __attribute__((aligned(128)));

/* Why the current thread last entered the kernel from user mode, decides whether the
   return counts as its synchronization. */
enum episode { EPISODE_NONE, EPISODE_SYNC, EPISODE_ASYNC };

/* Who executes: user or kernel code, on which vCPU, the thread (0 = unknown) and its own
   synchronization (engine_user_sync; meaningful for user code only). */
struct exec_ctx {
    bool user;
    unsigned vcpu;
    uint64_t task;
    uint64_t mm;          /* the executing process (0 = unknown) */
    uint64_t vaddr;       /* the executed instruction's virtual address (with mm) */
    uint64_t thread_sync;
};

/* Flags of an instruction (arch decode). */
#define INSN_EXEMPT 1      /* the architecture lets another CPU see old-or-new while it is patched */
#define INSN_STARTS_HERE 2 /* the instruction's first byte is in this granule */
/* Every store the instruction makes goes to [stack pointer + constant] (push, call, a spill). The
   plugin does not watch such stores by kernel code: the kernel's stacks are never executed (they
   are mapped non-executable), and a frame that leaves a stack and comes to hold code gets that
   code by later stores, or from a device. They are a large part of a boot's stores. User code's
   are watched: a program may run code on its stack (GCC's nested-function trampolines). */
#define INSN_STACK_STORE 4

/* One executed instruction's bytes within one granule, as the check needs them. */
struct check_entry {
    uint64_t pa;       /* physical address of the granule */
    uint64_t vaddr;    /* the instruction's virtual address when translated */
    uint64_t bytes;    /* which bytes of the granule the instruction covers */
    uint8_t size, flags;
    uint8_t insn[MAX_INSN_BYTES];
};

/* What an instruction is, for the engine (arch decode); op 0 = nothing to do. */
struct decoded {
    uint16_t op;
    uint8_t arg;       /* arch-defined (a register number) */
    bool reads_regs;   /* the event reads guest registers */
    unsigned flags;    /* INSN_* */
};

struct arch_ops {
    const char *name;        /* jitprobe's name of the architecture */
    const char *qemu_target; /* qemu_info_t.target_name */
    /* An architecture argument (key=value); false with a message naming the valid range.
       NULL: the architecture takes none. */
    bool (*parse_arg)(const char *key, const char *value);
    /* Validate the arguments; sets the line size used for identity (at most 64 bytes).
       NULL: 64-byte lines. */
    bool (*init)(unsigned *granule);
    unsigned piece;          /* smallest instruction size and alignment (coarser for byte-sized ones) */
    void (*vcpu_init)(unsigned vcpu);
    struct decoded (*decode)(const uint8_t *bytes, size_t len);
    /* A block starting at vaddr is itself an event (exception vector, CPU reset); op or 0. */
    uint16_t (*block_op)(uint64_t vaddr);
    void (*event)(unsigned vcpu, uint16_t op, uint8_t arg, bool kernel);
    /* The rule broken when vCPU `vcpu` executes the bytes m of line l, or NULL. */
    const struct rule *(*check)(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                const struct exec_ctx *x);
    /* The event by which the store w to l was completed for every PE by its whole maintenance
       sequence (judged by its program's DSBs when by_program; see engine_by_program), as l's
       history shows it now, or 0. Called before a DC or IC record leaves l's history.
       NULL: the architecture keeps no such history. */
    uint64_t (*settle)(const struct line *l, struct writer w, bool by_program);
    /* The executing vCPU's user address space (for process-wide synchronization), 0 if unknown;
       NULL: the architecture has none. */
    uint64_t (*user_mm)(unsigned vcpu);
    /* The physical address the user address va has now in the address space mm (a user_mm
       value), read on vCPU vcpu's own thread; false when it has none or the walk fails.
       NULL: stores are never found unmapped. */
    bool (*user_translate)(unsigned vcpu, uint64_t mm, uint64_t va, uint64_t *pa);
    bool (*is_kernel_pc)(uint64_t pc);
    const struct rule *const *rules; /* NULL-terminated: every rule this architecture reports */
};

/* ---- the engine ----------------------------------------------------------------------------- */

extern const struct arch_ops *g_arch;
extern struct vcpu_state g_vcpu[MAX_VCPUS];
extern unsigned g_granule;

/* Set up tracking of [ram_base, ram_base + ram_size) for arch with n_vcpus, forgetting any
   earlier state; false on failure (message on stderr). */
bool engine_init(const struct arch_ops *arch, uint64_t ram_base, uint64_t ram_size, unsigned n_vcpus);
unsigned engine_vcpus(void);
/* vCPU vcpu runs on host thread `thread` (a nonzero id), told when the vCPU starts; false when
   another vCPU runs on the same thread, and from then on engine_vcpus_share_thread() is true.
   The engine needs one host thread per vCPU: QEMU 10.0 passes a callback the index of the vCPU
   that translated its block, not of the one running it, when blocks are not translated for
   parallel execution; under round-robin TCG (-accel tcg,thread=single, and -icount) every vCPU
   runs on one host thread and runs the others' translations, so stores, events and checks
   would be filed under the wrong vCPU (and its thread). Seen: a correct program's context
   synchronization credited to the thread of the other vCPU, a false report; kernel barriers
   filed under the other vCPU, more (harness/sanitizer/README.md, Limits). The plugin then
   instruments no further block and writes a refused line, which makes the run an
   infrastructure error whatever else the report holds. */
bool engine_vcpu_thread(unsigned vcpu, uint64_t thread);
bool engine_vcpus_share_thread(void);
/* A new event number, later than every store stamped so far. */
uint64_t engine_event(void);
uint64_t engine_events(void);
/* Skip n event numbers (tests of long runs). */
void engine_advance(uint64_t n);
bool engine_overflowed(void);

/* A store of size bytes at physical pa, through virtual address va, by vcpu (PC pc, kernel or user
   mode). Bytes past the end of pa's page are ignored: the next virtual page maps some other frame,
   so the caller records that part with its own translation. zero: it wrote only zero bytes. */
void engine_store(unsigned vcpu, uint64_t pa, uint64_t va, unsigned size, uint64_t pc, bool zero);
/* The line record of guest physical address pa, or NULL outside guest RAM. */
struct line *engine_line(uint64_t pa);
/* Whether the page of pa has line-level tracking (its stores keep their writers and values). */
bool engine_page_tracked(uint64_t pa);
/* Switch the page of pa to line-level tracking (idempotent). */
void engine_track_page(uint64_t pa);
/* The newest store to the bytes m of l (seq 0: none known). */
struct writer engine_writer(const struct line *l, uint64_t m);
/* Whether the bytes m of a line, which hold insn (insn[0] at m's first byte) and whose newest
   recorded store is w (engine_writer), were last written by someone the plugin does not see: w
   wrote zeros where insn has other bytes. A device's DMA is such a writer (a page-cache page that the kernel zeroed at
   allocation and a virtio device then filled with a program's text); the bytes are then
   judged as never written by a CPU. */
bool engine_unseen_writer(struct writer w, uint64_t m, const uint8_t *insn);
/* The newest stamp, among the stores each chunk of l had before its newest, of those that wrote
   bytes of m (0 = none); see struct line's older. */
uint64_t engine_older_seq(const struct line *l, uint64_t m);
/* Record a D-side clean / I-side invalidate by vcpu (and its current thread; by kernel code or
   not) of the size bytes at pa (event number s). */
void engine_maintain(unsigned vcpu, uint64_t pa, unsigned size, bool icache, bool kernel, uint64_t s);
/* The event by which the store w (engine_writer) was completed for every PE, as recorded when
   l's maintenance history overflowed (arch settle), for a judgement by its program or not
   (by_program); 0 if none is recorded. */
uint64_t engine_settled(const struct line *l, struct writer w, bool by_program);
/* Whether the kernel cleaned or invalidated line l after event seq (it took the line over). */
bool engine_kernel_maintained(const struct line *l, uint64_t seq);

/* vCPU events */
/* What a DSB completes (the rule file decodes its option; Arm ARM "Data Synchronization
   Barrier"): DSB_STORES, the PE's earlier stores (the ...ST options and the full ones);
   DSB_MAINTENANCE, also its earlier cache maintenance (only a DSB whose required access types
   are reads and writes);
   DSB_SHARED, for every PE of the inner shareable domain (ISH, OSH, SY) rather than for the
   executing PE alone (NSH). A ...LD option has none of the first two. */
#define DSB_STORES 1u
#define DSB_MAINTENANCE 2u
#define DSB_SHARED 4u
#define DSB_FULL (DSB_STORES | DSB_MAINTENANCE | DSB_SHARED)
/* A DSB (kind: DSB_* bits) on vcpu; by_program: executed by the current thread's program (in user
   mode, or within a system call or fault it took) rather than by an interrupt handler. */
void engine_dsb(unsigned vcpu, unsigned kind, bool by_program);
/* The earliest DSB by vCPU v numbered after seq that has every DSB_* bit of need, 0 if none
   (optimistic when history overflowed). */
uint64_t engine_dsb_after(unsigned v, uint64_t seq, unsigned need);
/* The earliest DSB with every bit of need the program of thread `task` executed after seq, on any
   CPU (a migrated thread's own DSB completes its earlier maintenance: Linux's __switch_to
   completed the old CPU's), 0 if none; UINT64_MAX when the thread is unknown (the caller judges
   per CPU). */
uint64_t engine_thread_dsb_after(uint64_t task, uint64_t seq, unsigned need);
static inline void engine_stamp(uint64_t *field) { __atomic_store_n(field, engine_event(), RELAXED); }
static inline uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, RELAXED); }

/* Threads (program-level synchronization). */
void engine_switch_task(unsigned vcpu, uint64_t task);
/* A context synchronization the current thread of vcpu caused (or, with mm, its process
   requested for all its threads: membarrier SYNC_CORE). */
void engine_thread_sync(unsigned vcpu);
void engine_process_sync(uint64_t mm);
/* mm registered for process-wide synchronization (membarrier REGISTER_..._SYNC_CORE); until
   then engine_process_sync does nothing, as the kernel refuses the command. */
void engine_process_register(uint64_t mm);
/* An architecture's numbers of the system calls the engine follows. */
struct syscall_numbers {
    uint64_t exit, exit_group, membarrier, execve, execveat;
};
/* A system call made from user mode by the current thread of vcpu (nr, its first argument, the
   process's address space mm): thread exits, execve, and membarrier registration and SYNC_CORE. */
void engine_syscall(unsigned vcpu, const struct syscall_numbers *nrs, uint64_t nr, uint64_t arg0, uint64_t mm);
/* The current thread of vcpu exits (whole_process: every thread of its address space mm); a
   thread later found at the same identity is new. */
void engine_thread_exit(unsigned vcpu, bool whole_process, uint64_t mm);
/* The executing thread's kernel entry kind (for architectures whose return synchronizes). */
void engine_set_episode(unsigned vcpu, enum episode e);
enum episode engine_episode(unsigned vcpu);
/* The latest synchronization the thread now on vcpu has by its own program; mm (0: unknown) is
   its process's address space, read by the caller on vcpu itself. */
uint64_t engine_user_sync(unsigned vcpu, uint64_t mm);
/* Whether any process has requested a synchronization of all its threads (then checks need mm). */
bool engine_process_syncs(void);
uint64_t engine_tasks_untracked(void);

/* Checks. */
/* The least synchronization any live thread has by its own program (for engine_clean_everywhere). */
uint64_t engine_min_thread_sync(void);
/* Whether every vCPU, and for user code every thread whose own synchronization is at least
   `least`, could run the bytes m of l now (then no check is needed). */
bool engine_clean_everywhere(const struct line *l, uint64_t m, unsigned flags, bool user, uint64_t least);
/* The rule broken when vcpu executes the bytes m of l now, at virtual address vaddr (user code
   when it is a user PC), or NULL. */
const struct rule *engine_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags, uint64_t vaddr);
/* engine_check in two steps, for the entries of one block: who executes on vcpu now (its thread,
   and for user code its address space and synchronization: register reads), then each check (the
   caller sets x->vaddr to the entry's address). */
void engine_exec_ctx(unsigned vcpu, bool user, struct exec_ctx *x);
const struct rule *engine_check_in(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                   const struct exec_ctx *x);
/* What the judgement of vcpu executing the bytes m of l (user: at a user PC) rests on, as one JSON
   object in buf (truncated to n bytes): the newest store, the line's recorded cleans and
   invalidates, the first DSBs after the store by its writer's CPU and thread, whose protocol
   judges it and the executor's latest synchronization (or {"truncated": true} when n is too
   small). For reports: a maintainer reads the sequence seen and the step missing without
   re-running. */
void engine_explain(const struct line *l, uint64_t m, unsigned vcpu, uint64_t vaddr, char *buf, size_t n);
/* Whether the bytes (newest store w) of line l are judged by the executing program's own protocol
   (see engine.h's top): user code executing bytes a thread of its own process wrote in user mode,
   which the kernel has not cleaned or invalidated since. Otherwise they are the kernel's: kernel
   code, kernel-written bytes, a page the kernel reused and filled (by a device, unseen) whose
   last recorded store was another process's or was made through an address that no longer maps
   it, or a line the kernel maintained itself. */
bool engine_by_program(const struct line *l, struct writer w, const struct exec_ctx *x);

/* ---- what the host provides (plugin.c under QEMU, engine_test.c in tests) ---------------------- */

/* A guest register by its QEMU gdbstub name on vcpu: a handle >= 0, or -1 if QEMU has none. */
int host_register(unsigned vcpu, const char *name);
bool host_read_register(unsigned vcpu, int handle, uint64_t *out);
/* Read guest physical memory (page tables); false outside guest RAM. */
bool host_read_phys(uint64_t pa, void *buf, size_t len);

#endif
