/*
 * The lguest test guest: a few hundred lines of freestanding C that the
 * launcher boots like a kernel. It reports, one "KEY: value" line at a time
 * on COM1, what the launcher gave it (CPU mode, command line, e820 map,
 * initrd), proves that an interrupt reaches it (the UART's "transmitter
 * empty" interrupt on IRQ 4, routed through the IOAPIC), and ends the VM the
 * way Linux reboots a PC: a reset pulse from the keyboard controller.
 *
 * This machine's KVM emulates every instruction a guest runs in ring 0, so
 * the guest is deliberately small and does little work.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define IOAPIC_BASE 0xfec00000UL
#define LAPIC_BASE 0xfee00000UL
#define IRQ_VECTOR 0x24

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }

/* ---- console ---- */

static void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

static void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static void puthex(u64 v)
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

static void putdec(u64 v)
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

static void report_cmdline(const u8 *zp)
{
	const char *cmd = (const char *)(u64)rd32(zp + 0x228);
	puts("CMDLINE: ");
	if (cmd)
		puts(cmd);
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

/* FNV-1a, 32-bit: cheap enough for an emulated CPU, and the host test
 * computes the same over the file it passed as --initrd. */
static void report_initrd(const u8 *zp)
{
	u64 addr = rd32(zp + 0x218) | ((u64)rd32(zp + 0xc0) << 32);
	u64 size = rd32(zp + 0x21c) | ((u64)rd32(zp + 0xc4) << 32);
	u32 h = 2166136261u;
	for (u64 i = 0; i < size; i++)
		h = (h ^ ((const u8 *)addr)[i]) * 16777619u;
	puts("INITRD: ");
	puthex(addr);
	puts(" ");
	putdec(size);
	puts(" ");
	puthex(h);
	puts("\n");
}

/* ---- one interrupt, end to end ---- */

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

static void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

static void test_interrupt(void)
{
	u64 handler = (u64)irq_stub_0x24;
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[IRQ_VECTOR] = (struct idt_entry){
		.off_lo = (u16)handler, .sel = cs, .ist = 0, .type = 0x8e,
		.off_mid = (u16)(handler >> 16), .off_hi = (u32)(handler >> 32), .zero = 0,
	};
	struct { u16 limit; u64 base; } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));

	outb(0x21, 0xff);			/* mask the legacy PICs */
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + 0xf0, 0x1ff);	/* LAPIC software enable */
	ioapic_write(0x10 + 2 * 4 + 1, 0);	/* pin 4 -> APIC 0 */
	ioapic_write(0x10 + 2 * 4, IRQ_VECTOR);	/* fixed, edge, unmasked */

	outb(COM1 + 1, 0x02);			/* IER: THRE interrupt */
	for (u32 spins = 0; !irq_seen && spins < 1000; spins++)
		__asm__ volatile("sti; hlt; cli");

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

static int has_word(const char *s, const char *w)
{
	for (; s && *s; s++) {
		const char *a = s, *b = w;
		while (*b && *a == *b)
			a++, b++;
		if (!*b && (*a == 0 || *a == ' '))
			return 1;
		while (*s && *s != ' ')
			s++;
		if (!*s)
			break;
	}
	return 0;
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

void guest_main(const u8 *zero_page)
{
	puts("lguest test guest\n");
	report_mode();
	report_cmdline(zero_page);
	report_e820(zero_page);
	report_initrd(zero_page);
	test_interrupt();
	if (has_word((const char *)(u64)rd32(zero_page + 0x228), "lguest.echo"))
		echo_console();
	puts("DONE\n");
	outb(0x64, 0xfe);			/* pulse reset via the i8042 */
	for (;;)
		__asm__ volatile("cli; hlt");
}
