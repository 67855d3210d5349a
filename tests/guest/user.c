/*
 * Ring 3 for the test guest's benchmarks. This host's KVM (PVM) emulates
 * ring-0 guest code but runs ring-3 code natively, so hot loops (the exit
 * benchmark, device drivers under load) run in user mode. PVM insists on the
 * host's user selectors: 64-bit code at GDT entry 6 (selector 0x33) and data
 * at entry 5 (0x2b). Port I/O stays legal in ring 3 with IOPL=3, and pages
 * need the U bit, which we add to the launcher's identity map.
 *
 * The trip is one way. Under PVM an event raised in user mode (an int, an
 * interrupt, a fault) is not delivered through the IDT but through PVM's own
 * event ABI, after which the vCPU would be in PVM supervisor mode with other
 * interrupt rules. A benchmark does not need to come back: it sets up in
 * ring 0, drops to ring 3, runs, reports over the UART, and resets the
 * machine through the i8042, all from ring 3.
 */
#include "guest.h"
#include "user.h"

static u64 gdt[9] __attribute__((aligned(16)));
static u8 user_stack[65536] __attribute__((aligned(16)));

/* Our own 64-bit TSS, with an I/O permission bitmap that allows every port.
 * Without one, TR is whatever the loader left: the 64-bit boot protocol's
 * (limit 0xffff) happens to do, but the PVH ABI's 32-bit TSS ends at 0x67,
 * before any bitmap, and PVM refuses ring-3 port I/O against it (the
 * benchmarks' first outb triple-faulted; seen 2026-12-05). A kernel that
 * runs user code loads its own TSS; so do we. */
#define TSS_BYTES 104
#define IOMAP_BYTES (65536 / 8 + 1)	/* one bit per port, and the 0xff end byte */
static u8 tss[TSS_BYTES + IOMAP_BYTES] __attribute__((aligned(16)));

static void load_tss(void)
{
	memset(tss, 0, sizeof(tss));
	*(u16 *)(tss + 0x66) = TSS_BYTES;		/* I/O map base */
	tss[sizeof(tss) - 1] = 0xff;
	u64 base = (u64)tss, limit = sizeof(tss) - 1;
	gdt[7] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89UL << 40 |	/* present, 64-bit TSS */
		((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[8] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x38) : "memory");
}

extern void enter_user(void (*fn)(u64), u64 arg, u64 user_rsp) __attribute__((noreturn));

static void add_user_bit(void)
{
	u64 cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	u64 *pml4 = (u64 *)(cr3 & ~0xfffUL);
	for (int i = 0; i < 512; i++) {
		if (!(pml4[i] & 1))
			continue;
		pml4[i] |= 4;
		u64 *pdpt = (u64 *)(pml4[i] & 0x000ffffffffff000UL);
		for (int j = 0; j < 512; j++) {
			if (!(pdpt[j] & 1))
				continue;
			pdpt[j] |= 4;
			if (pdpt[j] & 0x80)
				continue;
			u64 *pd = (u64 *)(pdpt[j] & 0x000ffffffffff000UL);
			for (int k = 0; k < 512; k++)
				if (pd[k] & 1)
					pd[k] |= 4;
		}
	}
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

void run_user_noreturn(void (*fn)(u64), u64 arg)
{
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffUL;	/* 0x10: kernel code, 64-bit */
	gdt[3] = 0x00cf93000000ffffUL;	/* 0x18: kernel data */
	gdt[4] = 0x00cffb000000ffffUL;	/* 0x20 (0x23): user code, 32-bit */
	gdt[5] = 0x00cff3000000ffffUL;	/* 0x28 (0x2b): user data, DPL 3 */
	gdt[6] = 0x00affb000000ffffUL;	/* 0x30 (0x33): user code, 64-bit, DPL 3 */
	struct { u16 limit; u64 base; } __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (u64)gdt };
	__asm__ volatile("lgdt %0" : : "m"(gdtr) : "memory");
	load_tss();
	add_user_bit();
	enter_user(fn, arg, (u64)(user_stack + sizeof(user_stack)));
}
