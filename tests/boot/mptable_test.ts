import assert from "node:assert/strict";
import { IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_ADDR, MPTABLE_END } from "../../lib/boot/layout.ts";
import { MP_APIC_ALL, MP_EXTINT, MP_INT, MP_NMI, MP_STRUCTS } from "../../lib/boot/mpspec.ts";
import { mpTableSize, writeMpTable } from "../../lib/boot/mptable.ts";
import { GuestMemory } from "../../lib/memory.ts";
import { readMpTable } from "../helpers/mptable_reader.ts";

function withMemory(fn: (mem: GuestMemory) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const mem = GuestMemory.create(64 << 20);
    try {
      await fn(mem);
    } finally {
      mem.close();
    }
  };
}

function sum(mem: GuestMemory, addr: number, length: number): number {
  return mem.slice(addr, length).reduce((a, b) => a + b, 0) & 0xff;
}

function ascii(mem: GuestMemory, addr: number, length: number): string {
  return String.fromCharCode(...mem.slice(addr, length));
}

// The raw checks below use offsets written out by hand from the MP spec 1.4,
// independently of MP_STRUCTS, so one wrong offset cannot hide behind itself.
for (const cpus of [1, 4]) {
  Deno.test(
    `mptable: ${cpus} CPU(s): the bytes are where the spec puts them`,
    withMemory((mem) => {
      const { addr, size } = writeMpTable(mem, { cpus });
      assert.equal(addr, 0x9fc00);
      assert.equal(size, 16 + 44 + 20 * cpus + 8 + 8 + 24 * 8 + 2 * 8);
      assert.ok(addr + size <= 0xa0000);

      assert.equal(ascii(mem, 0x9fc00, 4), "_MP_");
      assert.equal(sum(mem, 0x9fc00, 16), 0);
      const physptr = mem.readU32(0x9fc04);
      assert.equal(physptr, 0x9fc10);
      assert.equal(mem.readU8(0x9fc08), 1, "length in paragraphs");
      assert.equal(mem.readU8(0x9fc09), 4, "spec revision 1.4");
      assert.equal(mem.readU8(0x9fc0b), 0, "feature1: a table is present");

      assert.equal(ascii(mem, physptr, 4), "PCMP");
      const length = mem.readU16(physptr + 4);
      assert.equal(length, size - 16);
      assert.equal(sum(mem, physptr, length), 0);
      assert.equal(mem.readU8(physptr + 6), 4);
      assert.equal(ascii(mem, physptr + 8, 8), "LGUEST  ");
      assert.equal(mem.readU16(physptr + 34), cpus + 1 + 1 + 24 + 2, "entry count");
      assert.equal(mem.readU32(physptr + 36), 0xfee00000);

      // Entries in the spec's order: processors, bus, IOAPIC, INT, LINT.
      const types: number[] = [];
      for (let e = physptr + 44; e < physptr + length;) {
        const t = mem.readU8(e);
        types.push(t);
        e += t === 0 ? 20 : 8;
      }
      assert.deepEqual(types, [
        ...Array(cpus).fill(0),
        1,
        2,
        ...Array(24).fill(3),
        4,
        4,
      ]);
      const cpu0 = physptr + 44;
      assert.deepEqual([...mem.slice(cpu0, 4)], [0, 0, 0x14, 3], "CPU 0: id 0, version 0x14, enabled + BSP");
      const bus = cpu0 + 20 * cpus;
      assert.equal(ascii(mem, bus + 2, 6), "ISA   ");
      const ioapic = bus + 8;
      assert.deepEqual([...mem.slice(ioapic, 4)], [2, cpus, 0x11, 1]);
      assert.equal(mem.readU32(ioapic + 4), 0xfec00000);
      const irq0 = ioapic + 8;
      assert.deepEqual([...mem.slice(irq0, 8)], [3, 0, 0, 0, 0, 0, cpus, 0], "ISA IRQ 0 on pin 0");
    }),
  );

  Deno.test(
    `mptable: ${cpus} CPU(s): decodes back`,
    withMemory((mem) => {
      writeMpTable(mem, { cpus });
      const t = readMpTable(mem);
      assert.equal(t.pointer, MPTABLE_ADDR);
      assert.equal(t.table, MPTABLE_ADDR + 16);
      assert.equal(t.length, mpTableSize(cpus) - 16);
      assert.equal(t.entryCount, cpus + 28);
      assert.equal(t.lapicAddr, LAPIC_ADDR);
      assert.deepEqual(t.cpus, [...Array(cpus).keys()]);
      t.processors.forEach((p, i) => {
        assert.equal(p.apicId, i);
        assert.equal(p.apicVersion, 0x14);
        assert.equal(p.enabled, true);
        assert.equal(p.bsp, i === 0, `BSP flag on CPU ${i}`);
        assert.equal(p.signature >> 8 & 0xf, 6, "family 6");
      });
      assert.deepEqual(t.buses, [{ id: 0, type: "ISA" }]);
      assert.deepEqual(t.ioapic, { id: cpus, addr: IOAPIC_ADDR, version: 0x11, usable: true });
      assert.equal(t.irqs.length, 24);
      t.irqs.forEach((irq, n) => {
        assert.deepEqual(irq, { type: MP_INT, flags: 0, srcBus: 0, srcIrq: n, ioapicId: cpus, pin: n });
      });
      assert.deepEqual(t.lints, [
        { type: MP_EXTINT, flags: 0, srcBus: 0, srcIrq: 0, dest: MP_APIC_ALL, lint: 0 },
        { type: MP_NMI, flags: 0, srcBus: 0, srcIrq: 0, dest: MP_APIC_ALL, lint: 1 },
      ]);
    }),
  );
}

Deno.test(
  "mptable: options and stale memory",
  withMemory((mem) => {
    mem.fill(MPTABLE_ADDR, MPTABLE_END - MPTABLE_ADDR, 0xaa);
    const { size } = writeMpTable(mem, { cpus: 2, ioapicId: 9, ioapicAddr: 0xfec01000, irqs: 16 });
    const t = readMpTable(mem);
    assert.deepEqual(t.ioapic, { id: 9, addr: 0xfec01000, version: 0x11, usable: true });
    assert.equal(t.irqs.length, 16);
    assert.ok(t.irqs.every((irq) => irq.ioapicId === 9 && irq.pin === irq.srcIrq));
    // Reserved bytes are zero, not what was there before.
    assert.deepEqual([...mem.slice(t.table + 40, 4)], [0, 0, 0, 0]);
    assert.deepEqual([...mem.slice(t.table + 44 + 12, 8)], Array(8).fill(0));
    assert.equal(size, mpTableSize(2, 16));
  }),
);

Deno.test(
  "mptable: as many CPUs as fit, and no more",
  withMemory((mem) => {
    const most = Math.floor((MPTABLE_END - MPTABLE_ADDR - mpTableSize(0)) / MP_STRUCTS.mpc_cpu.size);
    const { addr, size } = writeMpTable(mem, { cpus: most });
    assert.ok(addr + size <= MPTABLE_END);
    assert.equal(readMpTable(mem).cpus.length, most);
    assert.throws(() => writeMpTable(mem, { cpus: most + 1 }), /needs \d+ bytes/);
    assert.throws(() => writeMpTable(mem, { cpus: 0 }), /CPU count/);
    assert.throws(() => writeMpTable(mem, { cpus: 1.5 }), /CPU count/);
    assert.throws(() => writeMpTable(mem, { cpus: 1000 }), /CPU count/);
    assert.throws(() => writeMpTable(mem, { cpus: 4, ioapicId: 2 }), /already the local APIC id/);
    assert.throws(() => writeMpTable(mem, { cpus: 4, ioapicId: 255 }), /IOAPIC id/);
    assert.throws(() => writeMpTable(mem, { cpus: 4, irqs: 0 }), /pin count/);
  }),
);

Deno.test(
  "mptable: a flipped byte is caught by the checksum",
  withMemory((mem) => {
    const { addr, size } = writeMpTable(mem, { cpus: 4 });
    // One byte in each structure: the floating pointer's feature3, an OEM
    // id character, an IRQ entry's pin and the last LINT entry's last byte.
    for (const at of [addr + 13, addr + 16 + 9, addr + 16 + 44 + 80 + 16 + 7, addr + size - 1]) {
      const old = mem.readU8(at);
      mem.writeU8(at, old ^ 0x10);
      assert.throws(() => readMpTable(mem), /checksum/, `byte at 0x${at.toString(16)}`);
      mem.writeU8(at, old);
      readMpTable(mem);
    }
    mem.writeU8(addr, "-".charCodeAt(0));
    assert.throws(() => readMpTable(mem), /no MP floating pointer/);
  }),
);

const TARBALL = "/usr/src/linux-source-6.1.tar.xz";
const HEADER = "linux-source-6.1/arch/x86/include/asm/mpspec_def.h";

function whyNoC(): string | null {
  try {
    Deno.statSync(TARBALL);
  } catch {
    return `${TARBALL} is missing`;
  }
  try {
    if (!new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success) {
      return "gcc does not run";
    }
  } catch {
    return "gcc is missing";
  }
  return null;
}

const noC = whyNoC();
if (noC !== null) console.log(`mptable: ${noC}; skipping the C layout check`);

Deno.test({
  name: "mptable: the struct tables match sizeof/offsetof from the kernel's mpspec_def.h",
  ignore: noC !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mptable_" });
    try {
      const tar = await new Deno.Command("tar", { args: ["-xJf", TARBALL, "-C", dir, HEADER], stderr: "piped" })
        .output();
      assert.ok(tar.success, new TextDecoder().decode(tar.stderr));
      const lines: string[] = [];
      for (const [struct, layout] of Object.entries(MP_STRUCTS)) {
        lines.push(`  printf("%s %zu\\n", "${struct}", sizeof(struct ${struct}));`);
        for (const field of Object.keys(layout.fields)) {
          lines.push(
            `  printf("%s.%s %zu %zu\\n", "${struct}", "${field}", offsetof(struct ${struct}, ${field}), ` +
              `sizeof(((struct ${struct} *)0)->${field}));`,
          );
        }
      }
      const src = `#include <stddef.h>
#include <stdio.h>
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
#include "${dir}/${HEADER}"
int main(void) {
${lines.join("\n")}
  return 0;
}
`;
      await Deno.writeTextFile(`${dir}/layout.c`, src);
      const cc = await new Deno.Command("gcc", {
        args: ["-Wall", "-o", `${dir}/layout`, `${dir}/layout.c`],
        stderr: "piped",
      }).output();
      assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
      const run = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
      assert.ok(run.success);
      const c = new Map<string, number[]>();
      for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
        const [name, ...numbers] = line.split(" ");
        c.set(name!, numbers.map(Number));
      }
      for (const [struct, layout] of Object.entries(MP_STRUCTS)) {
        assert.deepEqual(c.get(struct), [layout.size], `sizeof(struct ${struct})`);
        const fields: Record<string, { offset: number; size: number }> = layout.fields;
        for (const [field, f] of Object.entries(fields)) {
          assert.deepEqual(c.get(`${struct}.${field}`), [f.offset, f.size], `${struct}.${field}`);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
