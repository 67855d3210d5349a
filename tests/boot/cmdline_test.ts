import { equal } from "node:assert/strict";
import { joinCmdline, writeCmdline } from "../../lib/boot/cmdline.ts";
import { CMDLINE_ADDR } from "../../lib/boot/layout.ts";
import { expectBootError, MiB, withMemory } from "./images.ts";

Deno.test("cmdline: joined with single spaces, no trailing space", () => {
  equal(joinCmdline(["console=hvc0", "root=/dev/vda", "ro"]), "console=hvc0 root=/dev/vda ro");
  equal(joinCmdline([]), "");
  equal(joinCmdline(["one"]), "one");
});

Deno.test("cmdline: written NUL-terminated at CMDLINE_ADDR", () => {
  withMemory(4 * MiB, (mem) => {
    mem.fill(CMDLINE_ADDR, 64, 0xaa);
    const at = writeCmdline(mem, "quiet é", 2047);
    equal(at.addr, CMDLINE_ADDR);
    equal(at.length, 8);
    equal(new TextDecoder().decode(mem.slice(CMDLINE_ADDR, 8)), "quiet é");
    equal(mem.readU8(CMDLINE_ADDR + 8), 0);
  });
});

Deno.test("cmdline: exactly cmdline_size characters fit, one more does not", () => {
  withMemory(4 * MiB, (mem) => {
    equal(writeCmdline(mem, "x".repeat(2047), 2047).length, 2047);
    expectBootError(
      () => writeCmdline(mem, "x".repeat(2048), 2047),
      /command line is 2048 bytes; the kernel accepts at most 2047/,
    );
    expectBootError(
      () => writeCmdline(mem, "x".repeat(70000), 0xffffffff),
      /accepts at most 65535/,
    );
  });
});

Deno.test("cmdline: NUL bytes are refused", () => {
  withMemory(4 * MiB, (mem) => {
    expectBootError(() => writeCmdline(mem, "a\0b", 2047), /contains a NUL byte/);
  });
});
