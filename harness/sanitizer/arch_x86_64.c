/*
 * x86_64 rules (Intel SDM Vol. 3A, "Handling Self- and Cross-Modifying Code"):
 *
 *   - self-modifying code: a CPU may execute bytes it stored itself (after a jump; QEMU's
 *     translation blocks end at jumps, so that part is not checked);
 *   - cross-modifying code: bytes stored by another CPU must be followed by a serializing
 *     instruction on the executing CPU before it executes them.     x86_64.no_serialize
 *
 * Serializing instructions recognised (SDM Vol. 3A "Serializing Instructions"): CPUID, IRET,
 * SERIALIZE, MOV to CR0/2/3/4/8, MOV to DR, WRMSR (except to IA32_TSC_DEADLINE and the x2APIC
 * MSRs, which the SDM excludes; Linux writes them on every timer interrupt), INVD, WBINVD,
 * INVLPG, INVPCID, LGDT, LIDT, LLDT, LTR, RSM. A line written by several CPUs is attributed to
 * its last writer.
 *
 * Exemptions, for the INT3 protocol of Linux's text_poke_bp (cross-modifying live code without
 * stopping the other CPUs): an executed INT3 (0xCC), which the patcher writes first, and an
 * instruction of which only the first byte (the INT3 being replaced by the final opcode) was
 * written since the executing CPU last serialized. Other CPUs may run either; both are safe.
 *
 * A CPU started by INIT-SIPI is reset: the first block it runs at the start-up vector (a page-
 * aligned real-mode address below 1 MiB) counts as serializing.
 */
#include <string.h>

#include "coherency.h"

static struct qemu_plugin_register *g_rcx[MAX_VCPUS];

static void x86_64_vcpu_init(unsigned vcpu)
{
    GArray *regs = qemu_plugin_get_registers();
    for (guint i = 0; i < regs->len; i++) {
        qemu_plugin_reg_descriptor *d = &g_array_index(regs, qemu_plugin_reg_descriptor, i);
        if (!strcmp(d->name, "rcx")) {
            g_rcx[vcpu] = d->handle;
        }
    }
    g_array_free(regs, true);
}

static void on_serialize(unsigned vcpu, void *udata)
{
    /* The serializing set includes every translation change: MOV CR3, INVLPG, INVPCID. */
    on_translation_change(vcpu, udata);
    store32(&g_vcpu[vcpu].serialize, next_event());
}

/* WRMSR serializes unless ECX names IA32_TSC_DEADLINE (0x6e0) or an x2APIC MSR (0x800-0x8ff). */
static void on_wrmsr(unsigned vcpu, void *udata)
{
    GByteArray *buf = g_byte_array_new();
    uint32_t msr = 0;
    bool known = g_rcx[vcpu] && qemu_plugin_read_register(g_rcx[vcpu], buf) >= 4;
    if (known) {
        memcpy(&msr, buf->data, 4);
    }
    g_byte_array_free(buf, true);
    if (!known || (msr != 0x6e0 && (msr < 0x800 || msr > 0x8ff))) {
        on_serialize(vcpu, udata);
    }
}

static bool is_serializing(const uint8_t *b, size_t len)
{
    size_t i = 0;
    bool opsize = false;
    /* legacy prefixes, then REX */
    while (i < len && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0xf0 || b[i] == 0xf2 || b[i] == 0xf3 ||
                       b[i] == 0x2e || b[i] == 0x36 || b[i] == 0x3e || b[i] == 0x26 || b[i] == 0x64 ||
                       b[i] == 0x65)) {
        opsize |= b[i] == 0x66;
        i++;
    }
    if (i < len && (b[i] & 0xf0) == 0x40) {
        i++;
    }
    if (i >= len) {
        return false;
    }
    if (b[i] == 0xcf) {
        return true; /* IRET */
    }
    if (b[i] != 0x0f || i + 1 >= len) {
        return false;
    }
    uint8_t op = b[i + 1], modrm = i + 2 < len ? b[i + 2] : 0, reg = (modrm >> 3) & 7;
    bool mem = (modrm >> 6) != 3;
    switch (op) {
    case 0xa2: /* CPUID */
    case 0x22: /* MOV CRn, r */
    case 0x23: /* MOV DRn, r */
    case 0x08: /* INVD */
    case 0x09: /* WBINVD */
    case 0xaa: /* RSM */
        return true;
    case 0x01:
        return modrm == 0xe8 /* SERIALIZE */ || (mem && (reg == 2 || reg == 3 || reg == 7)); /* LGDT LIDT INVLPG */
    case 0x00:
        return reg == 2 || reg == 3; /* LLDT, LTR */
    case 0x38:
        return opsize && modrm == 0x82; /* INVPCID */
    default:
        return false;
    }
}

static unsigned x86_64_instrument_insn(struct qemu_plugin_insn *insn, const uint8_t *b, size_t len)
{
    size_t i = 0;
    while (i + 1 < len && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0x2e || b[i] == 0x3e || (b[i] & 0xf0) == 0x40)) {
        i++;
    }
    if (i + 1 < len && b[i] == 0x0f && b[i + 1] == 0x30) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_wrmsr, QEMU_PLUGIN_CB_R_REGS, NULL);
    } else if (is_serializing(b, len)) {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_serialize, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    return (len == 1 && b[0] == 0xcc) ? INSN_EXEMPT : 0;
}

static void x86_64_instrument_tb(struct qemu_plugin_tb *tb, uint64_t vaddr)
{
    if (vaddr < 0x100000 && vaddr % 4096 == 0) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_serialize, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static const char *x86_64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags)
{
    uint32_t w = bytes_seq(l, m), serialized = load32(&g_vcpu[vcpu].serialize);
    if (!w || (flags & INSN_EXEMPT) || l->wvcpu == vcpu || serialized > w) {
        return NULL;
    }
    if (flags & INSN_STARTS_HERE) {
        /* The last step of the INT3 protocol: only the first byte (an INT3 until now) was
           written since this CPU last serialized. */
        uint64_t first = m & -m;
        if (bytes_seq(l, first) == w && serialized > bytes_seq(l, m & ~first)) {
            return NULL;
        }
    }
    return "x86_64.no_serialize";
}

static bool x86_64_is_kernel_pc(uint64_t pc)
{
    return pc >= 0xffff800000000000ULL;
}

const struct arch_ops arch_x86_64 = {
    .name = "x86_64",
    .qemu_target = "x86_64",
    .vcpu_init = x86_64_vcpu_init,
    .instrument_insn = x86_64_instrument_insn,
    .instrument_tb = x86_64_instrument_tb,
    .check = x86_64_check,
    .piece = 8,
    .is_kernel_pc = x86_64_is_kernel_pc,
};
