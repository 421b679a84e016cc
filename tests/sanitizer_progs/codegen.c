/*
 * Installs generated code and calls it, correctly or with one step of the code-modification
 * protocol missing; the coherency sanitizer must report exactly the broken step.
 *
 *   codegen VARIANT [ITERATIONS]
 *
 * Each variant writes its code at its own fixed address (CODE_BASE + index * CODE_STRIDE), so
 * the violations of several variants run in one guest can be told apart by PC. The generated
 * function returns k + FILLER for a k that changes every iteration; a wrong result exits 1
 * (under QEMU it never happens: TCG keeps code coherent, which is why the sanitizer exists).
 *
 * Variants (same thread unless "cross"):
 *   clear_cache        __builtin___clear_cache (libgcc honours CTR_EL0.IDC/DIC on arm64;
 *                      riscv64: the riscv_flush_icache system call, all harts)
 *   explicit           the architecture's protocol written out: arm64 DC CVAU, DSB ISH, IC IVAU,
 *                      DSB ISH, ISB with CTR_EL0 line sizes (skipping DC if IDC, IC if DIC);
 *                      riscv64 FENCE.I; x86_64 nothing (same-CPU stores are seen after a jump)
 *   no_dc_clean, no_ic_invalidate, no_dsb, no_isb, wrong_line_size (2x the line size),
 *   half_range         "explicit" with that step broken (they only change arm64's protocol)
 *   cross_clean        a writer thread on CPU 0 installs with the full protocol (riscv64: the
 *                      system call for all harts); the thread on CPU 1 runs a context
 *                      synchronization (arm64 ISB, x86_64 CPUID) and calls
 *   cross_writer_only  the writer synchronizes locally only (arm64 full protocol on CPU 0,
 *                      riscv64 FENCE.I on the writer, x86_64 nothing); CPU 1 calls at once
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CODE_BASE 0x10000000UL
#define CODE_STRIDE 0x10000UL
#define FILLER 62
#define VALUES 1000 /* k stays in every architecture's immediate range */

static const char *const variants[] = {
    "clear_cache", "explicit", "no_dc_clean", "no_ic_invalidate", "no_dsb", "no_isb",
    "wrong_line_size", "half_range", "cross_clean", "cross_writer_only",
};
enum { CLEAR_CACHE, EXPLICIT, NO_DC, NO_IC, NO_DSB, NO_ISB, WRONG_LINE, HALF_RANGE, CROSS_CLEAN, CROSS_WRITER_ONLY };

/* ---- code generation: k in the result register, FILLER increments, return ---------------- */

static size_t emit(uint8_t *p, unsigned k)
{
    k %= VALUES;
    uint8_t *start = p;
#if defined(__aarch64__)
    uint32_t insn = 0xd2800000u | (k & 0xffff) << 5; /* movz x0, #k */
    memcpy(p, &insn, 4), p += 4;
    for (int i = 0; i < FILLER; i++) {
        insn = 0x91000400u; /* add x0, x0, #1 */
        memcpy(p, &insn, 4), p += 4;
    }
    insn = 0xd65f03c0u; /* ret */
    memcpy(p, &insn, 4), p += 4;
#elif defined(__riscv)
    uint32_t insn = 0x00000513u | (k & 0x7ff) << 20; /* addi a0, zero, k */
    memcpy(p, &insn, 4), p += 4;
    for (int i = 0; i < FILLER; i++) {
        insn = 0x00150513u; /* addi a0, a0, 1 */
        memcpy(p, &insn, 4), p += 4;
    }
    insn = 0x00008067u; /* ret */
    memcpy(p, &insn, 4), p += 4;
#elif defined(__x86_64__)
    *p++ = 0xb8; /* mov eax, imm32 */
    memcpy(p, &k, 4), p += 4;
    for (int i = 0; i < FILLER; i++) {
        *p++ = 0x83, *p++ = 0xc0, *p++ = 0x01; /* add eax, 1 */
    }
    *p++ = 0xc3; /* ret */
#else
#error "unsupported architecture"
#endif
    return p - start;
}

/* ---- synchronization ---------------------------------------------------------------------- */

static void explicit_sync(uint8_t *start, size_t len, int variant)
{
#if defined(__aarch64__)
    uint64_t ctr;
    __asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
    uintptr_t dline = 4u << ((ctr >> 16) & 0xf), iline = 4u << (ctr & 0xf);
    if (variant == WRONG_LINE) {
        dline *= 2, iline *= 2;
    }
    if (variant == HALF_RANGE) {
        len /= 2;
    }
    uintptr_t end = (uintptr_t)start + len;
    if (!(ctr & (1ul << 28)) && variant != NO_DC) {
        for (uintptr_t p = (uintptr_t)start & ~(dline - 1); p < end; p += dline) {
            __asm__ volatile("dc cvau, %0" ::"r"(p) : "memory");
        }
    }
    if (variant != NO_DSB) {
        __asm__ volatile("dsb ish" ::: "memory");
    }
    if (!(ctr & (1ul << 29)) && variant != NO_IC) {
        for (uintptr_t p = (uintptr_t)start & ~(iline - 1); p < end; p += iline) {
            __asm__ volatile("ic ivau, %0" ::"r"(p) : "memory");
        }
        if (variant != NO_DSB) {
            __asm__ volatile("dsb ish" ::: "memory");
        }
    }
    if (variant != NO_ISB) {
        __asm__ volatile("isb" ::: "memory");
    }
#elif defined(__riscv)
    (void)start, (void)len, (void)variant;
    __asm__ volatile("fence.i" ::: "memory");
#else
    (void)start, (void)len, (void)variant;
#endif
}

/* What a thread runs before executing code another thread wrote. */
static void context_sync(void)
{
#if defined(__aarch64__)
    __asm__ volatile("isb" ::: "memory");
#elif defined(__x86_64__)
    unsigned a = 0, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d)::"memory");
#endif
    /* riscv64: the writer's riscv_flush_icache already ran FENCE.I on this hart. */
}

/* ---- the program ---------------------------------------------------------------------------- */

static uint8_t *code;
static int variant, iterations;
static _Atomic int published = -1, done = -1;
static int failures;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set)) {
        perror("sched_setaffinity");
        exit(2);
    }
}

static void call_and_check(int k)
{
    long (*fn)(void) = (long (*)(void))(void *)code;
    long got = fn();
    if (got != k % VALUES + FILLER) {
        if (failures++ < 5) {
            fprintf(stderr, "iteration %d: got %ld, expected %d\n", k, got, k % VALUES + FILLER);
        }
    }
}

static void install(int k, int how)
{
    size_t len = emit(code, k);
    if (how == CLEAR_CACHE) {
        __builtin___clear_cache((char *)code, (char *)code + len);
    } else {
        explicit_sync(code, len, how);
    }
}

static void *executor(void *arg)
{
    (void)arg;
    pin(1);
    for (int k = 0; k < iterations; k++) {
        while (atomic_load_explicit(&published, memory_order_acquire) != k) {
        }
        if (variant == CROSS_CLEAN) {
            context_sync();
        }
        call_and_check(k);
        atomic_store_explicit(&done, k, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t n = sizeof(variants) / sizeof(variants[0]);
    variant = -1;
    for (size_t i = 0; argc > 1 && i < n; i++) {
        if (!strcmp(argv[1], variants[i])) {
            variant = (int)i;
        }
    }
    if (variant < 0) {
        fprintf(stderr, "usage: %s VARIANT [ITERATIONS]; variants:", argv[0]);
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, " %s", variants[i]);
        }
        fprintf(stderr, "\n");
        return 2;
    }
    iterations = argc > 2 ? atoi(argv[2]) : 20;
    void *want = (void *)(CODE_BASE + (uintptr_t)variant * CODE_STRIDE);
    code = mmap(want, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (code != want) {
        perror("mmap");
        return 2;
    }
    if (variant == CROSS_CLEAN || variant == CROSS_WRITER_ONLY) {
        pthread_t t;
        pin(0);
        pthread_create(&t, NULL, executor, NULL);
        for (int k = 0; k < iterations; k++) {
#if defined(__riscv)
            /* Local FENCE.I only for the broken variant; the system call reaches every hart. */
            install(k, variant == CROSS_CLEAN ? CLEAR_CACHE : EXPLICIT);
#else
            install(k, EXPLICIT);
#endif
            atomic_store_explicit(&published, k, memory_order_release);
            while (atomic_load_explicit(&done, memory_order_acquire) != k) {
            }
        }
        pthread_join(t, NULL);
    } else {
        for (int k = 0; k < iterations; k++) {
            install(k, variant);
            call_and_check(k);
        }
    }
    printf("%s: %d iterations, %d wrong results\n", variants[variant], iterations, failures);
    return failures ? 1 : 0;
}
