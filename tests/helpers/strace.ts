/*T:042 Some things a test must see from outside the launcher: that a
 * system call was made, on which fd, and before what. Debian's strace shows
 * them. Run with -f (every thread) and one output file (-o), it writes one
 * line per event in the order it saw them, so two events that depend on
 * each other (a thread returns from fdatasync, and only then does another
 * thread, told by it, write an eventfd) come in that order in the file:
 * strace prints the return before it lets the first thread run on. A call
 * that another thread's call interrupts is split in two lines, "name(args
 * <unfinished ...>" and later "<... name resumed>rest) = result", and
 * parseStrace joins them back into one call with the line where it started
 * and the line where it returned. Line numbers are the order; the -tt
 * timestamps are only for people reading a failure. :*/

/** One system call from an `strace -f -tt -o <file>` trace. */
export interface Syscall {
  /** The thread that made it. */
  pid: number;
  /** The call's name, e.g. "fdatasync". */
  name: string;
  /** The arguments as strace printed them, without the parentheses. */
  args: string;
  /** What it returned, as printed ("0", "-1 EIO (Input/output error)", "?"); undefined if it never returned. */
  ret: string | undefined;
  /** The line (1-based) where it started. */
  start: number;
  /** The line where it returned (the start line if it was not split); undefined if it never returned. */
  end: number | undefined;
}

const LINE = /^(\d+) +\d\d:\d\d:\d\d\.\d+ (.*)$/;
const UNFINISHED = " <unfinished ...>";

/** Splits `rest)   = result` (strace pads short calls to a column) at its last ") =". */
function splitReturn(tail: string): { args: string; ret: string } | undefined {
  const m = /^(.*)\) += (.*)$/.exec(tail);
  return m ? { args: m[1]!, ret: m[2]! } : undefined;
}

/**
 * Reads an `strace -f -tt -o <file>` trace into calls, in the order they started.
 * @param text the trace file's contents
 * @returns every call it shows (signals and exits are skipped)
 */
export function parseStrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<number, Syscall>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = LINE.exec(lines[i]!);
    if (!m) continue;
    const pid = Number(m[1]);
    const rest = m[2]!;
    const line = i + 1;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed) {
      const call = open.get(pid);
      if (call === undefined || call.name !== resumed[1]) continue;
      const done = splitReturn(resumed[2]!);
      if (done === undefined) continue;
      open.delete(pid);
      call.args += done.args;
      call.ret = done.ret;
      call.end = line;
      continue;
    }
    const begun = /^(\w+)\((.*)$/.exec(rest);
    if (!begun) continue;
    const name = begun[1]!;
    const after = begun[2]!;
    if (after.endsWith(UNFINISHED)) {
      const call: Syscall = {
        pid,
        name,
        args: after.slice(0, -UNFINISHED.length),
        ret: undefined,
        start: line,
        end: undefined,
      };
      calls.push(call);
      open.set(pid, call);
      continue;
    }
    const done = splitReturn(after);
    if (done === undefined) continue;
    calls.push({ pid, name, args: done.args, ret: done.ret, start: line, end: line });
  }
  return calls;
}

/** The number a call returned (-1 for an error), or undefined ("?" or no return). */
export function retValue(call: Syscall): number | undefined {
  const m = /^-?\d+/.exec(call.ret ?? "");
  return m ? Number(m[0]) : undefined;
}

/** The call's first argument as a number (the fd, for calls on an fd); NaN if it is not one. */
export function firstArg(call: Syscall): number {
  const m = /^\s*(-?\d+)/.exec(call.args);
  return m ? Number(m[1]) : NaN;
}

/** Whether `strace` can be run here. */
export async function haveStrace(): Promise<boolean> {
  try {
    const r = await new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}
