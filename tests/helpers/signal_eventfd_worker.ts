/*T:047 signalEventfd must never wait for room in a counter: the reader it
 * would wait for may be the very thread that is waiting. A test cannot call
 * it on its own thread to find out, since a call that blocks would hang the
 * whole test run. This Worker makes the call instead and answers
 * "returned", or the error's message; the test, still free, can time it and
 * unblock it. :*/

import { signalEventfd } from "../../lib/sys/calls.ts";

const port = self as unknown as {
  onmessage: ((ev: MessageEvent<number>) => void) | null;
  postMessage(message: string): void;
};

port.onmessage = (ev) => {
  try {
    signalEventfd(ev.data);
    port.postMessage("returned");
  } catch (e) {
    port.postMessage(e instanceof Error ? e.message : String(e));
  }
};
port.postMessage("ready");
