/*T:110 The launcher talks to the kernel through C structs it never sees as
 * C: it pokes bytes at offsets. Those offsets, the struct sizes and the ioctl
 * numbers built from them are written down once, as data, in structs.ts,
 * ioctl.ts and bootparam.ts (plus a few private constants in lib/sys). A
 * wrong number there does not fail loudly; it makes KVM read garbage or
 * reject an ioctl with EINVAL. So this test asks the one authority that
 * cannot be wrong about them, the system headers: it turns each table into a
 * C program of offsetof/sizeof/macro printfs, compiles it with gcc, and holds
 * every declared number against what C says, reporting all mismatches at
 * once. Without gcc the test is skipped, loudly. :*/

import assert from "node:assert/strict";
import * as S from "../../lib/kvm/structs.ts";
import { KVM, KVM_CAP, KVM_CONST, KVM_EXIT, KVM_SYSTEM_EVENT, MP_STATE } from "../../lib/kvm/ioctl.ts";
import { BOOT_PARAMS } from "../../lib/boot/bootparam.ts";
import { EPOLL } from "../../lib/sys/epoll.ts";
import { type Check, hasGcc, layoutChecks, macroChecks, runProbe } from "./layout_probe.ts";

const gcc = await hasGcc();
if (!gcc) {
  console.warn(
    "layout_test: gcc is not on PATH, so struct layouts and ioctl numbers cannot be checked " +
      "against the C headers; these tests are skipped. Install gcc (and linux-libc-dev) to run them.",
  );
}

/** KVM_CONST keys that deliberately have no KVM_ macro in <linux/kvm.h>. */
const NO_C_MACRO = ["MAX_CPUID_ENTRIES"];

function literal(name: string, expected: number, expr: string): Check {
  return { name: `${name} (${expr})`, expected, expr };
}

async function expectAllMatch(what: string, includes: readonly string[], checks: readonly Check[]): Promise<void> {
  assert.ok(checks.length > 0, `no ${what} checks were generated`);
  const { problems, compared, skipped } = await runProbe(includes, checks);
  assert.deepEqual(
    problems,
    [],
    `${problems.length} of ${checks.length} ${what} checks do not match the C headers:\n  ${problems.join("\n  ")}`,
  );
  assert.equal(compared + skipped.length, checks.length, `${what}: every check was either compared or allow-listed`);
}

Deno.test("layout: ALL_LAYOUTS lists every struct layout structs.ts exports", () => {
  const exported = Object.entries(S).filter(([, v]) =>
    typeof v === "object" && v !== null && "c" in v && "fields" in v
  );
  assert.ok(exported.length > 0);
  for (const [name, layout] of exported) {
    assert.ok(S.ALL_LAYOUTS.includes(layout as S.Layout), `${name} (${(layout as S.Layout).c}) is not in ALL_LAYOUTS`);
  }
  const names = S.ALL_LAYOUTS.map((l) => l.c);
  assert.equal(new Set(names).size, names.length, `ALL_LAYOUTS has a duplicate: ${names.join(", ")}`);
});

Deno.test({
  name: "layout: kvm structs match <linux/kvm.h>",
  ignore: !gcc,
  async fn() {
    await expectAllMatch("kvm struct", ["linux/kvm.h"], S.ALL_LAYOUTS.flatMap(layoutChecks));
  },
});

Deno.test({
  name: "layout: kvm ioctl numbers and constants match <linux/kvm.h>",
  ignore: !gcc,
  async fn() {
    await expectAllMatch("kvm constant", ["linux/kvm.h"], [
      ...macroChecks("KVM_", KVM),
      ...macroChecks("KVM_CAP_", KVM_CAP),
      ...macroChecks("KVM_EXIT_", KVM_EXIT),
      ...macroChecks("KVM_SYSTEM_EVENT_", KVM_SYSTEM_EVENT),
      ...macroChecks("KVM_MP_STATE_", MP_STATE),
      ...macroChecks("KVM_", KVM_CONST, NO_C_MACRO),
    ]);
  },
});

Deno.test({
  name: "layout: struct boot_params matches <asm/bootparam.h>",
  ignore: !gcc,
  async fn() {
    const layout: S.Layout = { c: "struct boot_params", size: BOOT_PARAMS.size, fields: BOOT_PARAMS.fields };
    await expectAllMatch("boot_params", ["asm/bootparam.h"], layoutChecks(layout));
  },
});

Deno.test({
  name: "layout: libc termios, epoll_event and iovec assumptions match glibc",
  ignore: !gcc,
  async fn() {
    await expectAllMatch("libc", ["termios.h", "sys/epoll.h", "sys/uio.h"], [
      // lib/sys/termios.ts (private constants)
      literal("termios.ts TERMIOS_SIZE", 60, "sizeof(struct termios)"),
      literal("termios.ts C_LFLAG", 12, "offsetof(struct termios, c_lflag)"),
      literal("termios.ts c_lflag width", 4, "sizeof(((struct termios *)0)->c_lflag)"),
      literal("termios.ts ISIG", 0x1, "ISIG"),
      literal("termios.ts ICANON", 0x2, "ICANON"),
      literal("termios.ts ECHO", 0x8, "ECHO"),
      literal("termios.ts IEXTEN", 0x8000, "IEXTEN"),
      literal("termios.ts TCSANOW", 0, "TCSANOW"),
      // lib/sys/epoll.ts (EVENT_SIZE and the packed layout are private; EPOLL is exported)
      literal("epoll.ts EVENT_SIZE", 12, "sizeof(struct epoll_event)"),
      literal("epoll.ts events offset", 0, "offsetof(struct epoll_event, events)"),
      literal("epoll.ts events width", 4, "sizeof(((struct epoll_event *)0)->events)"),
      literal("epoll.ts data offset", 4, "offsetof(struct epoll_event, data)"),
      literal("epoll.ts data width", 8, "sizeof(((struct epoll_event *)0)->data)"),
      literal("epoll.ts EPOLL_CTL_ADD", 1, "EPOLL_CTL_ADD"),
      literal("epoll.ts EPOLL_CTL_DEL", 2, "EPOLL_CTL_DEL"),
      literal("epoll.ts EPOLL_CTL_MOD", 3, "EPOLL_CTL_MOD"),
      literal("epoll.ts EPOLL_CLOEXEC", 0o2000000, "EPOLL_CLOEXEC"),
      // The events word is a u32, and EPOLL.ET is written 1 << 31 (negative in JS): compare 32 bits.
      ...macroChecks("EPOLL", EPOLL, [], 32),
      // lib/sys/iovec.ts: [base, len] pairs of u64
      literal("iovec.ts entry size", 16, "sizeof(struct iovec)"),
      literal("iovec.ts iov_base offset", 0, "offsetof(struct iovec, iov_base)"),
      literal("iovec.ts iov_base width", 8, "sizeof(((struct iovec *)0)->iov_base)"),
      literal("iovec.ts iov_len offset", 8, "offsetof(struct iovec, iov_len)"),
      literal("iovec.ts iov_len width", 8, "sizeof(((struct iovec *)0)->iov_len)"),
    ]);
  },
});
