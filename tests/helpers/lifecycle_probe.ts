/*T:224 stop() and close() in every state a Machine can be in, each in a
 * process of its own that never calls Deno.exit, so tests/machine_lifecycle_test.ts
 * can see that it ends by itself once the machine is closed. The guest is
 * the test guest in echo mode (it sleeps in `hlt`, so only a kick ends
 * KVM_RUN), with a disk (the device with threads of its own) and an
 * entropy device. Where a scenario needs the guest running, the probe waits
 * for a line on stdin, which the test sends once the guest said
 * ECHO-READY. Before building anything the probe builds and closes one
 * machine, so that Deno's once-per-process set-up is not taken for a leak:
 *
 *   lifecycle_probe.ts <scenario> <kernel> <disk file>
 *     scenario: before-run during-run after-run failed-run await-using
 *
 *   FDS-BEFORE <targets>   FDS-AFTER <targets>   (what the open fds point at, sorted;
 *   AFTER is taken once nothing is open that was not open BEFORE, or after 3 s)
 *   STEP <what happened>   DONE-AT <Date.now()>                          :*/

import { BlockDevice, Machine, type MachineConfig, RngDevice } from "../../mod.ts";
import { fdTargets, leftOpen } from "./failed_create.ts";

const [scenario, kernel, disk] = Deno.args;
if (scenario === undefined || kernel === undefined || disk === undefined) {
  console.error("usage: lifecycle_probe.ts <scenario> <kernel> <disk file>");
  Deno.exit(2);
}

function openFds(): string {
  const fds: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.push(`${e.name}=${Deno.readLinkSync(`/proc/self/fd/${e.name}`)}`);
    } catch {
      // readDirSync's own descriptor, gone by now.
    }
  }
  return fdTargets(fds.join(" "));
}

async function settledFds(before: string, ms: number): Promise<string> {
  const deadline = performance.now() + ms;
  let now = openFds();
  while (leftOpen(before, now).length > 0 && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    now = openFds();
  }
  return now;
}

const step = (what: string) => console.log(`STEP ${what}`);
const config = (): MachineConfig => ({
  memoryMiB: 64,
  kernel,
  cmdline: "lguest.echo",
  consoleInputFd: null,
  devices: [BlockDevice.open(disk), new RngDevice()],
});
async function nextLine(): Promise<void> {
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  reader.releaseLock();
}

await Machine.create({ memoryMiB: 64, kernel, consoleInputFd: null }).close();
const before = openFds();
console.log(`FDS-BEFORE ${before}`);

if (scenario === "before-run") {
  const m = Machine.create(config());
  m.stop();
  const first = m.close();
  step(`close-same ${first === m.close()}`);
  await first;
  await m.close();
  m.stop();
  step("stopped after close");
  await m.run().then(() => step("run after close resolved"), (e) => step(`run after close rejected: ${e.message}`));
} else if (scenario === "during-run") {
  const m = Machine.create(config());
  const running = m.run();
  await nextLine();
  await m.close();
  step(`run ended ${JSON.stringify(await running)}`);
  m.stop();
  await m.close();
  step("stopped after close");
} else if (scenario === "after-run") {
  const m = Machine.create(config());
  const running = m.run();
  await nextLine();
  m.stop();
  step(`run ended ${JSON.stringify(await running)}`);
  m.stop();
  await m.close();
  await m.close();
  m.stop();
  step("stopped after close");
} else if (scenario === "failed-run") {
  // A console input descriptor that does not exist: run() fails while wiring its event loop.
  const m = Machine.create({ ...config(), consoleInputFd: 1_000_000 });
  await m.run().then(() => step("run resolved"), (e) => step(`run failed: ${e.message}`));
  m.stop();
  await m.close();
  m.stop();
  await m.close();
  step("stopped after close");
} else if (scenario === "await-using") {
  {
    await using m = Machine.create(config());
    const running = m.run();
    await nextLine();
    m.stop();
    step(`run ended ${JSON.stringify(await running)}`);
  }
  step("disposed");
} else {
  console.error(`unknown scenario ${scenario}`);
  Deno.exit(2);
}
console.log(`FDS-AFTER ${await settledFds(before, 3000)}`);
console.log(`DONE-AT ${Date.now()}`);
