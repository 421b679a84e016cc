# 32-bit cmpxchg and fetch-add must zero-extend the value they return (riscv64 AMOs and LR.W
# sign-extend; x86_64 cmpxchg leaves eax untouched on success).
mov %r1, -2
stxw [%r10-8], %r1
mov32 %r0, -2
mov32 %r2, 5
lock cmpxchg32 [%r10-8], %r2
mov %r6, %r0
mov32 %r3, -1
lock fetch add32 [%r10-8], %r3
ldxw %r7, [%r10-8]
mov %r0, %r6
lsh %r0, 1
add %r0, %r3
add %r0, %r7
exit
