// lguest-test-needs: kvm
/*T:220 The console on a real terminal. A pseudo-terminal (Python's pty
 * module drives it) stands in for the user: the launcher must put it in raw
 * mode while the guest runs, deliver keystrokes to the guest, stop the guest
 * on three Ctrl-C within a second (exit 2), and on every way out (the guest
 * ending, Ctrl-C, SIGTERM, SIGHUP) leave the terminal exactly as it found it. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM } from "./helpers/launcher.ts";
import { HAVE_PTY, onPty } from "./helpers/pty.ts";

if (!HAVE_KVM || !HAVE_PTY) {
  console.log(`terminal_test: skipping (${!HAVE_KVM ? "no usable /dev/kvm" : "no python3 with pty/termios"})`);
}

const opts = { ignore: !HAVE_KVM || !HAVE_PTY, sanitizeResources: false };

Deno.test({
  name: "terminal: raw while the guest runs, keystrokes reach it, restored when it ends",
  ...opts,
  async fn() {
    const guest = await buildTestGuest();
    const r = await onPty(
      [{ expect: "ECHO-READY" }, { probe: true }, { send: "typed!" }, { expect: "typed!" }, { send: "q" }],
      ["--no-acpi", "64", guest, "lguest.echo"],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.raw, [true], "raw mode while running");
    assert.match(r.output, /ECHO-READY[\s\S]*typed![\s\S]*ECHO-END[\s\S]*DONE/);
    assert.equal(r.restored, true, "terminal settings restored");
  },
});

Deno.test({
  name: "terminal: three Ctrl-C within a second stop the guest with exit 2",
  ...opts,
  async fn() {
    const guest = await buildTestGuest();
    const r = await onPty(
      [{ expect: "ECHO-READY" }, { send: "\x03" }, { send: "\x03" }, { send: "\x03" }],
      ["--no-acpi", "64", guest, "lguest.echo"],
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /three Ctrl-C/);
    assert.equal(r.restored, true);
  },
});

Deno.test({
  name: "terminal: Ctrl-C with other keys between does not stop the guest",
  ...opts,
  async fn() {
    const guest = await buildTestGuest();
    const r = await onPty(
      [{ expect: "ECHO-READY" }, { send: "\x03" }, { send: "\x03" }, { send: "x" }, { send: "\x03" }, { send: "q" }],
      ["--no-acpi", "64", guest, "lguest.echo"],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.restored, true);
  },
});

for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129], ["SIGINT", 130]] as const) {
  Deno.test({
    name: `terminal: ${signal} stops the guest and restores the terminal`,
    ...opts,
    async fn() {
      const guest = await buildTestGuest();
      const r = await onPty([{ expect: "ECHO-READY" }, { probe: true }, { signal }], [
        "--no-acpi",
        "64",
        guest,
        "lguest.echo",
      ]);
      assert.deepEqual(r.raw, [true]);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.restored, true);
    },
  });
}
