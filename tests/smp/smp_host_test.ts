/*T:704 Several vCPUs, checked without KVM. Three descriptions of the same
 * CPUs must agree, or a kernel sees a different machine depending on where
 * it looks: the MP table (a kernel without ACPI), the MADT (a kernel with
 * it) and each vCPU's own CPUID (its APIC id, and how many logical
 * processors its package holds). The tables are laid out by the machine's
 * own layOut(), in plain memory, for 1 to 8 vCPUs. Then the limits: --cpus
 * and MachineConfig.cpus take 1..64 and refuse the rest with one line,
 * before /dev/kvm is opened. :*/

import assert from "node:assert/strict";
import { parseCli, UsageError } from "../../cli.ts";
import { GuestMemory } from "../../lib/memory.ts";
import { layOut, planBoot } from "../../lib/machine/build.ts";
import { Machine, MAX_CPUS } from "../../lib/machine.ts";
import { guestCpuid } from "../../lib/kvm/cpu_setup.ts";
import type { CpuidEntry } from "../../lib/kvm/kvm.ts";
import { readMpTable } from "../helpers/mptable_reader.ts";
import { readAcpiTables } from "../boot/acpi/reader.ts";
import { buildTestGuest } from "../guest/build.ts";

/** A host's supported CPUID, as KVM reports it: the leaves guestCpuid rewrites, with a 2-core host's topology. */
const HOST: CpuidEntry[] = [
  { function: 0, index: 0, flags: 0, eax: 0x1f, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
  { function: 1, index: 0, flags: 0, eax: 0x806c1, ebx: 0x02010800, ecx: 0x7ffafbff, edx: 0xbfebfbff },
  { function: 4, index: 0, flags: 1, eax: 0x1c004121, ebx: 0x02c0003f, ecx: 0x3f, edx: 0 },
  { function: 4, index: 3, flags: 1, eax: 0x1c03c163, ebx: 0x02c0003f, ecx: 0x3fff, edx: 6 },
  { function: 4, index: 4, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
  { function: 0xb, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 1 },
  { function: 0xb, index: 1, flags: 1, eax: 1, ebx: 2, ecx: 0x201, edx: 1 },
  { function: 0x1f, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 1 },
  { function: 0x80000008, index: 0, flags: 0, eax: 0x3027, ebx: 0, ecx: 0x1001, edx: 0 },
];

function leaf(entries: readonly CpuidEntry[], fn: number, index = 0): CpuidEntry {
  const e = entries.find((x) => x.function === fn && x.index === index);
  assert.ok(e, `CPUID leaf 0x${fn.toString(16)}.${index} present`);
  return e;
}

Deno.test("smp: the MP table, the MADT and every vCPU's CPUID describe the same CPUs, for 1 to 8 vCPUs", async () => {
  const kernel = await buildTestGuest();
  for (let cpus = 1; cpus <= 8; cpus++) {
    const config = { memoryMiB: 16, kernel, cpus };
    const plan = planBoot(config);
    const mem = GuestMemory.create(plan.bytes);
    try {
      layOut(mem, config, plan);
      const mp = readMpTable(mem);
      const madt = readAcpiTables(mem).madt;
      const ids = Array.from({ length: cpus }, (_, i) => i);
      assert.deepEqual(mp.cpus, ids, `MP table, ${cpus} vCPUs`);
      assert.deepEqual(mp.processors.map((p) => p.bsp), ids.map((i) => i === 0), "vCPU 0 boots");
      assert.deepEqual(madt.lapics.map((l) => l.apicId), ids, `MADT, ${cpus} vCPUs`);
      assert.ok(madt.lapics.every((l) => l.enabled));
      assert.equal(mp.ioapic.id, madt.ioapics[0]?.id);
      assert.ok(mp.ioapic.id >= cpus, "the IOAPIC's id is no CPU's");
      for (const id of ids) {
        const c = guestCpuid(HOST, id, cpus);
        const l1 = leaf(c, 1);
        assert.equal(l1.ebx >>> 24, id, "leaf 1: initial APIC id");
        assert.equal((l1.ebx >>> 16) & 0xff, cpus, "leaf 1: logical processors per package");
        assert.equal((l1.edx >>> 28) & 1, cpus > 1 ? 1 : 0, "leaf 1: HTT says whether there is more than one");
        for (const fn of [0xb, 0x1f]) {
          const smt = leaf(c, fn, 0);
          const core = leaf(c, fn, 1);
          assert.deepEqual([smt.edx, core.edx], [id, id], "x2APIC id at every level");
          assert.deepEqual([smt.ebx, smt.ecx >> 8], [1, 1], "one thread per core");
          assert.deepEqual([core.ebx, core.ecx >> 8], [cpus, 2], "cpus cores");
          assert.ok(cpus <= 1 << core.eax, "the package's id bits cover every vCPU");
          assert.equal(id >> core.eax, 0, "every vCPU is in package 0");
          assert.equal(leaf(c, fn, 2).ecx >> 8, 0, "the level list ends");
          assert.equal(c.filter((e) => e.function === fn).length, 3);
        }
        assert.equal(leaf(c, 4, 0).eax >>> 26, cpus - 1, "leaf 4: cores per package");
        assert.equal((leaf(c, 4, 3).eax >>> 14) & 0xfff, cpus - 1, "leaf 4: the L3 is shared by all");
        assert.equal(leaf(c, 0x80000008).ecx & 0xff, cpus - 1, "AMD: cores per package");
      }
    } finally {
      mem.close();
    }
  }
});

Deno.test("smp: --cpus takes a whole number from 1 to 64", () => {
  assert.equal(parseCli(["64", "k"]).cpus, 1, "default 1");
  assert.equal(parseCli(["--cpus=4", "64", "k"]).cpus, 4);
  assert.equal(parseCli(["--cpus", "2", "64", "k"]).cpus, 2);
  assert.equal(parseCli([`--cpus=${MAX_CPUS}`, "64", "k"]).cpus, 64);
  assert.deepEqual(parseCli(["64", "k", "--cpus=3"]).kernelArgs, ["--cpus=3"], "after the kernel it is the guest's");
  for (const bad of ["0", "65", "1.5", "-1", "two", "", "0x4"]) {
    assert.throws(() => parseCli([`--cpus=${bad}`, "64", "k"]), UsageError, `--cpus=${bad}`);
    assert.throws(
      () => parseCli([`--cpus=${bad}`, "64", "k"]),
      /^UsageError: --cpus=.* is not a whole number from 1 to 64$/,
    );
  }
});

Deno.test("smp: MachineConfig.cpus out of range is refused before /dev/kvm is opened", async () => {
  const kernel = await buildTestGuest();
  for (const cpus of [0, 65, 2.5, -1, Number.NaN]) {
    assert.throws(
      () => Machine.create({ memoryMiB: 16, kernel, cpus, kvmPath: "/nonexistent/kvm" }),
      (e: unknown) =>
        e instanceof RangeError && /^cpus must be a whole number from 1 to 64 \(got .*\)$/.test(e.message),
      `cpus ${cpus}`,
    );
  }
  // In range, the next thing to fail is opening KVM: the count itself was accepted.
  assert.throws(() => Machine.create({ memoryMiB: 16, kernel, cpus: 3, kvmPath: "/nonexistent/kvm" }), /kvm/i);
});
