/*T:539 The flush-order check (chapter T:537) is itself tested, on traces
 * written by hand in strace's format, so that it is known to pass on the
 * orders a correct device makes (alone, or with an I/O thread whose
 * fdatasync another thread's calls interrupt in the trace) and to fail on
 * each way of getting the flush wrong. The traces follow what strace 6.1
 * printed for the launcher: padded returns, split calls. :*/

import assert from "node:assert/strict";
import { checkFlushOrder } from "./helpers/flush_order.ts";
import { parseStrace } from "./helpers/strace.ts";

const DISK = "/tmp/lguest-blk-sync-x/sync.img";
const OFFSETS = [20480, 20992, 21504];
const MAIN = 100;
const VCPU = 150;
const QUEUE = 201;
const IO = 202;

/** A trace being written: one strace line per call. */
class Trace {
  readonly #lines: string[] = [];
  #usec = 0;

  line(pid: number, text: string): this {
    this.#usec += 7;
    this.#lines.push(`${pid}  10:00:00.${String(this.#usec).padStart(6, "0")} ${text}`);
    return this;
  }

  /** The launcher's set-up: the disk opened as fd 9, the disk's irqfd 12, the console's 14. */
  setUp(): this {
    return this.line(MAIN, `openat(AT_FDCWD, "/root/.cache/deno/dep_analysis_cache_v2", O_RDWR|O_CREAT, 0644) = 8`)
      .line(MAIN, `openat(AT_FDCWD, "${DISK}", O_RDWR|O_NOCTTY) = 9`)
      .line(MAIN, "eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = 10")
      .line(MAIN, "eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = 11")
      .line(MAIN, "eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = 12")
      .line(MAIN, "ioctl(5, KVM_IRQFD, 0x7ffd2c1e0b40) = 0")
      .line(MAIN, "eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = 13")
      .line(MAIN, "ioctl(5, KVM_IOEVENTFD, 0x7ffd2c1e0b40) = 0")
      .line(MAIN, "eventfd2(0, EFD_CLOEXEC|EFD_NONBLOCK) = 14")
      .line(MAIN, "ioctl(5, KVM_IRQFD, 0x7ffd2c1e0b40) = 0");
  }

  pwritev(k: number, pid = QUEUE): this {
    return this.line(pid, `pwritev(9, [{iov_base="\\x5c\\x5f) = 3"..., iov_len=512}], 1, ${OFFSETS[k]}) = 512`);
  }

  irq(fd = 12): this {
    return this.line(QUEUE, `write(${fd}, "\\1\\0\\0\\0\\0\\0\\0\\0", 8) = 8`);
  }

  sync(fd = 9, ret = "0"): this {
    return this.line(QUEUE, `fdatasync(${fd})${" ".repeat(5)}= ${ret}`);
  }

  guest(): this {
    return this.line(VCPU, "ioctl(7, KVM_RUN, 0) = 0").line(VCPU, `write(1, "BLK-SYNC: 0 0 0\\n", 16) = 16`);
  }

  get text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function check(t: Trace): string[] {
  return checkFlushOrder(parseStrace(t.text), { diskPath: DISK, offsets: OFFSETS }).problems;
}

/** Three rounds, each made by `round`. */
function rounds(round: (t: Trace, k: number) => void): Trace {
  const t = new Trace().setUp();
  for (let k = 0; k < 3; k++) round(t, k);
  return t.line(MAIN, "+++ exited with 0 +++");
}

Deno.test('strace parser: a split call is joined; padded returns and ") = " inside strings are read right', () => {
  const calls = parseStrace(
    new Trace()
      .line(IO, "fdatasync(9 <unfinished ...>")
      .line(QUEUE, `write(1, "a) = 5", 6) = 6`)
      .line(IO, "<... fdatasync resumed>)     = 0")
      .line(QUEUE, "fdatasync(10)     = -1 EIO (Input/output error)")
      .line(VCPU, "ioctl(7, KVM_RUN, 0 <unfinished ...>")
      .line(VCPU, "+++ killed by SIGKILL +++")
      .text,
  );
  assert.deepEqual(calls.map((c) => [c.pid, c.name, c.args, c.ret, c.start, c.end]), [
    [IO, "fdatasync", "9", "0", 1, 3],
    [QUEUE, "write", `1, "a) = 5", 6`, "6", 2, 2],
    [QUEUE, "fdatasync", "10", "-1 EIO (Input/output error)", 4, 4],
    [VCPU, "ioctl", "7, KVM_RUN, 0", undefined, 5, undefined],
  ]);
});

Deno.test("flush order: a device that syncs, then signals, passes; so does one whose sync runs on an I/O thread", () => {
  const alone = rounds((t) => t.pwritev(0).irq().guest().sync().irq().guest());
  const serial = rounds((t, k) => t.pwritev(k).irq().guest().sync().irq().guest());
  const found = checkFlushOrder(parseStrace(serial.text), { diskPath: DISK, offsets: OFFSETS });
  assert.deepEqual(found.problems, []);
  assert.equal(found.diskFd, 9);
  assert.equal(found.irqFd, 12);
  assert.deepEqual(found.rounds.map((r) => [r.write?.start, r.writeIrq?.start, r.sync?.start, r.flushIrq?.start]), [
    [11, 12, 15, 16],
    [19, 20, 23, 24],
    [27, 28, 31, 32],
  ]);
  assert.notDeepEqual(check(alone), [], "three rounds at one offset are not three rounds");

  const threaded = rounds((t, k) =>
    t.pwritev(k, IO).irq().guest()
      .line(IO, "fdatasync(9 <unfinished ...>")
      .line(VCPU, "ioctl(7, KVM_RUN, 0) = 0")
      .line(QUEUE, `write(1, "x", 1) = 1`)
      .line(IO, "<... fdatasync resumed>) = 0")
      .irq().guest()
  );
  assert.deepEqual(check(threaded), []);
});

Deno.test("flush order: each way of getting the flush wrong is reported, naming the round", () => {
  const cases: Array<[string, Trace, RegExp]> = [
    ["no fdatasync", rounds((t, k) => t.pwritev(k).irq().guest().irq().guest()), /round 0: .*none on fd 9 at all/],
    ["fdatasync on another fd", rounds((t, k) => t.pwritev(k).irq().guest().sync(8).irq()), /round 0: .*none on fd 9/],
    [
      "fdatasync failing",
      rounds((t, k) => t.pwritev(k).irq().guest().sync(9, "-1 EIO (Input/output error)").irq()),
      /round 0: .*fdatasync\(9\) = -1 EIO/,
    ],
    [
      "signalled, then synced",
      rounds((t, k) => t.pwritev(k).irq().guest().irq().sync().guest()),
      /round 0: no fdatasync\(9\) = 0 returned between .*\(line 12\) and the flush's \(line 15\); .*fdatasync\(9\) = 0 \[line 16,/,
    ],
    [
      "signalled while the sync runs",
      rounds((t, k) =>
        t.pwritev(k).irq().guest().line(IO, "fdatasync(9 <unfinished ...>").irq().line(
          IO,
          "<... fdatasync resumed>) = 0",
        )
      ),
      /round 0: .*fdatasync\(9\) = 0 \[line 15-17, thread 202\]/,
    ],
    [
      "only the first flush synced",
      rounds((t, k) => k === 0 ? t.pwritev(k).irq().sync().irq() : t.pwritev(k).irq().irq()),
      /^round 1: /,
    ],
    ["no interrupt for the flush", rounds((t, k) => t.pwritev(k).irq().sync()), /round 2: no interrupt for the flush/],
    [
      "the guest not waiting",
      rounds((t, k) => t.pwritev(k).irq().sync()),
      /round 0: the next round's write \(line 14\)/,
    ],
    ["the disk never opened", new Trace().irq(), /expected one successful openat/],
  ];
  for (const [what, trace, expected] of cases) {
    const problems = check(trace);
    assert.ok(problems.some((p) => expected.test(p)), `${what}: ${JSON.stringify(problems)}`);
  }
});
