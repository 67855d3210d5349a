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
1:	lidt	null_idt(%rip)
	int3
	jmp	1b

/* Interrupt stubs: save the caller-saved registers, call the C handler
 * with the vector number, restore, return. One for the UART (0x24) and one
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
