# Division edges that native instructions get wrong without care: x86 traps on /0 and on
# INT_MIN/-1, riscv64 DIV by zero gives all ones, *W results must be zero-extended.
lddw %r6, 0x8000000000000000
mov %r1, -1
mov %r7, %r6
sdiv %r7, %r1
mov %r8, %r6
smod %r8, %r1
mov %r2, 0
mov %r9, 77
div %r9, %r2
mov32 %r3, -7
mod32 %r3, %r2
mov32 %r4, -8
sdiv32 %r4, 3
mov %r0, %r7
xor %r0, %r8
add %r0, %r9
add %r0, %r3
add %r0, %r4
exit
