/*T:126 The ACPI tables held up against ACPICA itself, the code Linux
 * compiles in: Debian's acpica-tools. `iasl -d` decodes each table with its
 * own offset tables (a field we put at the wrong offset shows up under the
 * wrong name), checks every checksum, and disassembles the DSDT's AML back
 * to ASL; any "Error" or "Warning" fails the test. iasl cannot decode an
 * RSDP from a file, so instead its table compiler builds one from the field
 * values we mean, computing both checksums itself, and the bytes must be
 * ours. Then `acpiexec` loads the FADT, MADT and DSDT into ACPICA's
 * interpreter and enters S5 the way Linux's power-off does, and its I/O
 * trace must show the write the launcher will wait for. Without the tools
 * these tests are skipped, and say so in their names. :*/

import assert from "node:assert/strict";
import { type AcpiOptions, type AcpiTables, buildAcpiTables } from "../../../lib/boot/acpi/build.ts";
import { ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, sleepRequest } from "../../../lib/boot/acpi/layout.ts";
import { VIRTIO_IRQS } from "../../../lib/virtio/mmio/set.ts";

async function have(tool: string): Promise<boolean> {
  try {
    await new Deno.Command(tool, { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

const IASL = await have("iasl");
const ACPIEXEC = await have("acpiexec");
const SKIPPED = " [skipped: acpica-tools is not installed (apt-get install acpica-tools)]";
if (!IASL || !ACPIEXEC) console.warn(`iasl_test: ${SKIPPED.trim()}`);

const FILES: Record<string, string> = { XSDT: "xsdt", FACP: "facp", APIC: "apic", DSDT: "dsdt" };
const PROBLEM = /Error|Warning|Incorrect|Invalid|Unknown/;

function windows(n: number): AcpiOptions["virtioMmio"] {
  return Array.from({ length: n }, (_, i) => ({ base: 0xd000_0000 + i * 0x1000, size: 0x1000, irq: VIRTIO_IRQS[i]! }));
}

function tableBytes(t: AcpiTables, signature: string): Uint8Array {
  const p = t.tables.find((x) => x.signature === signature)!;
  return t.bytes.subarray(p.addr - t.at, p.addr - t.at + p.length);
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} exited ${out.code}:\n${text}`);
  return text;
}

/** Writes every table to `dir` and returns iasl's disassembly of each, by signature. */
async function disassemble(t: AcpiTables, dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [signature, file] of Object.entries(FILES)) {
    await Deno.writeFile(`${dir}/${file}.dat`, tableBytes(t, signature));
    const log = await run("iasl", ["-d", `${file}.dat`], dir);
    assert.doesNotMatch(log, PROBLEM, `iasl -d ${file}.dat:\n${log}`);
    const dsl = await Deno.readTextFile(`${dir}/${file}.dsl`);
    assert.doesNotMatch(dsl, PROBLEM, `${file}.dsl`);
    out[signature] = dsl;
  }
  return out;
}

/** The value iasl prints for a field ("[offset] Name : value" or a decoded flag's "Name : value"), n-th match. */
function field(dsl: string, name: string, n = 0): string {
  const quoted = name.replace(/[()/]/g, "\\$&");
  const all = [...dsl.matchAll(new RegExp(`^\\s*(?:\\[[^\\]]*\\])?\\s*${quoted} : (\\S+)`, "gm"))];
  assert.ok(all[n], `no "${name}" #${n} in:\n${dsl}`);
  return all[n][1]!;
}

const hex = (v: number, width: number) => v.toString(16).toUpperCase().padStart(width, "0");

for (const cpus of [1, 2, 8]) {
  const devices = cpus === 8 ? VIRTIO_IRQS.length : cpus + 1;
  Deno.test({
    name: `acpi: iasl -d decodes the tables for ${cpus} vCPU(s) and ${devices} virtio devices cleanly` +
      (IASL ? "" : SKIPPED),
    ignore: !IASL,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "lguest-acpi-" });
      try {
        const t = buildAcpiTables({ cpus, virtioMmio: windows(devices) });
        const addr = (s: string) => t.tables.find((p) => p.signature === s)!.addr;
        const dsl = await disassemble(t, dir);

        assert.equal(field(dsl.XSDT!, "ACPI Table Address   0"), hex(addr("FACP"), 16));
        assert.equal(field(dsl.XSDT!, "ACPI Table Address   1"), hex(addr("APIC"), 16));

        const fadt = dsl.FACP!;
        assert.equal(field(fadt, "Hardware Reduced (V5)"), "1");
        assert.equal(field(fadt, "Reset Register Supported (V2)"), "1");
        assert.equal(field(fadt, "DSDT Address", 1), hex(addr("DSDT"), 16), "X_DSDT");
        // GAS addresses in order: reset, the eight legacy blocks, sleep control, sleep status.
        assert.equal(field(fadt, "Address", 0), hex(0x64, 16), "reset register");
        assert.equal(field(fadt, "Value to cause reset"), "FE");
        assert.equal(field(fadt, "Address", 9), hex(ACPI_SLEEP_CONTROL_PORT, 16), "sleep control");
        assert.equal(field(fadt, "Address", 10), hex(ACPI_SLEEP_STATUS_PORT, 16), "sleep status");
        assert.match(fadt, /\[0F4h 0244 {2}12\]\s+Sleep Control Register : \[Generic Address Structure\]/);
        assert.equal(field(fadt, "Space ID", 9), "01");

        const madt = dsl.APIC!;
        assert.equal(madt.match(/Subtable Type : 00 \[Processor Local APIC\]/g)?.length, cpus, "one per vCPU");
        for (let i = 0; i < cpus; i++) {
          assert.equal(field(madt, "Local Apic ID", i), hex(i, 2));
          assert.equal(field(madt, "Processor Enabled", i), "1");
        }
        assert.equal(madt.match(/\[I\/O APIC\]/g)?.length, 1);
        assert.equal(field(madt, "I/O Apic ID"), hex(cpus, 2));
        assert.equal(field(madt, "Address"), "FEC00000");
        assert.doesNotMatch(madt, /Interrupt Source Override/, "KVM's routing needs none");
        assert.equal(field(madt, "Interrupt Input LINT"), "01");

        const dsdt = dsl.DSDT!;
        assert.match(dsdt, /Device \(COM1\)[^]*?EisaId \("PNP0501"\)/);
        assert.match(dsdt, /IO \(Decode16,\s+0x03F8,[^]*?0x08,/);
        assert.equal(dsdt.match(/Name \(_HID, "LNRO0005"\)/g)?.length, devices);
        const irqs = [
          ...dsdt.matchAll(/Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x([0-9A-F]+),/g),
        ]
          .map((m) => parseInt(m[1]!, 16));
        assert.deepEqual(irqs, [4, ...VIRTIO_IRQS.slice(0, devices)]);
        windows(devices).forEach((w, i) => {
          const name = `VR${hex(i, 2)}`;
          const re = new RegExp(
            `Device \\(${name}\\)[^]*?Memory32Fixed \\(ReadWrite,\\s+0x${hex(w.base, 8)},` +
              `\\s+// Address Base\\s+0x00001000,`,
          );
          assert.match(dsdt, re, name);
        });
        assert.match(dsdt, /Name \(_S5, Package \(0x02\)[^]*?\{\s*0x05,\s*Zero\s*\}/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "acpi: iasl's table compiler builds the same RSDP from its field values" + (IASL ? "" : SKIPPED),
  ignore: !IASL,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lguest-acpi-" });
    try {
      const t = buildAcpiTables({ cpus: 1, virtioMmio: [] });
      const xsdt = t.tables.find((p) => p.signature === "XSDT")!.addr;
      // Checksums left at 00: the compiler computes both.
      const source = [
        `[0008] Signature : "RSD PTR "`,
        `[0001] Checksum : 00`,
        `[0006] Oem ID : "LGUEST"`,
        `[0001] Revision : 02`,
        `[0004] RSDT Address : 00000000`,
        `[0004] Length : 00000024`,
        `[0008] XSDT Address : ${hex(xsdt, 16)}`,
        `[0001] Extended Checksum : 00`,
        `[0003] Reserved : 000000`,
      ].join("\n");
      await Deno.writeTextFile(`${dir}/rsdp.asl`, source + "\n");
      const log = await run("iasl", ["-p", "rsdp", "rsdp.asl"], dir);
      assert.doesNotMatch(log, /[1-9]\d* (Errors|Warnings)/, log);
      assert.deepEqual(await Deno.readFile(`${dir}/rsdp.aml`), tableBytes(t, "RSD PTR "));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "acpi: ACPICA's S5 entry writes SLP_EN | 5 << 2 to the sleep control port" + (ACPIEXEC ? "" : SKIPPED),
  ignore: !ACPIEXEC,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lguest-acpi-" });
    try {
      const t = buildAcpiTables({ cpus: 2, virtioMmio: windows(3) });
      for (const s of ["FACP", "APIC", "DSDT"]) await Deno.writeFile(`${dir}/${FILES[s]}.dat`, tableBytes(t, s));
      // -x 0x04000000 is ACPI_LV_IO: trace every register access.
      const log = await run("acpiexec", ["-x", "0x04000000", "-b", "sleep 5", "facp.dat", "apic.dat", "dsdt.dat"], dir);
      assert.match(log, /Sleep-A: 05, Sleep-B: 00/, log);
      const writes = [...log.matchAll(/Wrote: ([0-9A-F]{16}) width\s+(\d+)\s+to ([0-9A-F]{16}) \(SystemIO\)/g)]
        .map((m) => ({ value: parseInt(m[1]!, 16), width: Number(m[2]), port: parseInt(m[3]!, 16) }));
      const control = writes.filter((w) => w.port === ACPI_SLEEP_CONTROL_PORT);
      assert.deepEqual(control, [{ value: 0x34, width: 8, port: ACPI_SLEEP_CONTROL_PORT }], log);
      assert.equal(sleepRequest(control[0]!.value), 5);
      const status = writes.findIndex((w) => w.port === ACPI_SLEEP_STATUS_PORT);
      assert.ok(status >= 0 && status < writes.indexOf(control[0]!), "WAK_STS is cleared before sleeping");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
