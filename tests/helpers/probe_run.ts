/*T:706 Running a probe program (tests/helpers/*_probe.ts) the way the
 * lifecycle and vCPU tests need it: spawned under deno with piped stdio,
 * optionally let go once its guest has reached echo mode and sleeps in
 * hlt (it waits for "go" on stdin), then read to the end. The probe prints
 * `DONE-AT <ms>` as its last act; the time from that to the exit we see
 * is how long the process lingered, which it cannot do for long while any
 * Worker or descriptor keeps it alive. :*/

import { StreamText } from "./exposure.ts";

/** What one probe run printed and how it ended. */
export interface ProbeRun {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the probe's DONE-AT line to its exit, as seen from here. */
  lingerMs: number;
}

/**
 * Runs `deno run -A <args>`, killed if it takes longer than `bootMs` plus a minute.
 * @param release wait for ECHO-READY, let the guest fall asleep, then write "go" on the probe's stdin
 */
export async function runProbe(args: string[], release: boolean, bootMs: number): Promise<ProbeRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), bootMs + 60_000);
  const stdout = new StreamText(child.stdout);
  const stderr = new StreamText(child.stderr);
  const stdin = child.stdin.getWriter();
  if (release) {
    await stdout.waitFor("ECHO-READY", bootMs).catch((e) => {
      throw new Error(`guest did not reach echo mode (stderr: ${stderr.text})`, { cause: e });
    });
    await new Promise((r) => setTimeout(r, 500)); // asleep in hlt
    await stdin.write(new TextEncoder().encode("go\n"));
  }
  const status = await child.status;
  const exitedAt = Date.now();
  clearTimeout(killer);
  await stdin.close().catch(() => {});
  await Promise.all([stdout.done, stderr.done]);
  const doneAt = Number(/^DONE-AT (\d+)$/m.exec(stdout.text)?.[1]);
  return {
    code: status.code,
    signal: status.signal,
    stdout: stdout.text,
    stderr: stderr.text,
    lingerMs: exitedAt - doneAt,
  };
}
