/*L:120 The guest's low memory, in one screen. These are the places the
 * launcher writes before the first instruction runs; everything else is the
 * kernel's. Addresses are guest physical. :*/

/** GDT for the boot segments (5 entries, to 0x528). */
export const GDT_ADDR = 0x500;
/** An empty IDT: the kernel installs its own before enabling interrupts. */
export const IDT_ADDR = 0x530;
/** PVH entry: the struct hvm_start_info handed to the kernel in ebx. */
export const PVH_START_INFO_ADDR = 0x6000;
/** PVH entry: the module list (one hvm_modlist_entry, the initrd). */
export const PVH_MODLIST_ADDR = 0x6040;
/** PVH entry: the memory map (hvm_memmap_table_entry array, 24 bytes each). */
export const PVH_MEMMAP_ADDR = 0x6080;
/** End (exclusive) of the PVH area: the zero page starts here. */
export const PVH_AREA_END = 0x7000;
/** The zero page (struct boot_params) handed to the kernel in rsi. */
export const ZERO_PAGE_ADDR = 0x7000;
/** Boot stack top for entry (grows down, below the zero page). */
export const BOOT_STACK_TOP = 0x8ff0;
/** PML4 of the identity map; PDPT and PDs follow page by page. */
export const PML4_ADDR = 0x9000;
/** The PDPT of the identity map. */
export const PDPT_ADDR = 0xa000;
/** First of the four page directories (2 MiB pages, 4 GiB identity map). */
export const PD_ADDR = 0xb000;
/** End of the page-table area (exclusive). */
export const PAGE_TABLES_END = 0xf000;
/** The kernel command line. */
export const CMDLINE_ADDR = 0x20000;
/** The most command line bytes we will place (including the NUL). */
export const CMDLINE_MAX = 0x10000;
/** Start of the legacy area the e820 map reports as reserved (EBDA, BIOS). */
export const EBDA_START = 0x9fc00;
/** MP floating pointer and table live here, inside the reserved EBDA. */
export const MPTABLE_ADDR = 0x9fc00;
/** End (exclusive) of the MP table's kilobyte: the legacy VGA window starts here. */
export const MPTABLE_END = 0xa0000;
/** Start of "high" memory: nothing of ours above this but the initrd. */
export const HIMEM_START = 0x100000;
/** Where protected-mode bzImage code goes when it has no preference. */
export const BZIMAGE_DEFAULT_LOAD = 0x100000;

/** KVM's three-page TSS region for real-mode emulation (outside RAM). */
export const KVM_TSS_ADDR = 0xfffb_d000;
/** KVM's identity-map page, just below the TSS (outside RAM). */
export const KVM_IDENTITY_MAP_ADDR = 0xfffb_c000;
/** The IOAPIC's MMIO page. */
export const IOAPIC_ADDR = 0xfec0_0000;
/** The local APIC's MMIO page. */
export const LAPIC_ADDR = 0xfee0_0000;
/** First virtio-mmio window; each device gets 4 KiB from here up. */
export const VIRTIO_MMIO_BASE = 0xd000_0000;
/** Size of one virtio-mmio window. */
export const VIRTIO_MMIO_SIZE = 0x1000;
