/*T:731 The C peer for the exit round-trip benchmark: the smallest launcher that
 * boots the lguest test guest the way lguest does (64-bit entry, identity
 * map, zero page with a command line and e820 map, in-kernel irqchip and
 * PIT) and serves its port exits in one plain KVM_RUN loop on the main
 * thread. The guest's BENCH-PIO line (cycles for N port writes) is then the
 * same measurement for both launchers; this program adds a TSC-KHZ line so
 * cycles can be turned into microseconds.
 *
 * Usage: kvm_exit <guest.elf> <mem-MiB> [kernel command line]
 * Output: the guest's console on stdout; exits 0 when the guest resets. :*/
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZERO_PAGE 0x7000
#define GDT 0x500
#define STACK_TOP 0x8ff0
#define PML4 0x9000
#define PDPT 0xa000
#define PD 0xb000
#define CMDLINE 0x20000
#define COM1 0x3f8

static void die(const char *what)
{
	fprintf(stderr, "kvm_exit: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r = ioctl(fd, req, arg);
	if (r < 0)
		die(what);
	return r;
}

static uint8_t *mem;
static uint64_t mem_size;

static void load_elf(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die(path);
	uint8_t *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED)
		die("mmap guest");
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_machine != EM_X86_64) {
		fprintf(stderr, "kvm_exit: %s is not an x86_64 ELF\n", path);
		exit(1);
	}
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_paddr + ph->p_memsz > mem_size || ph->p_offset + ph->p_filesz > (uint64_t)st.st_size) {
			fprintf(stderr, "kvm_exit: segment %d does not fit\n", i);
			exit(1);
		}
		memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
	}
	munmap(img, st.st_size);
	close(fd);
}

/* Zero page: command line pointer and a three-entry e820 map, as lguest
 * writes them for this memory size. */
static void boot_data(const char *cmdline)
{
	uint8_t *zp = mem + ZERO_PAGE;
	strncpy((char *)mem + CMDLINE, cmdline, 4095);
	*(uint32_t *)(zp + 0x228) = CMDLINE;
	uint64_t e820[3][2] = { { 0, 0x9fc00 }, { 0x9fc00, 0x60400 }, { 0x100000, mem_size - 0x100000 } };
	uint32_t types[3] = { 1, 2, 1 };
	for (int i = 0; i < 3; i++) {
		uint8_t *e = zp + 0x2d0 + 20 * i;
		memcpy(e, &e820[i][0], 8);
		memcpy(e + 8, &e820[i][1], 8);
		memcpy(e + 16, &types[i], 4);
	}
	zp[0x1e8] = 3;
	uint64_t *gdt = (uint64_t *)(mem + GDT);
	gdt[2] = 0x00af9b000000ffffULL;
	gdt[3] = 0x00cf93000000ffffULL;
	*(uint64_t *)(mem + PML4) = PDPT | 3;
	for (int d = 0; d < 4; d++) {
		*(uint64_t *)(mem + PDPT + 8 * d) = (PD + 4096 * d) | 3;
		for (int i = 0; i < 512; i++)
			*(uint64_t *)(mem + PD + 4096 * d + 8 * i) = ((uint64_t)(d * 512 + i) << 21) | 0x83;
	}
}

static void set_cpuid(int kvm, int vcpu)
{
	int n = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
	c->nent = n;
	xioctl(kvm, KVM_GET_SUPPORTED_CPUID, c, "KVM_GET_SUPPORTED_CPUID");
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			c->entries[i].ecx |= 1u << 31;
	xioctl(vcpu, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
	free(c);
}

static void long_mode(int vcpu, uint64_t entry)
{
	struct kvm_sregs s;
	xioctl(vcpu, KVM_GET_SREGS, &s, "KVM_GET_SREGS");
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
				    .present = 1, .s = 1, .l = 1, .g = 1 };
	struct kvm_segment data = code;
	data.selector = 0x18;
	data.type = 0x3;
	data.l = 0;
	data.db = 1;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr.base = 0;
	s.tr.limit = 0xffff;
	s.tr.selector = 0;
	s.tr.type = 0xb;
	s.tr.present = 1;
	s.tr.s = 0;
	s.tr.unusable = 0;
	s.gdt.base = GDT;
	s.gdt.limit = 31;
	s.idt.base = 0x520;
	s.idt.limit = 0;
	s.cr0 = 0x80050033;
	s.cr3 = PML4;
	s.cr4 = 0x20;
	s.efer = 0x500;
	xioctl(vcpu, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
	struct kvm_regs r = { .rip = entry, .rsi = ZERO_PAGE, .rsp = STACK_TOP, .rflags = 2 };
	xioctl(vcpu, KVM_SET_REGS, &r, "KVM_SET_REGS");
}

/* Just enough of an 8250 for the test guest: transmit, the line status it
 * polls, and the "transmitter empty" interrupt it waits for once. */
struct uart {
	uint8_t ier, thre_pending;
};

static void irq4(int vm, int level)
{
	struct kvm_irq_level l = { .irq = 4, .level = level };
	xioctl(vm, KVM_IRQ_LINE, &l, "KVM_IRQ_LINE");
}

static uint8_t uart_in(struct uart *u, int vm, uint16_t port)
{
	switch (port - COM1) {
	case 1: return u->ier;
	case 2:
		if ((u->ier & 2) && u->thre_pending) {
			u->thre_pending = 0;
			irq4(vm, 0);
			return 0x02;
		}
		return 0x01;
	case 5: return 0x60;
	default: return 0;
	}
}

static void uart_out(struct uart *u, int vm, uint16_t port, uint8_t v)
{
	switch (port - COM1) {
	case 0:
		if (write(1, &v, 1) < 0)
			die("write console");
		if (u->ier & 2) {
			u->thre_pending = 1;
			irq4(vm, 1);
		}
		break;
	case 1:
		if ((v & 2) && !(u->ier & 2)) {
			u->thre_pending = 1;
			u->ier = v;
			irq4(vm, 1);
		} else {
			u->ier = v;
			if (!(v & 2) && u->thre_pending) {
				u->thre_pending = 0;
				irq4(vm, 0);
			}
		}
		break;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: kvm_exit <guest.elf> <mem-MiB> [cmdline]\n");
		return 2;
	}
	mem_size = strtoull(argv[2], NULL, 10) << 20;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
	uint64_t idmap = 0xfffbc000;
	xioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
		die("KVM_SET_TSS_ADDR");
	xioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
	struct kvm_pit_config pit = { .flags = 0 };
	xioctl(vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");
	mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap guest memory");
	struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size,
						      .userspace_addr = (uint64_t)mem };
	xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
	load_elf(argv[1]);
	boot_data(argc > 3 ? argv[3] : "");
	Elf64_Ehdr eh;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0 || read(fd, &eh, sizeof(eh)) != sizeof(eh))
		die("read ELF header");
	close(fd);

	int vcpu = xioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
	int run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	set_cpuid(kvm, vcpu);
	long_mode(vcpu, eh.e_entry);

	struct uart uart = { 0 };
	unsigned long exits = 0;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN");
		}
		exits++;
		if (run->exit_reason == KVM_EXIT_IO) {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			uint16_t port = run->io.port;
			for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
				if (run->io.direction == KVM_EXIT_IO_OUT) {
					if (port >= COM1 && port < COM1 + 8)
						uart_out(&uart, vm, port, *data);
					else if (port == 0x64 && *data == 0xfe)
						goto reset;
				} else {
					if (port >= COM1 && port < COM1 + 8)
						*data = uart_in(&uart, vm, port);
					else
						memset(data, port == 0x64 ? 0 : 0xff, run->io.size);
				}
			}
		} else if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0, sizeof(run->mmio.data));
		} else if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
			goto reset;
		} else if (run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "kvm_exit: unexpected exit %u after %lu exits\n", run->exit_reason, exits);
			return 1;
		}
	}
reset:
	fprintf(stderr, "TSC-KHZ: %d\nEXITS: %lu\n", ioctl(vcpu, KVM_GET_TSC_KHZ, 0), exits);
	return 0;
}
