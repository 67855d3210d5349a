/*T:046 To make epoll_wait fail for real, a test needs the number of an
 * epoll fd that the code under test keeps private, and to make a wait
 * return EINTR it needs the pool thread that is blocked in it. Both are in
 * /proc: an epoll fd links to "anon_inode:[eventpoll]", and a thread's
 * syscall file shows the call it sleeps in with its arguments, the first of
 * which is the epoll fd; a SIGUSR2 sent to that one thread (with a
 * listener in place, so the process survives it) ends its wait with EINTR.
 * The process's CPU time, also from /proc, tells a loop that failed and
 * stopped from one that fails and retries at full speed. :*/

import { close, eventfd, fcntl, getpid, tgkill } from "../../lib/sys/calls.ts";

const F_DUPFD_CLOEXEC = 1030;
const SIGUSR2 = 12;
// x86_64 syscall numbers: epoll_wait, epoll_pwait, epoll_pwait2.
const EPOLL_WAITS = new Set(["232", "281", "441"]);
// USER_HZ, the unit of /proc/<pid>/stat times, is 100 on Linux.
const USER_HZ = 100;

/** The epoll fds this process has open now. */
export function epollFds(): Set<number> {
  const found = new Set<number>();
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === "anon_inode:[eventpoll]") found.add(Number(e.name));
    } catch {
      // Closed while we looked (the fd of the directory listing itself).
    }
  }
  return found;
}

/**
 * Runs `make` and returns its result with the one epoll fd it created.
 * @throws if `make` created no epoll fd, or more than one
 */
export function withNewEpollFd<T>(make: () => T): { value: T; epfd: number } {
  const before = epollFds();
  const value = make();
  const fresh = [...epollFds()].filter((fd) => !before.has(fd));
  if (fresh.length !== 1) throw new Error(`expected one new epoll fd, found [${fresh}]`);
  return { value, epfd: fresh[0]! };
}

/**
 * Puts an eventfd where epoll fd `epfd` was (close, then dup into the
 * freed number), so the next epoll_wait on `epfd` fails with EINVAL. A wait
 * already blocked keeps the old epoll alive until it returns.
 */
export function replaceWithEventfd(epfd: number): void {
  const donor = eventfd();
  try {
    close(epfd);
    const got = fcntl(donor, F_DUPFD_CLOEXEC, epfd);
    if (got !== epfd) {
      close(got);
      throw new Error(`fd ${epfd} was taken by someone else before the dup (got ${got})`);
    }
  } finally {
    close(donor);
  }
}

/** Thread ids of this process that are blocked in an epoll wait on `epfd`. */
export function waitersOn(epfd: number): number[] {
  const tids: number[] = [];
  for (const t of Deno.readDirSync("/proc/self/task")) {
    let fields: string[];
    try {
      fields = Deno.readTextFileSync(`/proc/self/task/${t.name}/syscall`).trim().split(" ");
    } catch {
      continue; // the thread ended
    }
    if (EPOLL_WAITS.has(fields[0]!) && Number(fields[1]) === epfd) tids.push(Number(t.name));
  }
  return tids;
}

/**
 * Resolves with the waiting threads once some thread is blocked in an
 * epoll wait on `epfd`.
 * @throws if none is within `timeoutMs`
 */
export async function untilWaiting(epfd: number, timeoutMs = 2000): Promise<number[]> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const tids = waitersOn(epfd);
    if (tids.length > 0) return tids;
    if (performance.now() > until) throw new Error(`no thread waits on epoll fd ${epfd}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Interrupts epoll waits with a real signal. While it is open, a no-op
 * SIGUSR2 listener is installed, so the signal only cuts the wait short.
 */
export class WaitInterrupter {
  readonly #listener = () => {};

  constructor() {
    Deno.addSignalListener("SIGUSR2", this.#listener);
  }

  /**
   * Sends SIGUSR2 to a thread blocked in an epoll wait on `epfd`, once
   * there is one.
   * @throws if no thread waits on `epfd` within two seconds
   */
  async interrupt(epfd: number): Promise<void> {
    const [tid] = await untilWaiting(epfd);
    tgkill(getpid(), tid!, SIGUSR2);
  }

  /** Removes the listener; call it only after the interrupted wait has returned. */
  close(): void {
    Deno.removeSignalListener("SIGUSR2", this.#listener);
  }
}

/** CPU time (user + system) this process has used, in seconds. */
export function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
  return (Number(rest[11]) + Number(rest[12])) / USER_HZ;
}
