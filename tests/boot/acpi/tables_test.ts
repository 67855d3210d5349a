import assert from "node:assert/strict";
import { ACPI_TABLES_ADDR, ACPI_TABLES_END, sleepRequest } from "../../../lib/boot/acpi/layout.ts";
import { type AcpiOptions, buildAcpiTables } from "../../../lib/boot/acpi/build.ts";
import { MPS_INTI } from "../../../lib/boot/acpi/tables.ts";
import { BootError } from "../../../lib/boot/errors.ts";
import { writeMpTable } from "../../../lib/boot/mptable.ts";
import { GuestMemory } from "../../../lib/memory.ts";
import { VIRTIO_IRQS } from "../../../lib/virtio/mmio/set.ts";
import { readMpTable } from "../../helpers/mptable_reader.ts";
import { readAcpiTables } from "./reader.ts";

function windows(n: number): AcpiOptions["virtioMmio"] {
  return Array.from({ length: n }, (_, i) => ({ base: 0xd000_0000 + i * 0x1000, size: 0x1000, irq: VIRTIO_IRQS[i]! }));
}

const u8 = (b: Uint8Array, at: number) => b[at]!;
const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number) => (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
const u64 = (b: Uint8Array, at: number) => u32(b, at) + u32(b, at + 4) * 2 ** 32;
const ascii = (b: Uint8Array, at: number, n: number) => String.fromCharCode(...b.subarray(at, at + n));
const sum = (b: Uint8Array, at: number, n: number) => b.subarray(at, at + n).reduce((a, x) => a + x, 0) & 0xff;

function tableOf(t: ReturnType<typeof buildAcpiTables>, signature: string): Uint8Array {
  const p = t.tables.find((x) => x.signature === signature)!;
  return t.bytes.subarray(p.addr - t.at, p.addr - t.at + p.length);
}

// The offsets below are written out by hand from ACPI 6.3 (5.2.5.3, 5.2.8,
// 5.2.9, 5.2.12), independently of ACPI_STRUCTS.
Deno.test("acpi: the RSDP is at the start of the BIOS area and points at the XSDT", () => {
  const t = buildAcpiTables({ cpus: 1, virtioMmio: windows(1) });
  assert.equal(t.at, 0xe0000);
  assert.equal(t.rsdpAt, 0xe0000);
  const r = tableOf(t, "RSD PTR ");
  assert.equal(ascii(r, 0, 8), "RSD PTR ");
  assert.equal(sum(r, 0, 20), 0, "ACPI 1.0 checksum");
  assert.equal(sum(r, 0, 36), 0, "extended checksum");
  assert.equal(ascii(r, 9, 6), "LGUEST");
  assert.equal(u8(r, 15), 2, "revision");
  assert.equal(u32(r, 16), 0, "no RSDT");
  assert.equal(u32(r, 20), 36, "length");
  const xsdt = t.tables.find((p) => p.signature === "XSDT")!;
  assert.equal(u64(r, 24), xsdt.addr);
});

Deno.test("acpi: tables are 16-byte aligned, disjoint, inside the area, each summing to 0", () => {
  for (const cpus of [1, 2, 8, 254]) {
    const t = buildAcpiTables({ cpus, virtioMmio: windows(VIRTIO_IRQS.length) });
    assert.deepEqual(t.tables.map((p) => p.signature), ["RSD PTR ", "XSDT", "FACP", "APIC", "DSDT"]);
    let end = t.at;
    for (const p of t.tables) {
      assert.equal(p.addr % 16, 0, p.signature);
      assert.ok(p.addr >= end, `${p.signature} overlaps the table before it`);
      end = p.addr + p.length;
      if (p.signature !== "RSD PTR ") {
        const b = tableOf(t, p.signature);
        assert.equal(ascii(b, 0, 4), p.signature);
        assert.equal(u32(b, 4), p.length);
        assert.equal(sum(b, 0, p.length), 0, `${p.signature} checksum`);
      }
    }
    assert.equal(end, t.at + t.bytes.length);
    assert.ok(end <= ACPI_TABLES_END);
    const x = tableOf(t, "XSDT");
    const addrs = t.tables.filter((p) => p.signature === "FACP" || p.signature === "APIC").map((p) => p.addr);
    assert.deepEqual([u64(x, 36), u64(x, 44)], addrs);
  }
});

Deno.test("acpi: the FADT is hardware-reduced, with sleep registers at 0x600/0x601 and reset through 0x64", () => {
  const t = buildAcpiTables({ cpus: 1, virtioMmio: [] });
  const f = tableOf(t, "FACP");
  assert.equal(f.length, 276);
  assert.equal(u8(f, 8), 6, "revision");
  assert.equal(u8(f, 131), 3, "minor revision");
  assert.equal(u32(f, 36), 0, "no FACS");
  assert.equal(u32(f, 40), 0, "32-bit DSDT unused");
  assert.equal(u64(f, 140), t.tables.find((p) => p.signature === "DSDT")!.addr, "X_DSDT");
  const flags = u32(f, 112);
  assert.ok(flags & (1 << 20), "HW_REDUCED_ACPI");
  assert.ok(flags & (1 << 10), "RESET_REG_SUP");
  assert.equal(u16(f, 109), (1 << 2) | (1 << 5), "no VGA, no CMOS RTC, no 8042 declared");
  const gas = (at: number) => [u8(f, at), u8(f, at + 1), u8(f, at + 2), u8(f, at + 3), u64(f, at + 4)];
  assert.deepEqual(gas(116), [1, 8, 0, 1, 0x64], "reset register: system I/O byte at 0x64");
  assert.equal(u8(f, 128), 0xfe, "reset value");
  assert.deepEqual(gas(244), [1, 8, 0, 1, 0x600], "sleep control");
  assert.deepEqual(gas(256), [1, 8, 0, 1, 0x601], "sleep status");
  for (let at = 46; at <= 108; at++) assert.equal(f[at], 0, `legacy field at ${at} is zero`);
  assert.equal(ascii(f, 268, 8), "LGUESTVM");
});

Deno.test("acpi: the MADT lists one local APIC per vCPU, the IOAPIC and LINT1 NMI", () => {
  for (const cpus of [1, 3]) {
    const m = tableOf(buildAcpiTables({ cpus, virtioMmio: windows(2) }), "APIC");
    assert.equal(m.length, 44 + 8 * cpus + 12 + 6);
    assert.equal(u32(m, 36), 0xfee0_0000, "local APIC address");
    assert.equal(u32(m, 40), 1, "PCAT_COMPAT");
    for (let i = 0; i < cpus; i++) {
      const e = 44 + 8 * i;
      assert.deepEqual([u8(m, e), u8(m, e + 1), u8(m, e + 2), u8(m, e + 3), u32(m, e + 4)], [0, 8, i, i, 1]);
    }
    const io = 44 + 8 * cpus;
    assert.deepEqual([u8(m, io), u8(m, io + 1), u8(m, io + 2), u32(m, io + 4), u32(m, io + 8)], [
      1,
      12,
      cpus,
      0xfec0_0000,
      0,
    ]);
    const nmi = io + 12;
    assert.deepEqual([u8(m, nmi), u8(m, nmi + 1), u8(m, nmi + 2), u16(m, nmi + 3), u8(m, nmi + 5)], [4, 6, 0xff, 0, 1]);
  }
});

Deno.test("acpi: interrupt source overrides, when asked for, are type 2 entries", () => {
  const overrides = [{ irq: 0, gsi: 2, flags: 0 }, { irq: 9, gsi: 9, flags: MPS_INTI.LEVEL | MPS_INTI.ACTIVE_HIGH }];
  const m = tableOf(buildAcpiTables({ cpus: 1, virtioMmio: [], overrides }), "APIC");
  const at = 44 + 8 + 12;
  assert.deepEqual([u8(m, at), u8(m, at + 1), u8(m, at + 2), u8(m, at + 3), u32(m, at + 4), u16(m, at + 8)], [
    2,
    10,
    0,
    0,
    2,
    0,
  ]);
  assert.deepEqual([u8(m, at + 13), u32(m, at + 14), u16(m, at + 18)], [9, 9, 0x0d]);
});

Deno.test("acpi: found by the kernel's scan, and the MADT tells the MP table's story", () => {
  const mem = GuestMemory.create(16 << 20);
  try {
    for (const cpus of [1, 2, 8]) {
      mem.fill(0, 1 << 20, 0);
      const t = buildAcpiTables({ cpus, virtioMmio: windows(4) });
      mem.write(t.at, t.bytes, "ACPI tables");
      writeMpTable(mem, { cpus });
      const acpi = readAcpiTables(mem);
      const mp = readMpTable(mem);
      assert.equal(acpi.rsdp, t.rsdpAt);
      assert.deepEqual(acpi.madt.lapics.map((l) => l.apicId), mp.cpus);
      assert.ok(acpi.madt.lapics.every((l) => l.enabled));
      assert.equal(acpi.madt.lapicAddr, mp.lapicAddr);
      assert.deepEqual(acpi.madt.ioapics, [{ id: mp.ioapic.id, addr: mp.ioapic.addr, gsiBase: 0 }]);
      // ACPI: ISA IRQ n is GSI n unless overridden, with the ISA bus's
      // polarity and trigger unless the override says otherwise. The MP
      // table lists every IRQ; both must route the same way.
      for (const irq of mp.irqs.filter((i) => i.srcIrq < 16)) {
        const o = acpi.madt.overrides.find((x) => x.irq === irq.srcIrq);
        assert.equal(o?.gsi ?? irq.srcIrq, irq.pin, `ISA IRQ ${irq.srcIrq}`);
        assert.equal(o?.flags ?? 0, irq.flags, `ISA IRQ ${irq.srcIrq} flags`);
      }
      const mpNmi = mp.lints.filter((l) => l.type === 1).map((l) => ({ all: l.dest === 0xff, lint: l.lint }));
      assert.deepEqual(acpi.madt.nmis.map((n) => ({ all: n.uid === 0xff, lint: n.lint })), mpNmi);
      assert.equal(acpi.fadt.sleepControl.address, 0x600);
    }
  } finally {
    mem.close();
  }
});

Deno.test("acpi: the reader refuses a broken table the way a kernel would", () => {
  const mem = GuestMemory.create(4 << 20);
  try {
    const t = buildAcpiTables({ cpus: 2, virtioMmio: windows(1) });
    mem.write(t.at, t.bytes);
    const madt = t.tables.find((p) => p.signature === "APIC")!;
    mem.writeU8(madt.addr + 50, mem.readU8(madt.addr + 50) ^ 1);
    assert.throws(() => readAcpiTables(mem), /APIC at 0x[0-9a-f]+: bad checksum/);
    mem.write(t.at, t.bytes);
    mem.writeU8(t.rsdpAt + 12, mem.readU8(t.rsdpAt + 12) ^ 1);
    assert.throws(() => readAcpiTables(mem), /no ACPI RSDP/);
  } finally {
    mem.close();
  }
});

Deno.test("acpi: bad machines are refused with one line", () => {
  const ok: AcpiOptions = { cpus: 2, virtioMmio: windows(2) };
  const cases: [Partial<AcpiOptions>, RegExp][] = [
    [{ cpus: 0 }, /CPU count 0/],
    [{ cpus: 255 }, /CPU count 255/],
    [{ ioapic: { id: 1 } }, /IOAPIC id 1 is CPU 1's APIC id/],
    [{ virtioMmio: [...windows(1), { base: 0xd000_1000, size: 0x1000, irq: 5 }] }, /both on IRQ 5/],
    [{ virtioMmio: [{ base: 0xd000_0000, size: 0x1000, irq: 4 }] }, /both on IRQ 4/],
    [{ virtioMmio: [{ base: 0xd000_0000, size: 0x1000, irq: 24 }] }, /IRQ 24 is out of range/],
    [{ virtioMmio: [{ base: 0xffff_f000, size: 0x2000, irq: 5 }] }, /base/],
    [{ overrides: [{ irq: 16, gsi: 16, flags: 0 }] }, /override ISA IRQ 16/],
    [{ at: 0xe0008 }, /not 16-byte aligned/],
    [{ at: 0xd0000 }, /not 16-byte aligned/],
    [{ at: 0xfff00 }, /need \d+ bytes; 256 fit at 0xfff00/],
  ];
  for (const [change, message] of cases) {
    assert.throws(() => buildAcpiTables({ ...ok, ...change }), (e: unknown) => {
      assert.ok(e instanceof BootError, String(e));
      assert.match(e.message, message);
      return true;
    });
  }
  const noUart = buildAcpiTables({ ...ok, serial: null, virtioMmio: [{ base: 0xd000_0000, size: 0x1000, irq: 4 }] });
  assert.ok(noUart.bytes.length > 0, "IRQ 4 is free without the UART");
  assert.equal(buildAcpiTables({ ...ok, at: ACPI_TABLES_ADDR + 0x100 }).rsdpAt, 0xe0100);
});

Deno.test("acpi: sleepRequest decodes writes to the sleep control register", () => {
  assert.equal(sleepRequest(0x20 | (5 << 2)), 5, "what Linux writes for S5: 0x34");
  assert.equal(sleepRequest(0x34 | 0x03), 5, "other bits ignored");
  assert.equal(sleepRequest(0x20), 0);
  assert.equal(sleepRequest(5 << 2), undefined, "no SLP_EN, no transition");
  assert.equal(sleepRequest(0), undefined);
});
