/*T:467 The stream port against a hostile backend, with no passt: a
 * stream socketpair whose far end the test writes byte by byte as it likes.
 * The frames land through IoVecs over a plain buffer whose every byte
 * outside the posted segments is a guard; whatever the stream says, the
 * guards stay intact, each frame arrives behind a zeroed header with its
 * exact bytes, runts and empty frames are counted, and an impossible
 * length, a cut frame or a closed socket is one warning and a port that
 * reads as closed. Sending, a frame the socket takes only in part is
 * finished by flush() and the next frame waits for it. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AF_UNIX,
  bufferAddress,
  close,
  read,
  setNonBlocking,
  SOCK_STREAM,
  socketpair,
  writeAll,
} from "../../../lib/sys/calls.ts";
import { IoVecs } from "../../../lib/sys/iovec.ts";
import { NET_HDR_SIZE } from "../../../lib/virtio/net/hdr.ts";
import { encodeStreamFrame, STREAM_LEN_SIZE } from "../../../lib/virtio/net/stream_framing.ts";
import { StreamPort } from "../../../lib/virtio/net/stream_port.ts";

const GUARD = 0xa5;

/** A port on one end of a stream socketpair; the test holds the other. */
function pair(): { port: StreamPort; peer: number; warnings: string[] } {
  const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
  setNonBlocking(a);
  const warnings: string[] = [];
  return { port: new StreamPort(a, { peer: "the test", warn: (l) => warnings.push(l) }), peer: b, warnings };
}

/** IoVecs over `sizes`-long segments of one guarded buffer, with gaps of guard bytes between them. */
function guarded(sizes: number[]): { buf: Uint8Array<ArrayBuffer>; iov: IoVecs; segs: Array<[number, number]> } {
  const gap = 8;
  const buf = new Uint8Array(sizes.reduce((s, n) => s + n + gap, gap)).fill(GUARD);
  const iov = new IoVecs(sizes.length);
  const segs: Array<[number, number]> = [];
  let at = gap;
  for (const n of sizes) {
    iov.push(bufferAddress(buf) + BigInt(at), n);
    segs.push([at, n]);
    at += n + gap;
  }
  return { buf, iov, segs };
}

/** The posted bytes, in order, and a check that everything else is still guard. */
function posted(g: ReturnType<typeof guarded>): Uint8Array {
  const inside = new Set<number>();
  const out: number[] = [];
  for (const [at, n] of g.segs) {
    for (let i = at; i < at + n; i++) {
      inside.add(i);
      out.push(g.buf[i]!);
    }
  }
  g.buf.forEach((b, i) => {
    if (!inside.has(i)) assert.equal(b, GUARD, `byte ${i}, outside every segment, was written`);
  });
  return new Uint8Array(out);
}

function u32(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

Deno.test("stream port: frames arrive behind a zeroed header; drops are counted; a cut frame is one warning", () => {
  const { port, peer, warnings } = pair();
  let peerOpen = true;
  try {
    const f1 = new Uint8Array(60).map((_, i) => i + 1);
    const f2 = new Uint8Array(1514).fill(7);
    writeAll(peer, new Uint8Array([...u32(0), ...u32(5), 1, 2, 3, 4, 5, ...encodeStreamFrame(f1)]));
    writeAll(peer, encodeStreamFrame(f2));
    writeAll(peer, new Uint8Array([...u32(100), 1, 2, 3]));
    const g = guarded([5, 40, 3000]);
    assert.equal(port.readv(g.iov), NET_HDR_SIZE + 60);
    const got = posted(g);
    assert.deepEqual([...got.subarray(0, NET_HDR_SIZE)], new Array(NET_HDR_SIZE).fill(0));
    assert.deepEqual([...got.subarray(NET_HDR_SIZE, NET_HDR_SIZE + 60)], [...f1]);
    assert.equal(port.readv(g.iov), NET_HDR_SIZE + 1514);
    assert.deepEqual([...posted(g).subarray(NET_HDR_SIZE, NET_HDR_SIZE + 1514)], [...f2]);
    assert.deepEqual(port.counts, { frames: 2, drops: 2 });
    assert.equal(port.readv(g.iov), -1, "a partial frame waits");
    close(peer);
    peerOpen = false;
    assert.equal(port.readv(g.iov), 0);
    assert.equal(port.readv(g.iov), 0);
    assert.deepEqual(warnings, [
      "the test: the stream ended inside a frame (3 of 100 frame bytes); the network card receives nothing more",
    ]);
  } finally {
    port.close();
    if (peerOpen) close(peer);
  }
});

Deno.test("stream port: a length over 65535 and a closed socket each end the stream with one line", () => {
  for (
    const [bytes, line] of [
      [u32(65536), "the test: a frame length of 65536 is over 65535: the stream is out of step"],
      [new Uint8Array(), "the test closed the connection"],
    ] as const
  ) {
    const { port, peer, warnings } = pair();
    try {
      if (bytes.length > 0) writeAll(peer, new Uint8Array(bytes));
      close(peer);
      const g = guarded([2000]);
      assert.equal(port.readv(g.iov), 0);
      assert.equal(port.readv(g.iov), 0);
      posted(g);
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0]!.startsWith(line), warnings[0]);
    } finally {
      port.close();
    }
  }
});

Deno.test("stream port: property: hostile streams never write outside the posted buffers", () => {
  const record = fc.oneof(
    fc.integer({ min: 14, max: 2000 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })).map(
      encodeStreamFrame,
    ),
    fc.constant(u32(0)),
    fc.integer({ min: 1, max: 13 }).map((n) => new Uint8Array([...u32(n), ...new Uint8Array(n)])),
    fc.integer({ min: 65536, max: 0xffff_ffff }).map(u32),
    fc.uint8Array({ minLength: 1, maxLength: 9 }),
  );
  fc.assert(
    fc.property(
      fc.array(record, { maxLength: 8 }),
      fc.array(fc.integer({ min: 0, max: 700 }), { minLength: 1, maxLength: 6 }),
      (records, sizes) => {
        const { port, peer, warnings } = pair();
        try {
          for (const r of records) writeAll(peer, new Uint8Array(r));
          close(peer);
          const g = guarded(sizes);
          for (let i = 0; i < 100; i++) {
            const n = port.readv(g.iov);
            posted(g);
            if (n === 0) break;
            assert.ok(n >= NET_HDR_SIZE + 14 && n <= NET_HDR_SIZE + 65535, `frame length ${n}`);
          }
          assert.equal(port.readv(g.iov), 0, "the port reads as closed in the end");
          assert.equal(warnings.length, 1);
        } finally {
          port.close();
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("stream port: writev strips the header, frames the rest, and finishes a partial write with flush()", () => {
  const { port, peer } = pair();
  try {
    const frame = new Uint8Array(NET_HDR_SIZE + 60000).map((_, i) => i * 7);
    frame.fill(0xee, 0, NET_HDR_SIZE);
    const g = guarded([NET_HDR_SIZE + 100, 59900]);
    g.buf.set(frame.subarray(0, NET_HDR_SIZE + 100), g.segs[0]![0]);
    g.buf.set(frame.subarray(NET_HDR_SIZE + 100), g.segs[1]![0]);
    // Send until the socket buffer is full and a frame goes out in part.
    let sent = 0;
    while (!port.outputPending) {
      assert.equal(port.writev(g.iov), frame.length);
      sent++;
    }
    assert.equal(port.writev(g.iov), -1, "the next frame waits for the rest of the last");
    // The peer reads everything; each record is the length word and the frame without its header.
    const want = encodeStreamFrame(frame.subarray(NET_HDR_SIZE));
    const got = new Uint8Array(want.length);
    for (let i = 0; i < sent; i++) {
      let have = 0;
      while (have < got.length) {
        if (port.outputPending) port.flush();
        const n = read(peer, got.subarray(have));
        if (n > 0) have += n;
      }
      assert.deepEqual([...got.subarray(0, STREAM_LEN_SIZE)], [...u32(60000)]);
      assert.ok(got.every((b, k) => b === want[k]), `record ${i} differs`);
    }
    assert.equal(port.outputPending, false);
    assert.throws(() => port.writev(guarded([NET_HDR_SIZE + 65536]).iov), /EOVERFLOW/);
  } finally {
    port.close();
    close(peer);
  }
});

Deno.test("stream port: a write to a closed peer fails that frame (EPIPE), not the launcher", () => {
  const { port, peer } = pair();
  close(peer);
  try {
    const g = guarded([NET_HDR_SIZE + 60]);
    assert.throws(() => port.writev(g.iov), /EPIPE/);
    assert.throws(() => port.writev(g.iov), /EPIPE/);
  } finally {
    port.close();
  }
});
