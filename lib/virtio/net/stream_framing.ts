/*V:460 A user-mode network backend (passt, for --net=user) speaks
 * Ethernet over a stream socket, and a stream has no frame boundaries:
 * QEMU's "stream" netdev framing puts them back, a 4-byte big-endian length
 * and then that many bytes of frame. The other end is a separate program,
 * so every length is input we must not trust. This decoder is pure (no
 * fds): the port reads into the window space() hands out and says how many
 * bytes came with commit(), then takes frames with next().
 *
 * Its buffer holds one largest frame and the next length word, never
 * more, and space() asks for exactly what completes the frame in hand plus
 * the next length word. So a read never takes a second whole frame out of
 * the socket: whatever frames remain are still in the kernel, the socket
 * stays readable, and epoll keeps waking us for them. In steady state that
 * is one read per frame.
 *
 * Each length has one of three outcomes. 14 to 65535 is a frame. 0, or a
 * runt shorter than an Ethernet header, is a counted drop: the length word
 * (and the runt's bytes) are skipped and the stream goes on. Over 65535 is
 * one clear error and the end: no Ethernet frame is that long, so the two
 * ends no longer agree where frames start, and anything read after it
 * would be junk. A stream that ends at a frame boundary is a clean end; one
 * that ends inside a frame is an error saying how much was missing. Both
 * are final: next() repeats them. :*/

/** Bytes of the big-endian length before each frame. */
export const STREAM_LEN_SIZE = 4;
/** The longest frame the framing carries (QEMU's and passt's limit). */
export const STREAM_MAX_FRAME = 65535;
/** Shorter than an Ethernet header (two MACs and a type) is a runt, dropped. */
export const STREAM_MIN_FRAME = 14;

/** What {@link StreamDecoder.next} found. */
export type StreamEvent =
  /** A frame; `frame` is a view into the decoder's buffer, valid until the next space() or commit(). */
  | { kind: "frame"; frame: Uint8Array }
  /** A length the framing allows but no frame can have (0, a runt): skipped and counted. */
  | { kind: "drop"; length: number; reason: string }
  /** The stream ended at a frame boundary. Final. */
  | { kind: "end" }
  /** The stream is out of step or was cut inside a frame. Final. */
  | { kind: "error"; message: string };

/** A bounded decoder for the 4-byte big-endian length framing (see V:460). */
export class StreamDecoder {
  /** Frames and drops so far. */
  readonly counts: { frames: number; drops: number } = { frames: 0, drops: 0 };
  readonly #buf: Uint8Array<ArrayBuffer> = new Uint8Array(STREAM_LEN_SIZE + STREAM_MAX_FRAME + STREAM_LEN_SIZE);
  readonly #view = new DataView(this.#buf.buffer);
  #start = 0;
  #end = 0;
  #final: StreamEvent | undefined;
  #eof = false;
  /** The window space() last handed out; next() closes it, since it may move the bytes. */
  #room = 0;

  /** The decoder's buffer size: the most it ever holds. */
  static readonly capacity: number = STREAM_LEN_SIZE + STREAM_MAX_FRAME + STREAM_LEN_SIZE;

  /** Bytes received but not yet returned as frames, drops or errors. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** True once next() can only repeat an end or an error. */
  get finished(): boolean {
    return this.#final !== undefined;
  }

  /**
   * Where the next bytes of the stream go: exactly what completes the frame in hand and the
   * next length word (empty when a frame or an outcome waits in next(), or after the end).
   */
  space(): Uint8Array<ArrayBuffer> {
    const w = this.#window();
    this.#room = w.length;
    return w;
  }

  #window(): Uint8Array<ArrayBuffer> {
    if (this.#final !== undefined || this.#eof) return this.#buf.subarray(0, 0);
    // Move the unread bytes (at most one frame and a length word) to the front.
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const have = this.#end;
    if (have < STREAM_LEN_SIZE) return this.#buf.subarray(have, STREAM_LEN_SIZE);
    const len = this.#view.getUint32(0);
    if (len > STREAM_MAX_FRAME || len === 0) return this.#buf.subarray(have, have); // next() has the outcome
    const want = STREAM_LEN_SIZE + len + STREAM_LEN_SIZE;
    return this.#buf.subarray(have, Math.max(have, want));
  }

  /**
   * Takes `n` bytes just written into the window from the last {@link space} (no next() in
   * between); 0 means the stream ended.
   * @throws RangeError if `n` is more than that window held
   */
  commit(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`commit(${n}): not a byte count`);
    const room = this.#room;
    this.#room = 0;
    if (n === 0) {
      this.#eof = true;
      return;
    }
    if (n > room) throw new RangeError(`commit(${n}): the window held ${room} bytes`);
    this.#end += n;
  }

  /** The next frame, drop or final outcome; undefined when more bytes are needed. */
  next(): StreamEvent | undefined {
    this.#room = 0;
    if (this.#final !== undefined) return this.#final;
    const have = this.#end - this.#start;
    if (have >= STREAM_LEN_SIZE) {
      const len = this.#view.getUint32(this.#start);
      if (len > STREAM_MAX_FRAME) {
        return this.#finish({
          kind: "error",
          message: `a frame length of ${len} is over ${STREAM_MAX_FRAME}: the stream is out of step`,
        });
      }
      if (len === 0) {
        this.#start += STREAM_LEN_SIZE;
        this.counts.drops++;
        return { kind: "drop", length: 0, reason: "an empty frame" };
      }
      if (have >= STREAM_LEN_SIZE + len) {
        const at = this.#start + STREAM_LEN_SIZE;
        this.#start = at + len;
        if (len < STREAM_MIN_FRAME) {
          this.counts.drops++;
          return { kind: "drop", length: len, reason: `shorter than an Ethernet header (${STREAM_MIN_FRAME} bytes)` };
        }
        this.counts.frames++;
        return { kind: "frame", frame: this.#buf.subarray(at, at + len) };
      }
    }
    if (!this.#eof) return undefined;
    if (have === 0) return this.#finish({ kind: "end" });
    const what = have < STREAM_LEN_SIZE
      ? `${have} of the ${STREAM_LEN_SIZE} length bytes`
      : `${have - STREAM_LEN_SIZE} of ${this.#view.getUint32(this.#start)} frame bytes`;
    return this.#finish({ kind: "error", message: `the stream ended inside a frame (${what})` });
  }

  #finish(e: StreamEvent): StreamEvent {
    this.#final = e;
    this.#start = this.#end = 0;
    return e;
  }
}

/**
 * Writes the length word for a frame of `len` bytes.
 * @param len frame length, 1..65535
 * @param out where to write it (default a new 4-byte array)
 * @returns `out`
 * @throws RangeError for a length the framing cannot carry
 */
export function streamHeader(len: number, out: Uint8Array = new Uint8Array(STREAM_LEN_SIZE)): Uint8Array {
  if (!Number.isInteger(len) || len < 1 || len > STREAM_MAX_FRAME) {
    throw new RangeError(`a stream frame is 1 to ${STREAM_MAX_FRAME} bytes, not ${len}`);
  }
  new DataView(out.buffer, out.byteOffset, STREAM_LEN_SIZE).setUint32(0, len);
  return out;
}

/** A whole record: the length word and `frame` (for tests and simple senders). */
export function encodeStreamFrame(frame: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(STREAM_LEN_SIZE + frame.length);
  streamHeader(frame.length, out);
  out.set(frame, STREAM_LEN_SIZE);
  return out;
}
