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
 *      first block of an exception vector), ERET, or SVC/HVC/SMC/BRK (an exception is taken).
 *                                                                           arm64.no_isb
 * Line sizes come from the modelled CPU's CTR_EL0 (plugin argument ctr_el0): DminLine for DC,
 * IminLine for IC. Any DSB option counts (a DSB ST variant is not distinguished).
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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coherency.h"

#define CTR_IDC (1ULL << 28)
#define CTR_DIC (1ULL << 29)
#define MAX_VECTORS 16

static uint64_t g_ctr;
static bool g_ctr_set, g_idc, g_dic;
static unsigned g_dline, g_iline;
static uint32_t g_iallis_seq;
static uint8_t g_iallis_vcpu;
static uint64_t g_vbar[MAX_VECTORS];
static unsigned g_nvbar;

enum { REG_TTBR0, REG_TTBR1, REG_TCR, REG_SCTLR, N_SYSREGS };
/* QEMU's gdbstub names (feature org.qemu.gdb.arm.sys.regs); SCTLR_EL1 is called "SCTLR". */
static const char *const sysreg_names[N_SYSREGS] = { "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "SCTLR" };
static struct qemu_plugin_register *g_x[MAX_VCPUS][31];
static struct qemu_plugin_register *g_sys[MAX_VCPUS][N_SYSREGS];

static bool arm64_parse_arg(const char *key, const char *value)
{
    if (strcmp(key, "ctr_el0")) {
        fprintf(stderr, "jitprobe sanitizer: unknown arm64 argument %s; valid: ctr_el0\n", key);
        return false;
    }
    char *end;
    g_ctr = strtoull(value, &end, 0);
    g_ctr_set = *value && !*end;
    if (!g_ctr_set) {
        fprintf(stderr, "jitprobe sanitizer: ctr_el0=%s is not a number\n", value);
    }
    return g_ctr_set;
}

static bool arm64_init(unsigned *granule)
{
    if (!g_ctr_set) {
        fprintf(stderr, "jitprobe sanitizer: arm64 needs ctr_el0= (the CPU model's CTR_EL0)\n");
        return false;
    }
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
    GArray *regs = qemu_plugin_get_registers();
    for (guint i = 0; i < regs->len; i++) {
        qemu_plugin_reg_descriptor *d = &g_array_index(regs, qemu_plugin_reg_descriptor, i);
        if (d->name[0] == 'x' && d->name[1] >= '0' && d->name[1] <= '9') {
            int n = atoi(d->name + 1);
            if (n >= 0 && n < 31) {
                g_x[vcpu][n] = d->handle;
            }
        }
        for (int r = 0; r < N_SYSREGS; r++) {
            if (!strcmp(d->name, sysreg_names[r])) {
                g_sys[vcpu][r] = d->handle;
            }
        }
    }
    g_array_free(regs, true);
}

static bool read_reg(struct qemu_plugin_register *h, uint64_t *out)
{
    if (!h) {
        return false;
    }
    GByteArray *buf = g_byte_array_new();
    int n = qemu_plugin_read_register(h, buf);
    bool ok = n >= 4 && n <= 8;
    if (ok) {
        *out = 0;
        memcpy(out, buf->data, n); /* little-endian host and target */
    }
    g_byte_array_free(buf, true);
    return ok;
}

static bool read_xt(unsigned vcpu, unsigned rt, uint64_t *out)
{
    if (rt == 31) {
        *out = 0;
        return true;
    }
    return read_reg(g_x[vcpu][rt], out);
}

/* Stage 1 EL1&0 translation of va on this vCPU (4 KiB granule, optional LPA2 5-level tables). */
static bool va_to_pa(unsigned vcpu, uint64_t va, uint64_t *pa)
{
    uint64_t sctlr, tcr, ttbr;
    if (!read_reg(g_sys[vcpu][REG_SCTLR], &sctlr)) {
        return false;
    }
    if (!(sctlr & 1)) {
        *pa = va; /* MMU off */
        return true;
    }
    bool upper = (va >> 55) & 1;
    if (!read_reg(g_sys[vcpu][REG_TCR], &tcr) || !read_reg(g_sys[vcpu][upper ? REG_TTBR1 : REG_TTBR0], &ttbr)) {
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
        if (!read_guest_phys(table + idx * 8, &desc, 8) || !(desc & 1)) {
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

/* ---- events --------------------------------------------------------------------------------- */

static void on_dsb(unsigned vcpu, void *udata)
{
    (void)udata;
    struct vcpu_events *ev = &g_vcpu[vcpu];
    uint32_t s = next_event();
    store32(&ev->dsb[ev->dsb_count % DSB_HISTORY], s);
    store32(&ev->dsb_count, ev->dsb_count + 1);
}

static void on_csync(unsigned vcpu, void *udata)
{
    (void)udata;
    store32(&g_vcpu[vcpu].csync, next_event());
}

static void on_iallu(unsigned vcpu, void *udata)
{
    (void)udata;
    store32(&g_vcpu[vcpu].iallu, next_event());
}

static void on_iallis(unsigned vcpu, void *udata)
{
    (void)udata;
    g_iallis_vcpu = vcpu;
    store32(&g_iallis_seq, next_event());
}

/* DC clean or IC IVAU by VA: udata packs Rt and whether it is the I-side. */
static void on_line_op(unsigned vcpu, void *udata)
{
    unsigned rt = (uintptr_t)udata & 31;
    bool icache = (uintptr_t)udata & 32;
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
    uint32_t s = next_event();
    track_page(pa);
    for (unsigned off = 0; off < size; off += g_granule) {
        struct line *l = line_at(pa + off);
        if (!l) {
            continue;
        }
        if (icache) {
            l->ic_vcpu = vcpu;
            store32(&l->ic_seq, s);
        } else {
            l->dc_vcpu = vcpu;
            store32(&l->dc_seq, s);
        }
    }
}

static void on_vbar_write(unsigned vcpu, void *udata)
{
    uint64_t vbar;
    if (!read_xt(vcpu, (uintptr_t)udata, &vbar)) {
        return;
    }
    unsigned n = __atomic_load_n(&g_nvbar, RELAXED);
    for (unsigned i = 0; i < n; i++) {
        if (g_vbar[i] == vbar) {
            return;
        }
    }
    if (n < MAX_VECTORS) {
        /* Racing writers may drop one value; Linux writes the same few tables on every CPU. */
        g_vbar[n] = vbar;
        __atomic_store_n(&g_nvbar, n + 1, __ATOMIC_RELEASE);
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

static unsigned arm64_instrument_insn(struct qemu_plugin_insn *insn, const uint8_t *b, size_t len)
{
    if (len != 4) {
        return 0;
    }
    uint32_t w = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    uint32_t rt = w & 31, sys = w & ~31u;
    enum qemu_plugin_cb_flags r = QEMU_PLUGIN_CB_R_REGS, none = QEMU_PLUGIN_CB_NO_REGS;
    if (sys == 0xd50b7b20 || sys == 0xd50b7a20 || sys == 0xd50b7e20 || sys == 0xd50b7c20 ||
        sys == 0xd50b7d20) {
        /* DC CVAU, CVAC, CIVAC, CVAP, CVADP: all clean at least to the PoU */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_line_op, r, (void *)(uintptr_t)rt);
    } else if (sys == 0xd50b7520) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_line_op, r, (void *)(uintptr_t)(rt | 32));
    } else if (w == 0xd508751f) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_iallu, none, NULL);
    } else if (w == 0xd508711f) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_iallis, none, NULL);
    } else if ((w & 0xfffff0ff) == 0xd503309f && ((w >> 8) & 0xf) != 0 && ((w >> 8) & 0xf) != 4) {
        /* DSB (CRm 0 and 4 are the SSBB and PSSBB speculation barriers) */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_dsb, none, NULL);
    } else if ((w & 0xfffff0ff) == 0xd50330df || w == 0xd69f03e0 || w == 0xd69f0bff ||
               w == 0xd69f0fff || (w & 0xffe0001c) == 0xd4000000 || (w & 0xffe0001f) == 0xd4200000) {
        /* ISB, ERET, ERETAA, ERETAB, SVC/HVC/SMC, BRK */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_csync, none, NULL);
    } else if ((w & 0xfff8e000) == 0xd5088000 || (w & 0xfffff000) == 0xd5181000 ||
               (w & 0xfffff000) == 0xd5182000) {
        /* TLBI (CRn 8, and 9 for the nXS forms); MSR to SCTLR_EL1/TTBR0_EL1/TTBR1_EL1/TCR_EL1 */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_translation_change, none, NULL);
    } else if (sys == 0xd518c000) {
        /* MSR VBAR_EL1, Xt: remember the vectors so that exception entry is seen */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_vbar_write, r, (void *)(uintptr_t)rt);
    }
    return is_exempt(w) ? INSN_EXEMPT : 0;
}

static void arm64_instrument_tb(struct qemu_plugin_tb *tb, uint64_t vaddr)
{
    unsigned n = __atomic_load_n(&g_nvbar, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++) {
        if (vaddr - g_vbar[i] < 0x800) {
            qemu_plugin_register_vcpu_tb_exec_cb(tb, on_csync, QEMU_PLUGIN_CB_NO_REGS, NULL);
            return;
        }
    }
}

/* ---- the rule ----------------------------------------------------------------------------- */

static const char *arm64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags)
{
    uint32_t w = bytes_seq(l, m);
    if (!w || (flags & INSN_EXEMPT)) {
        return NULL;
    }
    uint32_t clean, clean_done, ic = 0, ic_done;
    unsigned clean_vcpu, ic_vcpu = vcpu;
    if (g_idc) {
        clean = w;
        clean_vcpu = l->wvcpu;
    } else {
        clean = load32(&l->dc_seq);
        clean_vcpu = l->dc_vcpu;
        if (clean <= w) {
            return "arm64.no_dc_clean";
        }
    }
    clean_done = dsb_after(clean_vcpu, clean);
    if (!clean_done) {
        return "arm64.no_dsb";
    }
    if (g_dic) {
        ic_done = clean_done;
    } else {
        uint32_t line_ic = load32(&l->ic_seq), all = load32(&g_iallis_seq), local = load32(&g_vcpu[vcpu].iallu);
        if (line_ic > ic) {
            ic = line_ic;
            ic_vcpu = l->ic_vcpu;
        }
        if (all > ic) {
            ic = all;
            ic_vcpu = g_iallis_vcpu;
        }
        if (local > ic) {
            ic = local;
            ic_vcpu = vcpu;
        }
        if (ic <= w) {
            return "arm64.no_ic_invalidate";
        }
        if (ic < clean_done) {
            return "arm64.no_dsb";
        }
        ic_done = dsb_after(ic_vcpu, ic);
        if (!ic_done) {
            return "arm64.no_dsb";
        }
    }
    return load32(&g_vcpu[vcpu].csync) > ic_done ? NULL : "arm64.no_isb";
}

static bool arm64_is_kernel_pc(uint64_t pc)
{
    return (pc >> 55) & 1; /* TTBR1 half */
}

const struct arch_ops arch_arm64 = {
    .name = "arm64",
    .qemu_target = "aarch64",
    .parse_arg = arm64_parse_arg,
    .init = arm64_init,
    .vcpu_init = arm64_vcpu_init,
    .instrument_insn = arm64_instrument_insn,
    .instrument_tb = arm64_instrument_tb,
    .check = arm64_check,
    .piece = 4,
    .is_kernel_pc = arm64_is_kernel_pc,
};
