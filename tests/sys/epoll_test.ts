/*T:311 The main thread's whole event loop rests on this small wrapper, and
 * its one subtle part is the packed 12-byte epoll_event: if the fd were read
 * from the wrong offset, every ready descriptor would be reported as some
 * other fd and the wrong device would run. So these tests watch several real
 * eventfds at once and check that exactly the right fd comes back with the
 * right bits, from a wait that does not block (timeout 0) and from one
 * that does, and that modify/remove change what is reported. Regular files
 * cannot be polled and the kernel says EPERM; the event loop relies on
 * that exact code. A wait
 * that fails must say why although its errno was left on a pool thread:
 * the epoll fd is swapped for an eventfd under it (EINVAL), and a real
 * signal is sent to the very thread blocked in the wait (EINTR, which is
 * not an error). :*/

import assert from "node:assert/strict";
import { EPOLL, Epoll } from "../../lib/sys/epoll.ts";
import { close, eventfd, fcntl, O, open, read, write } from "../../lib/sys/calls.ts";
import { SysError } from "../../lib/sys/errno.ts";
import { replaceWithEventfd, WaitInterrupter, withNewEpollFd } from "../helpers/epoll_probe.ts";

const ONE = () => new Uint8Array(new BigUint64Array([1n]).buffer);

function sorted(r: { fd: number; events: number }[]) {
  return [...r].sort((a, b) => a.fd - b.fd);
}

Deno.test("epoll: a wait reports exactly the eventfd that was written, with its fd", async () => {
  const ep = new Epoll(8);
  const a = eventfd();
  const b = eventfd();
  const c = eventfd();
  try {
    for (const fd of [a, b, c]) ep.add(fd, EPOLL.IN);
    assert.deepEqual(await ep.wait(0), [], "nothing ready yet");
    write(b, ONE());
    assert.deepEqual(await ep.wait(0), [{ fd: b, events: EPOLL.IN }]);
    assert.deepEqual(await ep.wait(0), [{ fd: b, events: EPOLL.IN }], "level-triggered: still ready until read");
    write(c, ONE());
    assert.deepEqual(sorted(await ep.wait(0)), sorted([{ fd: b, events: EPOLL.IN }, { fd: c, events: EPOLL.IN }]));
    read(b, new BigUint64Array(1));
    assert.deepEqual(await ep.wait(0), [{ fd: c, events: EPOLL.IN }]);
  } finally {
    for (const fd of [a, b, c]) close(fd);
    ep.close();
  }
});

Deno.test("epoll: maxEvents bounds one batch; the rest come in the next", async () => {
  const ep = new Epoll(2);
  const fds = [eventfd(1), eventfd(1), eventfd(1)];
  try {
    for (const fd of fds) ep.add(fd, EPOLL.IN);
    const first = await ep.wait(0);
    assert.equal(first.length, 2);
    for (const r of first) {
      assert.ok(fds.includes(r.fd), `fd ${r.fd} is one of ours`);
      read(r.fd, new BigUint64Array(1));
    }
    const second = await ep.wait(0);
    assert.equal(second.length, 1);
    assert.ok(!first.some((r) => r.fd === second[0]!.fd));
  } finally {
    for (const fd of fds) close(fd);
    ep.close();
  }
});

Deno.test("epoll: modify changes the watched events; remove stops reports", async () => {
  const ep = new Epoll();
  const fd = eventfd();
  try {
    ep.add(fd, EPOLL.IN);
    assert.deepEqual(await ep.wait(0), []);
    ep.modify(fd, EPOLL.OUT);
    assert.deepEqual(await ep.wait(0), [{ fd, events: EPOLL.OUT }], "an eventfd is writable");
    ep.modify(fd, EPOLL.IN | EPOLL.OUT);
    write(fd, ONE());
    assert.deepEqual(await ep.wait(0), [{ fd, events: EPOLL.IN | EPOLL.OUT }]);
    ep.remove(fd);
    assert.deepEqual(await ep.wait(0), [], "removed fd is not reported although still ready");
    ep.add(fd, EPOLL.IN);
    assert.deepEqual(await ep.wait(0), [{ fd, events: EPOLL.IN }], "can be added again");
  } finally {
    close(fd);
    ep.close();
  }
});

Deno.test("epoll: wait() resolves with the ready fd, and with [] on timeout", async () => {
  const ep = new Epoll();
  const a = eventfd();
  const b = eventfd();
  try {
    ep.add(a, EPOLL.IN);
    ep.add(b, EPOLL.IN);
    assert.deepEqual(await ep.wait(0), []);
    assert.deepEqual(await ep.wait(1), [], "a short timeout with nothing ready");
    write(b, ONE());
    assert.deepEqual(await ep.wait(-1), [{ fd: b, events: EPOLL.IN }]);
    read(b, new BigUint64Array(1));
    // A write from a timer wakes a wait that is already blocked on the pool thread.
    const pending = ep.wait(-1);
    const timer = setTimeout(() => write(a, ONE()), 0);
    try {
      assert.deepEqual(await pending, [{ fd: a, events: EPOLL.IN }]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    close(a);
    close(b);
    ep.close();
  }
});

Deno.test("epoll: a regular file cannot be added (EPERM), naming the op and the fd", async () => {
  const path = await Deno.makeTempFile();
  const fd = open(path, O.RDONLY);
  const ep = new Epoll();
  try {
    assert.throws(() => ep.add(fd, EPOLL.IN), (e: unknown) => {
      assert.ok(e instanceof SysError);
      assert.equal(e.code, "EPERM");
      assert.equal(e.call, "epoll_ctl(ADD)");
      assert.equal(e.subject, `fd ${fd}`);
      return true;
    });
  } finally {
    ep.close();
    close(fd);
    await Deno.remove(path);
  }
});

Deno.test("epoll: ctl errors: adding twice is EEXIST, modify/remove of an unwatched fd is ENOENT", () => {
  const ep = new Epoll();
  const fd = eventfd();
  try {
    ep.add(fd, EPOLL.IN);
    assert.throws(() => ep.add(fd, EPOLL.IN), (e: unknown) => e instanceof SysError && e.code === "EEXIST");
    ep.remove(fd);
    assert.throws(() => ep.remove(fd), (e: unknown) => e instanceof SysError && e.call === "epoll_ctl(DEL)");
    assert.throws(
      () => ep.modify(fd, EPOLL.IN),
      (e: unknown) => e instanceof SysError && e.call === "epoll_ctl(MOD)" && e.code === "ENOENT",
    );
    assert.throws(() => ep.add(-1, EPOLL.IN), (e: unknown) => e instanceof SysError && e.code === "EBADF");
  } finally {
    close(fd);
    ep.close();
  }
});

Deno.test("epoll: close() is safe twice and later calls fail cleanly", async () => {
  const ep = new Epoll();
  ep.close();
  ep.close();
  assert.throws(() => ep.add(0, EPOLL.IN), (e: unknown) => e instanceof SysError && e.code === "EBADF");
  await assert.rejects(
    ep.wait(0),
    (e: unknown) => e instanceof SysError && e.call === "epoll_wait" && e.code === "EBADF",
    "a failed wait is an error, not an empty batch to wait again after",
  );
});

Deno.test("epoll: a wait on an fd that is no longer an epoll rejects with EINVAL, naming epoll_wait and the fd", async () => {
  const { value: ep, epfd } = withNewEpollFd(() => new Epoll());
  try {
    replaceWithEventfd(epfd);
    // The errno belongs to the pool thread that ran the wait; wait() must still name it.
    await assert.rejects(ep.wait(-1), (e: unknown) => {
      assert.ok(e instanceof SysError, String(e));
      assert.equal(e.call, "epoll_wait");
      assert.equal(e.code, "EINVAL");
      assert.equal(e.message, `epoll_wait on epoll fd ${epfd} failed: EINVAL`);
      return true;
    });
  } finally {
    ep.close();
  }
});

Deno.test("epoll: a signal that interrupts the wait on its pool thread (EINTR) is not an error", async () => {
  const { value: ep, epfd } = withNewEpollFd(() => new Epoll());
  const fd = eventfd();
  const signals = new WaitInterrupter();
  try {
    ep.add(fd, EPOLL.IN);
    const pending = ep.wait(-1);
    await signals.interrupt(epfd);
    // Nothing is ready, so only the interruption can end this wait.
    assert.deepEqual(await pending, []);
    write(fd, ONE());
    assert.deepEqual(await ep.wait(-1), [{ fd, events: EPOLL.IN }], "the next wait works");
  } finally {
    signals.close();
    close(fd);
    ep.close();
  }
});

Deno.test("epoll: the user word carries large fd numbers intact", async () => {
  // dup an eventfd high up with F_DUPFD_CLOEXEC so the fd needs more than one byte.
  const F_DUPFD_CLOEXEC = 1030;
  const ep = new Epoll();
  const low = eventfd(1);
  let high = -1;
  try {
    high = fcntl(low, F_DUPFD_CLOEXEC, 5000);
    assert.ok(high >= 5000, `dup to ${high}`);
    ep.add(high, EPOLL.IN);
    assert.deepEqual(await ep.wait(0), [{ fd: high, events: EPOLL.IN }]);
  } finally {
    close(high);
    close(low);
    ep.close();
  }
});
