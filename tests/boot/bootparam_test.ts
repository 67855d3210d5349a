import { deepEqual, equal, throws } from "node:assert/strict";
import { BOOT_PARAMS, fieldBytes, getField, setField } from "../../lib/boot/bootparam.ts";

Deno.test("bootparam: fields are in bounds, sized, and do not overlap", () => {
  const scalars = Object.entries(BOOT_PARAMS.fields)
    .filter(([name]) => name !== "hdr")
    .sort(([, a], [, b]) => a.offset - b.offset);
  for (let i = 0; i < scalars.length; i++) {
    const [name, f] = scalars[i]!;
    equal(f.offset + f.size <= BOOT_PARAMS.size, true, name);
    const next = scalars[i + 1];
    if (next !== undefined) {
      equal(f.offset + f.size <= next[1].offset, true, `${name} / ${next[0]}`);
    }
  }
  const hdr = BOOT_PARAMS.fields.hdr;
  equal(hdr.offset + hdr.size, BOOT_PARAMS.fields["hdr.kernel_info_offset"].offset + 4);
});

Deno.test("bootparam: get/set are little-endian at the table's offsets", () => {
  const page = new Uint8Array(BOOT_PARAMS.size);
  setField(page, "hdr.cmd_line_ptr", 0x12345678);
  deepEqual([...page.subarray(0x228, 0x22c)], [0x78, 0x56, 0x34, 0x12]);
  equal(getField(page, "hdr.cmd_line_ptr"), 0x12345678);
  setField(page, "hdr.pref_address", 0x1_0000_0000n);
  equal(page[0x25c], 1);
  equal(getField(page, "hdr.pref_address"), 0x1_0000_0000n);
  setField(page, "hdr.version", 0x20f);
  equal(getField(page, "hdr.version"), 0x20f);
  setField(page, "e820_entries", 3);
  equal(page[0x1e8], 3);
  setField(page, "ext_cmd_line_ptr", 0xffff_ffff);
  equal(getField(page, "ext_cmd_line_ptr"), 0xffff_ffff);
  equal(fieldBytes(page, "e820_table").length, 2560);
  equal(fieldBytes(page, "e820_table").byteOffset, 0x2d0);
  throws(() => getField(new Uint8Array(0x200), "hdr.version"), RangeError);
});

function cOffsets(dir: string): Map<string, [number, number]> | null {
  const names = Object.keys(BOOT_PARAMS.fields);
  const lines = names.map((n) =>
    `  printf("%s %zu %zu\\n", "${n}", offsetof(struct boot_params, ${n}), ` +
    `sizeof(((struct boot_params *)0)->${n}));`
  );
  const src = `#include <stddef.h>
#include <stdio.h>
#include <asm/bootparam.h>
int main(void) {
  printf("sizeof %zu 0\\n", sizeof(struct boot_params));
${lines.join("\n")}
  return 0;
}
`;
  Deno.writeTextFileSync(`${dir}/offsets.c`, src);
  try {
    const cc = new Deno.Command("gcc", {
      args: ["-o", `${dir}/offsets`, `${dir}/offsets.c`],
      stderr: "piped",
    }).outputSync();
    if (!cc.success) {
      console.log(`cannot compile against asm/bootparam.h, skipping: ${new TextDecoder().decode(cc.stderr)}`);
      return null;
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const run = new Deno.Command(`${dir}/offsets`).outputSync();
  const table = new Map<string, [number, number]>();
  for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
    const [name, offset, size] = line.split(" ");
    table.set(name!, [Number(offset), Number(size)]);
  }
  return table;
}

Deno.test("bootparam: the table matches C offsetof/sizeof from asm/bootparam.h", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const c = cOffsets(dir);
    if (c === null) {
      console.log("gcc or kernel headers missing: skipping the C layout check");
      return;
    }
    equal(c.get("sizeof")?.[0], BOOT_PARAMS.size);
    for (const [name, f] of Object.entries(BOOT_PARAMS.fields)) {
      deepEqual(c.get(name), [f.offset, f.size], name);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
