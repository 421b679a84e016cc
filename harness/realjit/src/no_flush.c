/*
 * The no_cache_flush mutation (harness.realjit.BuildMutation): linked with -Wl,--wrap=<symbol> for
 * each of harness.realjit.FLUSH_SYMBOLS, so every call the program and its JIT library make to
 * the toolchain's cache maintenance (GCC's __clear_cache in libgcc, glibc's RISC-V
 * __riscv_flush_icache) lands here and does nothing: the new code is never cleaned, invalidated
 * or fenced. A real bug class: a JIT built without its SLJIT_CACHE_FLUSH / lj_mcode_sync.
 */
void __wrap___clear_cache(void *start, void *end);
int __wrap___riscv_flush_icache(void *start, void *end, unsigned long flags);

void __wrap___clear_cache(void *start, void *end)
{
    (void)start;
    (void)end;
}

int __wrap___riscv_flush_icache(void *start, void *end, unsigned long flags)
{
    (void)start;
    (void)end;
    (void)flags;
    return 0;
}
