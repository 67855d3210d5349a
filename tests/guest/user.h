/* Running a function in ring 3 (see user.c). */
#ifndef USER_H
#define USER_H
#include "guest.h"

/* Runs fn(arg) in ring 3 (IOPL 3, interrupts off) and never comes back:
 * fn must end the VM itself (see user_exit). */
void run_user_noreturn(void (*fn)(u64), u64 arg) __attribute__((noreturn));

/* Ends the VM from ring 3: a reset pulse through the i8042. */
static inline __attribute__((noreturn)) void user_exit(void)
{
	for (;;)
		outb(0x64, 0xfe);
}

/* bench.blk=N: brings the first virtio-blk device up and runs the
 * benchmark loop in ring 3 (bench_blk.c); returns only on failure. */
void blk_bench_start(u64 n);

/* bench.net=N: the same for the first virtio-net device (bench_net.c). */
void net_bench_start(u64 n);

/* Masks IOAPIC pin `pin` (guest.c). */
void ioapic_mask(u32 pin);

/* Runs the benchmark the command line asks for, if any (bench_pio.c); a benchmark never returns. */
void run_benchmarks(void);

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

#endif
