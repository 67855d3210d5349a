/* Entry for the test guest. The launcher enters here in 64-bit mode, paging
 * on (identity map), rsi = zero page, interrupts off. We switch to our own
 * stack and call the C main with the zero page as its argument. */
	.code64
	.section .text.start, "ax"
	.globl _start
_start:
	cli
	lea	stack_top(%rip), %rsp
	mov	%rsi, %rdi
	call	guest_main
	/* guest_main should never return; if it does, force a triple fault. */
triple_fault:
1:	lidt	null_idt(%rip)
	int3
	jmp	1b

/* Interrupt stubs: save the caller-saved registers, call the C handler
 * with the vector number, restore, return. One for the UART (0x24), one for
 * the LAPIC timer's watchdog (0x25), and one
 * per IOAPIC pin for virtio devices (vector 0x30 + irq). */
	.macro	IRQ_STUB name, vector, handler
	.globl	\name
\name:
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	mov	$\vector, %edi
	call	\handler
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq
	.endm

	IRQ_STUB irq_stub_0x24, 0x24, guest_irq
	IRQ_STUB irq_stub_0x25, 0x25, guest_watchdog
	.irp	n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23
	IRQ_STUB virtio_stub_\n, 0x30+\n, virtio_irq
	.endr

/* enter_user(fn, arg, user_rsp): irets to ring 3 at fn(arg) on the user
 * stack, with IOPL 3 and interrupts off. There is no way back (user.c). */
	.globl	enter_user
enter_user:
	mov	%rdi, %rax
	mov	%rsi, %rdi
	pushq	$0x2b			/* ss */
	pushq	%rdx			/* rsp */
	pushq	$0x3002			/* rflags: IOPL 3, IF 0 */
	pushq	$0x33			/* cs */
	pushq	%rax			/* rip */
	iretq

	.section .rodata
	.balign	8
	.globl	irq_stubs
irq_stubs:
	.irp	n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23
	.quad	virtio_stub_\n
	.endr
	.quad	0,0,0,0,0,0,0,0

/* PVH entry, for loaders that boot an ELF by its XEN_ELFNOTE_PHYS32_ENTRY
 * note (QEMU's -kernel, Firecracker): 32-bit protected mode, paging off,
 * ebx = the hvm_start_info. We climb to long mode the way the launcher's own
 * setup leaves us (identity map of 4 GiB in 2 MiB pages, code 0x10, data
 * 0x18), then pvh_main (pvh.c) turns the start info into the zero-page
 * fields guest_main reads. */
	.code32
	.section .text.pvh, "ax"
	.globl	pvh_start
pvh_start:
	cli
	mov	%ebx, %esi
	movl	$pvh_pdpt + 3, pvh_pml4
	mov	$pvh_pd + 3, %eax
	mov	$pvh_pdpt, %edi
	mov	$4, %ecx
1:	mov	%eax, (%edi)
	add	$4096, %eax
	add	$8, %edi
	loop	1b
	mov	$0x83, %eax
	xor	%edx, %edx
	mov	$pvh_pd, %edi
	mov	$2048, %ecx
2:	mov	%eax, (%edi)
	mov	%edx, 4(%edi)
	add	$0x200000, %eax
	adc	$0, %edx
	add	$8, %edi
	loop	2b
	mov	%cr4, %eax
	or	$0x20, %eax		/* PAE */
	mov	%eax, %cr4
	mov	$pvh_pml4, %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	or	$0x100, %eax
	wrmsr
	lgdt	pvh_gdt_desc
	mov	%cr0, %eax
	or	$0x80000001, %eax	/* PG | PE */
	mov	%eax, %cr0
	ljmp	$0x10, $pvh_long

	.code64
pvh_long:
	mov	$0x18, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	lea	stack_top(%rip), %rsp
	mov	%esi, %edi
	call	pvh_main
	jmp	triple_fault

/* The note itself: owner "Xen", type 18, an 8-byte entry address (what
 * Linux emits; QEMU reads a 64-bit value). */
	.section .note.pvh, "a", @note
	.balign	4
	.long	4
	.long	8
	.long	18			/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.balign	4
	.quad	pvh_start
	.balign	4

	.section .rodata
	.balign	8
pvh_gdt:
	.quad	0
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x10: code, 64-bit */
	.quad	0x00cf93000000ffff	/* 0x18: data */
pvh_gdt_desc:
	.word	pvh_gdt_desc - pvh_gdt - 1
	.long	pvh_gdt

	.section .rodata
	.balign 8
null_idt:
	.word	0
	.quad	0

	.section .bss
	.balign	16
stack:
	.skip	16384
stack_top:
	.balign	4096
pvh_pml4:
	.skip	4096
pvh_pdpt:
	.skip	4096
pvh_pd:
	.skip	4 * 4096
