/*V:335 An I/O thread's whole life: say it is up, sleep until the
 * submission counter moves, claim every job it can find, run it
 * (transfer.ts), mark it DONE, and ring the completion eventfd. Marking
 * comes before ringing, so when the queue's thread wakes it is sure to see
 * the job finished. :*/

import { signalEventfd } from "../../sys/calls.ts";
import { Errno } from "../../sys/errno.ts";
import { flush, pointerTo, transfer } from "./transfer.ts";
import { IO_OP, SLOT, slotLayout, type WorkerInit } from "./protocol.ts";

/** Serves jobs until the STOP word is set. */
function serve(init: WorkerInit): void {
  const l = slotLayout(init.slots, init.maxIovecs);
  const ctl = new Int32Array(init.shared, 0, SLOT.CTL_WORDS);
  const state = new Int32Array(init.shared, l.stateAt, l.slots);
  const ints = new Int32Array(init.shared, l.intsAt, l.slots * SLOT.INTS);
  const nums = new Float64Array(init.shared, l.numsAt, l.slots * SLOT.NUMS);
  const iov = new BigUint64Array(init.shared, l.iovAt, l.slots * l.maxIovecs * 2);

  const iovPtr = pointerTo(iov);
  const slotPtrs = Array.from(
    { length: l.slots },
    (_, slot) => slot === 0 ? iovPtr : Deno.UnsafePointer.offset(iovPtr, slot * l.maxIovecs * 16)!,
  );
  const run = (slot: number): number => {
    try {
      const op = ints[slot * SLOT.INTS + SLOT.OP];
      if (op === IO_OP.FLUSH) return flush(init.fd);
      if (op === IO_OP.READ || op === IO_OP.WRITE) {
        const count = ints[slot * SLOT.INTS + SLOT.IOVCNT]!;
        const offset = nums[slot * SLOT.NUMS + SLOT.OFFSET]!;
        const length = nums[slot * SLOT.NUMS + SLOT.LENGTH]!;
        return transfer(init.fd, iov, slotPtrs[slot]!, slot * l.maxIovecs, count, offset, length, op === IO_OP.READ);
      }
      return -Errno.EINVAL;
    } catch {
      return -Errno.EIO;
    }
  };

  Atomics.add(new Int32Array(init.up), init.upIndex, 1);
  let next = 0;
  while (Atomics.load(ctl, SLOT.STOP) === 0) {
    const seq = Atomics.load(ctl, SLOT.SEQ);
    let found = false;
    for (let k = 0; k < l.slots; k++) {
      const slot = (next + k) % l.slots;
      if (Atomics.load(state, slot) !== SLOT.SUBMITTED) continue;
      if (Atomics.compareExchange(state, slot, SLOT.SUBMITTED, SLOT.RUNNING) !== SLOT.SUBMITTED) continue;
      nums[slot * SLOT.NUMS + SLOT.RESULT] = run(slot);
      Atomics.store(state, slot, SLOT.DONE);
      Atomics.notify(state, slot);
      signalEventfd(init.doneFd, "blk completion eventfd");
      next = slot + 1;
      found = true;
    }
    if (!found) Atomics.wait(ctl, SLOT.SEQ, seq);
  }
}

/** The Worker global, typed narrowly (this file is checked with the Window lib). */
const port = self as unknown as {
  onmessage: ((ev: MessageEvent<WorkerInit>) => void) | null;
  close(): void;
};

port.onmessage = (ev) => {
  serve(ev.data);
  port.close();
};
