/*
 * jitprobe coherency sanitizer: a QEMU (10.0, plugin API 4) TCG plugin. This file is the glue
 * between QEMU's callbacks and the rule engine (engine.h); the rules are in arch_<arch>.c.
 *
 * Arguments (-plugin libcoherency.so,key=value,...):
 *   arch=NAME                     the guest architecture (a rule file's name; checked against QEMU)
 *   out=PATH                      JSON-lines report (report.c)
 *   ram_base=N, ram_size=N        guest RAM's physical range (the machine's single RAM block)
 *   and the architecture's own (parse_arg of its rule file, e.g. ctr_el0=N, a CPU model's CTR_EL0)
 *
 * Physical addresses. Stores give physical addresses (qemu_plugin_hwaddr_phys_addr, looked up for
 * every store: QEMU's own TLB entry of that very access, so a remapped page can never be
 * confused with its old frame); translated instructions only give a host pointer
 * (qemu_plugin_insn_haddr, which QEMU documents as a proxy for the physical address). Guest RAM
 * is one host mapping, so host = phys + delta for one constant delta, learnt at boot: a store
 * (vaddr V, phys P) and a recently translated page (vaddr Vt, host Ht) on the same vCPU suggest
 * delta = Ht - (Vt - V + P) when both lie in one linearly mapped region (always true while the
 * MMU is off); a candidate is accepted after three stores to different pages are found at
 * P + delta in host memory (read with process_vm_readv, which cannot fault). Stores before that
 * are not tracked.
 *
 * Cost. Stores get a callback that updates a page or line record; executions are only
 * instrumented in blocks that hold bytes written and not yet synchronized everywhere when
 * translated; ordering events get small callbacks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib.h>
#include <qemu-plugin.h>

#include "engine.h"
#include "report.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* The one table of rule files: jitprobe's architecture names are theirs. */
extern const struct arch_ops arch_arm64, arch_riscv64, arch_x86_64;
static const struct arch_ops *const g_arches[] = { &arch_arm64, &arch_riscv64, &arch_x86_64 };

static uint64_t g_ram_base, g_ram_size;

/* ---- host <-> physical calibration ------------------------------------------------------ */

#define PAGE 4096ULL
#define CAL_RING 8
#define CAL_VOTES 3
#define CAL_CANDIDATES 8

static bool g_calibrated;          /* written once, under g_cal_lock */
static intptr_t g_delta;           /* host = phys + g_delta for guest RAM */
static pthread_mutex_t g_cal_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { intptr_t delta; unsigned votes; uint64_t last_page; } g_cand[CAL_CANDIDATES];
static __thread struct { uint64_t vpage; uintptr_t hpage; } t_ring[CAL_RING];
static __thread unsigned t_ring_pos, t_cal_tick;
#define CAL_EVERY 64 /* stores per calibration attempt: attempts cost system calls */

static bool safe_read(uintptr_t host, void *buf, size_t len)
{
    struct iovec local = { buf, len }, remote = { (void *)host, len };
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len;
}

static bool distinctive(uint64_t v, unsigned size)
{
    /* Values that many unrelated addresses hold (0, -1, small integers) prove nothing. */
    return size >= 4 && __builtin_popcountll(v) >= 6 && ~v != 0 && (size < 8 || (v >> 32) != 0);
}

static void calibrate_store(qemu_plugin_meminfo_t info, uint64_t pa, uint64_t va)
{
    unsigned size = 1u << qemu_plugin_mem_size_shift(info);
    qemu_plugin_mem_value mv = qemu_plugin_mem_get_value(info);
    uint64_t value = size == 4 ? mv.data.u32 : size == 8 ? mv.data.u64 : 0;
    if (!engine_line(pa) || !distinctive(value, size) || t_cal_tick++ % CAL_EVERY) {
        return;
    }
    for (unsigned i = 0; i < CAL_RING; i++) {
        if (!t_ring[i].hpage) {
            continue;
        }
        /* Assume the translated page and the stored page share one vaddr->phys offset. */
        uint64_t tpa = t_ring[i].vpage - (va - pa);
        intptr_t delta = (intptr_t)(t_ring[i].hpage - tpa);
        uint64_t got = 0;
        if (!safe_read((uintptr_t)(pa + delta), &got, size) || memcmp(&got, &value, size)) {
            continue;
        }
        pthread_mutex_lock(&g_cal_lock);
        unsigned slot = CAL_CANDIDATES, free_slot = CAL_CANDIDATES;
        for (unsigned c = 0; c < CAL_CANDIDATES; c++) {
            if (g_cand[c].votes && g_cand[c].delta == delta) {
                slot = c;
            } else if (!g_cand[c].votes && free_slot == CAL_CANDIDATES) {
                free_slot = c;
            }
        }
        if (slot == CAL_CANDIDATES && free_slot != CAL_CANDIDATES) {
            slot = free_slot;
            g_cand[slot].delta = delta;
        }
        if (slot != CAL_CANDIDATES && g_cand[slot].last_page != pa / PAGE) {
            g_cand[slot].last_page = pa / PAGE;
            if (++g_cand[slot].votes >= CAL_VOTES && !g_calibrated) {
                g_delta = delta;
                __atomic_store_n(&g_calibrated, true, __ATOMIC_RELEASE);
            }
        }
        pthread_mutex_unlock(&g_cal_lock);
        return;
    }
}

static void remember_translation(uint64_t vaddr, const void *haddr)
{
    uint64_t vpage = vaddr & ~(PAGE - 1);
    if (!haddr || t_ring[(t_ring_pos - 1) % CAL_RING].vpage == vpage) {
        return;
    }
    unsigned i = t_ring_pos++ % CAL_RING;
    t_ring[i].vpage = vpage;
    t_ring[i].hpage = (uintptr_t)haddr & ~(PAGE - 1);
}

static bool host_to_pa(const void *haddr, uint64_t *pa)
{
    if (!haddr || !__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE)) {
        return false;
    }
    uint64_t p = (uint64_t)((intptr_t)haddr - g_delta);
    if (!engine_line(p)) {
        return false; /* ROM, flash or another block */
    }
    *pa = p;
    return true;
}

bool host_read_phys(uint64_t pa, void *buf, size_t len)
{
    if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE) || !engine_line(pa) || !engine_line(pa + len - 1)) {
        return false;
    }
    memcpy(buf, (const void *)(uintptr_t)(pa + g_delta), len);
    return true;
}

/* ---- registers ------------------------------------------------------------------------------- */

#define MAX_HANDLES 48
static struct qemu_plugin_register *g_handles[MAX_VCPUS][MAX_HANDLES];
static unsigned g_nhandles[MAX_VCPUS];
static __thread GArray *t_regs; /* the register list while a vCPU initializes */

int host_register(unsigned vcpu, const char *name)
{
    for (guint i = 0; t_regs && i < t_regs->len && g_nhandles[vcpu] < MAX_HANDLES; i++) {
        qemu_plugin_reg_descriptor *d = &g_array_index(t_regs, qemu_plugin_reg_descriptor, i);
        if (!strcmp(d->name, name)) {
            g_handles[vcpu][g_nhandles[vcpu]] = d->handle;
            return (int)g_nhandles[vcpu]++;
        }
    }
    return -1;
}

bool host_read_register(unsigned vcpu, int handle, uint64_t *out)
{
    if (handle < 0 || vcpu >= MAX_VCPUS) {
        return false;
    }
    static __thread GByteArray *buf; /* reused: events read registers often */
    if (!buf) {
        buf = g_byte_array_new();
    }
    g_byte_array_set_size(buf, 0);
    int n = qemu_plugin_read_register(g_handles[vcpu][handle], buf);
    bool ok = n >= 4 && n <= 8 && buf->len >= (guint)n;
    if (ok) {
        *out = 0;
        memcpy(out, buf->data, n); /* little-endian host and target */
    }
    return ok;
}

/* ---- stores and events ------------------------------------------------------------------------ */

/* Whether a store wrote only zero bytes (see engine_unseen_writer). */
static bool stored_zero(qemu_plugin_meminfo_t info)
{
    qemu_plugin_mem_value v = qemu_plugin_mem_get_value(info);
    switch (v.type) {
    case QEMU_PLUGIN_MEM_VALUE_U8:
        return !v.data.u8;
    case QEMU_PLUGIN_MEM_VALUE_U16:
        return !v.data.u16;
    case QEMU_PLUGIN_MEM_VALUE_U32:
        return !v.data.u32;
    case QEMU_PLUGIN_MEM_VALUE_U64:
        return !v.data.u64;
    case QEMU_PLUGIN_MEM_VALUE_U128:
        return !v.data.u128.low && !v.data.u128.high;
    }
    return false;
}

static void on_store(unsigned vcpu, qemu_plugin_meminfo_t info, uint64_t va, void *udata)
{
    if (vcpu >= MAX_VCPUS) {
        return;
    }
    struct qemu_plugin_hwaddr *hw = qemu_plugin_get_hwaddr(info, va);
    if (!hw || qemu_plugin_hwaddr_is_io(hw)) {
        return;
    }
    uint64_t pa = qemu_plugin_hwaddr_phys_addr(hw);
    if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE)) {
        calibrate_store(info, pa, va);
        return;
    }
    /* An access that crosses a virtual page end continues in whatever frame the next page maps,
       not in the physically next one: each part is translated on its own. */
    unsigned size = 1u << qemu_plugin_mem_size_shift(info);
    unsigned first = size < PAGE_SIZE - va % PAGE_SIZE ? size : (unsigned)(PAGE_SIZE - va % PAGE_SIZE);
    uint64_t pc = (uint64_t)(uintptr_t)udata;
    bool zero = engine_page_tracked(pa) && stored_zero(info); /* only tracked pages keep it */
    engine_store(vcpu, pa, va, first, pc, zero);
    if (first < size) {
        hw = qemu_plugin_get_hwaddr(info, va + first);
        if (hw && !qemu_plugin_hwaddr_is_io(hw)) {
            engine_store(vcpu, qemu_plugin_hwaddr_phys_addr(hw), va + first, size - first, pc, zero);
        }
    }
}

/* udata of an event callback: op << 16 | arg << 8 | kernel */
static void on_event(unsigned vcpu, void *udata)
{
    uintptr_t u = (uintptr_t)udata;
    if (vcpu < MAX_VCPUS) {
        g_arch->event(vcpu, (uint16_t)(u >> 16), (uint8_t)(u >> 8), u & 1);
    }
}

static void *event_udata(uint16_t op, uint8_t arg, bool kernel)
{
    return (void *)((uintptr_t)op << 16 | (uintptr_t)arg << 8 | kernel);
}

/* ---- executions ------------------------------------------------------------------------------- */

/* The checks of one translated block. QEMU's plugin API never says when a block is freed, so
   records are kept in a table keyed by the block's address and entries and reused when the
   same block is translated again (a rewritten JIT buffer is retranslated on every rewrite). */
struct tb_key {
    uint64_t vaddr;
    const struct check_entry *e; /* the entries' pa, bytes and flags are the rest of the key */
    unsigned n;
    guint hash;
};
struct tb_check {
    struct tb_key key;   /* its e: this record's own entries (retranslations keep their key fields) */
    uint64_t *validated; /* per vCPU: 1 + its thread switch count when every entry passed; 0 = not */
    struct violation_cache *seen;
    unsigned n;
    struct check_entry e[];
};
static GHashTable *g_checks; /* struct tb_key (the record's own) -> struct tb_check */
static pthread_mutex_t g_checks_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_tb_exec(unsigned vcpu, void *udata)
{
    struct tb_check *tc = udata;
    if (vcpu >= MAX_VCPUS) {
        return;
    }
    uint64_t now = load64(&g_vcpu[vcpu].switches) + 1;
    if (load64(&tc->validated[vcpu]) == now) {
        return;
    }
    g_vcpu[vcpu].checks++;
    bool ok = true;
    /* Who executes: found once per block for user and for kernel entries (the user context
       reads guest registers). */
    struct exec_ctx ctx[2];
    bool have[2] = { false, false };
    for (unsigned i = 0; i < tc->n; i++) {
        const struct check_entry *e = &tc->e[i];
        const struct line *l = engine_line(e->pa);
        if (!l || !(load64(&l->mask) & e->bytes)) {
            continue;
        }
        bool user = !g_arch->is_kernel_pc(e->vaddr);
        if (!have[user]) {
            engine_exec_ctx(vcpu, user, &ctx[user]);
            have[user] = true;
        }
        ctx[user].vaddr = e->vaddr;
        const struct rule *rule = engine_check_in(l, e->bytes, vcpu, e->flags, &ctx[user]);
        if (rule) {
            ok = false;
            report_violation(&tc->seen[i], rule, e, l, vcpu);
        }
    }
    if (ok) {
        __atomic_store_n(&tc->validated[vcpu], now, RELAXED);
    }
}

/* engine_min_thread_sync not asked yet for this block (were it to answer this, it is asked again). */
#define LEAST_UNKNOWN UINT64_MAX

static uint64_t g_unseen; /* translated granules last written by an unseen writer (statistics) */

/* Add a check entry per granule of the instruction that holds unsynchronized written bytes. */
static void collect_checks(GArray *entries, uint64_t pa, uint64_t vaddr, const uint8_t *insn, size_t size,
                           unsigned flags, uint64_t *least)
{
    uint64_t page_end = (pa | (PAGE_SIZE - 1)) + 1;
    bool user = !g_arch->is_kernel_pc(vaddr);
    size_t done = 0;
    /* The host pointer covers the first page only; bytes on a following page are not checked. */
    while (done < size && pa + done < page_end) {
        uint64_t p = pa + done;
        struct line *l = engine_line(p);
        if (!l) {
            return;
        }
        unsigned off = p & (g_granule - 1); /* a power of two (engine_init) */
        size_t n = size - done < g_granule - off ? size - done : g_granule - off;
        uint64_t m = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << off;
        engine_track_page(p);
        flags = done ? flags & ~INSN_STARTS_HERE : flags | INSN_STARTS_HERE;
        struct writer w = engine_writer(l, m);
        bool written = w.seq && (load64(&l->mask) & m);
        if (written && engine_unseen_writer(w, m, insn + done)) {
            __atomic_fetch_add(&g_unseen, 1, RELAXED);
        } else if (written) {
            if (user && *least == LEAST_UNKNOWN) {
                *least = engine_min_thread_sync(); /* once per block: it scans every thread */
            }
            if (engine_clean_everywhere(l, m, flags, user, *least)) {
                /* Synchronized for everyone: forget these bytes until they are written again. */
                __atomic_fetch_and(&l->mask, ~m, RELAXED);
            } else {
                struct check_entry e = { .pa = p & ~(uint64_t)(g_granule - 1), .vaddr = vaddr,
                                         .bytes = m, .size = size, .flags = flags };
                memcpy(e.insn, insn, size < MAX_INSN_BYTES ? size : MAX_INSN_BYTES);
                g_array_append_val(entries, e);
            }
        }
        done += n;
    }
}

/* The key compared and hashed as binary numbers: translating a block of written code must not
   cost a formatted string per instruction. */
static guint tb_key_hash(gconstpointer p) { return ((const struct tb_key *)p)->hash; }

static gboolean tb_key_equal(gconstpointer pa, gconstpointer pb)
{
    const struct tb_key *a = pa, *b = pb;
    if (a->hash != b->hash || a->vaddr != b->vaddr || a->n != b->n) {
        return false;
    }
    for (unsigned i = 0; i < a->n; i++) {
        if (a->e[i].pa != b->e[i].pa || a->e[i].bytes != b->e[i].bytes || a->e[i].flags != b->e[i].flags) {
            return false;
        }
    }
    return true;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static struct tb_check *check_record(uint64_t vaddr, GArray *entries)
{
    const struct check_entry *es = &g_array_index(entries, struct check_entry, 0);
    uint64_t h = mix(entries->len, vaddr);
    for (guint i = 0; i < entries->len; i++) {
        h = mix(mix(mix(h, es[i].pa), es[i].bytes), es[i].flags);
    }
    struct tb_key key = { .vaddr = vaddr, .e = es, .n = entries->len, .hash = (guint)(h ^ (h >> 32)) };
    pthread_mutex_lock(&g_checks_lock);
    struct tb_check *tc = g_hash_table_lookup(g_checks, &key);
    if (!tc) {
        tc = g_malloc0(sizeof(*tc) + entries->len * sizeof(struct check_entry));
        tc->n = entries->len;
        tc->validated = g_new0(uint64_t, MAX_VCPUS);
        tc->seen = g_new0(struct violation_cache, entries->len);
        tc->key = key;
        tc->key.e = tc->e;
        memcpy(tc->e, es, entries->len * sizeof(struct check_entry));
        g_hash_table_insert(g_checks, &tc->key, tc);
    }
    /* A new translation: its bytes (for reports) and no vCPU has passed it yet. */
    for (unsigned i = 0; i < tc->n; i++) {
        tc->e[i] = es[i];
    }
    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        __atomic_store_n(&tc->validated[v], 0, RELAXED);
    }
    pthread_mutex_unlock(&g_checks_lock);
    return tc;
}

static __thread GArray *t_entries; /* reused by each translation on this thread */

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    if (engine_vcpus_share_thread()) {
        return; /* its callbacks would name the wrong vCPU (engine_vcpu_thread): check nothing */
    }
    size_t n = qemu_plugin_tb_n_insns(tb);
    GArray *entries = NULL;
    uint64_t least = LEAST_UNKNOWN;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        uint8_t bytes[MAX_INSN_BYTES] = { 0 };
        size_t size = qemu_plugin_insn_data(insn, bytes, sizeof(bytes));
        struct decoded d = g_arch->decode(bytes, size);
        /* Every store but the kernel's to its stack, which it never executes (INSN_STACK_STORE). */
        if (!(d.flags & INSN_STACK_STORE) || !g_arch->is_kernel_pc(vaddr)) {
            qemu_plugin_register_vcpu_mem_cb(insn, on_store, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W,
                                             (void *)(uintptr_t)vaddr);
        }
        if (d.op) {
            qemu_plugin_register_vcpu_insn_exec_cb(
                insn, on_event, d.reads_regs ? QEMU_PLUGIN_CB_R_REGS : QEMU_PLUGIN_CB_NO_REGS,
                event_udata(d.op, d.arg, g_arch->is_kernel_pc(vaddr)));
        }
        void *haddr = qemu_plugin_insn_haddr(insn);
        uint64_t pa;
        if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE)) {
            if (i == 0 || i == n - 1) {
                remember_translation(vaddr, haddr);
            }
        } else if (host_to_pa(haddr, &pa)) {
            if (!entries) {
                if (!t_entries) {
                    t_entries = g_array_new(false, false, sizeof(struct check_entry));
                }
                entries = t_entries;
                g_array_set_size(entries, 0);
            }
            collect_checks(entries, pa, vaddr, bytes, qemu_plugin_insn_size(insn), d.flags, &least);
        }
    }
    /* First, so that an event at block entry (exception vector, reset) precedes the check. */
    uint64_t tb_vaddr = qemu_plugin_tb_vaddr(tb);
    uint16_t op = g_arch->block_op(tb_vaddr);
    if (op) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_event, QEMU_PLUGIN_CB_NO_REGS,
                                             event_udata(op, 0, g_arch->is_kernel_pc(tb_vaddr)));
    }
    if (entries && entries->len) {
        /* Registers: a user check reads the process's address space (membarrier). */
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_R_REGS, check_record(tb_vaddr, entries));
    }
}

/* ---- set-up and exit ------------------------------------------------------------------------ */

static void on_vcpu_init(qemu_plugin_id_t id, unsigned vcpu)
{
    (void)id;
    if (vcpu < MAX_VCPUS && !engine_vcpu_thread(vcpu, (uint64_t)gettid())) {
        const char *why = "several vCPUs run on one host thread (round-robin TCG: -accel tcg,thread=single "
                          "or -icount), and QEMU then gives a callback the index of the vCPU that translated "
                          "its block, not of the one running it; it needs -accel tcg,thread=multi";
        fprintf(stderr, "jitprobe sanitizer: nothing is checked: %s\n", why);
        report_refusal(why);
    }
    if (vcpu < MAX_VCPUS) {
        t_regs = qemu_plugin_get_registers();
        g_arch->vcpu_init(vcpu);
        g_array_free(t_regs, true);
        t_regs = NULL;
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    uint64_t stores = 0, checks = 0, line_ops = 0, untranslated = 0;
    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        stores += g_vcpu[v].stores;
        checks += g_vcpu[v].checks;
        line_ops += g_vcpu[v].line_ops;
        untranslated += g_vcpu[v].untranslated;
    }
    char status[640];
    snprintf(status, sizeof(status),
             "{\"kind\": \"summary\", \"arch\": \"%s\", \"calibrated\": %s, \"stores\": %" PRIu64
             ", \"block_checks\": %" PRIu64 ", \"events\": %" PRIu64 ", \"events_overflowed\": %s"
             ", \"cache_ops_by_va\": %" PRIu64 ", \"untranslated_cache_ops\": %" PRIu64
             ", \"threads_untracked\": %" PRIu64 ", \"check_records\": %u, \"unseen_writer\": %" PRIu64 "}",
             g_arch->name, g_calibrated ? "true" : "false", stores, checks, engine_events(),
             engine_overflowed() ? "true" : "false", line_ops, untranslated, engine_tasks_untracked(),
             g_checks ? g_hash_table_size(g_checks) : 0, load64(&g_unseen));
    report_close(status);
}

/* A number within [lo, hi]; false with a message naming the argument, its value and the range. */
static bool parse_u64(const char *key, const char *value, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    *out = strtoull(value, &end, 0);
    if (!*value || *end || errno || *value == '-' || *out < lo || *out > hi) {
        fprintf(stderr, "jitprobe sanitizer: %s=%s is not valid; valid: a number from %#" PRIx64 " to %#" PRIx64 "\n",
                key, value, lo, hi);
        return false;
    }
    return true;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    const struct arch_ops *arch = NULL;
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "jitprobe sanitizer: argument %s is not key=value\n", argv[i]);
            return -1;
        }
        *eq = '\0';
        const char *key = argv[i], *value = eq + 1;
        bool ok = true;
        if (!strcmp(key, "arch")) {
            for (size_t a = 0; a < G_N_ELEMENTS(g_arches); a++) {
                if (!strcmp(value, g_arches[a]->name)) {
                    arch = g_arches[a];
                }
            }
            if (!arch) {
                fprintf(stderr, "jitprobe sanitizer: arch=%s; valid:", value);
                for (size_t a = 0; a < G_N_ELEMENTS(g_arches); a++) {
                    fprintf(stderr, " %s", g_arches[a]->name);
                }
                fprintf(stderr, "\n");
                ok = false;
            }
        } else if (!strcmp(key, "out")) {
            out = value;
        } else if (!strcmp(key, "ram_base")) {
            ok = parse_u64(key, value, 0, (1ULL << 52) - 1, &g_ram_base) &&
                 (g_ram_base % PAGE_SIZE == 0 || (fprintf(stderr, "jitprobe sanitizer: ram_base=%s is not page-aligned\n", value), false));
        } else if (!strcmp(key, "ram_size")) {
            ok = parse_u64(key, value, PAGE_SIZE, 1ULL << 40, &g_ram_size) &&
                 (g_ram_size % PAGE_SIZE == 0 || (fprintf(stderr, "jitprobe sanitizer: ram_size=%s is not a whole number of pages\n", value), false));
        } else if (arch && arch->parse_arg) {
            ok = arch->parse_arg(key, value);
        } else if (arch) {
            fprintf(stderr, "jitprobe sanitizer: %s takes no argument %s\n", arch->name, key);
            ok = false;
        } else {
            fprintf(stderr, "jitprobe sanitizer: arch= must come before %s=\n", key);
            ok = false;
        }
        if (!ok) {
            return -1;
        }
    }
    if (!arch || !out || !g_ram_size) {
        fprintf(stderr, "jitprobe sanitizer: arch=, out= and ram_size= are required\n");
        return -1;
    }
    if (strcmp(info->target_name, arch->qemu_target)) {
        fprintf(stderr, "jitprobe sanitizer: arch=%s but QEMU emulates %s\n", arch->name, info->target_name);
        return -1;
    }
    if (!info->system_emulation) {
        fprintf(stderr, "jitprobe sanitizer: only system emulation is supported\n");
        return -1;
    }
    if (arch->init && !arch->init(&g_granule)) {
        return -1;
    }
    if (!engine_init(arch, g_ram_base, g_ram_size, (unsigned)info->system.max_vcpus) || !report_open(out)) {
        return -1;
    }
    g_checks = g_hash_table_new(tb_key_hash, tb_key_equal);
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
