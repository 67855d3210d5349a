/*T:350 The main thread's event loop waits on a pool thread while the
 * JavaScript event loop keeps turning, so the tests drive it the way the
 * launcher does: a timer (plain JavaScript) writes to a real eventfd, the
 * wait on the pool thread wakes, and the handler runs back on the main
 * thread. Each test ends with run() resolved and the loop closed, so no
 * wait is left pending; a loop that failed to stop would hang the test,
 * which is a failure, not a timing assertion. Covered: delivery and the
 * event bits, stop() from a handler and from outside, a regular file being
 * refused, remove() really ending delivery, modify(), and the two error
 * policies (onError reports and continues; without it run() rejects), and
 * fail(), which ends run() with an error found outside any handler. The
 * wait itself failing is neither: its epoll fd is swapped for an eventfd
 * under the running loop, and run() must end within a second with the
 * error, after which the process must sit idle, not retry at full speed. A
 * real signal on the waiting pool thread (EINTR) must change nothing. :*/

import assert from "node:assert/strict";
import { EventLoop } from "../lib/eventloop.ts";
import { close, eventfd, O, open, read, write } from "../lib/sys/calls.ts";
import { EPOLL } from "../lib/sys/epoll.ts";
import { SysError } from "../lib/sys/errno.ts";
import {
  cpuSeconds,
  replaceWithEventfd,
  untilWaiting,
  WaitInterrupter,
  withNewEpollFd,
} from "./helpers/epoll_probe.ts";

const one = () => new Uint8Array(new BigUint64Array([1n]).buffer);
const drain = (fd: number) => read(fd, new BigUint64Array(1));

Deno.test("eventloop: a timer's eventfd write reaches the handler; stop() in the handler ends run()", async () => {
  const loop = new EventLoop();
  const fd = eventfd();
  const seen: number[] = [];
  try {
    assert.equal(
      loop.add(fd, EPOLL.IN, (events) => {
        seen.push(events);
        assert.equal(drain(fd), 8);
        loop.stop();
      }),
      true,
    );
    const timer = setTimeout(() => write(fd, one()), 0);
    try {
      await loop.run();
    } finally {
      clearTimeout(timer);
    }
    assert.deepEqual(seen, [EPOLL.IN]);
  } finally {
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: stop() from outside a handler wakes the wait", async () => {
  const loop = new EventLoop();
  try {
    const timer = setTimeout(() => loop.stop(), 0);
    try {
      await loop.run();
    } finally {
      clearTimeout(timer);
    }
    // Stopped for good: a second run returns at once.
    await loop.run();
  } finally {
    loop.close();
  }
});

Deno.test("eventloop: stop() before run() makes run() return at once", async () => {
  const loop = new EventLoop();
  const fd = eventfd(1);
  let calls = 0;
  try {
    loop.add(fd, EPOLL.IN, () => calls++);
    loop.stop();
    await loop.run();
    assert.equal(calls, 0);
  } finally {
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: a regular file cannot be watched: add() returns false", async () => {
  const path = await Deno.makeTempFile();
  const fd = open(path, O.RDONLY);
  const loop = new EventLoop();
  try {
    assert.equal(loop.add(fd, EPOLL.IN, () => assert.fail("never called")), false);
    loop.remove(fd); // not watched: no error
    loop.remove(123456); // never seen: no error
  } finally {
    loop.close();
    close(fd);
    await Deno.remove(path);
  }
});

Deno.test("eventloop: remove() stops delivery even while the fd stays ready", async () => {
  const loop = new EventLoop();
  const a = eventfd();
  const b = eventfd();
  let aCalls = 0;
  let bCalls = 0;
  try {
    loop.add(a, EPOLL.IN, () => {
      aCalls++;
      drain(a);
      loop.remove(a);
      // a becomes ready again before b; a removed fd must not be reported.
      write(a, one());
      write(b, one());
    });
    loop.add(b, EPOLL.IN, () => {
      bCalls++;
      drain(b);
      loop.stop();
    });
    const timer = setTimeout(() => write(a, one()), 0);
    try {
      await loop.run();
    } finally {
      clearTimeout(timer);
    }
    assert.equal(aCalls, 1);
    assert.equal(bCalls, 1);
  } finally {
    loop.close();
    close(a);
    close(b);
  }
});

Deno.test("eventloop: a handler removing another ready fd prevents its call in the same batch", async () => {
  const loop = new EventLoop();
  const a = eventfd(1);
  const b = eventfd(1);
  const c = eventfd();
  const calls: string[] = [];
  try {
    // a and b are both ready before run(): whichever runs first removes the other,
    // then signals c, whose handler ends the loop.
    const handler = (name: string, self: number, other: number) => () => {
      calls.push(name);
      drain(self);
      loop.remove(other);
      write(c, one());
    };
    loop.add(a, EPOLL.IN, handler("a", a, b));
    loop.add(b, EPOLL.IN, handler("b", b, a));
    loop.add(c, EPOLL.IN, () => {
      calls.push("c");
      drain(c);
      loop.stop();
    });
    await loop.run();
    assert.equal(calls.length, 2, `one of a/b, then c: ${calls}`);
    assert.ok(calls[0] === "a" || calls[0] === "b");
    assert.equal(calls[1], "c");
  } finally {
    loop.close();
    close(a);
    close(b);
    close(c);
  }
});

Deno.test("eventloop: modify() changes the events a handler is called for", async () => {
  const loop = new EventLoop();
  const fd = eventfd();
  const seen: number[] = [];
  try {
    loop.add(fd, EPOLL.IN, (events) => {
      seen.push(events);
      loop.stop();
    });
    loop.modify(fd, EPOLL.OUT); // an eventfd is always writable
    await loop.run();
    assert.deepEqual(seen, [EPOLL.OUT]);
  } finally {
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: an fd added while run() is waiting is served", async () => {
  const loop = new EventLoop();
  const fd = eventfd();
  let calls = 0;
  try {
    const timer = setTimeout(() => {
      write(fd, one());
      loop.add(fd, EPOLL.IN, () => {
        calls++;
        drain(fd);
        loop.stop();
      });
    }, 0);
    try {
      await loop.run();
    } finally {
      clearTimeout(timer);
    }
    assert.equal(calls, 1);
  } finally {
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: with onError, a throwing handler is reported and the loop goes on", async () => {
  const loop = new EventLoop();
  const fd = eventfd();
  const errors: unknown[] = [];
  let calls = 0;
  try {
    loop.onError = (e) => errors.push(e);
    loop.add(fd, EPOLL.IN, () => {
      calls++;
      drain(fd);
      if (calls === 1) {
        write(fd, one());
        throw new Error("boom");
      }
      loop.stop();
    });
    write(fd, one());
    await loop.run();
    assert.equal(calls, 2, "the handler ran again after throwing");
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof Error);
    assert.equal(errors[0].message, "boom");
  } finally {
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: without onError, a throwing handler rejects run()", async () => {
  const loop = new EventLoop();
  const fd = eventfd();
  let calls = 0;
  try {
    loop.add(fd, EPOLL.IN, () => {
      calls++;
      drain(fd);
      throw new RangeError("handler failed");
    });
    const timer = setTimeout(() => write(fd, one()), 0);
    try {
      await assert.rejects(loop.run(), (e: unknown) => e instanceof RangeError && e.message === "handler failed");
    } finally {
      clearTimeout(timer);
    }
    assert.equal(calls, 1);
  } finally {
    loop.close();
    close(fd);
  }
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

Deno.test("eventloop: a failing epoll_wait ends run() at once with one line naming epoll_wait and the errno; no spin", async () => {
  const { value: loop, epfd } = withNewEpollFd(() => new EventLoop());
  const handlerErrors: unknown[] = [];
  loop.onError = (e) => handlerErrors.push(e); // only for handlers: a failed wait still ends run()
  let outcome: unknown = "still running";
  let settledAt = Infinity;
  const running = loop.run().then(
    () => outcome = "resolved",
    (e: unknown) => outcome = e,
  ).finally(() => settledAt = performance.now());
  try {
    await untilWaiting(epfd);
    replaceWithEventfd(epfd);
    // The blocked wait still holds the old epoll: the wake fd ends it, and the next wait meets the eventfd.
    const broke = performance.now();
    loop.wake();
    const cpuBefore = cpuSeconds();
    await sleep(500);
    const cpuMs = Math.round((cpuSeconds() - cpuBefore) * 1000);
    assert.ok(outcome instanceof SysError, `run() has not ended (${String(outcome)}); ${cpuMs} ms CPU in 500 ms`);
    assert.ok(settledAt - broke < 1000, `ended ${Math.round(settledAt - broke)} ms after the fd broke`);
    assert.equal(outcome.call, "epoll_wait");
    assert.equal(outcome.code, "EINVAL");
    assert.equal(outcome.message, `epoll_wait on epoll fd ${epfd} failed: EINVAL`);
    assert.doesNotMatch(outcome.message, /\n/);
    assert.deepEqual(handlerErrors, []);
    assert.ok(cpuMs < 150, `${cpuMs} ms CPU in the 500 ms after the failure: the loop is spinning`);
  } finally {
    loop.stop(); // ends a loop that is still retrying
    await Promise.race([running, sleep(1000)]);
    loop.close();
  }
});

Deno.test("eventloop: a signal landing on the pool thread in epoll_wait (EINTR) does not end run()", async () => {
  const { value: loop, epfd } = withNewEpollFd(() => new EventLoop());
  const fd = eventfd();
  const signals = new WaitInterrupter();
  let calls = 0;
  try {
    loop.add(fd, EPOLL.IN, () => {
      calls++;
      drain(fd);
      loop.stop();
    });
    let outcome: unknown = "running";
    const ended = loop.run().then(() => outcome = "resolved", (e: unknown) => outcome = e);
    await signals.interrupt(epfd);
    // The signal ends that wait at once; run() waits again (on whichever pool thread), and
    // the eventfd is then served as usual.
    await sleep(50);
    assert.equal(outcome, "running", "the interrupted wait ended run()");
    await untilWaiting(epfd);
    write(fd, one());
    await ended;
    assert.equal(outcome, "resolved");
    assert.equal(calls, 1);
  } finally {
    signals.close();
    loop.close();
    close(fd);
  }
});

Deno.test("eventloop: fail() from outside a handler (a timer) ends run() with that error; the first one wins", async () => {
  const loop = new EventLoop();
  try {
    const first = new Error("irqfd gone");
    const timer = setTimeout(() => {
      loop.fail(first);
      loop.fail(new Error("second"));
    }, 0);
    try {
      await assert.rejects(loop.run(), (e: unknown) => e === first);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    loop.close();
  }
});
