# Variable shifts need the count in cl; eBPF r4 lives in rcx on x86_64, so dst or src being r4
# must not be clobbered by the move of the count (a bug the x86_64 author planted and caught).
mov %r4, 0x12345
mov %r1, 3
lsh %r4, %r1
mov %r2, 0xf0
mov %r1, %r2
rsh %r1, %r4
arsh32 %r4, %r4
mov %r0, %r4
add %r0, %r1
exit
