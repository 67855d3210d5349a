/*L:186 A device tells the kernel what it occupies through _CRS, "current
 * resource settings": a Buffer holding a list of resource descriptors, the
 * same binary format Plug and Play ISA cards once returned, ended by an End
 * Tag. ASL spells the buffer ResourceTemplate(){...}. Each descriptor starts
 * with a tag: a small one is a single byte (type in bits 3-6, length in bits
 * 0-2), a large one is 0x80 | type followed by a 16-bit length. We need
 * three: an I/O port range for the UART, a fixed 32-bit memory window for
 * each virtio-mmio device, and the extended interrupt descriptor, which can
 * name any GSI (the small IRQ descriptor stops at 15, and our virtio IRQs go
 * up to 23) and says how it is triggered. The End Tag carries a checksum of
 * the whole list; zero would also mean "not checked", but a real sum costs
 * nothing and lets a reader verify the template. :*/

import { type Aml, buffer, concat } from "./aml.ts";

/** Small descriptor types (ACPI 6.3, 6.4.2). */
const SMALL_IO = 0x08;
const SMALL_END_TAG = 0x0f;
/** Large descriptor types (ACPI 6.3, 6.4.3). */
const LARGE_MEMORY32_FIXED = 0x06;
const LARGE_EXTENDED_IRQ = 0x09;

/** Extended interrupt flags (ACPI 6.3, table 6-243). */
export const INTERRUPT_FLAG = {
  /** The device consumes the interrupt (clear: it produces it for others). */
  CONSUMER: 1 << 0,
  /** Edge-triggered (clear: level). */
  EDGE: 1 << 1,
  /** Active low (clear: active high). */
  ACTIVE_LOW: 1 << 2,
  /** Shared with other devices (clear: exclusive). */
  SHARED: 1 << 3,
  /** Can wake the system. */
  WAKE: 1 << 4,
} as const;

function small(type: number, body: readonly number[]): Aml {
  return Uint8Array.from([(type << 3) | body.length, ...body]);
}

function large(type: number, body: readonly number[]): Aml {
  return Uint8Array.from([0x80 | type, body.length & 0xff, body.length >> 8, ...body]);
}

function le(value: number, size: number): number[] {
  return Array.from({ length: size }, (_, i) => Math.floor(value / 2 ** (8 * i)) & 0xff);
}

function check(what: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`ACPI resource: ${what} ${value} is out of range (0..0x${max.toString(16)})`);
  }
}

/**
 * IO(Decode16, min, max, alignment, length): a port range with 16-bit
 * decoding that may start anywhere in [min, max] at `alignment`.
 * A fixed range has min === max.
 */
export function ioPorts(min: number, max: number, alignment: number, length: number): Aml {
  check("I/O minimum", min, 0xffff);
  check("I/O maximum", max, 0xffff);
  check("I/O alignment", alignment, 0xff);
  check("I/O length", length, 0xff);
  return small(SMALL_IO, [1, ...le(min, 2), ...le(max, 2), alignment, length]);
}

/** Memory32Fixed(ReadWrite or ReadOnly, base, length). */
export function memory32Fixed(base: number, length: number, writable = true): Aml {
  check("memory base", base, 0xffff_ffff);
  check("memory length", length, 0xffff_ffff);
  return large(LARGE_MEMORY32_FIXED, [writable ? 1 : 0, ...le(base, 4), ...le(length, 4)]);
}

/** How an interrupt is signalled. */
export interface InterruptMode {
  /** Edge-triggered (true) or level (false). */
  readonly edge: boolean;
  /** Active low (true) or high (false). */
  readonly activeLow: boolean;
  /** Shared with other devices. Default false (exclusive). */
  readonly shared?: boolean;
}

/**
 * Interrupt(ResourceConsumer, mode..., ) { gsis }: the extended interrupt
 * descriptor, for any GSI below 2^32.
 * @param gsis one or more global system interrupts
 * @param mode trigger, polarity, sharing
 */
export function interrupt(gsis: readonly number[], mode: InterruptMode): Aml {
  if (gsis.length < 1 || gsis.length > 255) throw new RangeError(`ACPI resource: ${gsis.length} interrupts`);
  for (const g of gsis) check("interrupt", g, 0xffff_ffff);
  const flags = INTERRUPT_FLAG.CONSUMER | (mode.edge ? INTERRUPT_FLAG.EDGE : 0) |
    (mode.activeLow ? INTERRUPT_FLAG.ACTIVE_LOW : 0) | (mode.shared ? INTERRUPT_FLAG.SHARED : 0);
  return large(LARGE_EXTENDED_IRQ, [flags, gsis.length, ...gsis.flatMap((g) => le(g, 4))]);
}

/**
 * ResourceTemplate() { descriptors }: a Buffer of the descriptors followed
 * by an End Tag whose checksum makes every byte of the list sum to 0.
 */
export function resourceTemplate(...descriptors: readonly Aml[]): Aml {
  const body = concat(...descriptors, Uint8Array.of((SMALL_END_TAG << 3) | 1, 0));
  const sum = body.reduce((a, b) => a + b, 0);
  body[body.length - 1] = (0x100 - (sum & 0xff)) & 0xff;
  return buffer(body);
}
