/*T:738 The launch benchmark's profile, taken in the run: this script is
 * started under the probe like the launcher, boots the same guest through
 * the same Machine API with the same virtio console the launcher always
 * adds, and reports when each phase ended, in ms since the probe forked it
 * ($LAUNCH_PROBE_FORK_MS): the Deno runtime up (the isolate's time origin),
 * the module graph loaded (this file's body starts), the VM built (which
 * includes spawning the vCPU Worker), the guest done and the VM closed; the
 * probe adds the process's exit. With --bare it boots the guest without
 * the console, which tells what the console's bring-up costs the guest.
 * With --worker it instead times a bare Worker that loads the vCPU
 * Worker's modules and says hello: how long `new Worker` blocks the thread
 * that calls it (the new isolate is built meanwhile), and how long until
 * the Worker's modules have run. :*/

import { Machine } from "../../lib/machine.ts";
import { O, open } from "../../lib/sys/mod.ts";
import { ConsoleDevice } from "../../lib/virtio/console/device.ts";

const fork = Number(Deno.env.get("LAUNCH_PROBE_FORK_MS") ?? performance.timeOrigin);
const at = () => performance.timeOrigin + performance.now() - fork;
const loaded = at();

if (Deno.args[0] === "--worker") {
  const w0 = performance.now();
  const worker = new Worker(new URL("./worker_load.ts", import.meta.url).href, { type: "module" });
  const constructed = performance.now();
  await new Promise<void>((resolve) => worker.onmessage = () => resolve());
  console.log(JSON.stringify({ workerCtorMs: constructed - w0, workerStartMs: performance.now() - w0 }));
  worker.terminate();
} else {
  const bare = Deno.args[0] === "--bare";
  const guest = Deno.args[bare ? 1 : 0];
  if (guest === undefined) throw new Error("usage: phases.ts [--bare] <guest.elf> | --worker");
  const devnull = open("/dev/null", O.WRONLY);
  const machine = Machine.create({
    memoryMiB: 128,
    kernel: guest,
    acpi: false,
    consoleOutputFd: devnull,
    consoleInputFd: null,
    devices: bare ? [] : [new ConsoleDevice({ outputFd: devnull })],
  });
  const created = at();
  const result = await machine.run();
  const ran = at();
  await machine.close();
  const closed = at();
  console.log(JSON.stringify({
    clean: result.clean,
    runtimeMs: performance.timeOrigin - fork,
    loadedMs: loaded,
    createdMs: created,
    ranMs: ran,
    closedMs: closed,
  }));
}
