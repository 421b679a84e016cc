/*
 * riscv64 rules (The RISC-V Instruction Set Manual, Volume I: Unprivileged ISA, chapter
 * '"Zifencei" Extension for Instruction-Fetch Fence'): a FENCE.I makes the stores already
 * visible to a hart visible to that hart's own instruction fetches, and to no other hart's.
 *
 *   riscv64.no_fence_i  hart E executed bytes stored (by any hart) after E's last FENCE.I.
 *
 * Code written by another hart therefore needs a FENCE.I on the executing hart after the store
 * became visible to it; Linux's riscv_flush_icache / flush_icache_all do that with an IPI or an
 * SBI remote fence, which shows here as a FENCE.I executed on every hart (in S or M mode).
 *
 * A hart's first MRET (SBI HSM hart start: OpenSBI entering the kernel on a hart that has only
 * run firmware so far) counts as a FENCE.I. Linux's secondary harts run kernel text that the
 * boot hart patched (alternatives, ftrace) in smp_callin/notify_cpu_starting before their first
 * local FENCE.I; such a hart has never fetched kernel text, so this is not reported.
 *
 * Exemption: Linux patches jump labels and ftrace sites by replacing one aligned 4-byte NOP
 * with a JAL (or back) and lets other harts run the old or the new instruction until its
 * remote FENCE.I arrives. Unlike arm64 the base ISA gives no such guarantee, but a clean
 * kernel must sanitize clean, so an executed NOP (addi x0, x0, 0) or JAL is not checked.
 */
#include "coherency.h"

static void riscv64_vcpu_init(unsigned vcpu)
{
    (void)vcpu;
}

static void on_fence_i(unsigned vcpu, void *udata)
{
    (void)udata;
    store32(&g_vcpu[vcpu].fence_i, next_event());
}

static bool g_started[MAX_VCPUS];

/* funct7 of SFENCE.VMA, SINVAL.VMA, HFENCE.VVMA, HFENCE.GVMA, HINVAL.VVMA, HINVAL.GVMA */
static bool is_tlb_fence(uint32_t funct7)
{
    return funct7 == 0x09 || funct7 == 0x0b || funct7 == 0x11 || funct7 == 0x31 || funct7 == 0x13 ||
           funct7 == 0x33;
}

static void on_mret(unsigned vcpu, void *udata)
{
    if (!g_started[vcpu]) {
        g_started[vcpu] = true;
        on_fence_i(vcpu, udata);
    }
}

static unsigned riscv64_instrument_insn(struct qemu_plugin_insn *insn, const uint8_t *b, size_t len)
{
    if (len != 4) {
        return 0;
    }
    uint32_t w = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    unsigned funct3 = (w >> 12) & 7;
    if ((w & 0x707f) == 0x100f) { /* MISC-MEM, funct3 001: FENCE.I */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_fence_i, QEMU_PLUGIN_CB_NO_REGS, NULL);
    } else if (w == 0x30200073) { /* MRET */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mret, QEMU_PLUGIN_CB_NO_REGS, NULL);
    } else if (((w & 0x7fff) == 0x73 && is_tlb_fence(w >> 25)) ||
               ((w & 0x7f) == 0x73 && (w >> 20) == 0x180 && funct3 % 4)) {
        /* SFENCE.VMA, SINVAL.VMA (Svinval; Linux uses it when present), HFENCE/HINVAL, or a CSR
           write to satp */
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_translation_change, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    return (w == 0x00000013 || (w & 0x7f) == 0x6f) ? INSN_EXEMPT : 0; /* NOP, JAL */
}

static void riscv64_instrument_tb(struct qemu_plugin_tb *tb, uint64_t vaddr)
{
    (void)tb;
    (void)vaddr;
}

static const char *riscv64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags)
{
    uint32_t w = bytes_seq(l, m);
    if (!w || (flags & INSN_EXEMPT)) {
        return NULL;
    }
    return load32(&g_vcpu[vcpu].fence_i) > w ? NULL : "riscv64.no_fence_i";
}

static bool riscv64_is_kernel_pc(uint64_t pc)
{
    return pc >> 63; /* Sv39/48/57 upper half; M-mode firmware at low physical addresses counts as user */
}

const struct arch_ops arch_riscv64 = {
    .name = "riscv64",
    .qemu_target = "riscv64",
    .vcpu_init = riscv64_vcpu_init,
    .instrument_insn = riscv64_instrument_insn,
    .instrument_tb = riscv64_instrument_tb,
    .check = riscv64_check,
    .piece = 2,
    .is_kernel_pc = riscv64_is_kernel_pc,
};
