/*
 * The lguest test guest: a few hundred lines of freestanding C that the
 * launcher boots like a kernel. It reports, one "KEY: value" line at a time
 * on COM1, what the launcher gave it (CPU mode, command line, e820 map,
 * initrd), proves that an interrupt reaches it (the UART's "transmitter
 * empty" interrupt on IRQ 4, routed through the IOAPIC), drives every
 * virtio device it finds on the command line, and ends the VM the way Linux
 * reboots a PC: a reset pulse from the keyboard controller.
 *
 * This machine's KVM emulates every instruction a guest runs in ring 0, so
 * the guest is deliberately small and does little work.
 */
#include "guest.h"
#include "virtio.h"
#include "user.h"

/* ---- console ---- */

void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

void puthex(u64 v)
{
	static const char digits[] = "0123456789abcdef";
	char buf[19];
	int i = 18;
	buf[i] = 0;
	do {
		buf[--i] = digits[v & 0xf];
		v >>= 4;
	} while (v && i > 2);
	buf[--i] = 'x';
	buf[--i] = '0';
	puts(&buf[i]);
}

void putdec(u64 v)
{
	char buf[21];
	int i = 20;
	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts(&buf[i]);
}

void puthexbytes(const u8 *p, u32 n)
{
	static const char digits[] = "0123456789abcdef";
	for (u32 i = 0; i < n; i++) {
		putc(digits[p[i] >> 4]);
		putc(digits[p[i] & 0xf]);
	}
}

/* ---- the command line ---- */

const char *guest_cmdline;

const char *cmdline_param(const char *name, u32 *len)
{
	u64 n = strlen(name);
	for (const char *s = guest_cmdline; s && *s; s++) {
		if ((s == guest_cmdline || s[-1] == ' ') && !memcmp(s, name, n) && s[n] == '=') {
			const char *v = s + n + 1;
			u32 l = 0;
			while (v[l] && v[l] != ' ')
				l++;
			*len = l;
			return v;
		}
	}
	return 0;
}

int cmdline_has(const char *word)
{
	u64 n = strlen(word);
	for (const char *s = guest_cmdline; s && *s; s++)
		if ((s == guest_cmdline || s[-1] == ' ') && !memcmp(s, word, n) && (s[n] == 0 || s[n] == ' '))
			return 1;
	return 0;
}

u64 parse_num(const char *s, u32 len)
{
	u64 v = 0;
	for (u32 i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (u64)(s[i] - '0');
	return v;
}

/* ---- what the launcher handed us ---- */

static u32 rd32(const u8 *p) { return *(const u32 *)p; }
static u64 rd64(const u8 *p) { return *(const u64 *)p; }

static void report_mode(void)
{
	u64 cr0, cr4, efer_lo, efer_hi;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("rdmsr" : "=a"(efer_lo), "=d"(efer_hi) : "c"(0xc0000080));
	u64 efer = (efer_hi << 32) | (efer_lo & 0xffffffff);
	int longmode = (cr0 & 0x80000001) == 0x80000001 && (cr4 & 0x20) && (efer & 0x500) == 0x500;
	puts("MODE: ");
	puts(longmode ? "long" : "not-long");
	puts(" cr0=");
	puthex(cr0);
	puts(" cr4=");
	puthex(cr4);
	puts(" efer=");
	puthex(efer);
	puts("\n");
}

/* The launcher passes KVM's CPUID through, with the hypervisor bit set and
 * the hypervisor leaves that name KVM. */
static void report_cpuid(void)
{
	u32 a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	puts("CPUID-HYPERVISOR-BIT: ");
	putdec((c >> 31) & 1);
	puts("\n");
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000000), "c"(0));
	char sig[13];
	memcpy(sig, &b, 4);
	memcpy(sig + 4, &c, 4);
	memcpy(sig + 8, &d, 4);
	sig[12] = 0;
	puts("CPUID-HYPERVISOR: ");
	puts(sig);
	puts("\n");
}

static void report_cmdline(void)
{
	puts("CMDLINE: ");
	if (guest_cmdline)
		puts(guest_cmdline);
	puts("\n");
}

static void report_e820(const u8 *zp)
{
	u8 n = zp[0x1e8];
	puts("E820-COUNT: ");
	putdec(n);
	puts("\n");
	for (u8 i = 0; i < n && i < 128; i++) {
		const u8 *e = zp + 0x2d0 + 20 * i;
		puts("E820: ");
		puthex(rd64(e));
		puts(" ");
		puthex(rd64(e + 8));
		puts(" ");
		putdec(rd32(e + 16));
		puts("\n");
	}
}

static void report_initrd(const u8 *zp)
{
	u64 addr = rd32(zp + 0x218) | ((u64)rd32(zp + 0xc0) << 32);
	u64 size = rd32(zp + 0x21c) | ((u64)rd32(zp + 0xc4) << 32);
	puts("INITRD: ");
	puthex(addr);
	puts(" ");
	putdec(size);
	puts(" ");
	puthex(fnv1a((const void *)addr, size));
	puts("\n");
}

/* ---- interrupts ---- */

struct idt_entry {
	u16 off_lo, sel;
	u8 ist, type;
	u16 off_mid;
	u32 off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static volatile int irq_seen;
static volatile u8 irq_iir;
extern void irq_stub_0x24(void);

void idt_set(u32 vector, void (*stub)(void))
{
	u64 handler = (u64)stub;
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[vector] = (struct idt_entry){
		.off_lo = (u16)handler, .sel = cs, .ist = 0, .type = 0x8e,
		.off_mid = (u16)(handler >> 16), .off_hi = (u32)(handler >> 32), .zero = 0,
	};
}

static void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

/* Routes IOAPIC pin `pin` to `vector` on APIC 0: fixed, edge, active high. */
void ioapic_route(u32 pin, u32 vector)
{
	ioapic_write(0x10 + 2 * pin + 1, 0);
	ioapic_write(0x10 + 2 * pin, vector);
}

static void interrupts_init(void)
{
	struct { u16 limit; u64 base; } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
	outb(0x21, 0xff);			/* mask the legacy PICs */
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + 0xf0, 0x1ff);	/* LAPIC software enable */
}

void guest_irq(u32 vector)
{
	/* Reading IIR tells us why, and clears a THRE condition; received
	 * data stays pending until the main loop reads it. */
	u8 iir = inb(COM1 + 2);
	if ((iir & 0x0f) == 0x02)
		outb(COM1 + 1, inb(COM1 + 1) & ~0x02);	/* no more THRE */
	if (!irq_seen) {
		irq_iir = iir;
		irq_seen = (int)vector;
	}
	mmio_write32(LAPIC_BASE + 0xb0, 0);	/* EOI */
}

/* The LAPIC timer as a watchdog for the wait below: nothing else would
 * wake a hlt whose interrupt never came, and a guest asleep for ever tells
 * a test less than one that says "IRQ: none" and goes on. The test VM's
 * emulated SVM was once seen to lose this interrupt on a three-vCPU run;
 * a lost interrupt still fails every test that checks for it. */
extern void irq_stub_0x25(void);
static volatile int watchdog_fired;

void guest_watchdog(u32 vector)
{
	(void)vector;
	watchdog_fired = 1;
	mmio_write32(LAPIC_BASE + 0xb0, 0);	/* EOI */
}

static void test_interrupt(void)
{
	idt_set(0x24, irq_stub_0x24);
	idt_set(0x25, irq_stub_0x25);
	ioapic_route(4, 0x24);
	mmio_write32(LAPIC_BASE + 0x3e0, 0xa);		/* timer divide by 128 */
	mmio_write32(LAPIC_BASE + 0x320, 0x25);		/* one-shot, vector 0x25 */
	mmio_write32(LAPIC_BASE + 0x380, 50000000);	/* 6.4 s on KVM's 1 GHz APIC bus */
	outb(COM1 + 1, 0x02);			/* IER: THRE interrupt */
	for (u32 spins = 0; !irq_seen && !watchdog_fired && spins < 1000; spins++)
		__asm__ volatile("sti; hlt; cli");
	mmio_write32(LAPIC_BASE + 0x320, 0x10025);	/* masked */
	mmio_write32(LAPIC_BASE + 0x380, 0);		/* stopped */

	puts("IRQ: ");
	if (irq_seen) {
		puts("vector ");
		puthex((u64)irq_seen);
		puts(" iir ");
		puthex(irq_iir);
	} else {
		puts("none");
	}
	puts("\n");
}

/* Echo mode: sleep in hlt until the UART's receive interrupt, echo what
 * arrived, and finish on 'q'. This is how the tests type at the guest. */
static void echo_console(void)
{
	outb(COM1 + 1, 0x01);			/* IER: received data */
	puts("ECHO-READY\n");
	for (;;) {
		__asm__ volatile("sti; hlt; cli");
		while (inb(COM1 + 5) & 0x01) {
			u8 c = inb(COM1);
			if (c == 'q') {
				outb(COM1 + 1, 0);
				puts("\nECHO-END\n");
				return;
			}
			putc((char)c);
		}
	}
}

/* Masks an IOAPIC pin, for benchmarks that poll instead (bench_blk.c). */
void ioapic_mask(u32 pin)
{
	ioapic_write(0x10 + 2 * pin, 0x10000);
}

/* ---- virtio devices ---- */

static void test_virtio(void)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	int n = virtio_find(devs, VIRTIO_MAX_DEVICES);
	puts("VIRTIO-COUNT: ");
	putdec((u64)n);
	puts("\n");
	if (cmdline_has("flood"))
		flood(devs, n);
	for (int i = 0; i < n; i++) {
		switch (devs[i].id) {
		case VIRTIO_ID_RNG: test_rng(&devs[i]); break;
		case VIRTIO_ID_BLOCK: test_blk(&devs[i]); break;
		case VIRTIO_ID_NET: test_net(&devs[i]); break;
		case VIRTIO_ID_CONSOLE: test_console(&devs[i]); break;
		default:
			puts("VIRTIO-UNKNOWN: ");
			putdec(devs[i].id);
			puts("\n");
		}
	}
}

void guest_main(const u8 *zero_page)
{
	mmio_write8(BOOT_TIMER, 1);		/* the launcher notes when our C code began */
	guest_cmdline = (const char *)(u64)rd32(zero_page + 0x228);
	puts("lguest test guest\n");
	report_mode();
	report_cpuid();
	report_cmdline();
	report_e820(zero_page);
	report_initrd(zero_page);
	interrupts_init();
	test_interrupt();
	run_benchmarks();
	test_virtio();
	if (cmdline_has("lguest.echo"))
		echo_console();
	puts("DONE\n");
	outb(0x64, 0xfe);			/* pulse reset via the i8042 */
	for (;;)
		__asm__ volatile("cli; hlt");
}
