/*T:310 The libc wrappers are thin, but every byte the launcher moves and
 * every error a user ever reads passes through them. So each one is driven
 * against the real kernel: a missing path must come back as one SysError
 * that names the call, the errno and the path; eventfd counters must add up;
 * scatter/gather I/O must land each buffer's bytes where the file says they
 * belong (checked by reading the file back through Deno, not through us);
 * the EAGAIN convention (-1, not an exception) must hold for every
 * non-blocking read and write path. Signalling an eventfd is the exception:
 * a full counter is already signalled, so that is neither -1 nor a wait,
 * while every other failure is thrown, since ignoring it would lose an
 * interrupt. No mocks: temp files, a FIFO and eventfds are cheap and
 * real. :*/

import assert from "node:assert/strict";
import {
  bufferAddress,
  close,
  cString,
  drainEventfd,
  EFD,
  eventfd,
  F,
  fcntl,
  getpid,
  getrandom,
  gettid,
  ioctl,
  ioctlInt,
  isatty,
  MADV,
  madvise,
  MAP,
  mmap,
  munmap,
  O,
  open,
  POLL,
  pollOne,
  read,
  readAt,
  setNonBlocking,
  signalEventfd,
  socket,
  socketpair,
  tgkill,
  write,
  writeAll,
  writeAt,
} from "../../lib/sys/calls.ts";
import { Errno, errnoName, SysError } from "../../lib/sys/errno.ts";
import { BAD_FD, throwsSys, withTempFile } from "../helpers/sys_rig.ts";

/** A u64 eventfd counter value as 8 bytes. */
function u64(n: bigint): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new BigUint64Array([n]).buffer);
}

Deno.test("sys: SysError from open names the call, ENOENT and the path", () => {
  const path = `/nonexistent-lguest-${crypto.randomUUID()}/missing.img`;
  const e = throwsSys(() => open(path, O.RDONLY), "open", "ENOENT", path);
  assert.equal(e.errno, Errno.ENOENT);
  assert.equal(e.message, `open on ${path} failed: ENOENT`);
});

Deno.test("sys: errnoName knows the common names and falls back to the number", () => {
  assert.equal(errnoName(2), "ENOENT");
  assert.equal(errnoName(9), "EBADF");
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(9999), "errno 9999");
  const e = new SysError("frob", 9999);
  assert.equal(e.message, "frob failed: errno 9999");
  assert.equal(e.subject, undefined);
});

Deno.test("sys: open of a directory for writing is EISDIR; O_EXCL on an existing file is EEXIST", async () => {
  const dir = await Deno.makeTempDir();
  try {
    throwsSys(() => open(dir, O.WRONLY), "open", "EISDIR", dir);
    const file = `${dir}/f`;
    close(open(file, O.RDWR | O.CREAT | O.EXCL, 0o600));
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    throwsSys(() => open(file, O.RDWR | O.CREAT | O.EXCL), "open", "EEXIST", file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sys: close(-1) is a no-op; closing a bad fd is EBADF", () => {
  close(-1);
  close(-42);
  throwsSys(() => close(BAD_FD), "close", "EBADF", `fd ${BAD_FD}`);
});

Deno.test("sys: open sets close-on-exec on every descriptor", async () => {
  await withTempFile((fd) => {
    const FD_CLOEXEC = 1;
    const F_GETFD = 1;
    assert.equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  });
});

Deno.test("sys: ioctl on a bad fd is EBADF and names the request", () => {
  throwsSys(() => ioctl(BAD_FD, 0xae00, null, "KVM_GET_API_VERSION"), "ioctl(KVM_GET_API_VERSION)", "EBADF");
  throwsSys(
    () => ioctlInt(BAD_FD, 0xae01, 0, "KVM_CREATE_VM"),
    "ioctl(KVM_CREATE_VM)",
    "EBADF",
    `fd ${BAD_FD}`,
  );
});

Deno.test("sys: a KVM ioctl on a regular file is ENOTTY", async () => {
  await withTempFile((fd) => {
    throwsSys(
      () => ioctl(fd, 0xae00, new Uint8Array(8), "KVM_GET_API_VERSION"),
      "ioctl(KVM_GET_API_VERSION)",
      "ENOTTY",
    );
  });
});

Deno.test("sys: eventfd counters add up across writes; an empty non-blocking read is -1", () => {
  const fd = eventfd();
  try {
    assert.equal(write(fd, u64(3n)), 8);
    assert.equal(write(fd, u64(4n)), 8);
    writeAll(fd, u64(35n));
    const got = new BigUint64Array(1);
    assert.equal(read(fd, got), 8);
    assert.equal(got[0], 42n);
    assert.equal(read(fd, got), -1, "EAGAIN convention");
    // readAt/writeAt are the same calls on raw host addresses.
    const buf = u64(5n);
    assert.equal(writeAt(fd, bufferAddress(buf), 8), 8);
    const back = new BigUint64Array(1);
    assert.equal(readAt(fd, bufferAddress(back), 8), 8);
    assert.equal(back[0], 5n);
  } finally {
    close(fd);
  }
});

Deno.test("sys: eventfd initial value, and a short eventfd read is EINVAL", () => {
  const fd = eventfd(7);
  try {
    throwsSys(() => read(fd, new Uint8Array(4)), "read", "EINVAL", `fd ${fd}`);
    throwsSys(() => write(fd, new Uint8Array(4)), "write", "EINVAL", `fd ${fd}`);
    const got = new BigUint64Array(1);
    assert.equal(read(fd, got), 8);
    assert.equal(got[0], 7n);
  } finally {
    close(fd);
  }
});

Deno.test("sys: a full eventfd counter makes a non-blocking write return -1", () => {
  const fd = eventfd();
  try {
    assert.equal(write(fd, u64(0xffff_ffff_ffff_fffen)), 8, "the largest value the counter can hold");
    assert.equal(write(fd, u64(1n)), -1, "EAGAIN convention");
  } finally {
    close(fd);
  }
});

Deno.test("sys: signalEventfd adds 1; a closed, read-only or broken fd throws naming write, the fd and the errno", () => {
  const fd = eventfd();
  try {
    signalEventfd(fd);
    signalEventfd(fd, "doorbell");
    const got = new BigUint64Array(1);
    assert.equal(read(fd, got), 8);
    assert.equal(got[0], 2n);
  } finally {
    close(fd);
  }
  // Each of these would be a lost interrupt if it were ignored.
  const gone = eventfd();
  close(gone);
  throwsSys(() => signalEventfd(gone), "write", "EBADF", `eventfd ${gone}`);
  const e = throwsSys(() => signalEventfd(BAD_FD, "virtio-net irqfd"), "write", "EBADF", `virtio-net irqfd ${BAD_FD}`);
  assert.equal(e.message, `write on virtio-net irqfd ${BAD_FD} failed: EBADF`);
  const readOnly = open("/dev/null", O.RDONLY);
  try {
    throwsSys(() => signalEventfd(readOnly, "read-only fd"), "write", "EBADF", `read-only fd ${readOnly}`);
  } finally {
    close(readOnly);
  }
  const AF_UNIX = 1;
  const SOCK_STREAM = 1;
  const [end, peer] = socketpair(AF_UNIX, SOCK_STREAM);
  close(peer);
  try {
    throwsSys(() => signalEventfd(end, "lonely socket"), "write", "EPIPE", `lonely socket ${end}`);
  } finally {
    close(end);
  }
});

Deno.test("sys: signalEventfd on a counter at its ceiling returns at once and leaves the counter there", async () => {
  const CEILING = 0xffff_ffff_ffff_fffen;
  const fd = eventfd();
  const worker = new Worker(new URL("../helpers/signal_eventfd_worker.ts", import.meta.url).href, { type: "module" });
  const answers: string[] = [];
  let answered: () => void = () => {};
  worker.onmessage = (ev: MessageEvent<string>) => {
    answers.push(ev.data);
    answered();
  };
  const next = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      answered = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  try {
    await next(10_000);
    assert.deepEqual(answers, ["ready"]);
    assert.equal(write(fd, u64(CEILING)), 8);
    worker.postMessage(fd);
    await next(1000);
    const blocked = answers.length === 1;
    // A call that waits for room would wait for ever: make room so the Worker can finish.
    if (blocked) drainEventfd(fd);
    assert.ok(!blocked, "signalEventfd waited for room in the counter");
    assert.deepEqual(answers, ["ready", "returned"], "EAGAIN means already signalled, not an error");
    const got = new BigUint64Array(1);
    assert.equal(read(fd, got), 8);
    assert.equal(got[0], CEILING, "the counter is still at its ceiling");
  } finally {
    worker.terminate();
    close(fd);
  }
});

Deno.test("sys: setNonBlocking sets O_NONBLOCK; then an empty read returns -1", () => {
  const fd = eventfd(0, EFD.CLOEXEC);
  try {
    assert.equal(fcntl(fd, F.GETFL) & O.NONBLOCK, 0, "created blocking");
    setNonBlocking(fd);
    assert.equal(fcntl(fd, F.GETFL) & O.NONBLOCK, O.NONBLOCK);
    assert.equal(read(fd, new BigUint64Array(1)), -1);
  } finally {
    close(fd);
  }
  throwsSys(() => fcntl(BAD_FD, F.GETFL), "fcntl", "EBADF", `fd ${BAD_FD}`);
});

Deno.test("sys: getrandom fills the buffer", () => {
  const buf = new Uint8Array(64);
  assert.equal(getrandom(buf), 64);
  assert.ok(buf.some((b) => b !== 0), "64 random bytes are not all zero");
  const other = new Uint8Array(64);
  getrandom(other);
  assert.notDeepEqual(other, buf);
});

Deno.test("sys: pollOne reports timeout as 0, readiness as revents, and a bad fd as NVAL", () => {
  const fd = eventfd();
  try {
    assert.equal(pollOne(fd, POLL.IN, 0), 0, "nothing to read");
    assert.equal(pollOne(fd, POLL.OUT, 0), POLL.OUT, "an eventfd is writable");
    write(fd, u64(1n));
    assert.equal(pollOne(fd, POLL.IN, 0), POLL.IN);
    assert.equal(pollOne(fd, POLL.IN, -1), POLL.IN, "an infinite wait returns at once when ready");
    assert.equal(pollOne(fd, POLL.IN | POLL.OUT, 0), POLL.IN | POLL.OUT);
  } finally {
    close(fd);
  }
  assert.equal(pollOne(BAD_FD, POLL.IN, 0), POLL.NVAL);
});

Deno.test("sys: cString is UTF-8 with one trailing NUL", () => {
  assert.deepEqual([...cString("ab")], [0x61, 0x62, 0]);
  assert.deepEqual([...cString("")], [0]);
  assert.deepEqual([...cString("é")], [0xc3, 0xa9, 0]);
});

Deno.test("sys: isatty is false for files and /dev/null", async () => {
  await withTempFile((fd) => assert.equal(isatty(fd), false));
  const nul = open("/dev/null", O.RDWR);
  try {
    assert.equal(isatty(nul), false);
  } finally {
    close(nul);
  }
  assert.equal(isatty(BAD_FD), false);
});

Deno.test("sys: mmap, madvise and munmap a private anonymous page", () => {
  const addr = mmap(8192, MAP.PROT_READ | MAP.PROT_WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  try {
    assert.equal(addr % 4096n, 0n);
    const view = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(addr)!, 8192));
    assert.equal(view[8191], 0);
    view[8191] = 7;
    assert.equal(view[8191], 7);
    assert.equal(madvise(addr, 8192, MADV.DONTNEED), true);
    assert.equal(view[8191], 0, "DONTNEED drops private anonymous pages back to zero");
    assert.equal(madvise(addr + 1n, 4096, MADV.DONTNEED), false, "unaligned advice is refused, not thrown");
  } finally {
    munmap(addr, 8192);
  }
  throwsSys(() => mmap(0, MAP.PROT_READ, MAP.PRIVATE | MAP.ANONYMOUS), "mmap", "EINVAL", "0 bytes");
  throwsSys(() => munmap(0x1001n, 4096), "munmap", "EINVAL", "0x1001");
});

Deno.test("sys: tgkill with signal 0 probes a thread; a missing thread is ESRCH", () => {
  const pid = getpid();
  assert.ok(pid > 0);
  assert.ok(gettid() > 0);
  tgkill(pid, gettid(), 0);
  throwsSys(() => tgkill(pid, 0x3fff_fff0, 0), "tgkill", "ESRCH", `thread ${0x3fff_fff0}`);
});

Deno.test("sys: socket makes a close-on-exec fd; an unknown family is EAFNOSUPPORT", () => {
  const AF_UNIX = 1;
  const SOCK_STREAM = 1;
  const fd = socket(AF_UNIX, SOCK_STREAM);
  try {
    assert.ok(fd >= 0);
    assert.equal(fcntl(fd, 1) & 1, 1, "FD_CLOEXEC");
  } finally {
    close(fd);
  }
  throwsSys(() => socket(4242, SOCK_STREAM), "socket", "EAFNOSUPPORT");
});
