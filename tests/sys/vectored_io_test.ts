/*T:313 The vectored and positioned I/O calls the disk and the network
 * card use (pread/pwrite, preadv/pwritev, readv/writev, and the IoVecs
 * that describe guest buffers), on real temp files and FIFOs. :*/

import assert from "node:assert/strict";
import {
  bufferAddress,
  close,
  fdatasync,
  ftruncate,
  lseek,
  O,
  open,
  POLL,
  pollOne,
  pread,
  preadv,
  pwrite,
  pwritev,
  read,
  readv,
  writev,
} from "../../lib/sys/calls.ts";
import { IoVecs } from "../../lib/sys/iovec.ts";
import { BAD_FD, throwsSys, withTempFile } from "../helpers/sys_rig.ts";

const SEEK_SET = 0;
const SEEK_END = 2;

Deno.test("sys: pwrite/pread at offsets of a temp file", async () => {
  await withTempFile(async (fd, path) => {
    const data = new TextEncoder().encode("hello, guest");
    assert.equal(pwrite(fd, data, 100), data.length);
    const back = new Uint8Array(data.length);
    assert.equal(pread(fd, back, 100), data.length);
    assert.deepEqual(back, data);
    const file = await Deno.readFile(path);
    assert.equal(file.length, 100 + data.length);
    assert.deepEqual(file.subarray(100), data);
    assert.ok(file.subarray(0, 100).every((b) => b === 0), "the hole reads as zeros");
    assert.equal(pread(fd, new Uint8Array(16), 1000), 0, "past EOF");
    assert.equal(pread(fd, new Uint8Array(16), 100 + data.length - 4), 4, "short read at EOF");
    assert.equal(lseek(fd, 0, SEEK_END), 100 + data.length);
    assert.equal(lseek(fd, 0, SEEK_SET), 0, "pread/pwrite did not move the file position");
  });
});

Deno.test("sys: pwritev scatters several buffers into one run of the file; preadv gathers them back", async () => {
  await withTempFile(async (fd, path) => {
    const a = new Uint8Array([1, 2, 3]);
    const b = new Uint8Array([4, 5, 6, 7, 8]);
    const c = new Uint8Array([9, 10, 11, 12, 13, 14, 15]);
    const out = new IoVecs(4);
    out.push(bufferAddress(a), a.length);
    out.push(bufferAddress(b), b.length);
    out.push(bufferAddress(c), c.length);
    assert.equal(out.count, 3);
    assert.equal(out.bytes, 15);
    assert.equal(pwritev(fd, out.raw, out.count, 10), 15);
    const file = await Deno.readFile(path);
    assert.deepEqual([...file.subarray(10)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

    // Read back with a different split, including a zero-length entry.
    const x = new Uint8Array(7);
    const y = new Uint8Array(0);
    const z = new Uint8Array(1);
    const w = new Uint8Array(7);
    const inn = new IoVecs(4);
    inn.push(bufferAddress(x), x.length);
    inn.push(bufferAddress(y), 0);
    inn.push(bufferAddress(z), z.length);
    inn.push(bufferAddress(w), w.length);
    assert.equal(preadv(fd, inn.raw, inn.count, 10), 15);
    assert.deepEqual([...x], [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...z], [8]);
    assert.deepEqual([...w], [9, 10, 11, 12, 13, 14, 15]);
    // preadv past EOF reads nothing; a bad fd names the call.
    assert.equal(preadv(fd, inn.raw, inn.count, 4096), 0);
    throwsSys(() => pwritev(BAD_FD, out.raw, out.count, 0), "pwritev", "EBADF", `fd ${BAD_FD}`);
    throwsSys(() => preadv(BAD_FD, inn.raw, inn.count, 0), "preadv", "EBADF");
  });
});

Deno.test("sys: readv/writev follow the file position", async () => {
  await withTempFile(async (fd, path) => {
    const a = new TextEncoder().encode("abc");
    const b = new TextEncoder().encode("defg");
    const iov = new IoVecs(2);
    iov.push(bufferAddress(a), a.length);
    iov.push(bufferAddress(b), b.length);
    assert.equal(writev(fd, iov.raw, iov.count), 7);
    assert.equal(writev(fd, iov.raw, 1), 3, "count limits the entries used");
    assert.equal(new TextDecoder().decode(await Deno.readFile(path)), "abcdefgabc");
    assert.equal(lseek(fd, 2, SEEK_SET), 2);
    const p = new Uint8Array(5);
    const q = new Uint8Array(5);
    const rd = new IoVecs(2);
    rd.push(bufferAddress(p), p.length);
    rd.push(bufferAddress(q), q.length);
    assert.equal(readv(fd, rd.raw, rd.count), 8);
    assert.equal(new TextDecoder().decode(p), "cdefg");
    assert.equal(new TextDecoder().decode(q.subarray(0, 3)), "abc");
    assert.equal(readv(fd, rd.raw, rd.count), 0, "EOF");
  });
});

Deno.test("sys: readv/writev on a FIFO, and -1 (EAGAIN) when it is empty", async () => {
  const dir = await Deno.makeTempDir();
  const fifo = `${dir}/pipe`;
  try {
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0, "mkfifo");
    // O_RDWR on a FIFO never blocks on Linux: we are both ends.
    const fd = open(fifo, O.RDWR | O.NONBLOCK);
    try {
      const head = new Uint8Array([0xde, 0xad]);
      const tail = new Uint8Array([0xbe, 0xef, 0x01]);
      const w = new IoVecs(2);
      w.push(bufferAddress(head), head.length);
      w.push(bufferAddress(tail), tail.length);
      assert.equal(writev(fd, w.raw, w.count), 5);
      assert.equal(pollOne(fd, POLL.IN, 0) & POLL.IN, POLL.IN);
      const r1 = new Uint8Array(4);
      const r2 = new Uint8Array(4);
      const r = new IoVecs(2);
      r.push(bufferAddress(r1), r1.length);
      r.push(bufferAddress(r2), r2.length);
      assert.equal(readv(fd, r.raw, r.count), 5);
      assert.deepEqual([...r1], [0xde, 0xad, 0xbe, 0xef]);
      assert.equal(r2[0], 0x01);
      assert.equal(readv(fd, r.raw, r.count), -1, "empty FIFO: EAGAIN convention");
      assert.equal(read(fd, r1), -1);
      throwsSys(() => pread(fd, r1, 0), "pread", "ESPIPE", `fd ${fd}`);
    } finally {
      close(fd);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sys: IoVecs capacity, byte count and clear", () => {
  const v = new IoVecs(2);
  assert.equal(v.capacity, 2);
  assert.equal(v.raw.length, 4);
  v.push(0x1000n, 10);
  v.push(0x2000n, 22);
  assert.equal(v.bytes, 32);
  assert.deepEqual([...v.raw], [0x1000n, 10n, 0x2000n, 22n]);
  assert.throws(() => v.push(0x3000n, 1), (e: unknown) => e instanceof RangeError && /2 entries/.test(e.message));
  assert.equal(v.count, 2, "a refused push changes nothing");
  assert.equal(v.bytes, 32);
  assert.equal(v.clear(), v);
  assert.equal(v.count, 0);
  assert.equal(v.bytes, 0);
  v.push(0x4000n, 5);
  assert.deepEqual([...v.raw.subarray(0, 2)], [0x4000n, 5n]);
  assert.throws(() => new IoVecs(0).push(0n, 0), RangeError);
});

Deno.test("sys: lseek, ftruncate and fdatasync on a temp file", async () => {
  await withTempFile(async (fd, path) => {
    ftruncate(fd, 12345);
    assert.equal((await Deno.stat(path)).size, 12345);
    assert.equal(lseek(fd, 0, SEEK_END), 12345);
    fdatasync(fd);
    ftruncate(fd, 0);
    assert.equal((await Deno.stat(path)).size, 0);
    throwsSys(() => lseek(fd, -1, SEEK_SET), "lseek", "EINVAL", `fd ${fd}`);
    throwsSys(() => ftruncate(BAD_FD, 0), "ftruncate", "EBADF");
  });
});
