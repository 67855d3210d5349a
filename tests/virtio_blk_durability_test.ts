// lguest-test-needs: kvm
/*T:538 The flush, checked where it can fail. The launcher runs as a user
 * runs it, with one disk, under Debian's strace (every thread, one output
 * file); the test guest's "blk.sync" mode writes a sector and flushes,
 * three times, one request at a time. From the trace (chapter T:537), each
 * of the guest's flushes must have been an fdatasync on the disk's fd that
 * returned 0 after the round's write was signalled and before the flush's
 * own interrupt was. With the fdatasync taken out of the device this test
 * fails; the SIGKILL test in virtio_blk_test.ts does not. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { guestReport, HAVE_KVM } from "./helpers/launcher.ts";
import { firstArg, haveStrace, parseStrace, retValue } from "./helpers/strace.ts";
import { checkFlushOrder } from "./helpers/flush_order.ts";
import { diskPattern } from "./virtio/blk/harness.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SECTORS = 64;
/** SYNC_ROUNDS and SYNC_SECTOR in dev_blk.c. */
const ROUNDS = 3;
const SYNC_SECTOR = 40;
/**
 * Strace and emulation (the test VM) make the run slow. A tracee outlives a
 * killed strace, so the launcher runs under timeout(1), inside strace, and
 * the test kills strace itself only if that did not end it.
 */
const LAUNCHER_SECONDS = 240;
const TIMEOUT_MS = (LAUNCHER_SECONDS + 60) * 1000;
/** What the trace needs: the disk's openat, the irqfds' set-up, the interrupt writes, the disk's writes and syncs. */
const TRACED = "openat,eventfd2,ioctl,write,pwritev,pwritev2,pwrite64,fdatasync,fsync";

/** Round k's sector as dev_blk.c's sync_rounds writes it. */
function roundSector(k: number): Uint8Array {
  const out = new Uint8Array(512);
  for (let i = 0; i < 512; i++) out[i] = (i * 3 + k * 29 + 0x5c) & 0xff;
  return out;
}

Deno.test({
  name: "virtio-blk: each guest flush is an fdatasync on the disk that returns before the flush's interrupt (strace)",
  ignore: !HAVE_KVM,
  async fn() {
    assert.ok(await haveStrace(), "this test needs strace (apt-get install strace; deno task test installs it)");
    const guest = await buildTestGuest();
    const dir = Deno.makeTempDirSync({ prefix: "lguest-blk-sync-" });
    try {
      const image = new Uint8Array(SECTORS * 512);
      for (let i = 0; i < image.length; i++) image[i] = diskPattern(i);
      const disk = `${dir}/sync.img`;
      Deno.writeFileSync(disk, image);
      const tracePath = `${dir}/trace`;
      const child = new Deno.Command("strace", {
        args: [
          "-f",
          "-tt",
          "--seccomp-bpf",
          "-s",
          "64",
          "-e",
          `trace=${TRACED}`,
          "-e",
          "signal=none",
          "-o",
          tracePath,
          "timeout",
          "-s",
          "KILL",
          String(LAUNCHER_SECONDS),
          Deno.execPath(),
          "run",
          "-A",
          `${ROOT}cli.ts`,
          "--no-acpi",
          `--block=${disk}`,
          "64",
          guest,
          "blk.sync",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
      const out = await child.output();
      clearTimeout(timer);
      const dec = new TextDecoder();
      const stdout = dec.decode(out.stdout);
      const stderr = dec.decode(out.stderr);
      const killed = out.code === 137 ? ` (killed after ${LAUNCHER_SECONDS} s)` : "";
      assert.equal(out.code, 0, `launcher under strace: exit ${out.code}${killed}\n${stderr}\n${stdout}`);
      assert.match(stdout, /^DONE$/m);

      const r = guestReport(stdout);
      assert.equal(r.get("BLK-INIT")?.[0], "0");
      const rounds = Array.from({ length: ROUNDS }, (_, k) => `${k} 0 0`);
      assert.deepEqual(r.get("BLK-SYNC"), rounds, "every round's write and flush came back OK, in order");

      const trace = Deno.readTextFileSync(tracePath);
      const calls = parseStrace(trace);
      const found = checkFlushOrder(calls, {
        diskPath: disk,
        offsets: Array.from({ length: ROUNDS }, (_, k) => (SYNC_SECTOR + k) * 512),
      });
      const wanted = new Set<number>();
      for (const c of calls) {
        const fd = firstArg(c);
        const onDisk = fd === found.diskFd && c.name !== "write";
        const irq = fd === found.irqFd && c.name === "write";
        const setUp = (c.name === "eventfd2" && retValue(c) === found.irqFd) ||
          (c.name === "openat" && c.args.includes(disk)) || /^\d+, KVM_IRQFD,/.test(c.args);
        if (!onDisk && !irq && !setUp) continue;
        wanted.add(c.start);
        if (c.end !== undefined) wanted.add(c.end);
      }
      const excerpt = trace.split("\n").map((l, i) => `${i + 1}: ${l}`).filter((_, i) => wanted.has(i + 1));
      assert.deepEqual(
        found.problems,
        [],
        `the trace (disk fd ${found.diskFd}, irqfd ${found.irqFd}), its lines on those fds:\n${excerpt.join("\n")}`,
      );
      const lines = found.rounds.map((x, k) =>
        `round ${k}: pwritev line ${x.write?.start}, irq line ${x.writeIrq?.start}, ` +
        `fdatasync(${found.diskFd}) lines ${x.sync?.start}-${x.sync?.end}, flush irq line ${x.flushIrq?.start}`
      );
      console.log(`disk fd ${found.diskFd}, irqfd ${found.irqFd}, ${calls.length} calls traced\n${lines.join("\n")}`);

      const expect = image.slice();
      for (let k = 0; k < ROUNDS; k++) expect.set(roundSector(k), (SYNC_SECTOR + k) * 512);
      assert.deepEqual(Deno.readFileSync(disk), expect, "the file holds the rounds' sectors and nothing else changed");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
