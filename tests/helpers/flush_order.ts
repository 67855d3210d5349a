/*T:537 What "the flush is durable" means where a test can see it. Killing
 * the launcher after a flush proves nothing about the disk: the page cache
 * outlives the process, so the data is in the file whether or not anyone
 * called fdatasync. What can be seen is the order of system calls. The
 * guest's "blk.sync" mode (dev_blk.c) does rounds of one write and one
 * flush, and posts nothing until the previous request has both come back
 * and raised its interrupt; the device raises an interrupt by writing the
 * disk's irqfd. So, per round, the launcher's trace must read:
 *
 *   pwritev(disk, ..., <round's offset>)   the write
 *   write(irqfd, ...)                      its completion signalled
 *   fdatasync(disk) = 0                    the flush's work, returned
 *   write(irqfd, ...)                      the flush's completion signalled
 *
 * with the fdatasync starting after the first interrupt write and having
 * returned before the second one starts. A device that skips the
 * fdatasync, calls it on another fd, lets it fail, or signals the flush
 * before the sync has returned breaks that. The disk's fd comes from the
 * openat of its path; the irqfd from the launcher's own set-up: it makes
 * each device's eventfd and at once registers it with KVM_IRQFD, in device
 * order, so the eventfd2 a thread made last before its n-th KVM_IRQFD
 * ioctl is the n-th device's irqfd (strace names the ioctl but does not
 * show the struct it points to). What the trace cannot show is the used
 * ring, a store to guest memory: the interrupt is the signal checked. :*/

import { firstArg, retValue, type Syscall } from "./strace.ts";

/** One round as found in the trace (any part may be missing). */
export interface FlushRound {
  /** The write's file offset. */
  offset: number;
  /** The pwritev of the round's sector. */
  write?: Syscall | undefined;
  /** The interrupt write that follows it. */
  writeIrq?: Syscall | undefined;
  /** The fdatasync that returned 0 between the two interrupt writes. */
  sync?: Syscall | undefined;
  /** The interrupt write that completes the flush. */
  flushIrq?: Syscall | undefined;
}

/** What {@link checkFlushOrder} found. */
export interface FlushOrder {
  /** The disk's fd, from the openat of its path. */
  diskFd: number | undefined;
  /** The device's irqfd. */
  irqFd: number | undefined;
  /** Each round, in order. */
  rounds: FlushRound[];
  /** One line per rule broken; empty when every flush was synced before it was signalled. */
  problems: string[];
}

const WRITES = new Set(["pwritev", "pwritev2", "pwrite64"]);
const SYNCS = new Set(["fdatasync", "fsync"]);

/** The file offset of a positional write, from its printed arguments. */
function writeOffset(call: Syscall): number {
  const args = call.args.split(", ");
  // pwritev2 has a flags argument after the offset.
  return Number(args[args.length - (call.name === "pwritev2" ? 2 : 1)]);
}

const show = (c: Syscall) =>
  `${c.name}(${c.args.length > 60 ? `${c.args.slice(0, 60)}...` : c.args}) = ${c.ret ?? "(no return)"} ` +
  `[line ${c.start}${c.end !== c.start ? `-${c.end ?? "?"}` : ""}, thread ${c.pid}]`;

/**
 * Checks, from a trace of the launcher, that every round's flush was an
 * fdatasync on the disk that returned before the flush's interrupt.
 * @param calls the parsed trace (parseStrace)
 * @param options the disk image's path, each round's write offset, and which device (0 = first) the disk is
 * @returns what was found and what is wrong
 */
export function checkFlushOrder(
  calls: readonly Syscall[],
  options: { diskPath: string; offsets: readonly number[]; device?: number },
): FlushOrder {
  const problems: string[] = [];
  const result: FlushOrder = { diskFd: undefined, irqFd: undefined, rounds: [], problems };

  const opens = calls.filter((c) =>
    c.name === "openat" && c.args.startsWith(`AT_FDCWD, ${JSON.stringify(options.diskPath)},`) &&
    (retValue(c) ?? -1) >= 0
  );
  if (opens.length !== 1) {
    problems.push(`expected one successful openat of ${options.diskPath}, found ${opens.length}`);
    return result;
  }
  const diskFd = retValue(opens[0]!)!;
  result.diskFd = diskFd;

  const irqfds: number[] = [];
  for (const ioctl of calls) {
    if (ioctl.name !== "ioctl" || !/^\d+, KVM_IRQFD,/.test(ioctl.args)) continue;
    const made = calls.filter((c) =>
      c.name === "eventfd2" && c.pid === ioctl.pid && c.end !== undefined && c.end < ioctl.start &&
      (retValue(c) ?? -1) >= 0
    );
    const last = made[made.length - 1];
    if (last !== undefined) irqfds.push(retValue(last)!);
  }
  const irqFd = irqfds[options.device ?? 0];
  if (irqFd === undefined) {
    problems.push(`no irqfd for device ${options.device ?? 0} (KVM_IRQFD registrations found: ${irqfds.length})`);
    return result;
  }
  result.irqFd = irqFd;

  const signals = calls.filter((c) => c.name === "write" && firstArg(c) === irqFd);
  const syncs = calls.filter((c) => SYNCS.has(c.name) && firstArg(c) === diskFd);
  const writes = calls.filter((c) => WRITES.has(c.name) && firstArg(c) === diskFd);
  const after = (line: number) => signals.find((s) => s.start > line);

  options.offsets.forEach((offset, k) => {
    const round: FlushRound = { offset };
    result.rounds.push(round);
    const mine = writes.filter((w) => writeOffset(w) === offset);
    if (mine.length !== 1) {
      problems.push(`round ${k}: expected one write at offset ${offset} on fd ${diskFd}, found ${mine.length}`);
      return;
    }
    const write = round.write = mine[0]!;
    if (write.end === undefined || retValue(write) === undefined || retValue(write)! < 0) {
      problems.push(`round ${k}: the write did not succeed: ${show(write)}`);
      return;
    }
    const writeIrq = round.writeIrq = after(write.end);
    if (writeIrq === undefined) {
      problems.push(`round ${k}: no interrupt (write to irqfd ${irqFd}) after the write at line ${write.end}`);
      return;
    }
    const flushIrq = round.flushIrq = after(writeIrq.start);
    if (flushIrq === undefined) {
      problems.push(`round ${k}: no interrupt for the flush after the write's at line ${writeIrq.start}`);
      return;
    }
    const next = options.offsets[k + 1];
    const nextWrite = next === undefined ? undefined : writes.find((w) => writeOffset(w) === next);
    if (nextWrite !== undefined && nextWrite.start < flushIrq.start) {
      problems.push(
        `round ${k}: the next round's write (line ${nextWrite.start}) started before the flush's interrupt ` +
          `(line ${flushIrq.start}): the guest did not wait for it, so the trace cannot tell which interrupt is whose`,
      );
      return;
    }
    round.sync = syncs.find((s) =>
      s.start > writeIrq.start && s.end !== undefined && s.end < flushIrq.start && retValue(s) === 0
    );
    if (round.sync !== undefined) return;
    const near = syncs.filter((s) => s.start > writeIrq.start && s.start < (nextWrite?.start ?? Infinity));
    problems.push(
      `round ${k}: no fdatasync(${diskFd}) = 0 returned between the write's interrupt (line ${writeIrq.start}) ` +
        `and the flush's (line ${flushIrq.start})` +
        (near.length ? `; on fd ${diskFd} there was: ${near.map(show).join("; ")}` : `; none on fd ${diskFd} at all`),
    );
  });
  return result;
}
