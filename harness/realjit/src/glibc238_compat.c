/*
 * Two glibc 2.38 symbols for a library built against trixie's glibc (2.41) and linked here with
 * bookworm's (2.36): the only cross toolchain for riscv64 on this Debian 12 host is bookworm's,
 * and its linker (binutils 2.40) crashes on trixie's riscv64 libc.a, so trixie's glibc cannot be
 * linked instead. GCC 14 with _GNU_SOURCE/C23 maps strtoul and fscanf to these names; they differ
 * from the C99 functions only in accepting a "0b"/"0B" binary prefix (base 0 or 2, and %i), which
 * LuaJIT never parses (lib_jit.c and lj_*.c call strtoul with base 10, fscanf for numbers from
 * /proc files).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

unsigned long __isoc23_strtoul(const char *s, char **end, int base);
int __isoc23_fscanf(FILE *f, const char *fmt, ...);

unsigned long __isoc23_strtoul(const char *s, char **end, int base)
{
    return strtoul(s, end, base);
}

int __isoc23_fscanf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfscanf(f, fmt, ap);
    va_end(ap);
    return n;
}
