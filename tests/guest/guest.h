/* Shared declarations for the test guest's C files. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define IOAPIC_BASE 0xfec00000UL
#define LAPIC_BASE 0xfee00000UL
#define BOOT_TIMER 0xc0000000UL	/* lib/devices/boot_timer.ts: a byte written here is timed */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline u8 mmio_read8(u64 addr) { return *(volatile u8 *)addr; }
static inline void mmio_write8(u64 addr, u8 v) { *(volatile u8 *)addr = v; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

void putc(char c);
void puts(const char *s);
void puthex(u64 v);
void putdec(u64 v);
void puthexbytes(const u8 *p, u32 n);
u32 fnv1a(const void *p, u64 n);
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
int memcmp(const void *a, const void *b, u64 n);
u64 strlen(const char *s);

/* The kernel command line: find "name=value" and return value (or 0). */
const char *cmdline_param(const char *name, u32 *len);
int cmdline_has(const char *word);
u64 parse_num(const char *s, u32 len);

void ioapic_route(u32 pin, u32 vector);
void idt_set(u32 vector, void (*stub)(void));

#endif
