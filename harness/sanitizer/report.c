/*
 * The sanitizer's report: one JSON object per line.
 *
 *   {"kind": "violation", "rule", "pc", "vcpu", "paddr", "insn", "writer_pc", "writer_vcpu",
 *    "count", "space", "events"}   pc/paddr/writer_pc as "0x..." strings, insn as hex bytes,
 *   events what the first occurrence's judgement rested on (engine_explain)
 *   {"kind": "refused", "why"}  the plugin checks nothing (report_refusal); the reader refuses
 *   the run
 *   {"kind": "summary", ...}  written at exit (coherency.c, on_plugin_exit)
 *
 * Violations are deduplicated by (rule, pc, paddr). The first occurrence is appended at once (so
 * a QEMU that is killed still leaves it); at exit the file is rewritten with the final counts.
 * The reader (harness/sanitizer/__init__.py) keeps the highest count seen per key.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "report.h"

struct violation {
    const struct rule *rule;
    uint64_t pc, paddr, writer_pc;
    unsigned vcpu, writer_vcpu, size;
    uint8_t insn[MAX_INSN_BYTES];
    uint64_t count;
    char events[2048];
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *g_violations; /* key string -> struct violation */
static FILE *g_out;
static char *g_path;
static char *g_refusal; /* the refused line, if any */

bool report_open(const char *path)
{
    g_out = fopen(path, "w");
    if (!g_out) {
        fprintf(stderr, "jitprobe sanitizer: cannot write %s: %m\n", path);
        return false;
    }
    g_path = g_strdup(path);
    g_violations = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return true;
}

static void write_violation(FILE *f, const struct violation *v)
{
    char hex[2 * MAX_INSN_BYTES + 1] = "";
    for (unsigned i = 0; i < v->size && i < MAX_INSN_BYTES; i++) {
        sprintf(hex + 2 * i, "%02x", v->insn[i]);
    }
    fprintf(f,
            "{\"kind\": \"violation\", \"rule\": \"%s\", \"pc\": \"0x%" PRIx64 "\", \"vcpu\": %u, "
            "\"paddr\": \"0x%" PRIx64 "\", \"insn\": \"%s\", \"writer_pc\": \"0x%" PRIx64 "\", "
            "\"writer_vcpu\": %u, \"count\": %" PRIu64 ", \"space\": \"%s\", \"events\": %s}\n",
            v->rule->name, v->pc, v->vcpu, v->paddr, hex, v->writer_pc, v->writer_vcpu,
            __atomic_load_n(&v->count, RELAXED), g_arch->is_kernel_pc(v->pc) ? "kernel" : "user", v->events);
}

void report_violation(struct violation_cache *cache, const struct rule *rule, const struct check_entry *e,
                      const struct line *l, unsigned vcpu)
{
    struct violation *last = __atomic_load_n(&cache->last, __ATOMIC_ACQUIRE);
    if (last && last->rule == rule) {
        __atomic_add_fetch(&last->count, 1, RELAXED);
        return;
    }
    char key[96];
    snprintf(key, sizeof(key), "%s %" PRIx64 " %" PRIx64, rule->name, e->vaddr, e->pa);
    pthread_mutex_lock(&g_lock);
    struct violation *v = g_hash_table_lookup(g_violations, key);
    if (v) {
        __atomic_add_fetch(&v->count, 1, RELAXED);
    } else {
        struct writer w = engine_writer(l, e->bytes);
        v = g_new0(struct violation, 1);
        *v = (struct violation){ .rule = rule, .pc = e->vaddr, .paddr = e->pa, .vcpu = vcpu,
                                 .writer_pc = w.pc, .writer_vcpu = w.vcpu, .size = e->size, .count = 1 };
        memcpy(v->insn, e->insn, sizeof(v->insn));
        engine_explain(l, e->bytes, vcpu, e->vaddr, v->events, sizeof(v->events));
        g_hash_table_insert(g_violations, g_strdup(key), v);
        if (g_out) {
            write_violation(g_out, v);
            fflush(g_out);
        }
    }
    __atomic_store_n(&cache->last, v, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
}

void report_refusal(const char *why)
{
    pthread_mutex_lock(&g_lock);
    if (!g_refusal) {
        g_refusal = g_strdup_printf("{\"kind\": \"refused\", \"why\": \"%s\"}", why);
        if (g_out) {
            fprintf(g_out, "%s\n", g_refusal);
            fflush(g_out);
        }
    }
    pthread_mutex_unlock(&g_lock);
}

void report_close(const char *status_json)
{
    pthread_mutex_lock(&g_lock);
    if (g_out) {
        fclose(g_out);
        g_out = NULL;
    }
    char *tmp = g_strdup_printf("%s.tmp", g_path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        GHashTableIter it;
        gpointer key, value;
        g_hash_table_iter_init(&it, g_violations);
        while (g_hash_table_iter_next(&it, &key, &value)) {
            write_violation(f, value);
        }
        if (g_refusal) {
            fprintf(f, "%s\n", g_refusal);
        }
        fprintf(f, "%s\n", status_json);
        if (fclose(f) == 0) {
            rename(tmp, g_path);
        }
    }
    g_free(tmp);
    pthread_mutex_unlock(&g_lock);
}
