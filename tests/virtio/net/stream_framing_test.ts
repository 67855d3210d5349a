/*T:466 The stream framing against a hostile backend. A byte stream is
 * built from records, most of them wrong on purpose (length 0, runts,
 * lengths past 65535, a bare length word with too few bytes after it, raw
 * garbage), optionally cut short, and fed to the decoder in chunks split at
 * arbitrary places, some larger than the window it asked for. A model that
 * reads the whole stream at once says what must come out: every outcome is
 * a frame with exactly the bytes sent, a counted drop, a clean end, or one
 * error after which nothing else ever comes; the decoder never throws while
 * fed through its own windows, and never holds more than its capacity. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeStreamFrame,
  STREAM_LEN_SIZE,
  STREAM_MAX_FRAME,
  STREAM_MIN_FRAME,
  StreamDecoder,
  type StreamEvent,
  streamHeader,
} from "../../../lib/virtio/net/stream_framing.ts";

type Seen = { kind: "frame"; bytes: number[] } | { kind: "drop"; length: number } | { kind: "end" } | {
  kind: "error";
};

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What a reader of the whole stream at once must see. */
function model(s: Uint8Array): Seen[] {
  const out: Seen[] = [];
  const v = new DataView(s.buffer, s.byteOffset, s.length);
  let i = 0;
  for (;;) {
    const left = s.length - i;
    if (left === 0) return [...out, { kind: "end" }];
    if (left < STREAM_LEN_SIZE) return [...out, { kind: "error" }];
    const len = v.getUint32(i);
    if (len > STREAM_MAX_FRAME) return [...out, { kind: "error" }];
    if (len === 0) {
      out.push({ kind: "drop", length: 0 });
      i += STREAM_LEN_SIZE;
      continue;
    }
    if (left < STREAM_LEN_SIZE + len) return [...out, { kind: "error" }];
    const body = s.subarray(i + STREAM_LEN_SIZE, i + STREAM_LEN_SIZE + len);
    out.push(len < STREAM_MIN_FRAME ? { kind: "drop", length: len } : { kind: "frame", bytes: [...body] });
    i += STREAM_LEN_SIZE + len;
  }
}

function seen(e: StreamEvent): Seen {
  switch (e.kind) {
    case "frame":
      return { kind: "frame", bytes: [...e.frame] };
    case "drop":
      return { kind: "drop", length: e.length };
    case "end":
      return { kind: "end" };
    case "error":
      assert.match(e.message, /^[^\n]+$/);
      return { kind: "error" };
  }
}

/** Feeds `s` in `chunks`-sized reads (cycled), each clipped to the window, then the end; returns all outcomes. */
function feed(s: Uint8Array, chunks: number[]): { out: Seen[]; d: StreamDecoder } {
  const d = new StreamDecoder();
  const out: Seen[] = [];
  let at = 0;
  let k = 0;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const e = d.next();
    if (e !== undefined) {
      out.push(seen(e));
      if (e.kind === "end" || e.kind === "error") {
        // Final: asked again, the same answer, and no window.
        assert.equal(d.next()?.kind, e.kind);
        assert.equal(d.space().length, 0);
        return { out, d };
      }
      continue;
    }
    const w = d.space();
    assert.ok(w.length > 0, "nothing to return and no room to read into");
    assert.ok(d.buffered + w.length <= StreamDecoder.capacity);
    const n = Math.min(w.length, chunks[k++ % chunks.length]!, s.length - at);
    w.set(s.subarray(at, at + n));
    at += n;
    d.commit(n);
  }
  throw new Error("the decoder never finished");
}

const frame = fc.integer({ min: STREAM_MIN_FRAME, max: 300 }).chain((n) =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => encodeStreamFrame(b))
);
const bigFrame = fc.integer({ min: STREAM_MAX_FRAME - 64, max: STREAM_MAX_FRAME }).map((n) =>
  encodeStreamFrame(new Uint8Array(n).fill(n & 0xff))
);
const hostile = fc.oneof(
  { weight: 6, arbitrary: frame },
  { weight: 1, arbitrary: bigFrame },
  { weight: 2, arbitrary: fc.constant(u32(0)) },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 1, max: STREAM_MIN_FRAME - 1 }).chain((n) =>
      fc.uint8Array({ minLength: n, maxLength: n }).map((b) => concat([u32(n), b]))
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: STREAM_MAX_FRAME + 1, max: 0xffff_ffff }).map(u32) },
  { weight: 1, arbitrary: fc.constantFrom(u32(STREAM_MAX_FRAME + 1), u32(0xffff_ffff), u32(0x8000_0000)) },
  // A length word promising more than follows (the rest of the stream is then read as its body).
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 400 }).map(u32) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }) },
);
const stream = fc.record({
  records: fc.array(hostile, { maxLength: 12 }),
  cut: fc.option(fc.nat()),
}).map(({ records, cut }) => {
  const s = concat(records);
  return cut === null ? s : s.subarray(0, cut % (s.length + 1));
});
const chunks = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 70_000 })), {
  minLength: 1,
  maxLength: 8,
});

Deno.test("stream framing: property: hostile streams split anywhere give the model's frames, drops and one end", () => {
  fc.assert(
    fc.property(stream, chunks, (s, c) => {
      const { out, d } = feed(s, c);
      assert.deepEqual(out, model(s));
      const frames = out.filter((o) => o.kind === "frame").length;
      const drops = out.filter((o) => o.kind === "drop").length;
      assert.deepEqual(d.counts, { frames, drops });
    }),
    { numRuns: 400 },
  );
});

Deno.test("stream framing: property: a window never reaches past the next length word", () => {
  // So a read never takes a whole second frame out of the socket (it would sit unseen by epoll).
  fc.assert(
    fc.property(fc.array(frame, { minLength: 2, maxLength: 6 }), (records) => {
      const s = concat(records);
      const d = new StreamDecoder();
      let at = 0;
      let boundary = 0;
      const ends = records.map((r) => (boundary += r.length));
      for (;;) {
        while (d.next()?.kind === "frame");
        const w = d.space();
        if (at === s.length) break;
        const next = ends.find((e) => e > at)!;
        assert.ok(at + w.length <= next + STREAM_LEN_SIZE, `window to ${at + w.length}, frame ends at ${next}`);
        const n = Math.min(w.length, s.length - at);
        w.set(s.subarray(at, at + n));
        at += n;
        d.commit(n);
      }
      assert.equal(d.counts.frames, records.length);
    }),
  );
});

Deno.test("stream framing: the edges, one by one", () => {
  const run = (s: Uint8Array) =>
    feed(s, [s.length + 1]).out.map((o) => o.kind === "drop" ? `drop ${o.length}` : o.kind);
  assert.deepEqual(run(new Uint8Array()), ["end"]);
  assert.deepEqual(run(u32(0)), ["drop 0", "end"]);
  assert.deepEqual(run(concat([u32(13), new Uint8Array(13)])), ["drop 13", "end"]);
  assert.deepEqual(run(concat([u32(14), new Uint8Array(14)])), ["frame", "end"]);
  assert.deepEqual(run(encodeStreamFrame(new Uint8Array(STREAM_MAX_FRAME))), ["frame", "end"]);
  assert.deepEqual(run(u32(STREAM_MAX_FRAME + 1)), ["error"]);
  assert.deepEqual(run(concat([u32(60), new Uint8Array(59)])), ["error"]);
  assert.deepEqual(run(new Uint8Array([0, 0])), ["error"]);
  const d = new StreamDecoder();
  d.space()[0] = 0xff;
  d.commit(1);
  d.space().set([0xff, 0xff, 0xff]);
  d.commit(3);
  const e = d.next();
  assert.equal(e?.kind, "error");
  assert.match(e.kind === "error" ? e.message : "", /4294967295 is over 65535: the stream is out of step/);
  const cut = new StreamDecoder();
  cut.space().set(u32(100));
  cut.commit(4);
  cut.space().set([1, 2, 3]);
  cut.commit(3);
  cut.commit(0);
  const c = cut.next();
  assert.equal(c?.kind === "error" ? c.message : c?.kind, "the stream ended inside a frame (3 of 100 frame bytes)");
});

Deno.test("stream framing: commit() refuses more than the window held, or a commit with no window", () => {
  const d = new StreamDecoder();
  const w = d.space();
  assert.equal(w.length, STREAM_LEN_SIZE);
  assert.throws(() => d.commit(STREAM_LEN_SIZE + 1), RangeError);
  assert.throws(() => d.commit(1), RangeError, "the window was closed by the failed commit");
  d.space();
  d.next();
  assert.throws(() => d.commit(1), RangeError, "next() closes the window");
  assert.throws(() => d.commit(-1), RangeError);
  assert.throws(() => d.commit(1.5), RangeError);
});

Deno.test("stream framing: streamHeader writes big-endian lengths and refuses what cannot be framed", () => {
  assert.deepEqual([...streamHeader(0x1234)], [0, 0, 0x12, 0x34]);
  assert.deepEqual([...streamHeader(STREAM_MAX_FRAME)], [0, 0, 0xff, 0xff]);
  for (const bad of [0, -1, STREAM_MAX_FRAME + 1, 1.5, NaN]) assert.throws(() => streamHeader(bad), RangeError);
});
