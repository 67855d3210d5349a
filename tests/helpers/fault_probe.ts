/*T:228 Two faults a running Machine must survive, each in a process of
 * its own that never calls Deno.exit (tests/machine_faults_test.ts):
 *
 *   fault_probe.ts stuck <stop|close> <kernel> <disk file>
 *       The guest's serial output goes to a socket whose buffer is full and
 *       that nobody reads, so the vCPU thread blocks in write(2) on the
 *       guest's first byte, where the kick cannot reach it (L:415). Once it
 *       is seen blocked there, stop() or close() is called and timed. Then
 *       it checks that guest RAM and kvm_run are still mapped, after close()
 *       too, drains the socket (the thread's write returns and its ended
 *       Worker goes), and lets the process end.
 *   fault_probe.ts cli-stuck <kernel>
 *       The same, through the launcher: fd 1 is the full socket, and once
 *       the vCPU is blocked the process sends itself SIGTERM. It reports on
 *       stderr (stdout is the blocked socket) and exits with main()'s status.
 *   fault_probe.ts loop-fails <kernel> <disk file>
 *       Once the guest runs (the test says so on stdin), the run's epoll fd
 *       is replaced by an eventfd behind the loop's back and the thread
 *       waiting on it kicked, so the loop's next wait fails. run() must
 *       reject with one line, and close() must give everything back.
 *
 *   STEP <what happened>   FDS-BEFORE/FDS-AFTER <targets>   DONE-AT <Date.now()> :*/

import { BlockDevice, Machine, type MachineConfig, RngDevice } from "../../mod.ts";
import { main } from "../../cli.ts";
import { close, fcntl, read, setNonBlocking, socketpair, write } from "../../lib/sys/calls.ts";
import { kickThread } from "../../lib/vcpu_thread.ts";
import { replaceWithEventfd, untilWaiting, withNewEpollFd } from "./epoll_probe.ts";
import { openFds, settledFds } from "./fd_census.ts";
import { toJson } from "./json.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const F = { DUPFD: 0, GETFL: 3, SETFL: 4 } as const;
const O_NONBLOCK = 0o4000;
const SYS_WRITE = "1";

const step = (what: string) => console.log(`STEP ${what}`);
const say = (line: string) => Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A connected socket whose send buffer is full: the next blocking write to its first end blocks. */
function fullSocket(): { writeEnd: number; readEnd: number } {
  const [writeEnd, readEnd] = socketpair(AF_UNIX, SOCK_STREAM);
  setNonBlocking(writeEnd);
  const chunk = new Uint8Array(65536);
  while (write(writeEnd, chunk) >= 0) { /* until EAGAIN */ }
  fcntl(writeEnd, F.SETFL, fcntl(writeEnd, F.GETFL) & ~O_NONBLOCK);
  return { writeEnd, readEnd };
}

/** Threads of this process blocked in write(2) on `fd`. */
function writersOn(fd: number): number[] {
  const tids: number[] = [];
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      const fields = Deno.readTextFileSync(`/proc/self/task/${t.name}/syscall`).trim().split(" ");
      if (fields[0] === SYS_WRITE && Number(fields[1]) === fd) tids.push(Number(t.name));
    } catch {
      // The thread ended while we looked.
    }
  }
  return tids;
}

async function untilWriting(fd: number, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (writersOn(fd).length === 0) {
    if (performance.now() > until) throw new Error(`no thread blocked writing fd ${fd} within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Reads the socket empty until no thread is blocked writing to it (or 2 s). */
async function drain(readEnd: number, writeEnd: number): Promise<void> {
  setNonBlocking(readEnd);
  const buf = new Uint8Array(65536);
  const until = performance.now() + 2000;
  do {
    while (read(readEnd, buf) > 0) { /* until EAGAIN */ }
    await sleep(20);
  } while (writersOn(writeEnd).length > 0 && performance.now() < until);
}

/** Whether `/proc/self/maps` has a mapping starting at `addr`, and one of a vCPU's kvm_run. */
function mapped(addr: bigint): string {
  const maps = Deno.readTextFileSync("/proc/self/maps");
  const ram = maps.split("\n").some((l) => l.startsWith(`${addr.toString(16)}-`));
  return `ram ${ram} kvm_run ${maps.includes("kvm-vcpu")}`;
}

const config = (kernel: string, disk: string): MachineConfig => ({
  memoryMiB: 64,
  kernel,
  cmdline: "lguest.echo",
  consoleInputFd: null,
  acpi: false,
  devices: [BlockDevice.open(disk), new RngDevice()],
});

async function stuck(call: string, kernel: string, disk: string): Promise<void> {
  const { writeEnd, readEnd } = fullSocket();
  const m = Machine.create({ ...config(kernel, disk), consoleOutputFd: writeEnd });
  const ran = m.run().then(
    (r) => step(`run ended ${toJson(r)}`),
    (e) => step(`run failed: ${e instanceof Error ? e.message : String(e)}`),
  );
  await untilWriting(writeEnd, 120_000);
  step("vcpu blocked writing");
  const t0 = performance.now();
  if (call === "stop") {
    m.stop();
    await ran;
  } else {
    await m.close();
  }
  step(`${call} took ${Math.round(performance.now() - t0)} ms`);
  step(`mapped: ${mapped(m.memory.hostAddress)}`);
  await m.close();
  step(`closed; mapped: ${mapped(m.memory.hostAddress)}; vcpu still writing ${writersOn(writeEnd).length > 0}`);
  await drain(readEnd, writeEnd);
  step(`drained; vcpu still writing ${writersOn(writeEnd).length > 0}`);
}

async function cliStuck(kernel: string): Promise<void> {
  const { writeEnd } = fullSocket();
  // fd 1 becomes the full socket: the launcher's serial output goes there. Nothing may print to stdout now.
  close(1);
  const one = fcntl(writeEnd, F.DUPFD, 1);
  if (one !== 1) throw new Error(`could not put the socket at fd 1 (got ${one})`);
  const status = main(["--no-acpi", "64", kernel, "lguest.echo"]);
  await untilWriting(1, 120_000);
  say("VCPU-BLOCKED");
  const t0 = performance.now();
  Deno.kill(Deno.pid, "SIGTERM");
  const code = await status;
  say(`MAIN-RETURNED ${code} after ${Math.round(performance.now() - t0)} ms`);
  Deno.exit(code);
}

async function loopFails(kernel: string, disk: string): Promise<void> {
  await Machine.create({ memoryMiB: 64, kernel, consoleInputFd: null, acpi: false }).close();
  const before = openFds();
  console.log(`FDS-BEFORE ${before}`);
  const m = Machine.create(config(kernel, disk));
  let failure = "";
  const { value: ran, epfd } = withNewEpollFd(() =>
    m.run().then(
      (r) => step(`run ended ${toJson(r)}`),
      (e) => failure = e instanceof Error ? e.message : String(e),
    )
  );
  const reader = Deno.stdin.readable.getReader();
  await reader.read(); // the guest is running
  reader.releaseLock();
  const waiters = await untilWaiting(epfd);
  replaceWithEventfd(epfd);
  for (const tid of waiters) kickThread(tid);
  await ran;
  step(`run failed with ${failure.split("\n").length} line(s): ${failure.replaceAll("\n", "\\n")}`);
  await m.close();
  step("closed");
  console.log(`FDS-AFTER ${await settledFds(before, 3000)}`);
}

const [mode, ...args] = Deno.args;
if (mode === "stuck" && args.length === 3) await stuck(args[0]!, args[1]!, args[2]!);
else if (mode === "cli-stuck" && args.length === 1) await cliStuck(args[0]!);
else if (mode === "loop-fails" && args.length === 2) await loopFails(args[0]!, args[1]!);
else {
  console.error(
    "usage: fault_probe.ts stuck <stop|close> <kernel> <disk> | cli-stuck <kernel> | loop-fails <kernel> <disk>",
  );
  Deno.exit(2);
}
console.log(`DONE-AT ${Date.now()}`);
