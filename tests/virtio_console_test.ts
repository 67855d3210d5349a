// lguest-test-needs: kvm
/*T:630 The virtio console end to end on the real /dev/kvm. The launcher
 * always adds it as the last virtio device. The test guest prints a line
 * through its transmitq and, asked to (lguest.hvc-echo=N), reads N bytes
 * of stdin through its receiveq, two 16-byte buffers at a time, and sends
 * them back through the transmitq as hex. With console=hvc0 the keyboard
 * (here a pipe) belongs to hvc0; without it, to the serial port, as ever. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { guestReport, HAVE_KVM, runLauncher } from "./helpers/launcher.ts";
import { HAVE_PTY, onPty } from "./helpers/pty.ts";

if (!HAVE_KVM) console.log("virtio_console_test: /dev/kvm cannot be opened here; skipping");

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test({
  name: "virtio-console: guest output arrives through hvc0 and stdin reaches it in order, past one buffer",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const typed = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);
    const run = await runLauncher(["--no-acpi", "64", guest, "console=ttyS0", "console=hvc0", "lguest.hvc-echo=300"], {
      stdin: typed,
    });
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("VIRTIO-COUNT"), ["1"]);
    assert.deepEqual(r.get("HVC-INIT"), ["0"]);
    assert.deepEqual(r.get("HVC-OUT"), ["hello from hvc0"], "this line only ever travels through the transmitq");
    assert.deepEqual(r.get("HVC-TX-USED"), ["0"], "the device wrote nothing into the guest's output buffer");
    assert.deepEqual(r.get("HVC-IN"), [hex(typed)], "every byte, in order");
    const [buffers, overlong] = (r.get("HVC-RX-BUFFERS")?.[0] ?? "").split(" ").map(Number);
    assert.ok(buffers! >= Math.ceil(typed.length / 16), `input took ${buffers} buffers`);
    assert.equal(overlong, 0, "no used length larger than the buffer");
    assert.ok(run.stdout.includes("DONE\n"));
  },
});

Deno.test({
  name: "virtio-console: without console=hvc0 stdin goes to the serial port, not to hvc0",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "64", guest, "console=hvc0", "console=ttyS0", "lguest.echo"], {
      stdin: new TextEncoder().encode("typed at ttyS0 q"),
    });
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("HVC-OUT"), ["hello from hvc0"], "hvc0 still prints");
    assert.match(run.stdout, /ECHO-READY\n[^]*typed at ttyS0 [^]*ECHO-END\n/);
  },
});

Deno.test({
  name: "virtio-console: input for hvc0 waits while the guest lends no buffer, and the guest still ends",
  ignore: !HAVE_KVM,
  async fn() {
    const guest = await buildTestGuest();
    const run = await runLauncher(["--no-acpi", "64", guest, "console=hvc0"], {
      stdin: new TextEncoder().encode("unread"),
    });
    assert.equal(run.code, 0, run.stderr);
    const r = guestReport(run.stdout);
    assert.deepEqual(r.get("HVC-OUT"), ["hello from hvc0"]);
    assert.equal(r.get("HVC-IN"), undefined);
    assert.ok(run.stdout.includes("DONE\n"));
  },
});

/*T:631 The same on a real terminal (a pseudo-terminal that Python's pty
 * module drives): in raw mode, keys typed go to hvc0 when console=hvc0;
 * three Ctrl-C still stop the guest (exit 2) while the keyboard belongs to
 * hvc0, and the terminal comes back as it was either way. :*/
if (HAVE_KVM && !HAVE_PTY) console.log("virtio_console_test: no python3 with pty/termios; skipping the terminal cases");

Deno.test({
  name: "virtio-console: on a terminal, keys typed reach hvc0 and three Ctrl-C still stop the guest",
  ignore: !HAVE_KVM || !HAVE_PTY,
  sanitizeResources: false,
  async fn() {
    const guest = await buildTestGuest();
    const echo = await onPty([{ expect: "HVC-OUT" }, { send: "typed!" }, { expect: "HVC-IN" }], [
      "--no-acpi",
      "64",
      guest,
      "console=hvc0",
      "lguest.hvc-echo=6",
    ]);
    assert.equal(echo.code, 0, echo.output);
    assert.match(echo.output, new RegExp(`HVC-IN: ${hex(new TextEncoder().encode("typed!"))}`));
    assert.equal(echo.restored, true);
    const stop = await onPty([{ expect: "HVC-OUT" }, { send: "\x03" }, { send: "\x03" }, { send: "\x03" }], [
      "--no-acpi",
      "64",
      guest,
      "console=hvc0",
      "lguest.hvc-echo=100",
    ]);
    assert.equal(stop.code, 2, stop.output);
    assert.equal(stop.restored, true);
  },
});
