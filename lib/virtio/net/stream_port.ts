/*V:463 A PacketPort over a stream socket with the 4-byte length framing
 * (V:460): what passt speaks. The device's engines think in tap frames,
 * header first, one frame per readv() and writev(); this port translates.
 *
 * Receiving, the decoder reads from the socket only up to the next length
 * word, so frames still unread stay in the kernel and keep the socket
 * readable for epoll; each readv() hands back one frame, copied from the
 * decoder's buffer into the posted buffers behind a zeroed virtio_net_hdr
 * (no checksum, no segment: the port offers no offloads), and never
 * writes past the iovecs' lengths. Zero-length frames and runts are counted
 * and skipped; an impossible length, a stream cut inside a frame or a
 * closed socket is one line on stderr and the port reads as closed (0),
 * which stops the receive engine.
 *
 * Sending, a stream takes what it takes: a writev() may go out in part.
 * The port copies each frame (header dropped, length word first) into a
 * buffer of its own and writes from there, so a frame is accepted whole or
 * not at all; what the socket did not take yet is outputPending, and the
 * device watches for EPOLLOUT and calls flush() until it is gone. While it
 * is pending, the next writev() says EAGAIN, so frames keep their order. :*/

import { close, read, write } from "../../sys/calls.ts";
import { SysError } from "../../sys/errno.ts";
import type { IoVecs } from "../../sys/iovec.ts";
import { NET_HDR_SIZE, type PacketPort } from "./hdr.ts";
import { STREAM_LEN_SIZE, STREAM_MAX_FRAME, StreamDecoder, streamHeader } from "./stream_framing.ts";

/** Options for {@link StreamPort}. */
export interface StreamPortOptions {
  /** Where the one line about a broken stream goes (default: stderr, prefixed "lguest: "). */
  warn?: (line: string) => void;
  /** Names the peer in that line (default "the network backend"). */
  peer?: string;
}

/** errno EOVERFLOW: a frame longer than the framing's 65535 bytes. */
const EOVERFLOW = 75;

function hostView(base: bigint, len: number): Uint8Array {
  const p = Deno.UnsafePointer.create(base);
  if (p === null) throw new RangeError("a NULL iovec base");
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, len));
}

/** A {@link PacketPort} over a connected, non-blocking stream socket carrying length-framed Ethernet frames. */
export class StreamPort implements PacketPort {
  /** Plain Ethernet: the device offers no offloads. */
  readonly offloads = false;
  /** The 4-byte length framing. */
  readonly framing = "stream";
  /** Names the peer in warnings. */
  readonly peer: string;
  readonly #decoder = new StreamDecoder();
  readonly #out = new Uint8Array(STREAM_LEN_SIZE + STREAM_MAX_FRAME);
  readonly #warn: (line: string) => void;
  #outAt = 0;
  #outEnd = 0;
  #writeError: SysError | undefined;
  #warned = false;
  #fd: number;

  /**
   * A port on `fd`, which it owns from now on (close() closes it).
   * @param fd a connected stream socket, non-blocking
   * @param options where problems are reported
   */
  constructor(fd: number, options: StreamPortOptions = {}) {
    this.#fd = fd;
    this.#warn = options.warn ?? ((line) => console.error(`lguest: ${line}`));
    this.peer = options.peer ?? "the network backend";
  }

  /** The socket (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /** Frames received and length words skipped (0, runts) so far. */
  get counts(): { frames: number; drops: number } {
    return { ...this.#decoder.counts };
  }

  /** True while part of an accepted frame waits to be written. */
  get outputPending(): boolean {
    return this.#outAt < this.#outEnd;
  }

  /** Reads one frame into `iov` behind a zeroed header; returns header plus frame length, -1 for EAGAIN, 0 once the stream ended or broke. */
  readv(iov: IoVecs): number {
    const d = this.#decoder;
    for (;;) {
      const e = d.next();
      if (e === undefined) {
        const n = read(this.#fd, d.space());
        if (n < 0) return -1;
        d.commit(n);
        continue;
      }
      switch (e.kind) {
        case "frame":
          copyOut(iov, e.frame);
          return NET_HDR_SIZE + e.frame.length;
        case "drop":
          continue;
        case "end":
          this.#once(`${this.peer} closed the connection; the network card receives nothing more`);
          return 0;
        case "error":
          this.#once(`${this.peer}: ${e.message}; the network card receives nothing more`);
          return 0;
      }
    }
  }

  #once(line: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.#warn(line);
  }

  /**
   * Takes one frame (header first) from `iov`, whole: returns iov.bytes, or -1 (EAGAIN) while an
   * earlier frame is still partly unwritten.
   * @throws SysError (EOVERFLOW) for a frame the framing cannot carry, or the socket's error (EPIPE, ...)
   */
  writev(iov: IoVecs): number {
    if (this.#writeError !== undefined) throw this.#writeError;
    this.flush();
    if (this.#writeError !== undefined) throw this.#writeError;
    if (this.outputPending) return -1;
    const len = iov.bytes - NET_HDR_SIZE;
    if (len < 1 || len > STREAM_MAX_FRAME) throw new SysError("send (stream framing)", EOVERFLOW, `fd ${this.#fd}`);
    streamHeader(len, this.#out);
    copyIn(iov, this.#out.subarray(STREAM_LEN_SIZE, STREAM_LEN_SIZE + len));
    this.#outAt = 0;
    this.#outEnd = STREAM_LEN_SIZE + len;
    this.flush();
    if (this.#writeError !== undefined && this.#outEnd === 0) throw this.#writeError;
    return iov.bytes;
  }

  /** Writes what is pending, as far as the socket takes it; a failure drops it and fails the next writev(). */
  flush(): void {
    while (this.#outAt < this.#outEnd) {
      let n: number;
      try {
        n = write(this.#fd, this.#out.subarray(this.#outAt, this.#outEnd));
      } catch (e) {
        if (!(e instanceof SysError)) throw e;
        this.#writeError = e;
        this.#outAt = this.#outEnd = 0;
        return;
      }
      if (n < 0) return;
      this.#outAt += n;
    }
    this.#outAt = this.#outEnd = 0;
  }

  /** Nothing to switch: this port offers no offloads, so the driver can have accepted none. */
  setOffload(tunFlags: number): void {
    if (tunFlags !== 0) throw new Error(`a stream port takes no offloads (asked for 0x${tunFlags.toString(16)})`);
  }

  /** Closes the socket. Safe twice. */
  close(): void {
    const fd = this.#fd;
    this.#fd = -1;
    close(fd);
  }
}

/** Writes a zeroed virtio_net_hdr and then `frame` into `iov`'s buffers, never past their lengths. */
function copyOut(iov: IoVecs, frame: Uint8Array): void {
  let skip = NET_HDR_SIZE; // header bytes still to zero
  let from = 0;
  for (let i = 0; i < iov.count && from < frame.length; i++) {
    const len = Number(iov.raw[i * 2 + 1]);
    if (len === 0) continue;
    const dst = hostView(iov.raw[i * 2]!, len);
    let at = 0;
    if (skip > 0) {
      const z = Math.min(skip, len);
      dst.fill(0, 0, z);
      skip -= z;
      at = z;
    }
    const n = Math.min(len - at, frame.length - from);
    dst.set(frame.subarray(from, from + n), at);
    from += n;
  }
}

/** Gathers `iov`'s bytes after the header into `dst` (exactly dst.length of them). */
function copyIn(iov: IoVecs, dst: Uint8Array): void {
  let skip = NET_HDR_SIZE;
  let to = 0;
  for (let i = 0; i < iov.count && to < dst.length; i++) {
    const len = Number(iov.raw[i * 2 + 1]);
    const drop = Math.min(skip, len);
    skip -= drop;
    const n = Math.min(len - drop, dst.length - to);
    if (n <= 0) continue;
    const p = Deno.UnsafePointer.create(iov.raw[i * 2]! + BigInt(drop));
    new Deno.UnsafePointerView(p!).copyInto(dst.subarray(to, to + n));
    to += n;
  }
}
