/*
 * The benchmarks the command line asks for (bench.blk=, bench.net=,
 * bench.pio0=, bench.pio=): each runs instead of the functional tests and
 * ends the machine itself. bench.pio's port writes are the exit benchmark.
 */
#include "guest.h"
#include "user.h"

/* ---- ring 3 benchmarks ---- */

static u64 bench_count;

/* BENCH-PIO: <writes> <cycles> cpl <ring> */
static void report_pio(u64 n, u64 cycles, u64 cpl)
{
	puts("BENCH-PIO: ");
	putdec(n);
	puts(" ");
	putdec(cycles);
	puts(" cpl ");
	putdec(cpl);
	puts("\n");
}

/* bench.pio=N: N port writes from ring 3, one exit each, timed with the TSC;
 * the launcher handles each in its vCPU thread. */
static void user_pio_bench(u64 n)
{
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	u64 t0 = rdtsc();
	for (u64 i = 0; i < n; i++)
		__asm__ volatile("outb %%al, $0x80" : : "a"((u8)i));
	report_pio(n, rdtsc() - t0, cs & 3);
	puts("DONE\n");
	user_exit();
}

/* The same loop in ring 0, where this host's KVM emulates each instruction:
 * bench.pio0=N. Exit costs differ by ring on PVM; both are worth knowing. */
static void kernel_pio_bench(u64 n)
{
	u64 t0 = rdtsc();
	for (u64 i = 0; i < n; i++)
		__asm__ volatile("outb %%al, $0x80" : : "a"((u8)i));
	report_pio(n, rdtsc() - t0, 0);
}

void run_benchmarks(void)
{
	u32 len;
	const char *b = cmdline_param("bench.blk", &len);
	if (b)
		blk_bench_start(parse_num(b, len));
	const char *net = cmdline_param("bench.net", &len);
	if (net)
		net_bench_start(parse_num(net, len));
	const char *k = cmdline_param("bench.pio0", &len);
	if (k)
		kernel_pio_bench(parse_num(k, len));
	const char *n = cmdline_param("bench.pio", &len);
	if (n) {
		bench_count = parse_num(n, len);
		run_user_noreturn(user_pio_bench, bench_count);
	}
}
