/*
 * x86_64 rules (Intel SDM Vol. 3A, "Handling Self- and Cross-Modifying Code"):
 *
 *   - self-modifying code: a CPU may execute bytes it stored itself (after a jump; QEMU's
 *     translation blocks end at jumps, so that part is not checked);
 *   - cross-modifying code: bytes stored by another CPU must be followed by a serializing
 *     instruction on the executing CPU before it executes them.     x86_64.no_serialize
 *
 * Serializing instructions recognised (SDM Vol. 3A "Serializing Instructions"): CPUID, IRET,
 * SERIALIZE, MOV to CR0/2/3/4, MOV to DR, WRMSR (except to IA32_TSC_DEADLINE and the x2APIC
 * MSRs, which the SDM excludes; Linux writes them on every timer interrupt), INVD, WBINVD,
 * INVLPG, INVPCID, LGDT, LIDT, LLDT, LTR, RSM. A line written by several CPUs is attributed to
 * its last writer.
 *
 * Exemptions, for the INT3 protocol of Linux's text_poke_bp (cross-modifying live code without
 * stopping the other CPUs): an executed INT3 (0xCC), which the patcher writes first, and an
 * instruction of which only the first byte (the INT3 being replaced by the final opcode) was
 * written since the executing CPU last serialized. Other CPUs may run either; both are safe. The
 * rest of the instruction must have been written before that serialization (text_poke_bp
 * synchronizes every CPU between the tail and the first byte): each chunk keeps its store before
 * the newest too, for the tail a first-byte store in the same chunk followed.
 *
 * User code running bytes its own process did not store (the kernel's page-cache and copy-on-
 * write fills, done before the page is mapped for it; another process's stale stores to a page a
 * device then refilled) is not judged: the executing CPU could not have fetched them early.
 *
 * Whose serialization counts (see engine.h). Code written by user code is judged by the
 * program's protocol: the executing thread's own serializing instructions (CPUID, SERIALIZE,
 * IRET executed in user mode), its process's membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
 * after registering (Linux serializes every CPU running the process before it returns to user
 * mode), and a thread's start (Linux returns from fork with IRET). The IRET that ends an
 * interrupt does not count: interrupts come when the host schedules, not when the program asks.
 * Bytes a thread wrote itself are legal for it on any CPU: the SDM's self-modifying-code rule is
 * stated for one processor, but a thread migrated by the kernel (which returns with SYSRET, not
 * serializing) cannot act on a report, and every JIT relies on it. Code written by the kernel, and
 * kernel code, is judged per CPU with every serializing instruction (text_poke_bp relies on
 * interrupts and IRET).
 *
 * Threads are known by the kernel's task pointer: __switch_to_asm loads the next task's stack
 * with MOV RSP, [RSI + disp32] (RSI = next task), the only such instruction in the kernel. System
 * calls are read at SYSCALL (RAX number, RDI command); the process is CR3's table address.
 *
 * MOV to CR8 (the task priority register) is not serializing (SDM "Serializing Instructions").
 *
 * A CPU started by INIT-SIPI is reset: the first block it runs at the start-up vector (a page-
 * aligned real-mode address below 1 MiB) counts as serializing.
 */
#include <string.h>

#include "engine.h"

static const struct rule no_serialize = { "x86_64.no_serialize" };
static const struct rule *const rules[] = { &no_serialize, NULL };

/* Linux's system call numbers here (arch/x86/entry/syscalls/syscall_64.tbl). */
static const struct syscall_numbers g_syscalls = {
    .exit = 60, .exit_group = 231, .membarrier = 324, .execve = 59, .execveat = 322
};
/* CR3's table address, without the PCID (bits 11:0) and PTI's user-copy bit (12). */
#define CR3_TABLE 0x000fffffffffe000ULL

enum { OP_SERIALIZE = 1, OP_WRMSR, OP_SWITCH, OP_SYSCALL, OP_RESET };
enum { REG_RCX, REG_RSI, REG_RAX, REG_RDI, REG_CR3, N_REGS };
static const char *const reg_names[N_REGS] = { "rcx", "rsi", "rax", "rdi", "cr3" };
static int g_regs[MAX_VCPUS][N_REGS];

static void x86_64_vcpu_init(unsigned vcpu)
{
    for (int r = 0; r < N_REGS; r++) {
        g_regs[vcpu][r] = host_register(vcpu, reg_names[r]);
    }
}

static bool reg(unsigned vcpu, unsigned r, uint64_t *out) { return host_read_register(vcpu, g_regs[vcpu][r], out); }

static uint64_t x86_64_user_mm(unsigned vcpu)
{
    uint64_t cr3;
    return reg(vcpu, REG_CR3, &cr3) ? cr3 & CR3_TABLE : 0;
}

static void serialize(unsigned vcpu, bool kernel)
{
    engine_stamp(&g_vcpu[vcpu].csync);
    if (!kernel) {
        engine_thread_sync(vcpu);
    }
}

static void syscall_op(unsigned vcpu)
{
    uint64_t nr, arg0;
    if (reg(vcpu, REG_RAX, &nr) && reg(vcpu, REG_RDI, &arg0)) {
        engine_syscall(vcpu, &g_syscalls, nr, arg0, x86_64_user_mm(vcpu));
    }
}

static void x86_64_event(unsigned vcpu, uint16_t op, uint8_t arg, bool kernel)
{
    (void)arg;
    uint64_t value;
    switch (op) {
    case OP_SERIALIZE:
    case OP_RESET:
        serialize(vcpu, kernel);
        break;
    case OP_WRMSR:
        /* WRMSR serializes unless ECX names IA32_TSC_DEADLINE (0x6e0) or an x2APIC MSR (0x800-0x8ff). */
        if (!reg(vcpu, REG_RCX, &value) || ((uint32_t)value != 0x6e0 && ((uint32_t)value < 0x800 ||
                                                                          (uint32_t)value > 0x8ff))) {
            serialize(vcpu, kernel);
        }
        break;
    case OP_SWITCH:
        if (kernel && reg(vcpu, REG_RSI, &value)) {
            engine_switch_task(vcpu, value);
        }
        break;
    case OP_SYSCALL:
        if (!kernel) {
            syscall_op(vcpu);
        }
        break;
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
    uint8_t op = b[i + 1], modrm = i + 2 < len ? b[i + 2] : 0, reg_field = (modrm >> 3) & 7;
    bool mem = (modrm >> 6) != 3;
    switch (op) {
    case 0x22: { /* MOV CRn, r: CR0, CR2, CR3, CR4; not CR8 (REX.R with CR0's number) */
        bool rex_r = i > 0 && (b[i - 1] & 0xf4) == 0x44;
        return !(rex_r && reg_field == 0);
    }
    case 0xa2: /* CPUID */
    case 0x23: /* MOV DRn, r */
    case 0x08: /* INVD */
    case 0x09: /* WBINVD */
    case 0xaa: /* RSM */
        return true;
    case 0x01:
        return modrm == 0xe8 /* SERIALIZE */ || (mem && (reg_field == 2 || reg_field == 3 || reg_field == 7)); /* LGDT LIDT INVLPG */
    case 0x00:
        return reg_field == 2 || reg_field == 3; /* LLDT, LTR */
    case 0x38:
        return opsize && modrm == 0x82; /* INVPCID */
    default:
        return false;
    }
}

/* Whether every store of the instruction goes to the stack (INSN_STACK_STORE): PUSH, PUSHF, CALL
   (their memory operand, if any, is read), and MOV to [RSP + disp] with no index, no segment
   override and 64-bit addressing. */
static bool stores_to_stack(const uint8_t *b, size_t len)
{
    size_t i = 0;
    uint8_t rex = 0;
    while (i < len && b[i] == 0x66) {
        i++;
    }
    if (i < len && (b[i] & 0xf0) == 0x40) {
        rex = b[i++];
    }
    if (i >= len) {
        return false;
    }
    uint8_t op = b[i];
    if ((op & 0xf8) == 0x50 || op == 0x68 || op == 0x6a || op == 0x9c || op == 0xe8) {
        return true; /* PUSH r, PUSH imm, PUSHF, CALL rel32 */
    }
    if (i + 1 >= len) {
        return false;
    }
    uint8_t modrm = b[i + 1], reg_field = (modrm >> 3) & 7;
    if (op == 0xff) {
        return reg_field == 2 || reg_field == 6; /* CALL r/m, PUSH r/m */
    }
    bool mov = op == 0x88 || op == 0x89 || ((op == 0xc6 || op == 0xc7) && reg_field == 0);
    if (!mov || modrm >> 6 == 3 || (modrm & 7) != 4 || i + 2 >= len) {
        return false;
    }
    /* SIB base 100 is RSP and index 100 is none, unless REX.B or REX.X makes them R12. */
    uint8_t sib = b[i + 2];
    return (sib & 7) == 4 && ((sib >> 3) & 7) == 4 && !(rex & 3);
}

static struct decoded x86_64_decode(const uint8_t *b, size_t len)
{
    struct decoded d = { 0 };
    size_t i = 0;
    while (i + 1 < len && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0x2e || b[i] == 0x3e || (b[i] & 0xf0) == 0x40)) {
        i++;
    }
    if (i + 1 < len && b[i] == 0x0f && b[i + 1] == 0x30) {
        d.op = OP_WRMSR;
    } else if (len == 7 && b[0] == 0x48 && b[1] == 0x8b && b[2] == 0xa6) {
        d.op = OP_SWITCH; /* MOV RSP, [RSI + disp32] */
    } else if (len == 2 && b[0] == 0x0f && b[1] == 0x05) {
        d.op = OP_SYSCALL;
    } else if (is_serializing(b, len)) {
        d.op = OP_SERIALIZE;
    }
    d.reads_regs = d.op == OP_WRMSR || d.op == OP_SWITCH || d.op == OP_SYSCALL;
    d.flags = ((len == 1 && b[0] == 0xcc) ? INSN_EXEMPT : 0) | (stores_to_stack(b, len) ? INSN_STACK_STORE : 0);
    return d;
}

static uint16_t x86_64_block_op(uint64_t vaddr)
{
    /* A CPU started by INIT-SIPI begins at a page-aligned real-mode vector below 1 MiB. */
    return vaddr < 0x100000 && vaddr % 4096 == 0 ? OP_RESET : 0;
}

static bool x86_64_is_kernel_pc(uint64_t pc)
{
    return pc >= 0xffff800000000000ULL;
}

static const struct rule *x86_64_check(const struct line *l, uint64_t m, unsigned vcpu, unsigned flags,
                                       const struct exec_ctx *x)
{
    struct writer w = engine_writer(l, m);
    if (!w.seq || (flags & INSN_EXEMPT) || w.vcpu == UNKNOWN_WRITER) {
        return NULL; /* a writer not attributed: not shown to be cross-modification */
    }
    bool by_program = engine_by_program(l, w, x);
    if (by_program && x->task && w.task) {
        /* Program code is judged per thread, whichever CPUs the threads ran on: two threads that
           the guest scheduled on one CPU are still cross-modifying (the program cannot choose),
           and a verdict must not depend on how a loaded host schedules the guest's CPUs. */
        if (w.task == x->task) {
            return NULL;
        }
    } else if (w.vcpu == vcpu) {
        return NULL;
    }
    if (x->user && !by_program) {
        /* User code running bytes its own process did not store: the kernel fills page-cache and
           copy-on-write pages before it maps them for the program (the executing CPU had no
           translation to fetch them through), and another process's stores to a recycled page were
           overwritten by a device the plugin cannot see. No program can act on such a report. */
        return NULL;
    }
    uint64_t serialized = by_program ? x->thread_sync : load64(&g_vcpu[vcpu].csync);
    if (serialized > w.seq) {
        return NULL;
    }
    if (flags & INSN_STARTS_HERE) {
        /* The last step of the INT3 protocol: only the first byte (an INT3 until now) was
           written since this CPU last serialized. The tail's store may be its chunk's newest or,
           when the first byte's store came after it in the same chunk, the one before: a tail
           written after this CPU last serialized is not forgotten then. */
        uint64_t first = m & -m;
        uint64_t rest = engine_writer(l, m & ~first).seq, tail = engine_older_seq(l, m & ~first);
        if (engine_writer(l, first).seq == w.seq && serialized > (rest > tail ? rest : tail)) {
            return NULL;
        }
    }
    return &no_serialize;
}

const struct arch_ops arch_x86_64 = {
    .name = "x86_64",
    .qemu_target = "x86_64",
    .vcpu_init = x86_64_vcpu_init,
    .decode = x86_64_decode,
    .block_op = x86_64_block_op,
    .event = x86_64_event,
    .check = x86_64_check,
    .user_mm = x86_64_user_mm,
    .piece = 8,
    .is_kernel_pc = x86_64_is_kernel_pc,
    .rules = rules,
};
