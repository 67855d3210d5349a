/*T:317 The thread a kick must reach, without KVM: a Worker that sleeps in
 * poll(2) on an eventfd nobody will ever signal, with no timeout, exactly
 * as a vCPU thread sleeps in KVM_RUN while its guest halts. It tells the
 * main thread its thread id, blocks, and reports how the call ended. :*/

import { close, eventfd, gettid, POLL } from "../../lib/sys/calls.ts";
import { lastErrno, libc } from "../../lib/sys/libc.ts";

/** What the blocker tells the main thread. */
export type BlockerMessage =
  | { type: "blocking"; tid: number }
  | { type: "returned"; result: number; errno: number; at: number };

const port = self as unknown as { postMessage(message: BlockerMessage): void };

const fd = eventfd();
const pfd = new Int32Array(2);
pfd[0] = fd;
pfd[1] = POLL.IN;
port.postMessage({ type: "blocking", tid: gettid() });
const result = libc.poll(Deno.UnsafePointer.of(pfd), 1n, -1);
const errno = result < 0 ? lastErrno() : 0;
port.postMessage({ type: "returned", result, errno, at: performance.timeOrigin + performance.now() });
close(fd);
