/*
 * The rule engine and the three rule files, driven without QEMU: written event sequences on
 * chosen vCPUs and the verdict each must give, including the orderings that must NOT be
 * reported; then several threads feeding events at once (run under ThreadSanitizer by
 * `make test-tsan`, which fails on any report).
 *
 *   engine_test            every sequence test; exit 1 and a line per failure if any fails
 *   engine_test threads    the concurrent stress only
 *   engine_test stack-stores ARCH
 *                          for each line of hex bytes on stdin (one instruction), 1 if ARCH's
 *                          decoder calls it a store to the stack only, else 0 (checked against
 *                          capstone by tests/test_sanitizer_engine.py)
 *
 * Guest registers and physical memory are a small table here (host_register and friends), as
 * QEMU would give them: a guest with the MMU off (SCTLR 0), so DC/IC operands are physical
 * addresses, and every thread in one process (the same TTBR0_EL1 and CR3). A test that needs
 * translation writes its few page-table entries (map_page) and turns the MMU on.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

extern const struct arch_ops arch_arm64, arch_riscv64, arch_x86_64;

/* ---- the guest, as the engine's host interface sees it ---------------------------------------- */

#define NREGS 11
static const char *const reg_names[NREGS] = { "x0", "x8", "x9", "SCTLR", "TTBR0_EL1", "TCR_EL1", "rax", "rdi",
                                              "rcx", "rsi", "cr3" };
static uint64_t g_regs[MAX_VCPUS][NREGS];

int host_register(unsigned vcpu, const char *name)
{
    (void)vcpu;
    for (int i = 0; i < NREGS; i++) {
        if (!strcmp(reg_names[i], name)) {
            return i;
        }
    }
    return -1;
}

bool host_read_register(unsigned vcpu, int handle, uint64_t *out)
{
    if (handle < 0) {
        return false;
    }
    *out = __atomic_load_n(&g_regs[vcpu][handle], RELAXED);
    return true;
}

/* Guest physical memory: the 8-byte page-table entries map_page wrote; nothing else is RAM. */
#define PT_WORDS 16
static struct { uint64_t pa, value; } g_pt[PT_WORDS];
static unsigned g_npt;

bool host_read_phys(uint64_t pa, void *buf, size_t len)
{
    memset(buf, 0, len);
    for (unsigned i = 0; i < g_npt && len == 8; i++) {
        if (g_pt[i].pa == pa) {
            memcpy(buf, &g_pt[i].value, 8);
            return true;
        }
    }
    return false;
}

static void pt_write(uint64_t pa, uint64_t value)
{
    if (g_npt == PT_WORDS) {
        abort();
    }
    g_pt[g_npt].pa = pa;
    g_pt[g_npt++].value = value;
}

static void set_reg(unsigned vcpu, const char *name, uint64_t value)
{
    __atomic_store_n(&g_regs[vcpu][host_register(vcpu, name)], value, RELAXED);
}

/* ---- driving an architecture ------------------------------------------------------------------ */

#define RAM_BASE 0x40000000ULL
#define RAM_SIZE (16ULL << 20)
#define CODE (RAM_BASE + 0x100000)
#define USER_PC 0x400000ULL
#define KERNEL_PC 0xffff800080001000ULL
#define X86_KERNEL_PC 0xffffffff81000000ULL

static const struct arch_ops *A;
static int g_failures, g_checks;

static void setup(const struct arch_ops *arch, const char *ctr)
{
    memset(g_regs, 0, sizeof(g_regs));
    g_npt = 0;
    g_granule = 64;
    if (arch->parse_arg && ctr && !arch->parse_arg("ctr_el0", ctr)) {
        abort();
    }
    if (arch->init && !arch->init(&g_granule)) {
        abort();
    }
    if (!engine_init(arch, RAM_BASE, RAM_SIZE, 4)) {
        abort();
    }
    A = arch;
    for (unsigned v = 0; v < 4; v++) {
        arch->vcpu_init(v);
    }
}

/* Execute one instruction (its bytes) on vcpu as QEMU would deliver it to the plugin. */
static void insn(unsigned vcpu, const void *bytes, size_t len, bool kernel)
{
    struct decoded d = A->decode(bytes, len);
    if (d.op) {
        A->event(vcpu, d.op, d.arg, kernel);
    }
}

static void insn32(unsigned vcpu, uint32_t w, bool kernel) { insn(vcpu, &w, 4, kernel); }

static void block(unsigned vcpu, uint64_t vaddr)
{
    uint16_t op = A->block_op(vaddr);
    if (op) {
        A->event(vcpu, op, 0, A->is_kernel_pc(vaddr));
    }
}

static void store(unsigned vcpu, uint64_t pc) { engine_store(vcpu, CODE, CODE, 4, pc, false); }

/* The rule (or "clean") the executing vCPU gets for the stored bytes, as user or kernel code. */
static const char *run(unsigned vcpu, bool user)
{
    engine_track_page(CODE);
    const struct line *l = engine_line(CODE);
    const struct rule *r = engine_check(l, 0xf, vcpu, INSN_STARTS_HERE, user ? CODE : KERNEL_PC);
    return r ? r->name : "clean";
}

#define EXPECT(what, got, want)                                                                   \
    do {                                                                                          \
        g_checks++;                                                                               \
        if (strcmp((got), (want))) {                                                              \
            printf("FAIL %s:%d %s: got %s, want %s\n", __FILE__, __LINE__, (what), (got), (want)); \
            g_failures++;                                                                         \
        }                                                                                         \
    } while (0)

/* ---- arm64 ---------------------------------------------------------------------------------- */

enum {
    DSB_ISH = 0xd5033b9f, ISB = 0xd5033fdf, ERET = 0xd69f03e0, SVC0 = 0xd4000001,
    DC_CVAU_X9 = 0xd50b7b29, IC_IVAU_X9 = 0xd50b7529, IC_IALLU = 0xd508751f,
    MSR_VBAR_X9 = 0xd518c009, MSR_SP_EL0_X9 = 0xd5184109, SSBB = 0xd503309f,
    DSB_NSH = 0xd503379f, DSB_ISHST = 0xd5033a9f, DSB_ISHLD = 0xd503399f, DSB_RESERVED8 = 0xd503389f,
};
#define VBAR 0xffff800080010000ULL
#define IRQ_FROM_USER (VBAR + 0x480)
#define SYNC_FROM_USER (VBAR + 0x400)
#define IRQ_FROM_KERNEL (VBAR + 0x280)
#define A57 "0x8444c004"
#define N1 "0x9444c004"
#define V1 "0xb444c004"

static void arm64_boot(const char *ctr)
{
    setup(&arch_arm64, ctr);
    for (unsigned v = 0; v < 4; v++) {
        set_reg(v, "x9", VBAR);
        insn32(v, MSR_VBAR_X9, true);
        set_reg(v, "x9", 0xffff000000100000ULL + v * 0x1000); /* each vCPU's own thread */
        insn32(v, MSR_SP_EL0_X9, true);
    }
}

/* DC CVAU / IC IVAU of the code line: the test guest has the MMU off, VA == PA. */
static void maintain(unsigned vcpu, uint32_t op)
{
    set_reg(vcpu, "x9", CODE);
    insn32(vcpu, op, false);
}

/* The program's steps, with `skip` (an instruction word) left out. */
static void arm64_install(unsigned vcpu, uint32_t skip)
{
    store(vcpu, USER_PC);
    uint32_t steps[] = { DC_CVAU_X9, DSB_ISH, IC_IVAU_X9, DSB_ISH, ISB };
    for (unsigned i = 0; i < 5; i++) {
        if (steps[i] == skip) {
            continue;
        }
        if (steps[i] == DC_CVAU_X9 || steps[i] == IC_IVAU_X9) {
            maintain(vcpu, steps[i]);
        } else {
            insn32(vcpu, steps[i], false);
        }
    }
}

static void arm64_user_interrupt(unsigned vcpu, bool with_dsb)
{
    block(vcpu, IRQ_FROM_USER);
    if (with_dsb) {
        insn32(vcpu, DSB_ISH, true);
    }
    insn32(vcpu, ERET, true);
}

static void arm64_syscall(unsigned vcpu, uint64_t nr, uint64_t arg0)
{
    set_reg(vcpu, "x8", nr);
    set_reg(vcpu, "x0", arg0);
    insn32(vcpu, SVC0, false);
    block(vcpu, SYNC_FROM_USER);
    insn32(vcpu, ERET, true);
}

static void arm64_same_process(void)
{
    for (unsigned v = 0; v < 4; v++) {
        set_reg(v, "TTBR0_EL1", 0x7654000);
    }
}

/* arm64: map the 4 KiB user page va to the frame pa in the 48-bit, 4-level tables at root (each
   level's table one page after the previous), and turn the MMU on for every vCPU. */
static void map_page(uint64_t root, uint64_t va, uint64_t pa)
{
    for (unsigned level = 0; level < 4; level++) {
        uint64_t table = root + level * 0x1000, index = (va >> (39 - 9 * level)) & 511;
        pt_write(table + index * 8, (level < 3 ? table + 0x1000 : pa & ~0xfffULL) | 3);
    }
    for (unsigned v = 0; v < 4; v++) {
        set_reg(v, "SCTLR", 1);
        set_reg(v, "TCR_EL1", 16); /* T0SZ 16: 48-bit addresses, 4 KiB granule */
    }
}

/* A store made through another virtual page than the one the code runs from: judged by its
   program while that page still maps the frame (a second mapping of a JIT's buffer), by the
   kernel once it no longer does (the program's heap page, freed, came back as its own text,
   filled by a device: the store is not what runs). neoverse-v1: the store's DSB is the step. */
static void test_unmapped_store(void)
{
    const uint64_t root = 0x7654000, heap = 0x500000, text = 0x400000;
    for (int mapped = 0; mapped < 2; mapped++) {
        arm64_boot(V1);
        arm64_same_process();
        if (mapped) {
            map_page(root, heap, CODE);
        } else {
            map_page(root, 0x600000, 0x7000000); /* some other page: the heap one is gone */
        }
        engine_store(1, CODE, heap, 4, USER_PC, false); /* the other thread's store, no DSB since */
        arm64_user_interrupt(1, true); /* an interrupt handler's DSB on its CPU */
        arm64_syscall(0, 172, 0); /* the executing thread's own exception return */
        engine_track_page(CODE);
        const struct rule *r = engine_check(engine_line(CODE), 0xf, 0, INSN_STARTS_HERE, text);
        EXPECT(mapped ? "stored through a second mapping that still maps it" : "stored through a page since unmapped",
               r ? r->name : "clean", mapped ? "arm64.no_dsb" : "clean");
    }
}

/* A zeroing store, then bytes it did not write (a device filled the page): the plugin does not
   see that writer, and the zeroing store is not the author of the instruction. Only a chunk whose
   every store at its stamp wrote zeros tells that; the untracked page record never does. */
static void test_unseen_writer(void)
{
    static const uint8_t nop[4] = { 0x1f, 0x20, 0x03, 0xd5 }, zeros[4] = { 0 };
    struct { const char *what; bool zero_first, zero_second, same_stamp, tracked; const uint8_t *insn; bool unseen; } cases[] = {
        { "zeros stored, other bytes run", true, true, false, true, nop, true },
        { "zeros stored, zeros run", true, true, false, true, zeros, false },
        { "code stored", false, false, false, true, nop, false },
        { "code, then zeros beside it at the same stamp", false, true, true, true, nop, false },
        { "zeros, then code at a later stamp", true, false, false, true, nop, false },
        { "zeros stored before the page was tracked", true, true, false, false, nop, false },
    };
    for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        arm64_boot(V1);
        if (cases[k].tracked) {
            engine_track_page(CODE);
        }
        engine_store(0, CODE, CODE, 4, KERNEL_PC, cases[k].zero_first);
        if (!cases[k].same_stamp) {
            engine_event();
        }
        engine_store(0, cases[k].same_stamp ? CODE + 4 : CODE, CODE, 4, KERNEL_PC, cases[k].zero_second);
        engine_track_page(CODE);
        bool unseen = engine_unseen_writer(engine_writer(engine_line(CODE), 0xf), 0xf, cases[k].insn);
        EXPECT(cases[k].what, unseen ? "unseen writer" : "seen", cases[k].unseen ? "unseen writer" : "seen");
    }
}

/* A store by a thread that is gone: its pointer's next thread must not be asked for its DSB. */
static void test_gone_writer(void)
{
    const char *models[][2] = { { V1, "clean" }, { A57, "arm64.no_dc_clean" } };
    for (unsigned k = 0; k < 2; k++) {
        arm64_boot(models[k][0]);
        arm64_same_process();
        store(0, USER_PC); /* no DSB, no maintenance: then the thread exits */
        arm64_syscall(0, 93, 0);
        set_reg(0, "x9", 0xffff000000200000ULL);
        insn32(0, MSR_SP_EL0_X9, true);
        set_reg(1, "x9", 0xffff000000100000ULL); /* a new thread at the writer's pointer */
        insn32(1, MSR_SP_EL0_X9, true);
        EXPECT(k ? "a gone writer's store, IDC=0: still not cleaned" : "a gone writer's store, IDC=DIC=1",
               run(1, true), models[k][1]);
    }
}

static void test_arm64(void)
{
    /* Same thread: each step's omission is its own rule (cortex-a57: IDC=0, DIC=0). */
    const struct { uint32_t skip; const char *rule; } steps[] = {
        { 0, "clean" }, { DC_CVAU_X9, "arm64.no_dc_clean" }, { IC_IVAU_X9, "arm64.no_ic_invalidate" },
        { DSB_ISH, "arm64.no_dsb" }, { ISB, "arm64.no_isb" },
    };
    for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        arm64_boot(A57);
        arm64_install(0, steps[i].skip);
        EXPECT("cortex-a57 same thread", run(0, true), steps[i].rule);
    }
    /* IDC=1: no clean needed, but the store still needs its DSB; DIC=1: no invalidate either. */
    arm64_boot(N1);
    arm64_install(0, DC_CVAU_X9);
    EXPECT("neoverse-n1 without DC", run(0, true), "clean");
    arm64_boot(N1);
    arm64_install(0, IC_IVAU_X9);
    EXPECT("neoverse-n1 without IC", run(0, true), "arm64.no_ic_invalidate");
    arm64_boot(V1);
    store(0, USER_PC);
    insn32(0, DSB_ISH, false);
    insn32(0, ISB, false);
    EXPECT("neoverse-v1 DSB ISB", run(0, true), "clean");
    arm64_boot(V1);
    store(0, USER_PC);
    insn32(0, ISB, false);
    EXPECT("neoverse-v1 without DSB", run(0, true), "arm64.no_dsb");

    /* An interrupt's DSB is not the program's: the invalidation still came before any DSB of it. */
    arm64_boot(A57);
    store(0, USER_PC);
    maintain(0, DC_CVAU_X9);
    arm64_user_interrupt(0, true);
    maintain(0, IC_IVAU_X9);
    insn32(0, DSB_ISH, false);
    insn32(0, ISB, false);
    EXPECT("interrupt DSB between DC and IC", run(0, true), "arm64.no_dsb");

    /* No DSB at all, and the thread preempted after its ISB (Linux's __switch_to runs a DSB on the
       way out): still exactly no_dsb, whatever the scheduling (neoverse-n1: IDC=1). */
    arm64_boot(N1);
    arm64_install(0, DSB_ISH);
    arm64_user_interrupt(0, false);
    set_reg(0, "x9", 0xffff000000900000ULL); /* another thread runs... */
    insn32(0, MSR_SP_EL0_X9, true);
    insn32(0, DSB_ISH, true); /* ...after the switch's DSB */
    set_reg(0, "x9", 0xffff000000100000ULL); /* and the thread comes back */
    insn32(0, MSR_SP_EL0_X9, true);
    insn32(0, ERET, true);
    EXPECT("no DSB, preempted after the ISB", run(0, true), "arm64.no_dsb");

    /* A thread that cleaned on one CPU and finished the protocol on another after a migration. */
    arm64_boot(A57);
    store(0, USER_PC);
    maintain(0, DC_CVAU_X9);
    set_reg(1, "x9", 0xffff000000100000ULL); /* vCPU 0's thread moves to vCPU 1 */
    insn32(1, MSR_SP_EL0_X9, true);
    insn32(1, DSB_ISH, false);
    maintain(1, IC_IVAU_X9);
    insn32(1, DSB_ISH, false);
    insn32(1, ISB, false);
    EXPECT("protocol finished after a migration", run(1, true), "clean");

    /* A timer interrupt inside the thread's own system call: its handler's DSB is not the
       program's, so a program without a DSB stays no_dsb. */
    arm64_boot(A57);
    store(0, USER_PC);
    maintain(0, DC_CVAU_X9);
    set_reg(0, "x8", 172);
    insn32(0, SVC0, false);
    block(0, SYNC_FROM_USER);
    block(0, IRQ_FROM_KERNEL);
    insn32(0, DSB_ISH, true);
    insn32(0, ERET, true); /* back into the system call */
    insn32(0, ERET, true); /* back to user mode */
    maintain(0, IC_IVAU_X9);
    insn32(0, ISB, false);
    EXPECT("an interrupt's DSB inside the thread's system call", run(0, true), "arm64.no_dsb");

    /* Two threads whose code shares a line (sljit's shared allocator): A installs and synchronizes
       its bytes, then B maintains the line for its own bytes; A's protocol was complete. */
    arm64_boot(A57);
    arm64_install(0, 0);
    engine_store(1, CODE + 32, CODE + 32, 4, USER_PC + 0x40, false);
    set_reg(1, "x9", CODE + 32);
    insn32(1, DC_CVAU_X9, false);
    insn32(1, DSB_ISH, false);
    insn32(1, IC_IVAU_X9, false);
    insn32(1, DSB_ISH, false);
    EXPECT("another thread's later maintenance of the line", run(0, true), "clean");

    /* jitprobe's live_patch: the writer installs a function (DC, DSB, IC, DSB, ISB), starts an
       executor thread on another vCPU (its start synchronizes it, after the installation), then
       patches another word of the same line again and again, maintaining the line each time; the
       executor never synchronizes again. The first instruction's store was completed before the
       executor started: the writer's later maintenance of the line, which pushes the installation's
       DC and IC out of the line's history, changes nothing for it. The patched word is the
       executor's to synchronize for (it is a B in live_patch, exempt; judged unexempt here). */
    static const char *const live_patch_cpus[] = { A57, N1, V1 };
    for (unsigned k = 0; k < 3; k++) {
        arm64_boot(live_patch_cpus[k]);
        arm64_same_process();
        engine_store(0, CODE + 0x1c, CODE + 0x1c, 4, USER_PC, false);
        arm64_install(0, 0);
        set_reg(1, "x9", 0xffff000000300000ULL); /* the executor thread starts on vCPU 1 */
        insn32(1, MSR_SP_EL0_X9, true);
        EXPECT("live patch: installed function", run(1, true), "clean");
        for (int round = 0; round < 2 * MAINT_HISTORY; round++) {
            engine_store(0, CODE + 0x1c, CODE + 0x1c, 4, USER_PC + 0x100, false);
            set_reg(0, "x9", CODE + 0x1c);
            insn32(0, DC_CVAU_X9, false);
            insn32(0, DSB_ISH, false);
            insn32(0, IC_IVAU_X9, false);
            insn32(0, DSB_ISH, false);
            insn32(0, ISB, false);
        }
        EXPECT("live patch: the line's other instructions", run(1, true), "clean");
        const struct rule *r = engine_check(engine_line(CODE), 0xfULL << 0x1c, 1, INSN_STARTS_HERE, CODE + 0x1c);
        EXPECT("live patch: the patched word, unexempt", r ? r->name : "clean", "arm64.no_isb");
        store(0, USER_PC + 0x200); /* a new store to the first word, maintained, not synchronized */
        set_reg(0, "x9", CODE);
        insn32(0, DC_CVAU_X9, false);
        insn32(0, DSB_ISH, false);
        insn32(0, IC_IVAU_X9, false);
        insn32(0, DSB_ISH, false);
        EXPECT("live patch: the first word rewritten", run(1, true), "arm64.no_isb");
    }

    /* A page another process wrote (busybox's heap), freed and refilled by a device with this
       program's text, then cleaned and invalidated by the kernel when it mapped it executable
       (neoverse-n1: IDC=1, so the kernel's invalidation is all there is). */
    arm64_boot(N1);
    arm64_same_process();
    set_reg(0, "x9", 0xffff000000700000ULL); /* a thread of another process */
    insn32(0, MSR_SP_EL0_X9, true);
    set_reg(0, "TTBR0_EL1", 0x1111000);
    arm64_syscall(0, 172, 0); /* its process is known */
    store(0, USER_PC);
    set_reg(0, "x9", 0xffff000000100000ULL); /* back to a thread of this program's process */
    insn32(0, MSR_SP_EL0_X9, true);
    set_reg(0, "TTBR0_EL1", 0x7654000);
    block(0, SYNC_FROM_USER); /* its page fault: the kernel maps the text... */
    insn32(0, DSB_ISH, true);
    set_reg(0, "x9", CODE);
    insn32(0, IC_IVAU_X9, true);
    insn32(0, DSB_ISH, true);
    insn32(0, ERET, true); /* ...and returns */
    EXPECT("text refilled in a page another process wrote", run(0, true), "clean");
    /* The program's other thread, on the other CPU, runs that text next without having taken any
       exception since: it fetches through the entry the kernel wrote after its maintenance. */
    EXPECT("text a thread on another CPU faulted in", run(1, true), "clean");
    /* Kernel code that another CPU patched still needs that CPU's synchronization (an IPI). */
    EXPECT("the same bytes as kernel code on the other CPU", run(1, false), "arm64.no_isb");
    /* An incomplete kernel maintenance is still reported to user code. */
    arm64_boot(A57);
    store(0, USER_PC);
    set_reg(0, "x9", CODE);
    insn32(0, DC_CVAU_X9, true);
    insn32(0, DSB_ISH, true);
    insn32(0, IC_IVAU_X9, true);
    EXPECT("kernel maintenance without its last DSB", run(1, true), "arm64.no_dsb");

    /* Text the kernel copied into a page-cache page on one CPU (no DSB there yet), mapped by the
       program's other thread on the other CPU, whose fault ran the DSB ISHST of the IDC path. */
    for (int dsb = 0; dsb < 2; dsb++) {
        arm64_boot(V1);
        arm64_same_process();
        store(0, KERNEL_PC);
        block(1, SYNC_FROM_USER);
        if (dsb) {
            insn32(1, DSB_ISHST, true);
        }
        insn32(1, ERET, true);
        EXPECT(dsb ? "kernel-copied text mapped by the executing CPU" : "kernel-copied text, no DSB anywhere",
               run(1, true), dsb ? "clean" : "arm64.no_dsb");
    }
    /* neoverse-n1 (IDC, not DIC): the page zeroed on CPU 0, then mapped by a fault on CPU 1
       (DSB ISHST, IC IVAU, DSB ISH there) and run on both CPUs; CPU 0 runs its DSB only later.
       The earliest completion counts, and for CPU 0 the mapping CPU's. */
    arm64_boot(N1);
    arm64_same_process();
    store(0, KERNEL_PC);
    block(1, SYNC_FROM_USER);
    set_reg(1, "x9", CODE);
    insn32(1, DSB_ISHST, true);
    insn32(1, IC_IVAU_X9, true);
    insn32(1, DSB_ISH, true);
    insn32(1, ERET, true);
    EXPECT("zeroed page mapped by the other CPU, run there", run(1, true), "clean");
    EXPECT("zeroed page mapped by the other CPU, run by the CPU that zeroed it", run(0, true), "clean");
    insn32(0, DSB_ISH, true); /* the zeroing CPU's own DSB, after the invalidation */
    EXPECT("the zeroing CPU's later DSB does not hide the mapping CPU's earlier one", run(1, true), "clean");
    /* A report's account of the judgement: whole, or one JSON value when the buffer is short. */
    char why[2048], tiny[64];
    engine_explain(engine_line(CODE), 0xf, 1, CODE, why, sizeof(why));
    EXPECT("explained", strstr(why, "\"judged_by\": \"kernel\"") && why[strlen(why) - 1] == '}' ? "ok" : why, "ok");
    engine_explain(engine_line(CODE), 0xf, 1, CODE, tiny, sizeof(tiny));
    EXPECT("explained, short buffer", tiny, "{\"truncated\": true}");
    /* A program's store is still its own thread's to complete. */
    arm64_boot(V1);
    arm64_same_process();
    store(0, USER_PC);
    arm64_user_interrupt(1, true);
    insn32(1, ISB, false);
    EXPECT("program store, the executing CPU's DSB", run(1, true), "arm64.no_dsb");

    /* Cross-modification: the executor's own ISB is needed; an interrupt must not hide its absence. */
    arm64_boot(A57);
    arm64_install(0, 0);
    EXPECT("executor without ISB", run(1, true), "arm64.no_isb");
    arm64_user_interrupt(1, false);
    EXPECT("executor interrupted (IRQ entry and ERET)", run(1, true), "arm64.no_isb");
    block(1, IRQ_FROM_KERNEL);
    insn32(1, ISB, true); /* an ISB in an interrupt handler is the kernel's, not the thread's */
    insn32(1, ERET, true);
    EXPECT("executor interrupted, handler ISB", run(1, true), "arm64.no_isb");
    arm64_syscall(1, 172 /* getpid */, 0);
    EXPECT("executor after a system call", run(1, true), "clean");
    arm64_boot(A57);
    arm64_install(0, 0);
    insn32(1, ISB, false);
    EXPECT("executor ISB", run(1, true), "clean");

    /* The same event sequence judged as kernel-written code: every context synchronization of
       the PE counts (Linux's kick_all_cpus_sync relies on interrupts). */
    arm64_boot(A57);
    store(0, KERNEL_PC);
    maintain(0, DC_CVAU_X9);
    insn32(0, DSB_ISH, true);
    maintain(0, IC_IVAU_X9);
    insn32(0, DSB_ISH, true);
    EXPECT("kernel code before the IPI", run(1, false), "arm64.no_isb");
    block(1, IRQ_FROM_KERNEL);
    EXPECT("kernel code after the IPI", run(1, false), "clean");

    /* membarrier: SYNC_CORE after registering synchronizes the process's other threads. */
    for (int registered = 0; registered < 2; registered++) {
        arm64_boot(A57);
        arm64_same_process();
        arm64_install(0, 0);
        if (registered) {
            arm64_syscall(0, 283, 64);
        }
        arm64_syscall(0, 283, 32);
        EXPECT(registered ? "membarrier SYNC_CORE registered" : "membarrier SYNC_CORE unregistered",
               run(1, true), registered ? "clean" : "arm64.no_isb");
        arm64_syscall(0, 283, 8); /* MEMBARRIER_CMD_PRIVATE_EXPEDITED: no core serialization */
        store(0, USER_PC);
        arm64_install(0, 0);
        arm64_syscall(0, 283, 8);
        EXPECT("plain membarrier", run(1, true), "arm64.no_isb");
    }

    /* A thread that synchronized and then migrated stays synchronized; another thread on the
       vCPU it left does not inherit it. */
    arm64_boot(A57);
    arm64_install(0, 0);
    set_reg(1, "x9", 0xffff000000100000ULL); /* vCPU 0's thread now runs on vCPU 1 */
    insn32(1, MSR_SP_EL0_X9, true);
    EXPECT("migrated writer", run(1, true), "clean");
    set_reg(0, "x9", 0xffff000000200000ULL);
    insn32(0, MSR_SP_EL0_X9, true);
    EXPECT("new thread on the writer's vCPU", run(0, true), "clean"); /* a new thread starts synchronized */

    /* Exempt instructions (B, NOP, ...) are never reported. */
    arm64_boot(A57);
    store(0, USER_PC);
    engine_track_page(CODE);
    EXPECT("exempt", engine_check(engine_line(CODE), 0xf, 0, INSN_EXEMPT, CODE) ? "reported" : "clean", "clean");

    /* Decoding: SSBB is not a DSB; IC IALLU on the executing PE stands in for IC IVAU. */
    arm64_boot(A57);
    store(0, USER_PC);
    maintain(0, DC_CVAU_X9);
    insn32(0, SSBB, false);
    insn32(0, IC_IALLU, false);
    insn32(0, DSB_ISH, false);
    insn32(0, ISB, false);
    EXPECT("SSBB is no DSB", run(0, true), "arm64.no_dsb");

    /* jitprobe's migrate_after_sync under no_dsb on neoverse-n1 (IDC=1): the program stores, reads
       CTR_EL0 (Linux traps it from EL0: its exception entry ends the Spectre-BHB loop with a DSB
       NSH), invalidates, ISB, then sched_setaffinity moves it to vCPU 1 (the system call's own
       DSB ISH and __switch_to's on the way) and it calls the code there. The NSH completed the
       store for vCPU 0 only, the later DSB ISH came after the invalidation: no_dsb. */
    for (int program_dsb = 0; program_dsb < 2; program_dsb++) {
        arm64_boot(N1);
        store(0, USER_PC);
        if (program_dsb) {
            insn32(0, DSB_ISH, false);
        }
        block(0, SYNC_FROM_USER); /* MRS CTR_EL0 trapped */
        insn32(0, DSB_NSH, true);
        insn32(0, ERET, true);
        maintain(0, IC_IVAU_X9);
        if (program_dsb) {
            insn32(0, DSB_ISH, false);
        }
        insn32(0, ISB, false);
        set_reg(0, "x8", 122); /* sched_setaffinity */
        insn32(0, SVC0, false);
        block(0, SYNC_FROM_USER);
        insn32(0, DSB_NSH, true);
        insn32(0, DSB_ISH, true);
        set_reg(1, "x9", 0xffff000000100000ULL); /* vCPU 0's thread now runs on vCPU 1 */
        insn32(1, MSR_SP_EL0_X9, true);
        insn32(1, ERET, true);
        EXPECT(program_dsb ? "migrated after a complete protocol" : "migrated, only a trap's DSB NSH before the IC",
               run(1, true), program_dsb ? "clean" : "arm64.no_dsb");
    }

    /* DSB options (Arm ARM "Data Synchronization Barrier"): NSH completes for the issuing PE only;
       ST completes stores (IDC=1's step) but not cache maintenance; LD neither. A reserved
       option executes as DSB SY. */
    arm64_boot(N1);
    store(0, USER_PC);
    insn32(0, DSB_NSH, false);
    maintain(0, IC_IVAU_X9);
    insn32(0, DSB_NSH, false);
    insn32(0, ISB, false);
    insn32(1, ISB, false);
    EXPECT("DSB NSH, executed on the same PE", run(0, true), "clean");
    EXPECT("DSB NSH, executed on another PE", run(1, true), "arm64.no_dsb");
    const struct { uint32_t first, second; const char *rule; } options[] = {
        { DSB_ISHST, DSB_ISH, "clean" }, { DSB_ISHST, DSB_ISHST, "arm64.no_dsb" },
        { DSB_ISHLD, DSB_ISH, "arm64.no_dsb" }, { DSB_RESERVED8, DSB_RESERVED8, "clean" },
    };
    for (unsigned i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        arm64_boot(N1);
        store(0, USER_PC);
        insn32(0, options[i].first, false);
        maintain(0, IC_IVAU_X9);
        insn32(0, options[i].second, false);
        insn32(0, ISB, false);
        insn32(1, ISB, false);
        EXPECT("neoverse-n1 DSB options", run(1, true), options[i].rule);
    }
    arm64_boot(A57); /* IDC=0: the DC CVAU needs a DSB that completes cache maintenance */
    store(0, USER_PC);
    maintain(0, DC_CVAU_X9);
    insn32(0, DSB_ISHST, false);
    maintain(0, IC_IVAU_X9);
    insn32(0, DSB_ISH, false);
    insn32(0, ISB, false);
    EXPECT("cortex-a57 DSB ISHST after DC CVAU", run(0, true), "arm64.no_dsb");

    /* Plugin arguments: line sizes out of range are refused (8-byte to 2 KiB lines). */
    EXPECT("ctr_el0 with DminLine 0", arch_arm64.parse_arg("ctr_el0", "0x8440c004") ? "accepted" : "refused", "refused");
    EXPECT("ctr_el0 not a number", arch_arm64.parse_arg("ctr_el0", "0x84zz") ? "accepted" : "refused", "refused");
    EXPECT("ctr_el0 wider than 32 bits", arch_arm64.parse_arg("ctr_el0", "0x18444c004") ? "accepted" : "refused", "refused");
    EXPECT("ctr_el0 of cortex-a57", arch_arm64.parse_arg("ctr_el0", A57) ? "accepted" : "refused", "accepted");
}

/* ---- riscv64 ------------------------------------------------------------------------------ */

static void test_riscv64(void)
{
    const uint32_t fence_i = 0x0000100f, mret = 0x30200073;
    setup(&arch_riscv64, NULL);
    for (unsigned v = 0; v < 4; v++) {
        insn32(v, mret, false); /* the first MRET of a hart (SBI start) counts as its FENCE.I */
    }
    store(0, USER_PC);
    EXPECT("no FENCE.I", run(0, true), "riscv64.no_fence_i");
    insn32(0, fence_i, false);
    EXPECT("FENCE.I on the writer", run(0, true), "clean");
    EXPECT("FENCE.I on the writer only", run(1, true), "riscv64.no_fence_i");
    insn32(1, mret, false); /* a later MRET is not a FENCE.I */
    EXPECT("later MRET", run(1, true), "riscv64.no_fence_i");
    insn32(1, fence_i, true);
    EXPECT("remote FENCE.I (riscv_flush_icache)", run(1, true), "clean");
}

/* ---- x86_64 ------------------------------------------------------------------------------- */

static const uint8_t CPUID[] = { 0x0f, 0xa2 }, IRETQ[] = { 0x48, 0xcf }, SYSCALL[] = { 0x0f, 0x05 },
                     MOV_CR8_RAX[] = { 0x44, 0x0f, 0x22, 0xc0 }, MOV_CR3_RAX[] = { 0x0f, 0x22, 0xd8 },
                     SWITCH[] = { 0x48, 0x8b, 0xa6, 0x18, 0x15, 0x00, 0x00 };

static void x86_switch(unsigned vcpu, uint64_t task)
{
    set_reg(vcpu, "rsi", task);
    insn(vcpu, SWITCH, sizeof(SWITCH), true);
}

static void x86_boot(void)
{
    setup(&arch_x86_64, NULL);
    for (unsigned v = 0; v < 4; v++) {
        x86_switch(v, 0xffff888000100000ULL + v * 0x1000);
    }
}

static void test_x86_64(void)
{
    x86_boot();
    store(0, USER_PC);
    EXPECT("same CPU", run(0, true), "clean");
    EXPECT("other CPU", run(1, true), "x86_64.no_serialize");
    insn(1, IRETQ, sizeof(IRETQ), true); /* the return from an interrupt */
    EXPECT("other CPU after an interrupt's IRET", run(1, true), "x86_64.no_serialize");
    insn(1, CPUID, sizeof(CPUID), false);
    EXPECT("executor CPUID", run(1, true), "clean");
    store(0, USER_PC);
    insn(1, MOV_CR8_RAX, sizeof(MOV_CR8_RAX), true);
    EXPECT("MOV CR8 is not serializing", run(1, false), "x86_64.no_serialize");
    insn(1, MOV_CR3_RAX, sizeof(MOV_CR3_RAX), true);
    EXPECT("MOV CR3 serializes", run(1, false), "clean");

    /* Two threads write their own code into one fresh page (sljit's shared allocator) before any
       of it runs: which thread wrote which bytes is not known then, so neither is reported; a
       page one thread wrote alone keeps its writer, and cross-modification is still caught. */
    x86_boot();
    engine_store(0, CODE + 4096, CODE + 4096, 8, USER_PC, false);
    engine_store(1, CODE + 4096 + 32, CODE + 4096 + 32, 8, USER_PC, false);
    engine_track_page(CODE + 4096);
    EXPECT("own code in a page two threads wrote",
           engine_check(engine_line(CODE + 4096), 0xff, 0, INSN_STARTS_HERE, CODE + 4096) ? "reported" : "clean", "clean");
    engine_store(0, CODE + 8192, CODE + 8192, 8, USER_PC, false);
    engine_track_page(CODE + 8192);
    EXPECT("a page one thread wrote, run on another CPU",
           engine_check(engine_line(CODE + 8192), 0xff, 1, INSN_STARTS_HERE, CODE + 8192) ? "reported" : "clean",
           "reported");

    /* The writing thread migrated to another CPU: its own bytes. */
    x86_boot();
    store(0, USER_PC);
    x86_switch(2, 0xffff888000100000ULL);
    EXPECT("migrated writer", run(2, true), "clean");

    /* Another thread of the program on the writer's CPU: cross-modification all the same. */
    x86_boot();
    store(0, USER_PC);
    x86_switch(0, 0xffff888000101000ULL); /* the thread of CPU 1, started before the store */
    EXPECT("another thread on the writer's CPU", run(0, true), "x86_64.no_serialize");
    insn(0, CPUID, sizeof(CPUID), false);
    EXPECT("another thread on the writer's CPU after its CPUID", run(0, true), "clean");

    /* Kernel-written code (text_poke) on another CPU: the IPI's IRET serializes it. */
    x86_boot();
    store(0, X86_KERNEL_PC);
    EXPECT("kernel-filled page run by user code on another CPU", run(1, true), "clean");
    EXPECT("kernel code before IPI", run(1, false), "x86_64.no_serialize");
    insn(1, IRETQ, sizeof(IRETQ), true);
    EXPECT("kernel code after IPI", run(1, false), "clean");

    /* membarrier SYNC_CORE after registering. */
    for (int registered = 0; registered < 2; registered++) {
        x86_boot();
        store(0, USER_PC);
        set_reg(0, "cr3", 0x1234000);
        set_reg(1, "cr3", 0x1234000);
        set_reg(0, "rax", 324);
        if (registered) {
            set_reg(0, "rdi", 64);
            insn(0, SYSCALL, sizeof(SYSCALL), false);
        }
        set_reg(0, "rdi", 32);
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        EXPECT(registered ? "membarrier registered" : "membarrier unregistered", run(1, true),
               registered ? "clean" : "x86_64.no_serialize");
    }

    /* A registration dies with its process: the next process given the same page tables (after
       exit_group, or after a process killed by a signal, by an execve) has not registered. */
    for (int ended_by_exit = 0; ended_by_exit < 2; ended_by_exit++) {
        x86_boot();
        set_reg(0, "cr3", 0x1234000);
        set_reg(0, "rax", 324);
        set_reg(0, "rdi", 64);
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        if (ended_by_exit) {
            set_reg(0, "rax", 231);
            insn(0, SYSCALL, sizeof(SYSCALL), false);
        } else {
            /* a shell's child (tables 0x5678000) calls execve and gets the dead process's */
            set_reg(0, "cr3", 0x5678000);
            set_reg(0, "rax", 39);
            insn(0, SYSCALL, sizeof(SYSCALL), false);
            set_reg(0, "rax", 59);
            insn(0, SYSCALL, sizeof(SYSCALL), false);
            set_reg(0, "cr3", 0x1234000);
        }
        store(0, USER_PC);
        set_reg(1, "cr3", 0x1234000);
        set_reg(0, "rax", 324);
        set_reg(0, "rdi", 32);
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        EXPECT(ended_by_exit ? "membarrier of a process reusing an exited one's tables"
                             : "membarrier of a process whose tables an execve reused",
               run(1, true), "x86_64.no_serialize");
    }

    /* The INT3 protocol (text_poke_bp) on a 5-byte instruction the thread of CPU 1 runs: INT3,
       every CPU serialized (registered membarrier SYNC_CORE), the tail, serialized, the first
       byte. Between the first byte and the last serialization the executor may run the new
       instruction, unless the tail came after its last serialization: the first byte's store
       is then its chunk's newest, and the tail's is the one before. */
    for (int synced = 0; synced < 2; synced++) {
        x86_boot();
        engine_track_page(CODE); /* the executor runs code from the page: stores are kept per chunk */
        set_reg(0, "cr3", 0x1234000);
        set_reg(1, "cr3", 0x1234000);
        set_reg(0, "rax", 324);
        set_reg(0, "rdi", synced ? 64 : 16); /* registered for SYNC_CORE, or for the plain command */
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        set_reg(0, "rdi", synced ? 32 : 8);
        engine_store(0, CODE, CODE, 1, USER_PC, false);
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        insn(2, CPUID, sizeof(CPUID), false); /* events elsewhere: each store has its own stamp */
        engine_store(0, CODE + 1, CODE + 1, 4, USER_PC, false);
        insn(0, SYSCALL, sizeof(SYSCALL), false);
        insn(2, CPUID, sizeof(CPUID), false);
        engine_store(0, CODE, CODE, 1, USER_PC, false);
        EXPECT(synced ? "INT3 protocol, the new instruction before the last serialization"
                      : "INT3 protocol with membarriers that serialize no core",
               engine_check(engine_line(CODE), 0x1f, 1, INSN_STARTS_HERE, CODE) ? "reported" : "clean",
               synced ? "clean" : "reported");
    }

    /* A kernel thread ran at a task pointer and died (unseen: it makes no exit call); a new
       thread of the program gets the pointer after the program wrote code, and runs it: it is
       a new thread, synchronized at its start, not the kernel thread's old record. */
    x86_boot();
    x86_switch(1, 0xffff888000400000ULL); /* the kernel thread */
    x86_switch(1, 0xffff888000300000ULL);
    set_reg(0, "cr3", 0x1234000);
    store(0, USER_PC);
    x86_switch(1, 0xffff888000400000ULL); /* the program's new thread */
    set_reg(1, "cr3", 0x1234000);
    EXPECT("new thread at a dead kernel thread's task pointer", run(1, true), "clean");

    /* A thread that moves to another address space without an execve is a new thread at a task
       pointer whose thread was killed unseen: it starts synchronized, and the registration of
       the process it joins stands. */
    x86_boot();
    set_reg(1, "cr3", 0x5678000);
    set_reg(1, "rax", 39);
    insn(1, SYSCALL, sizeof(SYSCALL), false); /* the killed thread, in its own process */
    set_reg(0, "cr3", 0x1234000);
    set_reg(0, "rax", 324);
    set_reg(0, "rdi", 64);
    insn(0, SYSCALL, sizeof(SYSCALL), false);
    store(0, USER_PC);
    x86_switch(1, 0xffff888000300000ULL);
    x86_switch(1, 0xffff888000101000ULL); /* a new thread of 0x1234000 at the killed one's pointer */
    set_reg(1, "cr3", 0x1234000);
    EXPECT("new thread at a killed thread's task pointer", run(1, true), "clean");
    store(0, USER_PC);
    set_reg(0, "rdi", 32);
    insn(0, SYSCALL, sizeof(SYSCALL), false);
    EXPECT("its process's registration stands", run(1, true), "clean");
}

/* ---- stores across a page end ------------------------------------------------------------------ */

static void test_page_crossing_store(void)
{
    /* An unaligned 16-byte store ending 8 bytes into the next virtual page: that page maps some
       other frame, so the physically next frame (here: synchronized code) must not be stamped. */
    setup(&arch_riscv64, NULL);
    store(0, USER_PC);
    insn32(0, 0x0000100f, false);
    EXPECT("code synchronized", run(0, true), "clean");
    engine_store(1, CODE - 8, CODE - 8, 16, USER_PC + 0x100, false);
    EXPECT("store ending in the previous frame", run(0, true), "clean");
    const struct line *prev = engine_line(CODE - 8);
    engine_track_page(CODE - 8);
    EXPECT("its own page's part", engine_writer(prev, 0xffULL << 56).seq ? "stamped" : "not", "stamped");
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* Which instructions store only to the stack (INSN_STACK_STORE, not watched in kernel code): each
   form with its bytes (from the cross assemblers) and whether it must be flagged. The negatives
   are the near misses: a load, another base register, an index, a segment, 32-bit addressing. */
static void test_stack_stores(void)
{
    static const struct {
        const struct arch_ops *arch;
        const char *text;
        uint8_t bytes[8];
        size_t len;
        bool stack;
    } forms[] = {
        { &arch_x86_64, "push %rbp", { 0x55 }, 1, true },
        { &arch_x86_64, "push %r12", { 0x41, 0x54 }, 2, true },
        { &arch_x86_64, "push $1", { 0x6a, 0x01 }, 2, true },
        { &arch_x86_64, "pushf", { 0x9c }, 1, true },
        { &arch_x86_64, "call rel32", { 0xe8, 0xfb, 0xff, 0xff, 0xff }, 5, true },
        { &arch_x86_64, "call *%rax", { 0xff, 0xd0 }, 2, true },
        { &arch_x86_64, "call *0(%rip)", { 0xff, 0x15, 0, 0, 0, 0 }, 6, true },
        { &arch_x86_64, "push 8(%rax)", { 0xff, 0x70, 0x08 }, 3, true },
        { &arch_x86_64, "mov %rax, 8(%rsp)", { 0x48, 0x89, 0x44, 0x24, 0x08 }, 5, true },
        { &arch_x86_64, "movq $0, (%rsp)", { 0x48, 0xc7, 0x04, 0x24, 0, 0, 0, 0 }, 8, true },
        { &arch_x86_64, "mov %al, 1(%rsp)", { 0x88, 0x44, 0x24, 0x01 }, 4, true },
        { &arch_x86_64, "movl $5, 4(%rsp)", { 0xc7, 0x44, 0x24, 0x04, 0x05, 0, 0, 0 }, 8, true },
        { &arch_x86_64, "mov %rax, (%rsp,%rax,1)", { 0x48, 0x89, 0x04, 0x04 }, 4, false },
        { &arch_x86_64, "mov %rax, 8(%r12)", { 0x49, 0x89, 0x44, 0x24, 0x08 }, 5, false },
        { &arch_x86_64, "mov %rax, (%rsp,%r12,1)", { 0x4a, 0x89, 0x04, 0x24 }, 4, false },
        { &arch_x86_64, "mov %rax, %gs:(%rsp)", { 0x65, 0x48, 0x89, 0x04, 0x24 }, 5, false },
        { &arch_x86_64, "mov %eax, (%esp)", { 0x67, 0x89, 0x04, 0x24 }, 4, false },
        { &arch_x86_64, "mov %rax, -8(%rbp)", { 0x48, 0x89, 0x45, 0xf8 }, 4, false },
        { &arch_x86_64, "rep stos", { 0xf3, 0xaa }, 2, false },
        { &arch_x86_64, "mov %rax, (%rax)", { 0x48, 0x89, 0x00 }, 3, false },
        { &arch_x86_64, "mov 8(%rsp), %rax", { 0x48, 0x8b, 0x44, 0x24, 0x08 }, 5, false },
        { &arch_arm64, "stp x29, x30, [sp, #-16]!", { 0xfd, 0x7b, 0xbf, 0xa9 }, 4, true },
        { &arch_arm64, "stp x19, x20, [sp, #16]", { 0xf3, 0x53, 0x01, 0xa9 }, 4, true },
        { &arch_arm64, "str x0, [sp, #8]", { 0xe0, 0x07, 0x00, 0xf9 }, 4, true },
        { &arch_arm64, "strb w0, [sp, #15]", { 0xe0, 0x3f, 0x00, 0x39 }, 4, true },
        { &arch_arm64, "sturh w1, [sp, #-2]", { 0xe1, 0xe3, 0x1f, 0x78 }, 4, true },
        { &arch_arm64, "str x0, [sp, #-16]!", { 0xe0, 0x0f, 0x1f, 0xf8 }, 4, true },
        { &arch_arm64, "str x0, [sp], #16", { 0xe0, 0x07, 0x01, 0xf8 }, 4, true },
        { &arch_arm64, "stp q0, q1, [sp, #-32]!", { 0xe0, 0x07, 0xbf, 0xad }, 4, true },
        { &arch_arm64, "str d8, [sp, #8]", { 0xe8, 0x07, 0x00, 0xfd }, 4, true },
        { &arch_arm64, "ldp x29, x30, [sp], #16", { 0xfd, 0x7b, 0xc1, 0xa8 }, 4, false },
        { &arch_arm64, "ldr x0, [sp, #8]", { 0xe0, 0x07, 0x40, 0xf9 }, 4, false },
        { &arch_arm64, "str x0, [x1]", { 0x20, 0x00, 0x00, 0xf9 }, 4, false },
        { &arch_arm64, "str x0, [sp, x1]", { 0xe0, 0x6b, 0x21, 0xf8 }, 4, false },
        { &arch_arm64, "stxr w2, x0, [sp]", { 0xe0, 0x7f, 0x02, 0xc8 }, 4, false },
        { &arch_arm64, "stlr x0, [sp]", { 0xe0, 0xff, 0x9f, 0xc8 }, 4, false },
        { &arch_arm64, "ldadd x0, x1, [sp]", { 0xe1, 0x03, 0x20, 0xf8 }, 4, false },
        { &arch_riscv64, "sd ra, 8(sp)", { 0x23, 0x34, 0x11, 0x00 }, 4, true },
        { &arch_riscv64, "sw a0, 12(sp)", { 0x23, 0x26, 0xa1, 0x00 }, 4, true },
        { &arch_riscv64, "sb a0, 1(sp)", { 0xa3, 0x00, 0xa1, 0x00 }, 4, true },
        { &arch_riscv64, "fsd fs0, 16(sp)", { 0x27, 0x38, 0x81, 0x00 }, 4, true },
        { &arch_riscv64, "c.sdsp ra, 8(sp)", { 0x06, 0xe4 }, 2, true },
        { &arch_riscv64, "c.swsp a0, 4(sp)", { 0x2a, 0xc2 }, 2, true },
        { &arch_riscv64, "c.fsdsp fs0, 0(sp)", { 0x22, 0xa0 }, 2, true },
        { &arch_riscv64, "sd a0, 8(s0)", { 0x23, 0x34, 0xa4, 0x00 }, 4, false },
        { &arch_riscv64, "ld ra, 8(sp)", { 0x83, 0x30, 0x81, 0x00 }, 4, false },
        { &arch_riscv64, "amoswap.d a0, a1, (sp)", { 0x2f, 0x35, 0xb1, 0x08 }, 4, false },
        { &arch_riscv64, "sc.d a0, a1, (sp)", { 0x2f, 0x35, 0xb1, 0x18 }, 4, false },
        { &arch_riscv64, "vse64.v v1, (sp)", { 0xa7, 0x70, 0x01, 0x02 }, 4, false },
        { &arch_riscv64, "vsuxei64.v v1, (sp), v2", { 0xa7, 0x70, 0x21, 0x06 }, 4, false },
        { &arch_riscv64, "c.sd a0, 8(a1)", { 0x88, 0xe5 }, 2, false },
        { &arch_riscv64, "c.ldsp ra, 8(sp)", { 0xa2, 0x60 }, 2, false },
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        bool got = forms[i].arch->decode(forms[i].bytes, forms[i].len).flags & INSN_STACK_STORE;
        EXPECT(forms[i].text, got ? "stack store" : "not", forms[i].stack ? "stack store" : "not");
    }
}

/* ---- host threads ------------------------------------------------------------------------------ */

/* Multi-threaded TCG: a host thread per vCPU. Round-robin TCG: vCPUs 0 and 1 start on one thread,
   whose callbacks QEMU names after the translating vCPU (engine_vcpu_thread): refused for good. */
static void test_vcpu_threads(void)
{
    arm64_boot(A57);
    EXPECT("vCPU 0 on its own thread", engine_vcpu_thread(0, 1000) ? "alone" : "shared", "alone");
    EXPECT("vCPU 1 on its own thread", engine_vcpu_thread(1, 1001) ? "alone" : "shared", "alone");
    EXPECT("one thread per vCPU", engine_vcpus_share_thread() ? "shared" : "alone", "alone");
    arm64_boot(A57);
    EXPECT("a new guest forgets the last one's threads", engine_vcpu_thread(1, 1000) ? "alone" : "shared", "alone");
    EXPECT("vCPU 0 on vCPU 1's thread", engine_vcpu_thread(0, 1000) ? "alone" : "shared", "shared");
    EXPECT("round-robin", engine_vcpus_share_thread() ? "shared" : "alone", "shared");
    engine_vcpu_thread(2, 1002);
    EXPECT("a later vCPU alone does not undo it", engine_vcpus_share_thread() ? "shared" : "alone", "shared");
}

/* ---- event numbers ---------------------------------------------------------------------------- */

static void test_event_numbers(void)
{
    /* Past 2^32 every comparison still holds; the limit of the packed words is reported. */
    setup(&arch_riscv64, NULL);
    engine_advance(1ULL << 33);
    store(0, USER_PC);
    EXPECT("store past 2^32, no FENCE.I", run(0, true), "riscv64.no_fence_i");
    insn32(0, 0x0000100f, false);
    EXPECT("store past 2^32, FENCE.I", run(0, true), "clean");
    EXPECT("no overflow yet", engine_overflowed() ? "overflow" : "ok", "ok");
    engine_advance(SEQ_LIMIT);
    EXPECT("overflow detected", engine_overflowed() ? "overflow" : "ok", "overflow");
}

/* ---- concurrency (ThreadSanitizer) ------------------------------------------------------------- */

#define THREADS 4
#define ROUNDS 20000

static void *vcpu_thread(void *arg)
{
    unsigned v = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < ROUNDS; i++) {
        uint64_t pa = CODE + (i % 64) * 64 + (i % 8) * 4, other = RAM_BASE + 0x200000 + (i % 512) * 8;
        engine_store(v, pa, pa, 4, USER_PC + i, false);
        engine_store(v, other, other, 8, USER_PC, false);
        if (i % 3 == 0) {
            set_reg(v, "x9", pa);
            insn32(v, DC_CVAU_X9, false);
            insn32(v, DSB_ISH, false);
            insn32(v, IC_IVAU_X9, false);
            insn32(v, DSB_ISH, false);
            insn32(v, ISB, false);
        }
        if (i % 7 == 0) {
            arm64_user_interrupt(v, true);
        }
        if (i % 101 == 0) {
            set_reg(v, "x9", 0xffff000000100000ULL + (v * 7 + i) % 16 * 0x1000);
            insn32(v, MSR_SP_EL0_X9, true);
            engine_track_page(other);
        }
        const struct line *l = engine_line(pa);
        engine_check(l, 0xfULL << (pa % 64), v, 0, pa);
        engine_clean_everywhere(l, 0xfULL << (pa % 64), 0, true, engine_min_thread_sync());
        engine_writer(l, ~0ULL);
    }
    return NULL;
}

/* Stores into fresh (untracked) pages at one stamp, each thread its own pieces, while another
   thread switches the pages to line tracking: no store may be lost in the switch (the store path
   sets a page's pieces without its lock). */
#define RACE_PAGES 256
#define RACE_BASE (RAM_BASE + 0x800000)
static unsigned g_race_go;

static void *race_storer(void *arg)
{
    unsigned v = (unsigned)(uintptr_t)arg;
    while (!__atomic_load_n(&g_race_go, __ATOMIC_ACQUIRE)) {
    }
    for (unsigned p = 0; p < RACE_PAGES; p++) {
        for (unsigned off = v * 8; off < PAGE_SIZE; off += THREADS * 8) {
            engine_store(v, RACE_BASE + p * PAGE_SIZE + off, RACE_BASE + p * PAGE_SIZE + off, 4, USER_PC, false);
        }
    }
    return NULL;
}

static void *race_tracker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&g_race_go, __ATOMIC_ACQUIRE)) {
    }
    for (unsigned p = 0; p < RACE_PAGES; p++) {
        engine_track_page(RACE_BASE + p * PAGE_SIZE);
    }
    return NULL;
}

static void test_store_track_race(void)
{
    arm64_boot(A57);
    pthread_t t[THREADS + 1];
    for (unsigned v = 0; v < THREADS; v++) {
        pthread_create(&t[v], NULL, race_storer, (void *)(uintptr_t)v);
    }
    pthread_create(&t[THREADS], NULL, race_tracker, NULL);
    __atomic_store_n(&g_race_go, 1, __ATOMIC_RELEASE);
    for (unsigned v = 0; v <= THREADS; v++) {
        pthread_join(t[v], NULL);
    }
    unsigned lost = 0;
    for (unsigned p = 0; p < RACE_PAGES; p++) {
        for (unsigned off = 0; off < PAGE_SIZE; off += 8) {
            const struct line *l = engine_line(RACE_BASE + p * PAGE_SIZE + off);
            uint64_t m = 0xfULL << (off % 64);
            lost += !engine_writer(l, m).seq || (load64(&l->mask) & m) != m;
        }
    }
    EXPECT("stores while pages switch to line tracking", lost ? "lost" : "all kept", "all kept");
}

static void test_threads(void)
{
    arm64_boot(A57);
    pthread_t t[THREADS];
    for (unsigned v = 0; v < THREADS; v++) {
        pthread_create(&t[v], NULL, vcpu_thread, (void *)(uintptr_t)v);
    }
    for (unsigned v = 0; v < THREADS; v++) {
        pthread_join(t[v], NULL);
    }
    /* After everyone stopped: a last full install on vCPU 0 is clean for its thread. */
    arm64_install(0, 0);
    EXPECT("after the concurrent rounds", run(0, true), "clean");
}

static int classify_stack_stores(const char *arch_name)
{
    const struct arch_ops *const arches[] = { &arch_arm64, &arch_riscv64, &arch_x86_64 };
    const struct arch_ops *arch = NULL;
    for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++) {
        if (!strcmp(arches[i]->name, arch_name)) {
            arch = arches[i];
        }
    }
    if (!arch) {
        fprintf(stderr, "engine_test: unknown architecture %s; valid:", arch_name);
        for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++) {
            fprintf(stderr, " %s", arches[i]->name);
        }
        fprintf(stderr, "\n");
        return 2;
    }
    char hex[2 * MAX_INSN_BYTES + 2];
    while (fgets(hex, sizeof(hex), stdin)) {
        uint8_t bytes[MAX_INSN_BYTES];
        size_t len = 0;
        unsigned byte;
        while (len < MAX_INSN_BYTES && sscanf(hex + 2 * len, "%2x", &byte) == 1) {
            bytes[len++] = (uint8_t)byte;
        }
        printf("%d\n", arch->decode(bytes, len).flags & INSN_STACK_STORE ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "stack-stores")) {
        return classify_stack_stores(argv[2]);
    }
    if (argc > 1 && !strcmp(argv[1], "threads")) {
        test_threads();
        test_store_track_race();
    } else {
        test_arm64();
        test_riscv64();
        test_x86_64();
        test_gone_writer();
        test_unmapped_store();
        test_unseen_writer();
        test_page_crossing_store();
        test_stack_stores();
        test_vcpu_threads();
        test_event_numbers();
        test_threads();
        test_store_track_race();
    }
    printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
    return g_failures ? 1 : 0;
}
