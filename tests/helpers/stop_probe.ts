/*T:226 Two ways of stopping a guest that outlive the stop, so that
 * tests/stop_signal_test.ts can look at the process afterwards while it
 * still runs (the launcher itself exits at once, and a process that has
 * exited listens on nothing, whatever it did on its way out).
 *
 *   stop_probe.ts cli <launcher args...>   runs cli.ts's main() exactly as
 *       the launcher does, prints `MAIN-RETURNED <status>`, lives 2 s more
 *       and exits with that status;
 *   stop_probe.ts machine <kernel>         builds a Machine through mod.ts
 *       with the test guest in echo mode, calls stop() when a line arrives
 *       on stdin, prints `STOPPED <result>` and lives 2 s more. :*/

import { main } from "../../cli.ts";
import { Machine } from "../../mod.ts";
import { toJson } from "./json.ts";

const LINGER_MS = 2000;
const linger = () => new Promise((r) => setTimeout(r, LINGER_MS));
const [mode, ...rest] = Deno.args;

if (mode === "cli") {
  const status = await main(rest);
  console.log(`MAIN-RETURNED ${status}`);
  await linger();
  Deno.exit(status);
} else if (mode === "machine" && rest[0] !== undefined) {
  const machine = Machine.create({
    memoryMiB: 64,
    kernel: rest[0],
    cmdline: "lguest.echo",
    consoleInputFd: null,
    acpi: false,
  });
  const running = machine.run();
  const reader = Deno.stdin.readable.getReader();
  await reader.read();
  reader.releaseLock();
  machine.stop();
  const result = await running;
  console.log(`STOPPED ${toJson(result)}`);
  await linger();
  await machine.close();
} else {
  console.error("usage: stop_probe.ts cli <args...> | machine <kernel>");
  Deno.exit(1);
}
