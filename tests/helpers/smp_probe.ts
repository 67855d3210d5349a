/*T:702 A machine with several vCPUs, in a process of its own that never
 * calls Deno.exit, so that the test can see it end by itself once every
 * vCPU's Worker is gone. The test guest runs on vCPU 0 and never starts the
 * others, so they sit in KVM_RUN waiting for INIT/SIPI the whole time, the
 * hardest case for a stop: only the kick brings them out. Either the guest
 * resets itself (`reset`), or it sleeps in hlt (echo mode) until the test
 * sends a line on stdin and the probe calls stop() (`stop`). Verbose, so
 * that each vCPU thread's first line is on stderr. One machine is built
 * and closed first, so that Deno's once-per-process set-up is not taken
 * for a leak:
 *
 *   smp_probe.ts <cpus> <reset|stop> <kernel>
 *
 *   RUN <run()'s result as JSON>   CLOSED   DONE-AT <Date.now()> :*/

import { Machine, type MachineConfig } from "../../mod.ts";
import { toJson } from "./json.ts";

const [cpus, how, kernel] = Deno.args;
if (cpus === undefined || (how !== "reset" && how !== "stop") || kernel === undefined) {
  console.error("usage: smp_probe.ts <cpus> <reset|stop> <kernel>");
  Deno.exit(2);
}

const config = (n: number): MachineConfig => ({
  memoryMiB: 32,
  kernel,
  cpus: n,
  cmdline: how === "stop" ? "lguest.echo" : "",
  consoleInputFd: null,
  acpi: false,
  verbose: n > 1,
});

await Machine.create(config(1)).close();
const m = Machine.create(config(Number(cpus)));
const ran = m.run();
if (how === "stop") {
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  reader.releaseLock();
  m.stop();
}
console.log(`RUN ${toJson(await ran)}`);
await m.close();
console.log("CLOSED");
console.log(`DONE-AT ${Date.now()}`);
