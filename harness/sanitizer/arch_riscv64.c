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
 * No interrupt, exception or context switch executes a FENCE.I: every FENCE.I a hart runs was
 * asked for (by the program, its riscv_flush_icache system call, or the kernel's own code
 * patching and its deferred flush when a process that called riscv_flush_icache is switched
 * in), so this per-hart rule does not depend on when the host schedules the harts. A thread
 * that runs FENCE.I and then migrates to another hart is reported there: FENCE.I is hart-local.
 *
 * Exemption: Linux patches jump labels and ftrace sites by replacing one aligned 4-byte NOP
 * with a JAL (or back) and lets other harts run the old or the new instruction until its
 * remote FENCE.I arrives. Unlike some architectures the base ISA gives no such guarantee, but a clean
 * kernel must sanitize clean, so an executed NOP (addi x0, x0, 0) or JAL is not checked.
 */
#include <string.h>

#include "engine.h"

static const struct rule no_fence_i = { "riscv64.no_fence_i" };
static const struct rule *const rules[] = { &no_fence_i, NULL };

enum { OP_FENCE_I = 1, OP_MRET };

static bool g_started[MAX_VCPUS]; /* owned by each hart's vCPU thread */
static uint64_t g_fence_i[MAX_VCPUS]; /* each hart's last FENCE.I (written by its own thread) */

static bool riscv64_init(unsigned *granule)
{
    memset(g_started, 0, sizeof(g_started));
    memset(g_fence_i, 0, sizeof(g_fence_i));
    *granule = 64;
    return true;
}

static void riscv64_vcpu_init(unsigned vcpu) { (void)vcpu; }

static void riscv64_event(unsigned vcpu, uint16_t op, uint8_t arg, bool kernel)
{
    (void)arg;
    (void)kernel;
    if (op == OP_FENCE_I || (op == OP_MRET && !g_started[vcpu])) {
        g_started[vcpu] = true;
        engine_stamp(&g_fence_i[vcpu]);
    }
}

/* Whether the instruction stores to [sp + constant] (INSN_STACK_STORE): SB, SH, SW, SD, FSH, FSW,
   FSD, FSQ with rs1 = sp, and C.SWSP, C.SDSP, C.FSDSP. Vector stores (STORE-FP's other widths)
   are not: an indexed one reaches anywhere. */
static bool stores_to_stack(const uint8_t *b, size_t len)
{
    if (len == 2) {
        unsigned f = (b[0] | b[1] << 8) & 0xe003;
        return f == 0xc002 || f == 0xe002 || f == 0xa002;
    }
    uint32_t w = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    unsigned width = (w >> 12) & 7;
    bool store = ((w & 0x7f) == 0x23 && width <= 3) || ((w & 0x7f) == 0x27 && width >= 1 && width <= 4);
    return store && ((w >> 15) & 31) == 2;
}

static struct decoded riscv64_decode(const uint8_t *b, size_t len)
{
    struct decoded d = { 0 };
    if (len != 2 && len != 4) {
        return d;
    }
    d.flags = stores_to_stack(b, len) ? INSN_STACK_STORE : 0;
    if (len != 4) {
        return d;
    }
    uint32_t w = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
    if ((w & 0x707f) == 0x100f) { /* MISC-MEM, funct3 001: FENCE.I */
        d.op = OP_FENCE_I;
    } else if (w == 0x30200073) {
        d.op = OP_MRET;
    }
    d.flags |= (w == 0x00000013 || (w & 0x7f) == 0x6f) ? INSN_EXEMPT : 0; /* NOP, JAL */
    return d;
}

static uint16_t riscv64_block_op(uint64_t vaddr)
{
    (void)vaddr;
    return 0;
}

static const struct rule *riscv64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                        const struct exec_ctx *x)
{
    (void)x;
    struct writer w = engine_writer(l, m);
    if (!w.seq || (flags & INSN_EXEMPT)) {
        return NULL;
    }
    return load64(&g_fence_i[vcpu]) > w.seq ? NULL : &no_fence_i;
}

static bool riscv64_is_kernel_pc(uint64_t pc)
{
    return pc >> 63; /* Sv39/48/57 upper half; M-mode firmware at low physical addresses counts as user */
}

const struct arch_ops arch_riscv64 = {
    .name = "riscv64",
    .qemu_target = "riscv64",
    .init = riscv64_init,
    .vcpu_init = riscv64_vcpu_init,
    .decode = riscv64_decode,
    .block_op = riscv64_block_op,
    .event = riscv64_event,
    .check = riscv64_check,
    .piece = 2,
    .is_kernel_pc = riscv64_is_kernel_pc,
    .rules = rules,
};
