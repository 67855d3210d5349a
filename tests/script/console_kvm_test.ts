// lguest-test-needs: kvm
/*T:767 The scripted console (L:441) on a real guest. The test guest in
 * echo mode (lguest.echo) says ECHO-READY, then sleeps in hlt until the
 * UART's receive interrupt and echoes what arrives, until 'q'; then it
 * prints DONE and resets through the keyboard controller. So a script
 * that waits for the prompt, types, and waits for its own words to come
 * back has gone through the whole path: our socket, the keyboard wiring,
 * the UART's receive ring and interrupt, the guest, the UART's output on
 * the vCPU thread, the loop's reader. The kernel is given as bytes. The
 * run's result is typed: a reset, with the rip as a bigint. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "../guest/build.ts";
import { HAVE_KVM } from "../helpers/launcher.ts";
import { leftOpen, openFds } from "../helpers/fd_census.ts";
import { Machine } from "../../mod.ts";

async function settledFds(before: string): Promise<string[]> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const extra = leftOpen(before, openFds());
    if (extra.length === 0 || Date.now() > deadline) return extra;
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "script console: wait for the echo guest's prompt, type, read it back, and the run ends in a typed reset",
  ignore: !HAVE_KVM,
  async fn() {
    const kernel = await Deno.readFile(await buildTestGuest());
    // The first machine in a process leaves the runtime's own descriptors behind (its first Worker's
    // event loop); count from after one.
    await Machine.create({ memoryMiB: 64, kernel, acpi: false, console: "script" }).close();
    const before = openFds();
    {
      await using machine = Machine.create({
        memoryMiB: 64,
        kernel,
        cmdline: "lguest.echo",
        acpi: false,
        console: "script",
      });
      const chunks: Uint8Array[] = [];
      const reading = (async () => {
        for await (const c of machine.console.readable) chunks.push(c);
      })();
      const run = machine.run();
      const ready = await machine.console.waitFor("ECHO-READY\n", { timeoutMs: 60_000 });
      assert.match(ready.before, /^lguest test guest\nMODE: /, "the guest's report came before the prompt");
      await machine.console.write("hello, guest!");
      // The echo comes back a byte at a time: a pattern must end where the text does, or it matches a prefix.
      const echoed = await machine.console.waitFor(/hello, (\w+)!/, { timeoutMs: 30_000 });
      assert.equal(echoed.match[1], "guest");
      await machine.console.write("q");
      await machine.console.waitFor("ECHO-END", { timeoutMs: 30_000 });
      const result = await run;
      assert.equal(result.end, "reset", result.reason);
      assert.equal(result.clean, true);
      assert.equal(typeof result.rip, "bigint");
      // DONE came after ECHO-END, just before the reset: read out when the run ended.
      assert.equal((await machine.console.waitFor("DONE\n", { timeoutMs: 1 })).before.trim(), "");
      await assert.rejects(
        machine.console.waitFor("more"),
        /"more" never appeared: the run ended \(reset requested by i8042\)/,
      );
      await reading;
      const all = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
      assert.match(all, /ECHO-READY\nhello, guest!\nECHO-END\nDONE\n$/);
    }
    assert.deepEqual(await settledFds(before), [], "the console's sockets and everything else are closed");
  },
});

Deno.test({
  name: "script console: a machine with a stdio console has none to script",
  ignore: !HAVE_KVM,
  async fn() {
    await using machine = Machine.create({ memoryMiB: 64, kernel: await buildTestGuest(), acpi: false });
    assert.throws(() => machine.console, /console is stdio; create it with console: "script"/);
  },
});
