/*
 * jitprobe coherency sanitizer: a QEMU (10.0, plugin API 4) TCG plugin.
 *
 * QEMU's TCG keeps translated code coherent with memory, so a program that skips a cache flush
 * still runs its new code under QEMU. This plugin watches every store and the executions of the
 * bytes stored to, and reports each executed instruction that the guest architecture does not
 * guarantee to be the new one (rules in arch_arm64.c, arch_riscv64.c, arch_x86_64.c).
 *
 * Arguments (-plugin libcoherency.so,key=value,...):
 *   arch=arm64|riscv64|x86_64     the guest architecture (checked against QEMU's target)
 *   out=PATH                      JSON-lines report (report.c)
 *   ram_base=N, ram_size=N        guest RAM's physical range (the machine's single RAM block)
 *   ctr_el0=N                     arm64 only: the modelled CPU's CTR_EL0 (line sizes, IDC, DIC)
 *
 * Physical addresses. Stores give physical addresses (qemu_plugin_hwaddr_phys_addr); translated
 * instructions only give a host pointer (qemu_plugin_insn_haddr, which QEMU documents as a proxy
 * for the physical address). Guest RAM is one host mapping, so host = phys + delta for one
 * constant delta. The plugin learns delta at boot: a store (vaddr V, phys P) and a recently
 * translated page (vaddr Vt, host Ht) on the same vCPU suggest delta = Ht - (Vt - V + P) when
 * both lie in one linearly mapped region (always true while the MMU is off); a candidate is
 * accepted after three stores to different pages are found at P + delta in host memory (read
 * with process_vm_readv, which cannot fault). Stores before that are not tracked.
 *
 * Cost. Stores get a callback that does one TLB lookup and updates a line record; executions
 * are only instrumented in blocks that hold bytes written and not yet synchronized for every
 * vCPU when translated; ordering events (DSB, ISB, FENCE.I, CPUID, ...) get small callbacks.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "coherency.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

const struct arch_ops *g_arch;
struct vcpu_events g_vcpu[MAX_VCPUS];
uint32_t g_epoch = 1;
uint32_t g_tlb_gen = 1;
unsigned g_granule = 64;

static uint64_t g_ram_base, g_ram_size;
static struct line *g_lines;       /* one record per granule of guest RAM */
static struct page *g_pages;       /* one record per 4 KiB page of guest RAM */
static bool g_system_mode;

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
    if (pa - g_ram_base >= g_ram_size || !distinctive(value, size) || t_cal_tick++ % CAL_EVERY) {
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
    if (p - g_ram_base >= g_ram_size) {
        return false; /* ROM, flash or another block */
    }
    *pa = p;
    return true;
}

struct line *line_at(uint64_t pa)
{
    uint64_t off = pa - g_ram_base;
    if (off >= g_ram_size) {
        return NULL;
    }
    return &g_lines[off / g_granule];
}

bool read_guest_phys(uint64_t pa, void *buf, size_t len)
{
    if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE) || pa - g_ram_base >= g_ram_size ||
        pa - g_ram_base + len > g_ram_size) {
        return false;
    }
    memcpy(buf, (const void *)(uintptr_t)(pa + g_delta), len);
    return true;
}

unsigned num_vcpus(void)
{
    int n = qemu_plugin_num_vcpus();
    return n < 1 ? 1 : n > MAX_VCPUS ? MAX_VCPUS : (unsigned)n;
}

uint32_t dsb_after(unsigned v, uint32_t seq)
{
    const struct vcpu_events *ev = &g_vcpu[v];
    uint32_t count = load32(&ev->dsb_count), best = 0, oldest = UINT32_MAX;
    unsigned n = count < DSB_HISTORY ? count : DSB_HISTORY;
    for (unsigned i = 0; i < n; i++) {
        uint32_t d = load32(&ev->dsb[i]);
        if (d > seq && (!best || d < best)) {
            best = d;
        }
        if (d < oldest) {
            oldest = d;
        }
    }
    if (count > DSB_HISTORY && oldest > seq) {
        return seq + 1; /* the earliest may have left the ring: assume the best, never a false report */
    }
    return best;
}

uint32_t bytes_seq(const struct line *l, uint64_t m)
{
    uint32_t w = 0;
    unsigned per = g_granule / CHUNKS;
    for (unsigned c = 0; c < CHUNKS; c++) {
        unsigned in_chunk = (m >> (c * per)) & ((1u << per) - 1);
        if (in_chunk & __atomic_load_n(&l->cbytes[c], RELAXED)) {
            uint32_t s = load32(&l->cseq[c]);
            w = s > w ? s : w;
        }
    }
    return w;
}

bool line_clean_everywhere(const struct line *l, uint64_t m, unsigned flags)
{
    for (unsigned v = 0; v < num_vcpus(); v++) {
        if (g_arch->check(l, m, v, flags)) {
            return false;
        }
    }
    return true;
}

/* ---- stores -------------------------------------------------------------------------------- */

void track_page(uint64_t pa)
{
    uint64_t off = pa - g_ram_base;
    if (off >= g_ram_size) {
        return;
    }
    struct page *pg = &g_pages[off / PAGE];
    if (__atomic_load_n(&pg->tracked, __ATOMIC_ACQUIRE)) {
        return;
    }
    /* From here on stores go to the lines; seed them with the page's last store (never lowering
       a stamp a racing line-level store just wrote). */
    __atomic_store_n(&pg->tracked, 1, __ATOMIC_RELEASE);
    unsigned per = g_granule / CHUNKS, piece = g_arch->piece;
    for (uint64_t p = off & ~(PAGE - 1); p < (off & ~(PAGE - 1)) + PAGE; p += g_granule) {
        struct line *l = &g_lines[p / g_granule];
        for (unsigned c = 0; c < CHUNKS; c++) {
            /* The chunk's stamp is its newest piece's; its bytes, those of the pieces with it. */
            uint32_t seq = 0;
            uint8_t bytes = 0;
            for (unsigned b = 0; b < per; b += piece < per ? piece : per) {
                unsigned index = (p % PAGE + c * per + b) / piece;
                uint64_t bit = 1ULL << (index % 64);
                uint32_t s = (pg->cur[index / 64] & bit) ? pg->seq
                           : (pg->before[index / 64] & bit) ? pg->seq_first : 0;
                uint8_t piece_bytes = (uint8_t)(((1u << (piece < per ? piece : per)) - 1) << b);
                if (s > seq) {
                    seq = s;
                    bytes = piece_bytes;
                } else if (s && s == seq) {
                    bytes |= piece_bytes;
                }
            }
            if (seq && load32(&l->cseq[c]) < seq) {
                l->cbytes[c] = bytes;
                store32(&l->cseq[c], seq);
                l->wpc = pg->wpc;
                l->wvcpu = pg->wvcpu;
            }
        }
        __atomic_fetch_or(&l->mask, g_granule == 64 ? ~0ULL : (1ULL << g_granule) - 1, RELAXED);
    }
}

/* Note a store of size bytes at pa (within one page) in an untracked page's record. */
static void record_page_write(struct page *pg, uint64_t pa, unsigned size, unsigned vcpu, uint64_t pc,
                              uint32_t epoch)
{
    unsigned piece = g_arch->piece;
    if (pg->seq != epoch) {
        for (unsigned i = 0; i < 4096 / piece / 64; i++) {
            pg->before[i] |= pg->cur[i];
            pg->cur[i] = 0;
        }
        if (!pg->seq_first) {
            pg->seq_first = epoch;
        }
        store32(&pg->seq, epoch);
    }
    for (unsigned index = pa % PAGE / piece; index <= (pa % PAGE + size - 1) / piece; index++) {
        uint64_t bit = 1ULL << (index % 64);
        if (!(pg->cur[index / 64] & bit)) {
            pg->cur[index / 64] |= bit;
        }
    }
    if (pg->wpc != pc || pg->wvcpu != vcpu) {
        pg->wpc = pc;
        pg->wvcpu = vcpu;
    }
}

static void record_write(uint64_t pa, unsigned size, unsigned vcpu, uint64_t pc)
{
    uint32_t epoch = load32(&g_epoch);
    while (size) {
        uint64_t off_ram = pa - g_ram_base;
        if (off_ram >= g_ram_size) {
            return;
        }
        struct page *pg = &g_pages[off_ram / PAGE];
        if (!__atomic_load_n(&pg->tracked, __ATOMIC_ACQUIRE)) {
            uint64_t to_page_end = PAGE - (pa & (PAGE - 1));
            record_page_write(pg, pa, size < to_page_end ? size : (unsigned)to_page_end, vcpu, pc, epoch);
            if (size <= to_page_end) {
                return;
            }
            pa += to_page_end;
            size -= to_page_end;
            continue;
        }
        struct line *l = &g_lines[off_ram / g_granule];
        unsigned off = pa % g_granule, n = size < g_granule - off ? size : g_granule - off;
        uint64_t m = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << off;
        if (l->wpc != pc || l->wvcpu != vcpu) {
            l->wpc = pc;
            l->wvcpu = vcpu;
        }
        unsigned per = g_granule / CHUNKS;
        for (unsigned c = off / per; c <= (off + n - 1) / per; c++) {
            uint8_t bytes = (uint8_t)((m >> (c * per)) & ((1u << per) - 1));
            if (l->cseq[c] != epoch) {
                l->cbytes[c] = bytes;
                store32(&l->cseq[c], epoch);
            } else if ((l->cbytes[c] & bytes) != bytes) {
                l->cbytes[c] |= bytes;
            }
        }
        if ((__atomic_load_n(&l->mask, RELAXED) & m) != m) {
            __atomic_fetch_or(&l->mask, m, RELAXED);
        }
        pa += n;
        size -= n;
    }
}

static void on_store(unsigned vcpu, qemu_plugin_meminfo_t info, uint64_t va, void *udata)
{
    if (vcpu >= MAX_VCPUS) {
        return;
    }
    struct vcpu_events *ev = &g_vcpu[vcpu];
    uint64_t vpage = va / PAGE;
    uint32_t gen = load32(&g_tlb_gen);
    struct store_tlb *t = &ev->tlb[vpage % TLB_WAYS];
    if (t->vpage != vpage || t->gen != gen) {
        struct qemu_plugin_hwaddr *hw = qemu_plugin_get_hwaddr(info, va);
        if (!hw) {
            return;
        }
        uint64_t pa = qemu_plugin_hwaddr_phys_addr(hw);
        bool ram = !qemu_plugin_hwaddr_is_io(hw);
        if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE)) {
            if (ram) {
                calibrate_store(info, pa, va);
            }
            return;
        }
        *t = (struct store_tlb){ .vpage = vpage, .ppage = pa / PAGE, .gen = gen, .ram = ram };
    }
    if (t->ram) {
        ev->stores++;
        record_write(t->ppage * PAGE + va % PAGE, 1u << qemu_plugin_mem_size_shift(info), vcpu,
                     (uint64_t)(uintptr_t)udata);
    }
}

/* ---- executions ---------------------------------------------------------------------------- */

static void on_tb_exec(unsigned vcpu, void *udata)
{
    struct tb_check *tc = udata;
    uint64_t bit = 1ULL << (vcpu % 64);
    if (vcpu >= MAX_VCPUS || (__atomic_load_n(&tc->validated, RELAXED) & bit)) {
        return;
    }
    g_vcpu[vcpu].checks++;
    bool ok = true;
    for (unsigned i = 0; i < tc->n; i++) {
        const struct check_entry *e = &tc->e[i];
        const struct line *l = line_at(e->pa);
        if (!l || !(__atomic_load_n(&l->mask, RELAXED) & e->bytes)) {
            continue;
        }
        const char *rule = g_arch->check(l, e->bytes, vcpu, e->flags);
        if (rule) {
            ok = false;
            report_violation(rule, e, l, vcpu);
        }
    }
    if (ok) {
        __atomic_fetch_or(&tc->validated, bit, RELAXED);
    }
}

/* Add a check entry per granule of the instruction that holds unsynchronized written bytes. */
static void collect_checks(GArray *entries, uint64_t pa, uint64_t vaddr, const uint8_t *insn,
                           size_t size, unsigned flags)
{
    uint64_t page_end = (pa | (PAGE - 1)) + 1;
    size_t done = 0;
    /* The host pointer covers the first page only; bytes on a following page are not checked. */
    while (done < size && pa + done < page_end) {
        uint64_t p = pa + done;
        struct line *l = line_at(p);
        if (!l) {
            return;
        }
        unsigned off = p % g_granule;
        size_t n = size - done < g_granule - off ? size - done : g_granule - off;
        uint64_t m = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << off;
        track_page(p);
        if (!done) {
            flags |= INSN_STARTS_HERE;
        } else {
            flags &= ~INSN_STARTS_HERE;
        }
        if (bytes_seq(l, m) && (__atomic_load_n(&l->mask, RELAXED) & m)) {
            if (line_clean_everywhere(l, m, flags)) {
                /* Synchronized on every vCPU: forget these bytes until they are written again. */
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

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    GArray *entries = NULL;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        uint8_t bytes[MAX_INSN_BYTES] = { 0 };
        size_t size = qemu_plugin_insn_data(insn, bytes, sizeof(bytes));
        qemu_plugin_register_vcpu_mem_cb(insn, on_store, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W,
                                         (void *)(uintptr_t)vaddr);
        unsigned flags = g_arch->instrument_insn(insn, bytes, size);
        void *haddr = qemu_plugin_insn_haddr(insn);
        uint64_t pa;
        if (!__atomic_load_n(&g_calibrated, __ATOMIC_ACQUIRE)) {
            if (i == 0 || i == n - 1) {
                remember_translation(vaddr, haddr);
            }
        } else if (host_to_pa(haddr, &pa)) {
            if (!entries) {
                entries = g_array_new(false, false, sizeof(struct check_entry));
            }
            collect_checks(entries, pa, vaddr, bytes, qemu_plugin_insn_size(insn), flags);
        }
    }
    /* First, so that an event at block entry (exception vector, reset) precedes the check. */
    g_arch->instrument_tb(tb, qemu_plugin_tb_vaddr(tb));
    if (entries && entries->len) {
        struct tb_check *tc = g_malloc0(sizeof(*tc) + entries->len * sizeof(struct check_entry));
        tc->n = entries->len;
        memcpy(tc->e, entries->data, entries->len * sizeof(struct check_entry));
        /* Blocks are never freed by QEMU's plugin API; this record lives as long as the process. */
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, tc);
    }
    if (entries) {
        g_array_free(entries, true);
    }
}

/* ---- set-up and exit ------------------------------------------------------------------------ */

static void on_vcpu_init(qemu_plugin_id_t id, unsigned vcpu)
{
    (void)id;
    if (vcpu < MAX_VCPUS) {
        g_arch->vcpu_init(vcpu);
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
    char status[512];
    snprintf(status, sizeof(status),
             "{\"kind\": \"summary\", \"arch\": \"%s\", \"calibrated\": %s, \"stores\": %" PRIu64
             ", \"block_checks\": %" PRIu64 ", \"events\": %u, \"cache_ops_by_va\": %" PRIu64
             ", \"untranslated_cache_ops\": %" PRIu64 "}",
             g_arch->name, g_calibrated ? "true" : "false", stores, checks, load32(&g_epoch), line_ops,
             untranslated);
    report_close(status);
}

static bool parse_u64(const char *key, const char *value, uint64_t *out)
{
    char *end;
    *out = strtoull(value, &end, 0);
    if (!*value || *end) {
        fprintf(stderr, "jitprobe sanitizer: %s=%s is not a number\n", key, value);
        return false;
    }
    return true;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    static const struct arch_ops *const arches[] = { &arch_arm64, &arch_riscv64, &arch_x86_64 };
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
            for (size_t a = 0; a < G_N_ELEMENTS(arches); a++) {
                if (!strcmp(value, arches[a]->name)) {
                    g_arch = arches[a];
                }
            }
            ok = g_arch != NULL;
            if (!ok) {
                fprintf(stderr, "jitprobe sanitizer: arch=%s; valid: arm64, riscv64, x86_64\n", value);
            }
        } else if (!strcmp(key, "out")) {
            out = value;
        } else if (!strcmp(key, "ram_base")) {
            ok = parse_u64(key, value, &g_ram_base);
        } else if (!strcmp(key, "ram_size")) {
            ok = parse_u64(key, value, &g_ram_size);
        } else if (g_arch && g_arch->parse_arg) {
            ok = g_arch->parse_arg(key, value);
        } else if (g_arch) {
            fprintf(stderr, "jitprobe sanitizer: %s takes no argument %s\n", g_arch->name, key);
            ok = false;
        } else {
            fprintf(stderr, "jitprobe sanitizer: arch= must come before %s=\n", key);
            ok = false;
        }
        if (!ok) {
            return -1;
        }
    }
    if (!g_arch || !out || !g_ram_size) {
        fprintf(stderr, "jitprobe sanitizer: arch=, out= and ram_size= are required\n");
        return -1;
    }
    if (strcmp(info->target_name, g_arch->qemu_target)) {
        fprintf(stderr, "jitprobe sanitizer: arch=%s but QEMU emulates %s\n", g_arch->name,
                info->target_name);
        return -1;
    }
    g_system_mode = info->system_emulation;
    if (!g_system_mode) {
        fprintf(stderr, "jitprobe sanitizer: only system emulation is supported\n");
        return -1;
    }
    if (g_arch->init && !g_arch->init(&g_granule)) {
        return -1;
    }
    /* Reserved, not committed: only the lines the guest writes are ever touched. */
    g_lines = mmap(NULL, g_ram_size / g_granule * sizeof(struct line), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    g_pages = mmap(NULL, g_ram_size / PAGE * sizeof(struct page), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_lines == MAP_FAILED || g_pages == MAP_FAILED) {
        perror("jitprobe sanitizer: mmap of the line and page tables");
        return -1;
    }
    if (!report_open(out)) {
        return -1;
    }
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
