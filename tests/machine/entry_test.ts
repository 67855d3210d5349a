/*T:748 Choosing the entry (L:117), without KVM: the rule over every kind of
 * kernel and every choice, the line --verbose prints for each, the mistake
 * (PVH asked of a kernel without the note) found by planBoot() before KVM
 * is opened, layOut() recording the choice, and --entry on the command
 * line. That the chosen entry really boots is tests/pvh_boot_test.ts. :*/

import assert from "node:assert/strict";
import { chooseEntry, describeEntry, type EntryChoice } from "../../lib/machine/entry.ts";
import { layOut, planBoot } from "../../lib/machine/build.ts";
import type { MachineConfig } from "../../lib/machine/config.ts";
import type { LoadedKernel } from "../../lib/boot/kernel.ts";
import { BootError } from "../../lib/boot/errors.ts";
import { GuestMemory } from "../../lib/memory.ts";
import { parseCli, UsageError } from "../../cli.ts";
import { buildBzImage, buildElf, pvhNote } from "../boot/images.ts";

const base = { entry: 0x100000, kernelEnd: 0x200000, initrdAddrMax: 0x7fffffff, cmdlineSize: 2047 } as const;
const elfWithNote: LoadedKernel = { ...base, kind: "elf", pvhEntry: 0x100040 };
const elfWithout: LoadedKernel = { ...base, kind: "elf" };
const bzImage: LoadedKernel = { ...base, kind: "bzimage", entry: 0x100200 };

Deno.test("entry: PVH where the note is, unless linux64 is asked for; PVH without the note is an error", () => {
  const table: [LoadedKernel, EntryChoice | undefined, string][] = [
    [elfWithNote, undefined, "pvh"],
    [elfWithNote, "auto", "pvh"],
    [elfWithNote, "pvh", "pvh"],
    [elfWithNote, "linux64", "linux64"],
    [elfWithout, "auto", "linux64"],
    [elfWithout, "linux64", "linux64"],
    [bzImage, "auto", "linux64"],
    [bzImage, "linux64", "linux64"],
  ];
  for (const [kernel, wanted, expected] of table) {
    assert.equal(chooseEntry(kernel, wanted), expected, `${kernel.kind} ${kernel.pvhEntry ?? "-"} ${wanted}`);
  }
  assert.throws(() => chooseEntry(elfWithout, "pvh", "vmlinux"), (e: Error) => {
    assert.ok(e instanceof BootError);
    assert.equal(e.message, "vmlinux: the PVH entry was asked for, but this ELF has no XEN_ELFNOTE_PHYS32_ENTRY note");
    return true;
  });
  assert.throws(() => chooseEntry(bzImage, "pvh", "bzImage"), /bzImage: the PVH entry needs an ELF vmlinux/);
  assert.throws(() => chooseEntry(elfWithNote, "32bit" as EntryChoice), RangeError);
});

Deno.test("entry: --verbose says which entry and why", () => {
  assert.equal(describeEntry(elfWithNote, "pvh"), "PVH entry 0x100040 (ELF note XEN_ELFNOTE_PHYS32_ENTRY)");
  assert.equal(describeEntry(bzImage, "linux64"), "64-bit boot protocol entry 0x100200 (bzImage)");
  assert.equal(describeEntry(elfWithout, "linux64"), "64-bit boot protocol entry 0x100000 (ELF without the PVH note)");
  assert.equal(
    describeEntry(elfWithNote, "linux64"),
    "64-bit boot protocol entry 0x100000 (ELF with the PVH note, entry linux64 asked for)",
  );
});

/** Writes the kernels to a temp dir and gives `fn` a config for each. */
async function withKernels(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lguest-entry-" });
  const note = pvhNote(0x100040, 8);
  const code = { paddr: 0x100000, filesz: 0x100, memsz: 0x1000 };
  await Deno.writeFile(
    `${dir}/pvh.elf`,
    buildElf({
      entry: 0x100000,
      segments: [code, { type: 4, paddr: 0, filesz: note.length, memsz: note.length, data: note, align: 4 }],
    }),
  );
  await Deno.writeFile(`${dir}/plain.elf`, buildElf({ entry: 0x100000, segments: [code] }));
  await Deno.writeFile(`${dir}/bzImage`, buildBzImage());
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("entry: planBoot refuses --entry=pvh for a kernel without the note, before KVM", async () => {
  await withKernels((dir) => {
    const config = (kernel: string, entry: EntryChoice): MachineConfig => ({
      memoryMiB: 64,
      kernel: `${dir}/${kernel}`,
      entry,
      acpi: false,
    });
    planBoot(config("pvh.elf", "pvh"));
    planBoot(config("plain.elf", "linux64"));
    assert.throws(() => planBoot(config("plain.elf", "pvh")), /plain\.elf: the PVH entry was asked for/);
    assert.throws(() => planBoot(config("bzImage", "pvh")), /bzImage: the PVH entry needs an ELF vmlinux/);
  });
});

Deno.test("entry: layOut records the entry taken", async () => {
  await withKernels((dir) => {
    for (
      const [kernel, entry, expected] of [
        ["pvh.elf", undefined, "pvh"],
        ["pvh.elf", "linux64", "linux64"],
        ["plain.elf", "auto", "linux64"],
        ["bzImage", "auto", "linux64"],
      ] as const
    ) {
      const config: MachineConfig = { memoryMiB: 64, kernel: `${dir}/${kernel}`, entry, acpi: false };
      const mem = GuestMemory.create(64 << 20);
      try {
        assert.equal(layOut(mem, config, planBoot(config)).entry, expected, `${kernel} ${entry}`);
      } finally {
        mem.close();
      }
    }
  });
});

Deno.test("entry: --entry on the command line", () => {
  assert.equal(parseCli(["64", "k"]).entry, "auto");
  for (const e of ["auto", "pvh", "linux64"]) {
    assert.equal(parseCli([`--entry=${e}`, "64", "k"]).entry, e);
    assert.equal(parseCli(["--entry", e, "64", "k"]).entry, e, "--entry <value> is one option, not the memory size");
  }
  assert.throws(() => parseCli(["--entry=64bit", "64", "k"]), UsageError);
  assert.throws(() => parseCli(["--entry=64bit", "64", "k"]), /--entry must be auto, pvh, linux64, not '64bit'/);
  assert.deepEqual(
    parseCli(["64", "k", "--entry=pvh"]).kernelArgs,
    ["--entry=pvh"],
    "after the kernel it is the guest's",
  );
});
