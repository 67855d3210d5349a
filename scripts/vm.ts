/*T:060 `deno task vm -- <command...>` runs one command inside the test VM
 * (scripts/vm/run.ts): a QEMU-emulated machine with a real nested /dev/kvm,
 * whose root is this host's own filesystem and whose working directory is
 * this one. It prints the command's output as it comes and exits with the
 * command's status; when the VM itself fails (timeout, panic, QEMU) it says
 * so in one line and exits 124; stopped by SIGINT, SIGTERM or SIGHUP it
 * ends the VM first and exits 130, 143 or 129. Options: `--timeout=<seconds>` (default
 * 1800) and `--share=<path>` (repeatable) for more read-write paths. :*/

import { parseArgs } from "node:util";
import { runInVm } from "./vm/run.ts";

const SIGNAL_NUMBER = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    timeout: { type: "string", default: "1800" },
    share: { type: "string", multiple: true, default: [] },
    help: { type: "boolean", short: "h", default: false },
  },
  allowPositionals: true,
});
if (values.help || positionals.length === 0) {
  console.error("usage: deno task vm [--timeout=<seconds>] [--share=<path>]... -- <command> [args...]");
  Deno.exit(values.help ? 0 : 2);
}
const seconds = Number(values.timeout);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error(`vm: --timeout wants a positive number of seconds, not ${JSON.stringify(values.timeout)}`);
  Deno.exit(2);
}
try {
  const cwd = Deno.cwd();
  const r = await runInVm(positionals, {
    cwd,
    shares: [cwd, ...values.share],
    timeoutMs: seconds * 1000,
    log: (l) => console.error(`vm: ${l}`),
  });
  if (r.code === undefined) {
    console.error(r.problem);
    Deno.exit(r.stoppedBy ? 128 + SIGNAL_NUMBER[r.stoppedBy as keyof typeof SIGNAL_NUMBER] : 124);
  }
  console.error(`vm: exit ${r.code} after ${r.seconds.toFixed(1)} s`);
  Deno.exit(r.code);
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  Deno.exit(1);
}
