/*T:224 One row of tests/machine_lifecycle_test.ts's table: bring a
 * Machine to a state, make one call in it, then close it, in a process of
 * its own that never calls Deno.exit, so that the test can see it end by
 * itself. The guest is the test guest in echo mode (it sleeps in `hlt`, so
 * only a kick ends KVM_RUN), with a disk (the device with threads of its
 * own) and an entropy device. Where the guest must be running, the probe
 * waits for a line on stdin, which the test sends once the guest said
 * ECHO-READY. Before building anything the probe builds and closes one
 * machine, so that Deno's once-per-process set-up is not taken for a leak:
 *
 *   lifecycle_probe.ts <state> <call> <kernel> <disk file>
 *     state: before-run during-run after-run twice after-failed-run after-close await-using
 *     call:  stop close (await-using: dispose)
 *
 *   FDS-BEFORE <targets>   FDS-AFTER <targets>   (what the open fds point at;
 *   AFTER is taken once nothing is open that was not open BEFORE, or after 3 s)
 *   STEP <what happened, in the order it happened>   DONE-AT <Date.now()> :*/

import { BlockDevice, Machine, type MachineConfig, RngDevice } from "../../mod.ts";
import { openFds, settledFds } from "./fd_census.ts";
import { toJson } from "./json.ts";

const [state, call, kernel, disk] = Deno.args;
if (state === undefined || call === undefined || kernel === undefined || disk === undefined) {
  console.error("usage: lifecycle_probe.ts <state> <call> <kernel> <disk file>");
  Deno.exit(2);
}

const step = (what: string) => console.log(`STEP ${what}`);
const config = (): MachineConfig => ({
  memoryMiB: 64,
  kernel,
  cmdline: "lguest.echo",
  consoleInputFd: null,
  acpi: false,
  devices: [BlockDevice.open(disk), new RngDevice()],
});

/** Resolves when the test says the guest is asleep in hlt. */
async function guestAsleep(): Promise<void> {
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  reader.releaseLock();
}

/** run(), with its ending reported as a STEP the moment it settles. */
function run(m: Machine): Promise<void> {
  return m.run().then(
    (r) => step(`run ended ${toJson(r)}`),
    (e) => step(`run failed: ${e instanceof Error ? e.message : String(e)}`),
  );
}

/** The call under test. */
async function act(m: Machine): Promise<void> {
  if (call === "stop") {
    m.stop();
    step("stop returned");
  } else if (call === "close") {
    const p = m.close();
    step(`close same ${p === m.close()}`);
    await p;
    step("close resolved");
  } else {
    throw new Error(`unknown call ${call}`);
  }
}

/** Each state: get there, act(), and leave the machine for the final close(). */
const STATES: Record<string, () => Promise<Machine | undefined>> = {
  async "before-run"() {
    const m = Machine.create(config());
    await act(m);
    const ran = run(m);
    if (call === "stop") {
      // stop() before run() does nothing: the guest boots, and a second stop() ends it.
      await guestAsleep();
      m.stop();
    }
    await ran;
    return m;
  },
  async "during-run"() {
    const m = Machine.create(config());
    const ran = run(m);
    await guestAsleep();
    await act(m);
    await ran;
    return m;
  },
  async "after-run"() {
    const m = Machine.create(config());
    const ran = run(m);
    await guestAsleep();
    m.stop();
    await ran;
    await act(m);
    return m;
  },
  async twice() {
    const m = Machine.create(config());
    const ran = run(m);
    await guestAsleep();
    await Promise.all([act(m), act(m)]);
    await ran;
    return m;
  },
  async "after-failed-run"() {
    // A console input descriptor that does not exist: run() fails while wiring its event loop.
    const m = Machine.create({ ...config(), consoleInputFd: 1_000_000 });
    await run(m);
    await act(m);
    return m;
  },
  async "after-close"() {
    const m = Machine.create(config());
    const ran = run(m);
    await guestAsleep();
    await m.close();
    await ran;
    step("closed");
    await act(m);
    return m;
  },
  async "await-using"() {
    {
      await using m = Machine.create(config());
      const ran = run(m);
      await guestAsleep();
      m.stop();
      await ran;
    }
    step("disposed");
    return undefined;
  },
};

const scenario = STATES[state];
if (scenario === undefined) {
  console.error(`unknown state ${state}`);
  Deno.exit(2);
}

await Machine.create({ memoryMiB: 64, kernel, consoleInputFd: null, acpi: false }).close();
const before = openFds();
console.log(`FDS-BEFORE ${before}`);
const m = await scenario();
await m?.close();
console.log(`FDS-AFTER ${await settledFds(before, 3000)}`);
console.log(`DONE-AT ${Date.now()}`);
