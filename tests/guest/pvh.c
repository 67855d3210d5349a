/*T:745 PVH boot for the test guest. A PVH loader (QEMU's -kernel of an ELF with
 * the XEN_ELFNOTE_PHYS32_ENTRY note) hands us a struct hvm_start_info
 * instead of Linux's zero page. start.S has already climbed to long mode;
 * here we copy the few facts guest_main reads (command line, memory map,
 * first module as the initrd) into a zero page of our own, at the offsets
 * the Linux boot protocol gives them, so the rest of the guest does not
 * care how it was booted. :*/
#include "guest.h"

#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
	u32 magic, version, flags, nr_modules;
	u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	u32 memmap_entries, reserved;
};

struct hvm_modlist_entry {
	u64 paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_entry {
	u64 addr, size;
	u32 type, reserved;
};

void guest_main(const u8 *zero_page);
void pvh_main(const struct hvm_start_info *si);

static u8 zero_page[4096] __attribute__((aligned(4096)));

static void put32(u32 off, u32 v) { memcpy(zero_page + off, &v, 4); }

void pvh_main(const struct hvm_start_info *si)
{
	if (si->magic == HVM_START_MAGIC) {
		put32(0x228, (u32)si->cmdline_paddr);
		if (si->nr_modules) {
			const struct hvm_modlist_entry *m = (const void *)si->modlist_paddr;
			put32(0x218, (u32)m->paddr);
			put32(0x21c, (u32)m->size);
		}
		u32 n = si->version >= 1 ? si->memmap_entries : 0;
		if (n > 128)
			n = 128;
		const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;
		for (u32 i = 0; i < n; i++) {
			memcpy(zero_page + 0x2d0 + 20 * i, &e[i].addr, 8);
			memcpy(zero_page + 0x2d0 + 20 * i + 8, &e[i].size, 8);
			memcpy(zero_page + 0x2d0 + 20 * i + 16, &e[i].type, 4);
		}
		zero_page[0x1e8] = (u8)n;
	}
	guest_main(zero_page);
}
