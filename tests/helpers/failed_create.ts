/*T:222 A failed Machine.create() must give back everything, including
 * the devices it was handed, or a device's thread keeps the process alive
 * for ever. This program opens the devices named on its command line,
 * calls Machine.create() with a /dev/kvm that does not exist, and then
 * simply returns, without Deno.exit: the test watches whether the process
 * ends by itself. It does it twice; the first round also pays for what
 * Deno sets up once per process (a signal listener, a Worker's runtime).
 * Around each round it prints the open descriptors from /proc/self/fd. A
 * Worker's runtime gives its own descriptors back a moment after the Worker
 * is ended, on its own thread, so the listing after a round is taken once
 * it matches the one before, or after 1.5 s, whichever comes first:
 *
 *   failed_create.ts <kernel> <disk file> <kind>...   kind: block net console rng
 *
 *   ROUND <n> BEFORE <fd list>
 *   ROUND <n> ERROR <the error create() threw>
 *   ROUND <n> AFTER <fd list>
 *   DONE-AT <Date.now() after the last round>                            :*/

import { BlockDevice, ConsoleDevice, Machine, NetDevice, RngDevice, type VirtioDevice } from "../../mod.ts";
import { fdTargets, openFds } from "./fd_census.ts";

/** The open descriptors once they point at what `before` did, or as they are after `ms`. */
async function settledFds(before: string, ms: number): Promise<string> {
  const deadline = performance.now() + ms;
  let now = openFds();
  while (fdTargets(now) !== fdTargets(before) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    now = openFds();
  }
  return now;
}

function open(kind: string, disk: string): VirtioDevice {
  switch (kind) {
    case "block":
      return BlockDevice.open(disk);
    case "net":
      return NetDevice.open("10.213.0.1");
    case "console":
      return new ConsoleDevice({ outputFd: 1 });
    case "rng":
      return new RngDevice();
  }
  throw new Error(`unknown device kind ${kind}`);
}

if (import.meta.main) await main();

async function main(): Promise<void> {
  const [kernel, disk, ...kinds] = Deno.args;
  if (kernel === undefined || disk === undefined) {
    console.error("usage: failed_create.ts <kernel> <disk file> <kind>...");
    Deno.exit(2);
  }
  for (const round of [1, 2]) {
    const before = openFds();
    console.log(`ROUND ${round} BEFORE ${before}`);
    try {
      Machine.create({
        memoryMiB: 64,
        kernel,
        kvmPath: "/nonexistent/kvm",
        // "script-console" is no device: it asks for the scripted console, whose socket pair must be closed too.
        console: kinds.includes("script-console") ? "script" : "stdio",
        devices: kinds.filter((k) => k !== "script-console").map((k) => open(k, disk)),
      });
      console.log(`ROUND ${round} ERROR none: create() succeeded`);
    } catch (e) {
      console.log(`ROUND ${round} ERROR ${e instanceof Error ? e.message : String(e)}`);
    }
    console.log(`ROUND ${round} AFTER ${await settledFds(before, 1500)}`);
  }
  console.log(`DONE-AT ${Date.now()}`);
}
