/*
 * LuaJIT's trace compiler in a compile-run-flush loop on two threads, each with its own lua_State.
 *
 * Each round loads a new Lua function (a fresh prototype, so fresh traces), runs its hot loops
 * until LuaJIT records and compiles them into machine code (lj_mcode_commit/lj_mcode_sync), then
 * calls jit.flush(), which throws every trace away and frees the machine code areas, so the next
 * round's traces are written into freed and reallocated executable memory. Results are checked
 * against the same arithmetic in C; the program exits 1 on a mismatch, an error, or when no trace
 * was compiled at all (then nothing was tested).
 *
 * The states are created one at a time (g_open_lock): Debian trixie's riscv64 LuaJIT detects
 * CPU extensions when the jit library is opened (luaL_openlibs -> luaopen_jit -> jit_init ->
 * jit_cpudetect) by installing a process-wide SIGILL handler, executing Zba, Zbb and XThead
 * instructions that longjmp out of it through one static sigjmp_buf, and restoring the old
 * handler. Two threads opening their states at once race: one restores SIG_DFL while the other
 * still probes, and the process dies of SIGILL at riscv_xthead+4 (seen here, exit 132). That is a
 * thread-safety bug of the port, not a code-modification one; serializing the opening keeps this
 * test about the trace compiler. The traces themselves are compiled and flushed concurrently.
 *
 * usage: luajit_flush [rounds] [threads]
 */
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "workers.h"

static const char SNIPPET[] =
    "local rounds = ...\n"
    "local traces, flushes = 0, 0\n"
    "jit.on()\n"
    "jit.attach(function(what) if what == 'stop' then traces = traces + 1 end end, 'trace')\n"
    "local total = 0\n"
    "for r = 1, rounds do\n"
    "  local f = assert(load('local r = ... local s = 0 for i = 1, 300 do s = s + (i % ' .. (r % 5 + 3)\n"
    "                        .. ') * r end return s'))\n"
    "  total = total + f(r)\n"
    "  local t = {}\n"
    "  for i = 1, 200 do t[i] = i * r end\n"
    "  local u = 0\n"
    "  for i = 1, #t do u = u + t[i] % 11 end\n"
    "  total = total + u\n"
    "  jit.flush()\n"
    "  flushes = flushes + 1\n"
    "end\n"
    "jit.attach(function() end)\n"
    "return total, traces, flushes\n";

static int rounds = 150;
static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;

static long long expected_total(void)
{
    long long total = 0;
    for (long long r = 1; r <= rounds; r++) {
        long long m = r % 5 + 3;
        for (long long i = 1; i <= 300; i++)
            total += (i % m) * r;
        for (long long i = 1; i <= 200; i++)
            total += (i * r) % 11;
    }
    return total;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    pthread_mutex_lock(&g_open_lock);
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "thread %ld: luaL_newstate failed\n", id);
        exit(1);
    }
    luaL_openlibs(L);
    pthread_mutex_unlock(&g_open_lock);
    if (luaL_loadstring(L, SNIPPET) != 0) {
        fprintf(stderr, "thread %ld: %s\n", id, lua_tostring(L, -1));
        exit(1);
    }
    lua_pushinteger(L, rounds);
    if (lua_pcall(L, 1, 3, 0) != 0) {
        fprintf(stderr, "thread %ld: %s\n", id, lua_tostring(L, -1));
        exit(1);
    }
    long long total = (long long)lua_tonumber(L, -3);
    long traces = (long)lua_tointeger(L, -2), flushes = (long)lua_tointeger(L, -1);
    if (total != expected_total() || traces < rounds || flushes != rounds) {
        fprintf(stderr, "thread %ld: total %lld (expected %lld), %ld traces (expected >= %d), %ld flushes\n", id,
                total, expected_total(), traces, rounds, flushes);
        exit(1);
    }
    printf("thread %ld: %ld traces compiled, %ld flushes\n", id, traces, flushes);
    lua_close(L);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 2;
    if (parse_args(argc, argv, "rounds", &rounds, &threads) != 0)
        return 2;
    if (run_threads(worker, threads) != 0)
        return 1;
    printf("luajit ok: %s, %d threads x %d rounds\n", LUAJIT_VERSION, threads, rounds);
    return 0;
}
