/*T:318 A program that kicks a blocked thread the way stop() kicks a vCPU,
 * for tests/sys/kick_test.ts to watch from outside. It waits until the
 * blocker (T:317) is inside poll and until more than a second has passed
 * since start-up, when Deno would answer a SIGUSR1 by opening its debugger,
 * kicks it with kickThread(), and prints one line, `KICKED {...}`: the
 * signal used and how poll ended. Then it stays alive until its stdin is
 * closed, so the test can look at its sockets while it still runs. :*/

import { KICK_SIGNAL, kickThread } from "../../lib/vcpu_thread.ts";
import type { BlockerMessage } from "./kick_blocker.ts";

const POLL_SYSCALLS = new Set(["7", "271"]); // poll, ppoll on x86_64

const worker = new Worker(new URL("./kick_blocker.ts", import.meta.url).href, { type: "module" });
const inbox: BlockerMessage[] = [];
let wake = () => {};
worker.onmessage = (ev: MessageEvent<BlockerMessage>) => {
  inbox.push(ev.data);
  wake();
};

async function next(timeoutMs: number): Promise<BlockerMessage | undefined> {
  const deadline = performance.now() + timeoutMs;
  while (inbox.length === 0 && performance.now() < deadline) {
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 50);
    });
  }
  return inbox.shift();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const first = await next(10_000);
if (first?.type !== "blocking") throw new Error(`blocker did not start: ${JSON.stringify(first)}`);
const tid = first.tid;
for (let i = 0;; i++) {
  const syscall = Deno.readTextFileSync(`/proc/self/task/${tid}/syscall`).split(" ")[0] ?? "";
  if (POLL_SYSCALLS.has(syscall)) break;
  if (i > 200) throw new Error(`blocker thread ${tid} never blocked in poll (syscall ${syscall})`);
  await sleep(10);
}
while (performance.now() < 1200) await sleep(50);

const kickedAt = performance.timeOrigin + performance.now();
kickThread(tid);
const returned = await next(5_000);
console.log(`KICKED ${
  JSON.stringify({
    signal: KICK_SIGNAL,
    uptimeMs: Math.round(kickedAt - performance.timeOrigin),
    result: returned?.type === "returned" ? returned.result : null,
    errno: returned?.type === "returned" ? returned.errno : null,
    latencyMs: returned?.type === "returned" ? returned.at - kickedAt : null,
  })
}`);

for await (const _ of Deno.stdin.readable) {
  // Stay alive until the test closes our stdin.
}
worker.terminate();
