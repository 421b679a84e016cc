/*
 * Two threads' JIT code in one cache line, each installed correctly by its own writer: what
 * sljit's shared executable allocator does when two threads compile at once.
 *
 * Per iteration, in a fresh 64-byte line of an RWX page: thread A (CPU 0) writes a function at
 * line+0 and synchronizes it itself (__builtin___clear_cache: arm64 DC CVAU, DSB ISH, IC IVAU,
 * DSB ISH, ISB; riscv64 riscv_flush_icache for all harts; x86_64 nothing); then thread B (CPU 1)
 * writes another function at line+32 and synchronizes it the same way, which on arm64 cleans and
 * invalidates the whole line again; then A calls its own function. A's bytes were never written
 * again after A's own complete synchronization, so every architecture guarantees A the new code
 * (Arm ARM "Concurrent modification and execution of instructions": the sequence is per location;
 * later maintenance of other bytes of the line by another PE changes nothing). A sanitizer that
 * keeps only the line's last DC/IC and compares the executing thread's ISB with B's later DSB
 * reports A's code as arm64.no_isb: a false positive.
 *
 * usage: shared_line [iterations] [apart]; "apart" puts B's functions in another page (the
 * control: no line is shared). Exits 1 if a function returns the wrong value.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint8_t *g_code;
static int g_iterations = 200;
static int g_step; /* 2i+1: A installed iteration i; 2i+2: B installed it */
static size_t g_b_offset = 32; /* B's function: line + g_b_offset ("apart": in another page) */

static size_t emit_return(uint8_t *p, uint32_t value)
{
#if defined(__aarch64__)
    uint32_t insn[2] = { 0x52800000u | (value & 0xffff) << 5, 0xd65f03c0u }; /* mov w0, #v; ret */
#elif defined(__riscv)
    uint32_t insn[2] = { (value & 0x7ff) << 20 | 10 << 7 | 0x13, 0x00008067u }; /* li a0, v; ret */
#elif defined(__x86_64__)
    uint8_t insn[6] = { 0xb8, value & 0xff, (value >> 8) & 0xff, 0, 0, 0xc3 }; /* mov eax, v; ret */
#endif
    memcpy(p, insn, sizeof insn);
    return sizeof insn;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("sched_setaffinity");
        exit(1);
    }
}

static void wait_step(int step)
{
    while (__atomic_load_n(&g_step, __ATOMIC_ACQUIRE) < step)
        sched_yield();
}

static void *thread_b(void *arg)
{
    (void)arg;
    pin(1);
    for (int i = 0; i < g_iterations; i++) {
        uint8_t *line = g_code + 64 * (size_t)i;
        wait_step(2 * i + 1);
        size_t n = emit_return(line + g_b_offset, 2000 + (unsigned)i % 16);
        __builtin___clear_cache((char *)line + g_b_offset, (char *)line + g_b_offset + n);
        __atomic_store_n(&g_step, 2 * i + 2, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_iterations = atoi(argv[1]);
    if (argc > 2 && strcmp(argv[2], "apart") == 0)
        g_b_offset = 32768;
    if (g_iterations < 1 || g_iterations > 512 || (argc > 2 && g_b_offset != 32768)) {
        fprintf(stderr, "usage: %s [iterations 1..512] [apart]\n", argv[0]);
        return 2;
    }
    g_code = mmap(NULL, 65536 + 32768, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_code == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pin(0);
    pthread_t b;
    if (pthread_create(&b, NULL, thread_b, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    for (int i = 0; i < g_iterations; i++) {
        uint8_t *line = g_code + 64 * (size_t)i;
        size_t n = emit_return(line, 1000 + (unsigned)i % 16);
        __builtin___clear_cache((char *)line, (char *)line + n);
        __atomic_store_n(&g_step, 2 * i + 1, __ATOMIC_RELEASE);
        wait_step(2 * i + 2);
        int (*fn)(void) = (int (*)(void))(uintptr_t)line;
        int got = fn();
        if (got != 1000 + i % 16) {
            fprintf(stderr, "iteration %d: %d, expected %d\n", i, got, 1000 + i % 16);
            return 1;
        }
    }
    pthread_join(b, NULL);
    printf("shared_line ok: %d iterations\n", g_iterations);
    return 0;
}
