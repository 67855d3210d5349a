/*V:335 An I/O thread's whole life: sleep until the submission counter
 * moves, claim every job it can find, run it, mark it DONE, and ring the
 * completion eventfd. Marking comes before ringing, so when the main
 * thread wakes it is sure to see the job finished.
 *
 * Running a job means looping until every byte has moved: a preadv or
 * pwritev may stop short (a signal, a file that shrank under us), and then
 * we step the iovecs past what was done and go on. EINTR is retried; any
 * other errno becomes the job's result, negated, read right here on the
 * thread that made the call. A read that meets the end of the file stops
 * short and the main thread reports an I/O error: we never invent bytes,
 * and a write never starts past the end, so the file never grows. :*/

import { lastErrno, libc } from "../sys/libc.ts";
import { Errno } from "../sys/errno.ts";
import { IO_OP, SLOT, slotLayout, type WorkerInit } from "./blk_protocol.ts";

/** Serves jobs until the STOP word is set. */
function serve(init: WorkerInit): void {
  const l = slotLayout(init.slots, init.maxIovecs);
  const ctl = new Int32Array(init.shared, 0, SLOT.CTL_WORDS);
  const state = new Int32Array(init.shared, l.stateAt, l.slots);
  const ints = new Int32Array(init.shared, l.intsAt, l.slots * SLOT.INTS);
  const nums = new Float64Array(init.shared, l.numsAt, l.slots * SLOT.NUMS);
  const iov = new BigUint64Array(init.shared, l.iovAt, l.slots * l.maxIovecs * 2);
  const iovBase = Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov));
  const one = new BigUint64Array([1n]);
  const onePtr = Deno.UnsafePointer.of(one);

  const transfer = (slot: number, read: boolean): number => {
    const count = ints[slot * SLOT.INTS + SLOT.IOVCNT]!;
    const offset = nums[slot * SLOT.NUMS + SLOT.OFFSET]!;
    const length = nums[slot * SLOT.NUMS + SLOT.LENGTH]!;
    const first = slot * l.maxIovecs * 2;
    let at = 0;
    let done = 0;
    while (done < length && at < count) {
      const ptr = Deno.UnsafePointer.create(iovBase + BigInt((first + 2 * at) * 8));
      const pos = BigInt(offset + done);
      const r = Number(read ? libc.preadv(init.fd, ptr, count - at, pos) : libc.pwritev(init.fd, ptr, count - at, pos));
      if (r < 0) {
        const e = lastErrno();
        if (e === Errno.EINTR) continue;
        return -e;
      }
      if (r === 0) break;
      done += r;
      let left = r;
      while (left > 0 && at < count) {
        const len = Number(iov[first + 2 * at + 1]!);
        if (left >= len) {
          left -= len;
          at++;
        } else {
          iov[first + 2 * at] = iov[first + 2 * at]! + BigInt(left);
          iov[first + 2 * at + 1] = BigInt(len - left);
          left = 0;
        }
      }
    }
    return done;
  };

  const flush = (): number => {
    for (;;) {
      if (libc.fdatasync(init.fd) === 0) return 0;
      const e = lastErrno();
      if (e !== Errno.EINTR) return -e;
    }
  };

  const run = (slot: number): number => {
    try {
      const op = ints[slot * SLOT.INTS + SLOT.OP];
      if (op === IO_OP.FLUSH) return flush();
      if (op === IO_OP.READ || op === IO_OP.WRITE) return transfer(slot, op === IO_OP.READ);
      return -Errno.EINVAL;
    } catch {
      return -Errno.EIO;
    }
  };

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
      libc.write(init.doneFd, onePtr, 8n);
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
