/*
 * arm64 rules (Arm Architecture Reference Manual for A-profile, DDI 0487: "Concurrent
 * modification and execution of instructions" and "Instruction cache maintenance" /
 * "Ordering and completion of data and instruction cache instructions").
 *
 * After a store to a location, an instruction fetched from it is guaranteed to be the new one
 * on PE E only after, in this order:
 *   1. the D-side was cleaned to the Point of Unification: DC CVAU (or a DC clean to PoC, which
 *      lies beyond the PoU) covering the line, or nothing when CTR_EL0.IDC=1;  arm64.no_dc_clean
 *   2. that clean (IDC=1: the store) was completed by a DSB of the PE that issued it; arm64.no_dsb
 *   3. the I-side was invalidated after that DSB: IC IVAU covering the line, IC IALLUIS, or
 *      IC IALLU on E itself, or nothing when CTR_EL0.DIC=1;                   arm64.no_ic_invalidate
 *      (an invalidation issued before the clean completed is reported as arm64.no_dsb)
 *   4. the invalidation was completed by a DSB of the PE that issued it;    arm64.no_dsb
 *   5. E had a context synchronization event after that DSB: ISB, exception entry (the
 *      first block of an exception vector) or ERET.                         arm64.no_isb
 *
 * Steps 1 to 4 are judged from the line's last DC and IC records (the most favourable complete
 * sequence among them) and, for a store whose sequence was complete for every PE when a record
 * of it left that history, from the completion kept then (engine_settled): later maintenance of
 * the line for other bytes does not undo a completed sequence.
 *
 * Which synchronizations count for step 5 (see engine.h). Code written by user code is judged
 * by the executing thread's own protocol: an ISB it executed, a synchronous exception it took
 * (a system call, a fault: the vector offsets 0x400/0x600 "Synchronous, lower EL") and the ERET
 * that returns from one, a membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) of its process
 * after registering for it (Linux then interrupts every CPU running the process, and their ERET is
 * the synchronization), and a thread's start (its first ERET, from the kernel's fork return). An
 * IRQ, FIQ or SError that arrived from user mode and the ERET that ends it do not count: they come
 * when the host schedules, not when the program asks. Because the thread's own ISB travels with
 * it, a thread migrated after synchronizing stays synchronized (Linux completes its maintenance
 * with the DSB in __switch_to). Code written by the kernel, and kernel code, is judged per PE with
 * every context synchronization: the kernel's code patching (kick_all_cpus_sync,
 * aarch64_insn_patch_text) relies on interrupts and ISBs of the other PEs.
 *
 * Threads are known by the kernel's task pointer, which Linux keeps in SP_EL0 at EL1 (MSR SP_EL0
 * with a kernel address: cpu_switch_to and kernel entry). System calls are read at the SVC: x8
 * the number, x0 the command; the process is TTBR0_EL1's table address.
 * Line sizes come from the modelled CPU's CTR_EL0 (plugin argument ctr_el0): DminLine for DC,
 * IminLine for IC.
 *
 * DSB options (Arm ARM "Data Synchronization Barrier"): a DSB completes the PE's earlier cache
 * maintenance only when its required access types are reads and writes (SY, ISH, OSH, NSH; not
 * the ...ST or ...LD options), its earlier stores also with an ...ST option (Linux's IDC=1 path is
 * DSB ISHST), and only for the PEs of its shareability domain: NSH for the issuing PE alone, so
 * code executed on another PE needs ISH or wider. A DSB NSH between the store and IC IVAU is
 * what Linux's exception entry adds (the Spectre-BHB loop's fallback for SB) when the program's
 * MRS CTR_EL0 traps; it does not order the store before the invalidation for other PEs.
 *
 * Exemption: B, BL, NOP, BRK, SVC, HVC, SMC and ISB may be concurrently modified and executed;
 * another PE then runs the old or the new instruction (the same section of the Arm ARM). Linux
 * patches jump labels and ftrace sites that way without an ISB on the other PEs, so these
 * instructions are not checked at all (the old instruction is not known when the new one runs).
 * Also exempt: MOV X9, X30, which ftrace_init_nop writes over a NOP at every function entry
 * at boot; the kernel runs one of them (__set_fixmap, called by the patching code itself)
 * between the store and its DC CVAU. X9 is scratch at a function entry, so old and new are
 * equivalent there.
 *
 * The DC/IC operand is a virtual address; it is translated with a walk of the EL1&0 stage 1
 * tables (TTBR0_EL1/TTBR1_EL1/TCR_EL1/SCTLR_EL1 read with qemu_plugin_read_register, tables read
 * from guest RAM). Only the 4 KiB granule is walked (Debian's kernels use it); an operand that
 * cannot be translated is ignored, so its maintenance is missing from the model.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static const struct rule no_dc_clean = { "arm64.no_dc_clean" }, no_ic_invalidate = { "arm64.no_ic_invalidate" },
                         no_dsb = { "arm64.no_dsb" }, no_isb = { "arm64.no_isb" };
static const struct rule *const rules[] = { &no_dc_clean, &no_ic_invalidate, &no_dsb, &no_isb, NULL };

#define CTR_IDC (1ULL << 28)
#define CTR_DIC (1ULL << 29)
#define MAX_VECTORS 16
/* Linux's system call numbers here (asm-generic/unistd.h). */
static const struct syscall_numbers g_syscalls = {
    .exit = 93, .exit_group = 94, .membarrier = 283, .execve = 221, .execveat = 281
};
#define TTBR_BADDR 0x0000fffffffffffeULL

enum { OP_DSB = 1, OP_ISB, OP_DC, OP_IC, OP_IALLU, OP_IALLUIS, OP_ERET, OP_VBAR, OP_SP_EL0, OP_SVC,
       OP_TRAP_LOWER_SYNC, OP_TRAP_LOWER_ASYNC, OP_TRAP_CURRENT, OP_TRAP_CURRENT_ASYNC };

/* Each PE is inside an interrupt taken at EL1 (until its ERET): what its handler does is not the
   interrupted thread's program, even within that thread's system call. Owned by the PE's thread. */
static bool g_in_interrupt[MAX_VCPUS];

static uint64_t g_ctr;
static bool g_ctr_set, g_idc, g_dic;
static unsigned g_dline, g_iline;
static uint64_t g_iallis, g_iallis_task; /* maint_word of the last IC IALLUIS, and its thread */
static uint64_t g_iallu[MAX_VCPUS], g_iallu_task[MAX_VCPUS]; /* each PE's last IC IALLU, and its thread */
static uint64_t g_vbar[MAX_VECTORS];
static unsigned g_nvbar;

enum { REG_TTBR0, REG_TTBR1, REG_TCR, REG_SCTLR, N_SYSREGS };
/* QEMU's gdbstub names (feature org.qemu.gdb.arm.sys.regs); SCTLR_EL1 is called "SCTLR". */
static const char *const sysreg_names[N_SYSREGS] = { "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "SCTLR" };
static int g_x[MAX_VCPUS][31];
static int g_sys[MAX_VCPUS][N_SYSREGS];

static bool arm64_parse_arg(const char *key, const char *value)
{
    if (strcmp(key, "ctr_el0")) {
        fprintf(stderr, "jitprobe sanitizer: unknown arm64 argument %s; valid: ctr_el0\n", key);
        return false;
    }
    char *end;
    errno = 0;
    g_ctr = strtoull(value, &end, 0);
    /* DminLine and IminLine are log2 of the line size in words: 8 bytes (1) to 2 KiB (9). */
    unsigned dmin = (g_ctr >> 16) & 0xf, imin = g_ctr & 0xf;
    g_ctr_set = *value && !*end && !errno && g_ctr >> 32 == 0 && dmin >= 1 && dmin <= 9 && imin >= 1 && imin <= 9;
    if (!g_ctr_set) {
        fprintf(stderr,
                "jitprobe sanitizer: ctr_el0=%s is not a CTR_EL0 value; valid: a 32-bit number whose "
                "DminLine (bits 19:16) and IminLine (bits 3:0) are 1..9 (8-byte to 2 KiB lines)\n",
                value);
    }
    return g_ctr_set;
}

static bool arm64_init(unsigned *granule)
{
    if (!g_ctr_set) {
        fprintf(stderr, "jitprobe sanitizer: arm64 needs ctr_el0= (the CPU model's CTR_EL0)\n");
        return false;
    }
    g_iallis = g_iallis_task = 0;
    memset(g_in_interrupt, 0, sizeof(g_in_interrupt));
    memset(g_iallu, 0, sizeof(g_iallu));
    memset(g_iallu_task, 0, sizeof(g_iallu_task));
    g_nvbar = 0;
    memset(g_vbar, 0, sizeof(g_vbar));
    g_idc = g_ctr & CTR_IDC;
    g_dic = g_ctr & CTR_DIC;
    g_dline = 4u << ((g_ctr >> 16) & 0xf);
    g_iline = 4u << (g_ctr & 0xf);
    unsigned g = g_dline < g_iline ? g_dline : g_iline;
    *granule = g < 64 ? g : 64;
    return true;
}

static void arm64_vcpu_init(unsigned vcpu)
{
    char name[8];
    for (int n = 0; n < 31; n++) {
        snprintf(name, sizeof(name), "x%d", n);
        g_x[vcpu][n] = host_register(vcpu, name);
    }
    for (int r = 0; r < N_SYSREGS; r++) {
        g_sys[vcpu][r] = host_register(vcpu, sysreg_names[r]);
    }
}

static bool read_xt(unsigned vcpu, unsigned rt, uint64_t *out)
{
    if (rt == 31) {
        *out = 0;
        return true;
    }
    return host_read_register(vcpu, g_x[vcpu][rt], out);
}

static bool read_sys(unsigned vcpu, unsigned r, uint64_t *out) { return host_read_register(vcpu, g_sys[vcpu][r], out); }

/* Stage 1 EL1&0 translation of va on this vCPU (4 KiB granule, optional LPA2 5-level tables),
   a lower-half address through the table at user_table when that is not 0 (another process's). */
static bool walk(unsigned vcpu, uint64_t va, uint64_t user_table, uint64_t *pa)
{
    uint64_t sctlr, tcr, ttbr = user_table;
    if (!read_sys(vcpu, REG_SCTLR, &sctlr)) {
        return false;
    }
    if (!(sctlr & 1)) {
        *pa = va; /* MMU off */
        return true;
    }
    bool upper = (va >> 55) & 1;
    if (!read_sys(vcpu, REG_TCR, &tcr) || ((upper || !user_table) && !read_sys(vcpu, upper ? REG_TTBR1 : REG_TTBR0, &ttbr))) {
        return false;
    }
    unsigned txsz = upper ? (tcr >> 16) & 0x3f : tcr & 0x3f;
    unsigned tg = upper ? (tcr >> 30) & 3 : (tcr >> 14) & 3;
    bool epd = upper ? (tcr >> 23) & 1 : (tcr >> 7) & 1;
    if (epd || tg != (upper ? 2u : 0u)) {
        return false; /* walks disabled, or a 16/64 KiB granule */
    }
    bool ds = (tcr >> 59) & 1;
    uint64_t oa_mask = ds ? 0x0003fffffffff000ULL : 0x0000fffffffff000ULL;
    int va_bits = 64 - (int)txsz;
    int level = 4 - (va_bits - 12 + 8) / 9;
    uint64_t table = ttbr & 0x0000fffffffffffeULL;
    for (;;) {
        int shift = 12 + 9 * (3 - level);
        int width = level == 4 - (va_bits - 12 + 8) / 9 ? va_bits - shift : 9;
        uint64_t idx = (va >> shift) & ((1ULL << width) - 1), desc;
        if (!host_read_phys(table + idx * 8, &desc, 8) || !(desc & 1)) {
            return false;
        }
        if (level == 3 || !(desc & 2)) {
            if (level < 1 && !(desc & 2)) {
                return false;
            }
            uint64_t span = (1ULL << shift) - 1;
            *pa = (desc & oa_mask & ~span) | (va & span);
            return true;
        }
        table = desc & oa_mask;
        level++;
    }
}

static bool va_to_pa(unsigned vcpu, uint64_t va, uint64_t *pa) { return walk(vcpu, va, 0, pa); }

static bool arm64_user_translate(unsigned vcpu, uint64_t mm, uint64_t va, uint64_t *pa)
{
    return mm && !((va >> 55) & 1) && walk(vcpu, va, mm, pa);
}

static bool arm64_is_kernel_pc(uint64_t pc)
{
    return (pc >> 55) & 1; /* TTBR1 half */
}

static uint64_t arm64_user_mm(unsigned vcpu)
{
    uint64_t ttbr0;
    return read_sys(vcpu, REG_TTBR0, &ttbr0) ? ttbr0 & TTBR_BADDR : 0;
}

/* ---- events --------------------------------------------------------------------------------- */

/* DC clean or IC IVAU by VA in Xt. */
static void line_op(unsigned vcpu, unsigned rt, bool icache, bool kernel)
{
    uint64_t va, pa;
    unsigned size = icache ? g_iline : g_dline;
    g_vcpu[vcpu].line_ops++;
    if (!read_xt(vcpu, rt, &va) || !va_to_pa(vcpu, va & ~(uint64_t)(size - 1), &pa)) {
        g_vcpu[vcpu].untranslated++;
        if (getenv("JITPROBE_SANITIZER_DEBUG")) {
            fprintf(stderr, "sanitizer: %s by VA %#" PRIx64 " not translated\n", icache ? "IC" : "DC", va);
        }
        return;
    }
    engine_maintain(vcpu, pa, size, icache, kernel, engine_event());
}

static void vbar_write(unsigned vcpu, unsigned rt)
{
    uint64_t vbar;
    if (!read_xt(vcpu, rt, &vbar)) {
        return;
    }
    unsigned n = __atomic_load_n(&g_nvbar, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        if (load64(&g_vbar[i]) == vbar) {
            return;
        }
    }
    /* Claim a slot, then publish the value; Linux writes the same few tables on every CPU. */
    unsigned slot = __atomic_fetch_add(&g_nvbar, 1, __ATOMIC_ACQ_REL);
    if (slot < MAX_VECTORS) {
        __atomic_store_n(&g_vbar[slot], vbar, __ATOMIC_RELEASE);
    }
}

static void syscall_op(unsigned vcpu)
{
    uint64_t nr, arg0;
    if (read_xt(vcpu, 8, &nr) && read_xt(vcpu, 0, &arg0)) {
        engine_syscall(vcpu, &g_syscalls, nr, arg0, arm64_user_mm(vcpu));
    }
}

static void arm64_event(unsigned vcpu, uint16_t op, uint8_t arg, bool kernel)
{
    struct vcpu_state *v = &g_vcpu[vcpu];
    uint64_t value;
    switch (op) {
    case OP_DSB:
        engine_dsb(vcpu, arg, !kernel || (engine_episode(vcpu) == EPISODE_SYNC && !g_in_interrupt[vcpu]));
        break;
    case OP_ISB:
        engine_stamp(&v->csync);
        if (!kernel) {
            engine_thread_sync(vcpu);
        }
        break;
    case OP_DC:
    case OP_IC:
        line_op(vcpu, arg, op == OP_IC, kernel);
        break;
    case OP_IALLU:
        __atomic_store_n(&g_iallu_task[vcpu], load64(&v->task), RELAXED);
        engine_stamp(&g_iallu[vcpu]);
        break;
    case OP_IALLUIS:
        __atomic_store_n(&g_iallis_task, load64(&v->task), RELAXED);
        __atomic_store_n(&g_iallis, maint_word(engine_event(), vcpu, kernel), RELAXED);
        break;
    case OP_ERET:
        engine_stamp(&v->csync);
        if (g_in_interrupt[vcpu]) {
            g_in_interrupt[vcpu] = false; /* back to the interrupted kernel code */
        } else if (engine_episode(vcpu) == EPISODE_SYNC) {
            engine_thread_sync(vcpu);
        }
        break;
    case OP_VBAR:
        vbar_write(vcpu, arg);
        break;
    case OP_SP_EL0:
        if (kernel && read_xt(vcpu, arg, &value) && (value >> 55) & 1) {
            engine_switch_task(vcpu, value);
        }
        break;
    case OP_SVC:
        if (!kernel) {
            syscall_op(vcpu);
        }
        break;
    case OP_TRAP_LOWER_SYNC:
        engine_stamp(&v->csync);
        engine_set_episode(vcpu, EPISODE_SYNC);
        engine_thread_sync(vcpu);
        break;
    case OP_TRAP_LOWER_ASYNC:
        engine_stamp(&v->csync);
        engine_set_episode(vcpu, EPISODE_ASYNC);
        break;
    case OP_TRAP_CURRENT:
        engine_stamp(&v->csync);
        break;
    case OP_TRAP_CURRENT_ASYNC:
        engine_stamp(&v->csync);
        g_in_interrupt[vcpu] = true;
        break;
    }
}

/* ---- decoding --------------------------------------------------------------------------------- */

static bool is_exempt(uint32_t w)
{
    return (w & 0x7c000000) == 0x14000000     /* B, BL */
        || w == 0xd503201f                    /* NOP */
        || (w & 0xffe0001c) == 0xd4000000     /* SVC, HVC, SMC (low bits 01/10/11), BRK below */
        || (w & 0xffe0001f) == 0xd4200000     /* BRK */
        || (w & 0xfffff0ff) == 0xd50330df     /* ISB */
        || w == 0xaa1e03e9;                   /* MOV X9, X30: Linux's ftrace patch-site entry */
}

/* What DSB <option> (its CRm) completes: CRm<3:2> the shareability domain (OSH, NSH, ISH, SY),
   CRm<1:0> the access types (LD: reads, ST: writes, both); the reserved options (CRm<1:0> = 0)
   execute as DSB SY. */
static unsigned dsb_kind_of(unsigned crm)
{
    unsigned types = crm & 3, domain = crm >> 2;
    if (!types) {
        return DSB_FULL;
    }
    return (types & 2 ? DSB_STORES : 0) | (types == 3 ? DSB_MAINTENANCE : 0) | (domain != 1 ? DSB_SHARED : 0);
}

/* Whether the instruction stores to [SP + constant] (INSN_STACK_STORE): STP and STNP (any index
   mode), STR, STRB, STRH, STUR and STTR with an immediate offset, SIMD&FP forms included. The
   register-offset forms are not: their address is anywhere. */
static bool stores_to_stack(uint32_t w)
{
    if (((w >> 5) & 31) != 31) {
        return false;
    }
    return (w & 0x3a400000) == 0x28000000    /* register pair, L = 0 */
           || (w & 0x3bc00000) == 0x39000000 /* unsigned offset, opc = 00 */
           || (w & 0x3be00000) == 0x38000000; /* unscaled, post-, pre-index, unprivileged; opc = 00 */
}

static struct decoded arm64_decode(const uint8_t *b, size_t len)
{
    struct decoded d = { 0 };
    if (len != 4) {
        return d;
    }
    uint32_t w = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    uint32_t rt = w & 31, sys = w & ~31u;
    d.flags = (is_exempt(w) ? INSN_EXEMPT : 0) | (stores_to_stack(w) ? INSN_STACK_STORE : 0);
    d.arg = rt;
    if (sys == 0xd50b7b20 || sys == 0xd50b7a20 || sys == 0xd50b7e20 || sys == 0xd50b7c20 ||
        sys == 0xd50b7d20) {
        d.op = OP_DC; /* DC CVAU, CVAC, CIVAC, CVAP, CVADP: all clean at least to the PoU */
    } else if (sys == 0xd50b7520) {
        d.op = OP_IC; /* IC IVAU */
    } else if (w == 0xd508751f) {
        d.op = OP_IALLU;
    } else if (w == 0xd508711f) {
        d.op = OP_IALLUIS;
    } else if ((w & 0xfffff0ff) == 0xd503309f && ((w >> 8) & 0xf) != 0 && ((w >> 8) & 0xf) != 4) {
        d.op = OP_DSB; /* CRm 0 and 4 are the SSBB and PSSBB speculation barriers */
        d.arg = dsb_kind_of((w >> 8) & 0xf);
    } else if ((w & 0xfffff0ff) == 0xd50330df) {
        d.op = OP_ISB;
    } else if (w == 0xd69f03e0 || w == 0xd69f0bff || w == 0xd69f0fff) {
        d.op = OP_ERET; /* ERET, ERETAA, ERETAB */
    } else if (sys == 0xd518c000) {
        d.op = OP_VBAR; /* MSR VBAR_EL1, Xt: the vectors, so that exception entry is seen */
    } else if (sys == 0xd5184100) {
        d.op = OP_SP_EL0; /* MSR SP_EL0, Xt */
    } else if (w == 0xd4000001) {
        d.op = OP_SVC; /* SVC #0: Linux system calls */
    }
    d.reads_regs = d.op == OP_DC || d.op == OP_IC || d.op == OP_VBAR || d.op == OP_SP_EL0 || d.op == OP_SVC;
    return d;
}

static uint16_t arm64_block_op(uint64_t vaddr)
{
    unsigned n = __atomic_load_n(&g_nvbar, __ATOMIC_ACQUIRE);
    n = n < MAX_VECTORS ? n : MAX_VECTORS;
    for (unsigned i = 0; i < n; i++) {
        uint64_t vbar = __atomic_load_n(&g_vbar[i], __ATOMIC_ACQUIRE), off = vaddr - vbar;
        if (vbar && off < 0x800) {
            /* Four groups of four 0x80-byte entries: Synchronous, IRQ, FIQ, SError. The third and
               fourth groups are entries from a lower EL (AArch64, AArch32). */
            bool sync = (off >> 7) % 4 == 0;
            if (off < 0x400) {
                return sync ? OP_TRAP_CURRENT : OP_TRAP_CURRENT_ASYNC;
            }
            return sync ? OP_TRAP_LOWER_SYNC : OP_TRAP_LOWER_ASYNC;
        }
    }
    return 0;
}

/* ---- the rule ----------------------------------------------------------------------------- */

/* The executing PE when the question is "for every PE" (arm64_settle): equal to no issuer. */
#define ANY_PE MAX_VCPUS

/* When the step at event `seq` (the store, need DSB_STORES; a DC or IC, need DSB_MAINTENANCE),
   issued by `vcpu` and thread `task`, was completed by a DSB for the executing PE `exec`: for code
   a program wrote, by a DSB of the issuing thread's program; otherwise (or when the thread is
   unknown) by a DSB of the issuing PE. A DSB NSH completes it for the issuing PE only, so when
   another PE executes (or any PE: ANY_PE) the DSB must be ISH or wider. 0: not completed. */
static uint64_t completed(bool by_program, unsigned vcpu, uint64_t task, uint64_t seq, unsigned need, unsigned exec)
{
    if (vcpu == UNKNOWN_WRITER) {
        return seq + 1; /* a store not attributed to one PE: assume its DSB (no false report) */
    }
    need |= vcpu == exec ? 0 : DSB_SHARED;
    uint64_t done = by_program ? engine_thread_dsb_after(task, seq, need) : UINT64_MAX;
    return done != UINT64_MAX ? done : engine_dsb_after(vcpu, seq, need);
}

/* The earlier of two completions (0: none). */
static uint64_t earliest(uint64_t a, uint64_t b) { return !a || (b && b < a) ? b : a; }

/* An I-side invalidation that may stand for the line: its event, PE and thread. */
struct invalidation {
    uint64_t seq, task;
    unsigned vcpu;
};

/* Steps 1 to 4 for the store w, for PE exec (ANY_PE: for every PE, so no IC IALLU, which is one
   PE's, and only DSBs for the inner shareable domain). Of the recorded maintenance the most
   favourable sequence counts: the earliest completed clean after the store, then the earliest
   completed invalidation after that completion. The event of the DSB that completed the
   invalidation, or 0 and the broken rule in *broken. */
static uint64_t maintained(const struct line *l, struct writer w, bool by_program, unsigned exec,
                           const struct rule **broken)
{
    uint64_t clean_done = 0;
    if (g_idc) {
        clean_done = completed(by_program, w.vcpu, w.task, w.seq, DSB_STORES, exec);
        /* Bytes the kernel publishes: with IDC the DSB that would complete a clean completes the
           store, the earliest one counting: the executing PE's, or that of a PE that invalidated
           the line for the kernel after the store. Linux maps a page-cache page on the CPU that
           faults (__sync_icache_dcache: DSB ISHST where the clean would be, then its IC IVAU),
           after it saw the page under the folio lock, while the CPU that wrote it (clear_page,
           before a device filled it) may not have run a DSB yet. Seen: a program's thread
           running text the other thread's fault had allocated 120 events before, on either CPU
           (neoverse-v1, neoverse-n1). Without IDC the mapping CPU's DC CVAU and DSB count
           already. */
        if (!by_program) {
            if (exec != ANY_PE) {
                clean_done = earliest(clean_done, engine_dsb_after(exec, w.seq, DSB_STORES | DSB_SHARED));
            }
            for (unsigned i = 0; i < MAINT_HISTORY; i++) {
                uint64_t ic = load64(&l->ic[i]);
                if (maint_kernel(ic) && maint_seq(ic) > w.seq) {
                    clean_done = earliest(clean_done, engine_dsb_after(maint_vcpu(ic), w.seq, DSB_STORES | DSB_SHARED));
                }
            }
        }
    } else {
        bool cleaned = false;
        for (unsigned i = 0; i < MAINT_HISTORY; i++) {
            uint64_t dc = load64(&l->dc[i]);
            if (maint_seq(dc) <= w.seq) {
                continue;
            }
            cleaned = true;
            uint64_t done =
                completed(by_program, maint_vcpu(dc), load64(&l->dc_task[i]), maint_seq(dc), DSB_MAINTENANCE, exec);
            if (done && (!clean_done || done < clean_done)) {
                clean_done = done;
            }
        }
        if (!cleaned) {
            *broken = &no_dc_clean;
            return 0;
        }
    }
    if (!clean_done) {
        *broken = &no_dsb;
        return 0;
    }
    if (g_dic) {
        return clean_done;
    }
    struct invalidation cand[MAINT_HISTORY + 2];
    unsigned n = 0;
    for (unsigned i = 0; i < MAINT_HISTORY; i++) {
        uint64_t ic = load64(&l->ic[i]);
        cand[n++] = (struct invalidation){ maint_seq(ic), load64(&l->ic_task[i]), maint_vcpu(ic) };
    }
    uint64_t all = load64(&g_iallis);
    cand[n++] = (struct invalidation){ maint_seq(all), load64(&g_iallis_task), maint_vcpu(all) };
    if (exec != ANY_PE) {
        cand[n++] = (struct invalidation){ load64(&g_iallu[exec]), load64(&g_iallu_task[exec]), exec };
    }
    bool invalidated = false, after_clean = false;
    uint64_t ic_done = 0;
    for (unsigned i = 0; i < n; i++) {
        if (cand[i].seq <= w.seq) {
            continue;
        }
        invalidated = true;
        if (cand[i].seq < clean_done) {
            continue; /* issued before the clean completed */
        }
        after_clean = true;
        uint64_t done = completed(by_program, cand[i].vcpu, cand[i].task, cand[i].seq, DSB_MAINTENANCE, exec);
        if (done && (!ic_done || done < ic_done)) {
            ic_done = done;
        }
    }
    if (!invalidated) {
        *broken = &no_ic_invalidate;
    } else if (!after_clean || !ic_done) {
        *broken = &no_dsb;
    }
    return ic_done;
}

static const struct rule *arm64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                      const struct exec_ctx *x)
{
    struct writer w = engine_writer(l, m);
    if (!w.seq || (flags & INSN_EXEMPT)) {
        return NULL;
    }
    bool by_program = engine_by_program(l, w, x);
    /* User code running bytes the kernel cleaned or invalidated after their last store: Linux
       does that when it maps a page for execution (__sync_icache_dcache, called by set_pte_at
       before it writes the entry) and asks no other CPU for a context synchronization, because
       none can hold instructions fetched through a translation that did not exist yet (a PE
       fetches only through a valid translation, and a translation fault is never cached in a
       TLB). So the kernel's maintenance must be complete, and that is all: asking the executing
       CPU for an ISB after it was a false arm64.no_isb, 1 in about 15 two-thread PCRE2 runs, when
       the program's second thread first ran a text page its first thread had just faulted in. */
    bool mapped_by_kernel = x->user && engine_kernel_maintained(l, w.seq);
    uint64_t sync = mapped_by_kernel ? UINT64_MAX : by_program ? x->thread_sync : load64(&g_vcpu[vcpu].csync);
    /* A sequence that completed the store for every PE before the line's history forgot it. */
    uint64_t settled = engine_settled(l, w, by_program);
    if (settled && sync > settled) {
        return NULL;
    }
    const struct rule *broken = NULL;
    uint64_t done = maintained(l, w, by_program, vcpu, &broken);
    if (!done && !settled) {
        return broken;
    }
    return done && sync > done ? NULL : &no_isb;
}

/* The store's maintenance complete for every PE (engine_settled records it). */
static uint64_t arm64_settle(const struct line *l, struct writer w, bool by_program)
{
    const struct rule *broken = NULL;
    return maintained(l, w, by_program, ANY_PE, &broken);
}

const struct arch_ops arch_arm64 = {
    .name = "arm64",
    .qemu_target = "aarch64",
    .parse_arg = arm64_parse_arg,
    .init = arm64_init,
    .vcpu_init = arm64_vcpu_init,
    .decode = arm64_decode,
    .block_op = arm64_block_op,
    .event = arm64_event,
    .check = arm64_check,
    .settle = arm64_settle,
    .user_mm = arm64_user_mm,
    .user_translate = arm64_user_translate,
    .piece = 4,
    .is_kernel_pc = arm64_is_kernel_pc,
    .rules = rules,
};
