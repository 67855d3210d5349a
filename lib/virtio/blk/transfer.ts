/*V:342 One disk operation, run synchronously on whichever thread calls it
 * (an I/O thread, or the queue's own thread when it works alone). A
 * transfer loops until every byte has moved: a preadv or pwritev may stop
 * short (a signal, a file that shrank under us), and then the iovecs are
 * stepped past what was done and the call made again. EINTR is retried;
 * any other errno becomes the result, negated, read on the thread that made
 * the call. A read that meets the end of the file stops short and the
 * caller reports an I/O error: we never invent bytes, and a write never
 * starts past the end, so the file never grows.
 *
 * The usual case, one call that moves everything, costs one FFI call and
 * no allocation: the caller hands over a pointer object for its iovec
 * array, made once, and the file offset goes as a BigInt (which the FFI
 * layer takes faster than a Number). Only a short transfer steps the
 * pointer. :*/

import { lastErrno, libc } from "../../sys/libc.ts";
import { Errno } from "../../sys/errno.ts";

/**
 * preadv/pwritev until `length` bytes have moved or the file ends.
 * @param fd the disk file
 * @param iov (base, length) pairs; entries from `first` are consumed (modified) as bytes move
 * @param iovPtr host address of `iov[2 * first]` (the first pair in use), as a pointer object made once
 * @param first index of the first pair
 * @param count pairs in use from `first`
 * @param offset file offset
 * @param length bytes to move
 * @param read true for preadv
 * @returns bytes moved, or -errno
 */
export function transfer(
  fd: number,
  iov: BigUint64Array,
  iovPtr: Deno.PointerObject,
  first: number,
  count: number,
  offset: number,
  length: number,
  read: boolean,
): number {
  let at = 0;
  let done = 0;
  while (done < length && at < count) {
    const ptr = at === 0 ? iovPtr : Deno.UnsafePointer.offset(iovPtr, 16 * at);
    const pos = BigInt(offset + done);
    const r = Number(read ? libc.preadv(fd, ptr, count - at, pos) : libc.pwritev(fd, ptr, count - at, pos));
    if (r < 0) {
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      return -e;
    }
    if (r === 0) break;
    done += r;
    if (done >= length) break;
    let left = r;
    while (left > 0 && at < count) {
      const i = 2 * (first + at);
      const len = Number(iov[i + 1]!);
      if (left >= len) {
        left -= len;
        at++;
      } else {
        iov[i] = iov[i]! + BigInt(left);
        iov[i + 1] = BigInt(len - left);
        left = 0;
      }
    }
  }
  return done;
}

/** A pointer object for `array`, made once (throws on a null address, which a live array never has). */
export function pointerTo(array: BigUint64Array): Deno.PointerObject {
  const p = Deno.UnsafePointer.of(array);
  if (p === null) throw new Error("iovec array at NULL");
  return p;
}

/**
 * fdatasync, retrying EINTR.
 * @returns 0, or -errno
 */
export function flush(fd: number): number {
  for (;;) {
    if (libc.fdatasync(fd) === 0) return 0;
    const e = lastErrno();
    if (e !== Errno.EINTR) return -e;
  }
}
