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

/* The interrupt stub: save the caller-saved registers, call the C handler
 * with the vector number, restore, return. */
	.globl	irq_stub_0x24
irq_stub_0x24:
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	mov	$0x24, %edi
	call	guest_irq
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
