// SPDX-License-Identifier: GPL-2.0
/*
 * text_patch: writes one instruction into this module's own executable text on one CPU and
 * runs it on another, with the kernel's own text-patching primitives, for the kernel stress
 * suite (tests/stress/kernel/module_text_patch.yaml).
 *
 * jp_target returns 3 from its first instruction, one aligned 4-byte word; the module rewrites
 * the immediate to 7 on writer_cpu, then calls the function on exec_cpu and on writer_cpu and
 * prints what each call returned.
 *
 *   mutation=none             the kernel's patching API: the write, then the icache flush.
 *   mutation=no_icache_flush  the API's own write primitive alone, its flush left out.
 *
 * riscv64: patch_text_nosync is patch_insn_write (the store through the fixmap alias, then a
 * FENCE.I on the writing hart) and flush_icache_range, which has every hart run a FENCE.I (SBI
 * remote fence or IPI). patch_insn_write alone leaves exec_cpu running the new word without a
 * FENCE.I of its own (riscv64.no_fence_i).
 * arm64: aarch64_insn_patch_text_nosync is aarch64_insn_write (the store through the fixmap
 * alias, no maintenance) and caches_clean_inval_pou over the word. aarch64_insn_write alone
 * leaves the line uncleaned and not invalidated (arm64.no_dc_clean without IDC,
 * arm64.no_ic_invalidate without DIC).
 *
 * None of the patching functions is exported: kallsyms_lookup_name is found with a kprobe (its
 * address is the probed symbol's) and looks up the rest. The module is unsigned and out of tree:
 * loading it taints the kernel, which is not otherwise a problem (Debian does not enforce
 * module signatures without Secure Boot lockdown).
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/mutex.h>
#include <linux/smp.h>
#include <linux/cpumask.h>
#include <linux/workqueue.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("jitprobe: kernel text patched with and without the remote icache flush");

static char *mutation = "none";
module_param(mutation, charp, 0444);
MODULE_PARM_DESC(mutation, "none (the kernel's patching API) or no_icache_flush (its write without the flush)");
static int writer_cpu;
module_param(writer_cpu, int, 0444);
static int exec_cpu = 1;
module_param(exec_cpu, int, 0444);

#ifdef CONFIG_RISCV
/* a function whose first instruction is one 4-byte word: addi a0, zero, 3 */
int jp_target(void);
asm("	.pushsection .text, \"ax\"\n"
    "	.balign 16\n"
    "	.globl jp_target\n"
    "	.type jp_target, @function\n"
    "jp_target:\n"
    "	.option push\n"
    "	.option norvc\n"
    "	addi a0, zero, 3\n"
    "	ret\n"
    "	.option pop\n"
    "	.size jp_target, . - jp_target\n"
    "	.popsection\n");

#define OLD_VALUE 3
#define NEW_VALUE 7
#define OLD_WORD 0x00300513u /* addi a0, zero, 3 */
#define NEW_WORD 0x00700513u /* addi a0, zero, 7 */
#define PATCH_FLUSH "patch_text_nosync"
#define PATCH_NO_FLUSH "patch_insn_write"
/* int patch_text_nosync(void *addr, const void *insns, size_t len), and patch_insn_write */
typedef int (*patch_fn)(void *addr, const void *insns, size_t len);
#define CALL_PATCH(fn, addr, word) ((fn)((addr), &(word), sizeof(word)))

#elif defined(CONFIG_ARM64)
/* a function whose first instruction is mov w0, #3 (MOVZ); called directly, so no BTI pad */
int jp_target(void);
asm("	.pushsection .text, \"ax\"\n"
    "	.balign 16\n"
    "	.globl jp_target\n"
    "	.type jp_target, %function\n"
    "jp_target:\n"
    "	mov w0, #3\n"
    "	ret\n"
    "	.size jp_target, . - jp_target\n"
    "	.popsection\n");

#define OLD_VALUE 3
#define NEW_VALUE 7
#define OLD_WORD 0x52800060u /* mov w0, #3 */
#define NEW_WORD 0x528000e0u /* mov w0, #7 */
/*
 * aarch64_insn_patch_text_nosync: aarch64_insn_write (the store through the fixmap alias, no
 * cache maintenance) then caches_clean_inval_pou (DC CVAU, DSB ISH, IC IVAU, DSB ISH, ISB) over
 * the word. The mutation calls aarch64_insn_write alone: no maintenance at all.
 */
#define PATCH_FLUSH "aarch64_insn_patch_text_nosync"
#define PATCH_NO_FLUSH "aarch64_insn_write"
typedef int (*patch_fn)(void *addr, u32 insn);
#define CALL_PATCH(fn, addr, word) ((fn)((addr), (word)))

#else
#error "text_patch: no patching primitives for this architecture"
#endif

typedef unsigned long (*lookup_fn)(const char *name);

static lookup_fn lookup;
static patch_fn patch;
static struct mutex *text_mutex_p;

static long patch_on_cpu(void *unused)
{
	u32 insn = NEW_WORD;
	int ret;

	mutex_lock(text_mutex_p);
	ret = CALL_PATCH(patch, (void *)jp_target, insn);
	mutex_unlock(text_mutex_p);
	return ret;
}

static long call_on_cpu(void *unused)
{
	return jp_target();
}

/*
 * register_kprobe resolves the symbol into kp.addr before it checks the address; where a probe
 * on a function's entry is refused (an ftrace site: -EINVAL), the address is still there.
 */
static unsigned long find_lookup(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	int ret = register_kprobe(&kp);

	if (!ret)
		unregister_kprobe(&kp);
	if (!kp.addr)
		pr_err("text_patch: register_kprobe(kallsyms_lookup_name) returned %d without an address\n", ret);
	return (unsigned long)kp.addr;
}

static int __init text_patch_init(void)
{
	bool flush;
	long before, ret, exec_after, writer_after;
	u32 word = *(volatile u32 *)jp_target;

	if (!strcmp(mutation, "none"))
		flush = true;
	else if (!strcmp(mutation, "no_icache_flush"))
		flush = false;
	else {
		pr_err("text_patch: mutation=%s; expected none or no_icache_flush\n", mutation);
		return -EINVAL;
	}
	if (writer_cpu == exec_cpu || !cpu_online(writer_cpu) || !cpu_online(exec_cpu)) {
		pr_err("text_patch: writer_cpu=%d exec_cpu=%d must be two online CPUs\n", writer_cpu, exec_cpu);
		return -EINVAL;
	}
	if (word != OLD_WORD) {
		pr_err("text_patch: jp_target starts with %08x, expected %08x\n", word, OLD_WORD);
		return -EINVAL;
	}
	lookup = (lookup_fn)find_lookup();
	if (!lookup)
		return -ENOENT;
	patch = (patch_fn)lookup(flush ? PATCH_FLUSH : PATCH_NO_FLUSH);
	text_mutex_p = (struct mutex *)lookup("text_mutex");
	if (!patch || !text_mutex_p) {
		pr_err("text_patch: %s or text_mutex not found\n", flush ? PATCH_FLUSH : PATCH_NO_FLUSH);
		return -ENOENT;
	}
	/* exec_cpu runs the old word first: it has fetched the function before the patch */
	before = work_on_cpu(exec_cpu, call_on_cpu, NULL);
	ret = work_on_cpu(writer_cpu, patch_on_cpu, NULL);
	if (ret) {
		pr_err("text_patch: %s returned %ld\n", flush ? PATCH_FLUSH : PATCH_NO_FLUSH, ret);
		return -EIO;
	}
	exec_after = work_on_cpu(exec_cpu, call_on_cpu, NULL);
	writer_after = work_on_cpu(writer_cpu, call_on_cpu, NULL);
	pr_info("text_patch: mutation=%s via %s writer_cpu=%d exec_cpu=%d\n", mutation,
		flush ? PATCH_FLUSH : PATCH_NO_FLUSH, writer_cpu, exec_cpu);
	pr_info("text_patch: before=%ld exec_after=%ld writer_after=%ld expected=%d,%d\n", before, exec_after,
		writer_after, OLD_VALUE, NEW_VALUE);
	return 0;
}

static void __exit text_patch_exit(void)
{
}

module_init(text_patch_init);
module_exit(text_patch_exit);
