/*T:592 The library's side of the flood test (T:591): a program that
 * builds a Machine through mod.ts with an entropy device, a disk and a
 * console whose output goes nowhere, boots the test guest in flood mode,
 * and calls stop() when a line arrives on its stdin. It prints the guest's
 * serial console on stdout (the FLOOD lines), then `STOPPED <kind>` once
 * run() has returned, closes the machine and exits. If the main loop were
 * starved by the flood, the line on stdin would never be read: that is
 * the point. Usage: flood_probe.ts <kernel> <disk>. :*/

import { BlockDevice, ConsoleDevice, Machine, RngDevice } from "../../mod.ts";
import { close, O, open } from "../../lib/sys/calls.ts";
import { toJson } from "./json.ts";

const [kernel, disk] = Deno.args;
if (kernel === undefined || disk === undefined) {
  console.error("usage: flood_probe.ts <kernel> <disk>");
  Deno.exit(1);
}
const sink = open("/dev/null", O.WRONLY);
const devices = [new RngDevice(), BlockDevice.open(disk), new ConsoleDevice({ outputFd: sink })];
await using machine = Machine.create({
  memoryMiB: 64,
  kernel,
  cmdline: "flood",
  consoleInputFd: null,
  acpi: false,
  devices,
});
const running = machine.run();
const reader = Deno.stdin.readable.getReader();
await reader.read();
reader.releaseLock();
machine.stop();
const result = await running;
console.log(`STOPPED ${toJson(result)}`);
close(sink);
