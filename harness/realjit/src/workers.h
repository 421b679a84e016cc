/*
 * The real-JIT programs' shared driver: "usage: <program> [count] [threads]" and a worker run on
 * that many threads at once, each given its index. Included by the programs' sources; the builder
 * (harness.realjit.build) hashes every header here into the programs' cache key.
 */
#ifndef JITPROBE_REALJIT_WORKERS_H
#define JITPROBE_REALJIT_WORKERS_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 16

/* Read the optional arguments into *count (named `what` in the usage line) and *threads; 0, or
 * 2 after printing the usage line when either is out of range. */
static inline int parse_args(int argc, char **argv, const char *what, int *count, int *threads)
{
    if (argc > 1)
        *count = atoi(argv[1]);
    if (argc > 2)
        *threads = atoi(argv[2]);
    if (*count < 1 || *threads < 1 || *threads > MAX_THREADS) {
        fprintf(stderr, "usage: %s [%s >= 1] [threads 1..%d]\n", argv[0], what, MAX_THREADS);
        return 2;
    }
    return 0;
}

/* Run worker((void *)index) on `threads` threads and wait for them all; 0, or 1 when a thread
 * cannot be started. */
static inline int run_threads(void *(*worker)(void *), int threads)
{
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return 0;
}

#endif
