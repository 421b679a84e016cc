/*
 * PCRE2's JIT (sljit) in a compile-run-free loop on two threads.
 *
 * Each thread, ITERATIONS times: compiles a few patterns, JIT-compiles them (pcre2_jit_compile:
 * sljit writes machine code into executable memory of its allocator and flushes it with
 * SLJIT_CACHE_FLUSH), matches subjects through the JIT code (pcre2_jit_match), and frees
 * everything, so executable memory is freed and reused for new code over and over. Every match
 * result is checked; the program exits 1 on any mismatch or error and prints one summary line.
 *
 * usage: pcre2_jit [iterations] [threads]
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workers.h"

struct pattern {
    const char *regex;
    const char *subject;
    int expect; /* pcre2_jit_match's return: number of pairs, or PCRE2_ERROR_NOMATCH */
    size_t start; /* expected ovector[0] when matched */
};

static const struct pattern PATTERNS[] = {
    {"(\\d{4})-(\\d{2})-(\\d{2})", "released on 2025-01-17 by", 4, 12},
    {"^[a-z]+(?:\\.[a-z]+)*@[a-z]+\\.(?:org|com)$", "jit.probe@example.org", 1, 0},
    {"(a|b)*c(d+)?", "xxababababcddd", 3, 2},
    {"\\b(\\w+)\\s+\\1\\b", "it is the the answer", 2, 6},
    {"(?i)QEMU|tcg", "plugins for qemu", 1, 12},
    {"x{3,}y", "xxy", PCRE2_ERROR_NOMATCH, 0},
};
#define N_PATTERNS (sizeof PATTERNS / sizeof PATTERNS[0])

static int iterations = 300;

static void *worker(void *arg)
{
    long id = (long)arg;
    for (int it = 0; it < iterations; it++) {
        pcre2_code *code[N_PATTERNS];
        for (size_t i = 0; i < N_PATTERNS; i++) {
            int err;
            PCRE2_SIZE off;
            code[i] = pcre2_compile((PCRE2_SPTR)PATTERNS[i].regex, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
            if (!code[i]) {
                fprintf(stderr, "thread %ld: pcre2_compile(%s) failed: %d at %zu\n", id, PATTERNS[i].regex,
                        err, (size_t)off);
                exit(1);
            }
            int rc = pcre2_jit_compile(code[i], PCRE2_JIT_COMPLETE);
            if (rc != 0) {
                fprintf(stderr, "thread %ld: pcre2_jit_compile(%s) failed: %d\n", id, PATTERNS[i].regex, rc);
                exit(1);
            }
        }
        for (size_t i = 0; i < N_PATTERNS; i++) {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(code[i], NULL);
            const char *s = PATTERNS[i].subject;
            int rc = pcre2_jit_match(code[i], (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
            size_t start = rc > 0 ? (size_t)pcre2_get_ovector_pointer(md)[0] : 0;
            if (rc != PATTERNS[i].expect || start != PATTERNS[i].start) {
                fprintf(stderr, "thread %ld iteration %d: %s on '%s' gave %d at %zu, expected %d at %zu\n", id,
                        it, PATTERNS[i].regex, s, rc, start, PATTERNS[i].expect, PATTERNS[i].start);
                exit(1);
            }
            pcre2_match_data_free(md);
        }
        for (size_t i = 0; i < N_PATTERNS; i++)
            pcre2_code_free(code[i]);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 2;
    if (parse_args(argc, argv, "iterations", &iterations, &threads) != 0)
        return 2;
    uint32_t jit = 0;
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit) < 0 || !jit) {
        fprintf(stderr, "this libpcre2-8 has no JIT\n");
        return 1;
    }
    char target[64] = "";
    pcre2_config(PCRE2_CONFIG_JITTARGET, target);
    if (run_threads(worker, threads) != 0)
        return 1;
    printf("pcre2 jit ok: %s, %d threads x %d iterations x %zu patterns\n", target, threads, iterations,
           N_PATTERNS);
    return 0;
}
