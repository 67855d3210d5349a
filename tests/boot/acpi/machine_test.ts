/*T:127 The ACPI tables as a machine lays them out, not as the builder
 * returns them: planBoot() and layOut() run against plain guest memory (no
 * KVM needed) for a synthetic bzImage with three virtio devices, and the
 * tests then read low memory the way a kernel would. With ACPI on, the
 * RSDP the kernel's scan of 0xe0000-0xfffff finds is the one the zero
 * page's acpi_rsdp_addr names; every table lies inside memory the e820 map
 * reserves; the MADT and the MP table describe the same CPUs and IOAPIC;
 * `iasl -d` finds one LNRO0005 device per virtio window, at the slot's
 * address and IRQ; and the command line carries no virtio_mmio.device=
 * words. With `acpi: false` there is no "RSD PTR " anywhere below 1 MiB,
 * acpi_rsdp_addr is 0, and the words are back. :*/

import assert from "node:assert/strict";
import { GuestMemory } from "../../../lib/memory.ts";
import { type BootPlan, layOut, planBoot } from "../../../lib/machine/build.ts";
import type { BootInfo, MachineConfig } from "../../../lib/machine/config.ts";
import { BOOT_PARAMS, getField } from "../../../lib/boot/bootparam.ts";
import { E820_RESERVED, readE820 } from "../../../lib/boot/e820.ts";
import { CMDLINE_ADDR, VIRTIO_MMIO_SIZE, ZERO_PAGE_ADDR } from "../../../lib/boot/layout.ts";
import { ACPI_RSDP_SCAN_END, ACPI_RSDP_SCAN_START } from "../../../lib/boot/acpi/layout.ts";
import { RngDevice } from "../../../lib/virtio/rng.ts";
import { ConsoleDevice } from "../../../lib/virtio/console/device.ts";
import type { VirtioDevice } from "../../../lib/virtio/device.ts";
import { buildBzImage } from "../images.ts";
import { readMpTable } from "../../helpers/mptable_reader.ts";
import { readAcpiTables } from "./reader.ts";

const IASL = await (async () => {
  try {
    await new Deno.Command("iasl", { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
})();

interface LaidOut {
  plan: BootPlan;
  info: BootInfo;
  zeroPage: Uint8Array;
  cmdlineInRam: string;
  lowMemory: Uint8Array;
  mem: GuestMemory;
}

/** Plans and lays out a 64 MiB machine with three devices, then hands `fn` its memory; closes everything. */
async function withMachine<T>(extra: Partial<MachineConfig>, fn: (m: LaidOut) => T | Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "lguest-acpi-machine-" });
  const kernel = `${dir}/bzImage`;
  await Deno.writeFile(kernel, buildBzImage());
  const devices: VirtioDevice[] = [new RngDevice(), new RngDevice(), new ConsoleDevice({ outputFd: 2 })];
  const config: MachineConfig = { memoryMiB: 64, kernel, cmdline: "console=ttyS0 quiet", devices, ...extra };
  const mem = GuestMemory.create(64 << 20);
  try {
    const plan = planBoot(config);
    const info = layOut(mem, config, plan);
    const zeroPage = mem.slice(ZERO_PAGE_ADDR, BOOT_PARAMS.size);
    const length = getField(zeroPage, "hdr.cmdline_size") + 1;
    const raw = mem.slice(CMDLINE_ADDR, length);
    const cmdlineInRam = new TextDecoder().decode(raw.subarray(0, raw.indexOf(0)));
    return await fn({ plan, info, zeroPage, cmdlineInRam, lowMemory: mem.slice(0, 1 << 20), mem });
  } finally {
    mem.close();
    for (const d of devices) d.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const rsdpSignatures = (low: Uint8Array) => {
  const found: number[] = [];
  const text = new TextDecoder("latin1").decode(low);
  for (let at = text.indexOf("RSD PTR "); at >= 0; at = text.indexOf("RSD PTR ", at + 1)) found.push(at);
  return found;
};

Deno.test("acpi machine: the RSDP is where acpi_rsdp_addr says, and the kernel's scan finds the same one", async () => {
  await withMachine({}, ({ info, zeroPage, mem, lowMemory }) => {
    const rsdp = Number(getField(zeroPage, "acpi_rsdp_addr"));
    assert.equal(rsdp, info.rsdp);
    const acpi = readAcpiTables(mem);
    assert.equal(acpi.rsdp, rsdp, "the scan of 0xe0000-0xfffff finds the RSDP acpi_rsdp_addr names");
    assert.ok(rsdp >= ACPI_RSDP_SCAN_START && rsdp < ACPI_RSDP_SCAN_END);
    assert.deepEqual(rsdpSignatures(lowMemory), [rsdp], "one RSDP below 1 MiB");
    assert.deepEqual([...acpi.tables.keys()].sort(), ["APIC", "DSDT", "FACP"]);
  });
});

Deno.test("acpi machine: every table lies in memory the e820 map reserves", async () => {
  await withMachine({}, ({ info, zeroPage, mem }) => {
    const e820 = readE820(zeroPage);
    assert.deepEqual(e820, [...info.e820]);
    const acpi = readAcpiTables(mem);
    const places = [{ addr: acpi.rsdp, length: 36 }, { addr: acpi.xsdt, length: 36 + 16 }, ...acpi.tables.values()];
    for (const { addr, length } of places) {
      const inside = e820.find((e) => e.addr <= addr && addr + length <= e.addr + e.size);
      assert.equal(inside?.type, E820_RESERVED, `table at 0x${addr.toString(16)} is in a reserved range`);
    }
  });
});

for (const cpus of [1, 4]) {
  Deno.test(`acpi machine: with ${cpus} vCPU(s) the MADT and the MP table describe the same machine`, async () => {
    await withMachine({ cpus }, ({ mem }) => {
      const acpi = readAcpiTables(mem);
      const mp = readMpTable(mem);
      assert.deepEqual(mp.cpus, Array.from({ length: cpus }, (_, i) => i));
      assert.deepEqual(acpi.madt.lapics.map((l) => l.apicId), mp.cpus);
      assert.equal(acpi.madt.lapicAddr, mp.lapicAddr);
      assert.deepEqual(acpi.madt.ioapics, [{ id: mp.ioapic.id, addr: mp.ioapic.addr, gsiBase: 0 }]);
      for (const irq of mp.irqs.filter((i) => i.srcIrq < 16)) {
        const o = acpi.madt.overrides.find((x) => x.irq === irq.srcIrq);
        assert.equal(o?.gsi ?? irq.srcIrq, irq.pin, `ISA IRQ ${irq.srcIrq}`);
      }
    });
  });
}

Deno.test({
  name: "acpi machine: the DSDT in guest RAM declares each device at its slot (iasl -d)" +
    (IASL ? "" : " [skipped: acpica-tools is not installed]"),
  ignore: !IASL,
  async fn() {
    await withMachine({}, async ({ plan, mem }) => {
      const acpi = readAcpiTables(mem);
      const place = acpi.tables.get("DSDT")!;
      const dir = await Deno.makeTempDir({ prefix: "lguest-acpi-dsdt-" });
      try {
        await Deno.writeFile(`${dir}/dsdt.dat`, mem.slice(place.addr, place.length));
        const out = await new Deno.Command("iasl", { args: ["-d", "dsdt.dat"], cwd: dir, stdout: "piped" }).output();
        assert.equal(out.code, 0);
        const dsl = await Deno.readTextFile(`${dir}/dsdt.dsl`);
        assert.doesNotMatch(dsl, /Error|Warning/);
        const hex = (v: number) => `0x${v.toString(16).toUpperCase().padStart(8, "0")}`;
        const found = [
          ...dsl.matchAll(
            /Name \(_HID, "LNRO0005"\)[^]*?Memory32Fixed \(ReadWrite,\s+(0x[0-9A-F]+),[^]*?(0x[0-9A-F]+),[^]*?Interrupt \([^)]*\)\s*\{\s*0x([0-9A-F]+),/g,
          ),
        ].map((m) => ({ base: m[1], size: m[2], irq: parseInt(m[3]!, 16) }));
        assert.equal(plan.slots.length, 3);
        assert.deepEqual(
          found,
          plan.slots.map((s) => ({ base: hex(s.base), size: hex(VIRTIO_MMIO_SIZE), irq: s.irq })),
        );
        assert.match(dsl, /EisaId \("PNP0501"\)/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test("acpi machine: with ACPI the command line is the user's own; the DSDT declares the devices", async () => {
  await withMachine({}, ({ info, cmdlineInRam }) => {
    assert.equal(info.cmdline, "console=ttyS0 quiet");
    assert.equal(cmdlineInRam, "console=ttyS0 quiet");
  });
});

Deno.test("acpi machine: acpi: false writes no ACPI at all and declares the devices on the command line", async () => {
  await withMachine({ acpi: false }, ({ plan, info, zeroPage, cmdlineInRam, lowMemory, mem }) => {
    assert.equal(info.rsdp, undefined);
    assert.equal(getField(zeroPage, "acpi_rsdp_addr"), 0n);
    assert.deepEqual(rsdpSignatures(lowMemory), [], "no RSDP signature anywhere below 1 MiB");
    assert.throws(() => readAcpiTables(mem), /no ACPI RSDP/);
    const words = plan.slots.map((s) => `virtio_mmio.device=4K@0x${s.base.toString(16)}:${s.irq}`);
    assert.equal(words.length, 3);
    assert.equal(cmdlineInRam, ["console=ttyS0 quiet", ...words].join(" "));
    assert.equal(info.cmdline, cmdlineInRam);
    assert.equal(readMpTable(mem).cpus.length, 1, "the MP table is still there");
  });
});
