/*
 * jitprobe coherency sanitizer: state shared by the core (coherency.c), the per-architecture
 * rule modules (arch_*.c) and the report writer (report.c).
 *
 * Model. Every event that can order code modification (a cache maintenance instruction, a
 * barrier, a context synchronization, a FENCE.I, a serializing instruction) takes a number
 * from one global counter, g_epoch. A store does not advance the counter; it stamps the
 * chunks of the line it writes with the counter's current value. So "event e happened after
 * the last write to the bytes of an instruction" is e > the highest stamp of the instruction's
 * chunks, without any lock or global write on the store path. Stamps are kept per 1/8 line,
 * with the bytes the chunk's last stamp covers, so that a store next to an instruction (a
 * literal pool, ftrace's per-function ops pointer, a patched neighbour) after the instruction
 * was synchronized does not make the instruction look unsynchronized. (An instruction whose
 * chunk was last written elsewhere is judged by its other chunks only.)
 *
 * Lines are identified by guest physical address (dual mappings, fork and kernel text aliases
 * name the same line), in a flat array over guest RAM. Executions are checked per translation
 * block: a block gets a check callback only when it contains bytes written since the last
 * store-to-execution synchronization every vCPU has done (see on_tb_trans in coherency.c).
 */
#ifndef JITPROBE_COHERENCY_H
#define JITPROBE_COHERENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>
#include <qemu-plugin.h>

#define MAX_VCPUS 64
#define MAX_INSN_BYTES 16
#define RELAXED __ATOMIC_RELAXED

/* One tracked line of guest RAM (granule g_granule bytes, at most 64). */
#define CHUNKS 8
struct line {
    uint64_t wpc;      /* guest PC of the last store to the line */
    uint64_t mask;     /* bytes written since the line was last found synchronized for every vCPU */
    uint32_t cseq[CHUNKS]; /* g_epoch at the last store to each 1/8 of the line; 0 = never since start */
    uint8_t cbytes[CHUNKS]; /* bytes of each chunk written at its cseq stamp */
    uint32_t dc_seq;   /* arm64: event number of the last D-side clean covering the line */
    uint32_t ic_seq;   /* arm64: event number of the last IC IVAU covering the line */
    uint8_t wvcpu, dc_vcpu, ic_vcpu;
};

/* A page of guest RAM. Until code is translated from it or cache maintenance names it, only
   which pieces (the architecture's smallest instruction; 8 bytes on x86_64) were stored to at
   the page's last store stamp, and before it, is kept (cheap for the many pages that never hold
   code); then it becomes "tracked" and its lines take over, seeded from that: pieces written at
   the last stamp get it, older ones the page's first stamp. That under-estimates their age on
   purpose: a later store elsewhere in the page (Linux's ftrace rewrites NOPs in module text after
   the module's icache flush) must not make the whole page look freshly written; the price is
   that an unsynchronized store buried under later stores to other pieces can go unreported. */
#define PIECE_WORDS (4096 / 2 / 64)
struct page {
    uint64_t cur[PIECE_WORDS];    /* pieces stored to at stamp seq */
    uint64_t before[PIECE_WORDS]; /* pieces stored to earlier (at seq_first or later) */
    uint64_t wpc;
    uint32_t seq, seq_first;
    uint8_t wvcpu, tracked;
};

/* A vCPU's recent virtual->physical page translations for stores (TLB_WAYS entries, direct
   mapped), valid while g_tlb_gen is unchanged: any TLB invalidation or translation-table switch
   on any vCPU bumps it. Saves QEMU's TLB lookup on most stores. */
#define TLB_WAYS 16
struct store_tlb {
    uint64_t vpage, ppage;
    uint32_t gen;
    bool ram;
};

/* Per-vCPU event history. Written only by its own vCPU thread, read racily by the others. */
#define DSB_HISTORY 16
struct vcpu_events {
    struct store_tlb tlb[TLB_WAYS];
    uint32_t dsb[DSB_HISTORY]; /* the last DSBs, a ring */
    uint32_t dsb_count;
    uint32_t csync;            /* arm64: last context synchronization event (ISB, ERET, exception entry) */
    uint32_t iallu;            /* arm64: last IC IALLU (local to this PE) */
    uint32_t fence_i;          /* riscv64: last FENCE.I */
    uint32_t serialize;        /* x86_64: last serializing instruction */
    uint64_t stores, checks;   /* statistics: stores tracked, block checks run */
    uint64_t line_ops, untranslated; /* arm64: DC/IC by VA seen, and those whose VA did not translate */
} __attribute__((aligned(128)));

/* One instruction whose bytes were written and not yet synchronized when it was translated. */
#define INSN_EXEMPT 1 /* an instruction the architecture lets another CPU see old-or-new (see arch_*.c) */
#define INSN_STARTS_HERE 2 /* the instruction's first byte is in this granule */
struct check_entry {
    uint64_t pa;       /* physical address of the granule */
    uint64_t vaddr;    /* the instruction's virtual address when translated */
    uint64_t bytes;    /* which bytes of the granule the instruction covers */
    uint8_t size, flags;
    uint8_t insn[MAX_INSN_BYTES];
};

struct tb_check {
    uint64_t validated; /* vCPUs on which every entry passed once (stays valid: QEMU retranslates
                           a block when its own bytes are written) */
    unsigned n;
    struct check_entry e[];
};

struct arch_ops {
    const char *name;        /* jitprobe's name: arm64, riscv64, x86_64 */
    const char *qemu_target; /* qemu_info_t.target_name */
    /* Parse architecture arguments (key=value); returns false with a message on stderr.
     * NULL: the architecture takes none. */
    bool (*parse_arg)(const char *key, const char *value);
    /* Validate the arguments; sets the line size used for identity (at most 64 bytes).
     * NULL: nothing to validate, 64-byte lines. */
    bool (*init)(unsigned *granule);
    unsigned piece;          /* smallest instruction size and alignment (x86_64: 8, coarser) */
    void (*vcpu_init)(unsigned vcpu);
    /* Register callbacks for the ordering events this instruction is; returns INSN_* flags. */
    unsigned (*instrument_insn)(struct qemu_plugin_insn *insn, const uint8_t *bytes, size_t len);
    /* Called once per translated block (arm64: exception vectors are context synchronization). */
    void (*instrument_tb)(struct qemu_plugin_tb *tb, uint64_t vaddr);
    /* The rule broken when vCPU `vcpu` executes the bytes m (a byte mask) of line l, or NULL
       when the execution is valid. */
    const char *(*check)(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags);
    bool (*is_kernel_pc)(uint64_t pc);
};

extern const struct arch_ops arch_arm64, arch_riscv64, arch_x86_64;
extern const struct arch_ops *g_arch;
extern struct vcpu_events g_vcpu[MAX_VCPUS];
extern uint32_t g_epoch;
extern uint32_t g_tlb_gen;
extern unsigned g_granule;

/* A new event number, later than every store stamped so far. */
static inline uint32_t next_event(void)
{
    return __atomic_add_fetch(&g_epoch, 1, RELAXED);
}

static inline uint32_t load32(const uint32_t *p) { return __atomic_load_n(p, RELAXED); }

/* Instruction callback for an instruction that may change virtual->physical translations. */
static inline void on_translation_change(unsigned vcpu, void *udata)
{
    (void)vcpu;
    (void)udata;
    __atomic_add_fetch(&g_tlb_gen, 1, RELAXED);
}
static inline void store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, RELAXED); }

unsigned num_vcpus(void);
/* The line record of guest physical address pa, or NULL outside guest RAM / before calibration. */
struct line *line_at(uint64_t pa);
/* Switch the page of pa to line-level tracking (idempotent). */
void track_page(uint64_t pa);
/* Read guest physical memory (page tables); false outside guest RAM. */
bool read_guest_phys(uint64_t pa, void *buf, size_t len);
/* Whether every vCPU could run the line's written bytes now (then no check is needed). */
bool line_clean_everywhere(const struct line *l, uint64_t m, unsigned flags);
/* The latest store stamp of the bytes in m (a byte mask over the line); 0 if none is known. */
uint32_t bytes_seq(const struct line *l, uint64_t m);

/* The earliest DSB by vCPU v numbered after seq, 0 if none (optimistic when history overflowed). */
uint32_t dsb_after(unsigned v, uint32_t seq);

/* report.c */
bool report_open(const char *path);
void report_violation(const char *rule, const struct check_entry *e, const struct line *l, unsigned vcpu);
void report_close(const char *status_json);

#endif
