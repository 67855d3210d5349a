/*T:812 The other side of the timings test: a Worker, like a vCPU thread,
 * attaches to the marks the main thread started and marks what a vCPU
 * marks, reading its own clock. The test then reads the marks back on the
 * main thread: they must be there, and on the same clock. :*/

import { BootTimings } from "../../lib/timings.ts";

const port = self as unknown as {
  onmessage: ((ev: MessageEvent<SharedArrayBuffer>) => void) | null;
  postMessage(message: { entered: boolean; again: boolean; kept: boolean }): void;
};

port.onmessage = (ev) => {
  const timings = BootTimings.attach(ev.data);
  const entered = timings.mark("kernel entered");
  const again = timings.mark("kernel entered");
  const kept = timings.bootTimer(42);
  port.postMessage({ entered, again, kept });
};
