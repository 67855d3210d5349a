/*T:720 Launch timings come from bench/launch_probe.c rather than from
 * Deno.Command, so both launchers are started, watched and reaped by the
 * same few lines of C: the clock starts just before fork(), the first
 * byte on the child's stdout and the marker line are timestamped as they
 * arrive, and wait4() hands back the child's peak RSS. :*/

/** What one probed run did. */
export interface ProbeResult {
  /** ms from fork to the first stdout byte (-1: none). */
  firstByteMs: number;
  /** ms from fork to the marker (-1: not seen). */
  markerMs: number;
  /** ms from fork to exit. */
  exitMs: number;
  /** Peak resident set, KiB. */
  maxRssKiB: number;
  /** Exit status (-1 if killed by a signal). */
  exitCode: number;
  /** The signal that ended it, or 0. */
  signal: number;
  /** True if the probe killed it at the timeout. */
  timedOut: boolean;
  /** Bytes of stdout seen. */
  outputBytes: number;
  /** The child's stdout. */
  output: string;
  /** The child's stderr. */
  stderr: string;
}

/**
 * Runs `cmd` under the probe.
 * @param probe path of the built launch_probe
 * @param cmd program and arguments
 * @param options marker to timestamp, timeout in seconds
 */
export async function probeRun(
  probe: string,
  cmd: readonly string[],
  options: { marker?: string; timeoutS?: number } = {},
): Promise<ProbeResult> {
  const outFile = await Deno.makeTempFile({ prefix: "lguest-bench-" });
  const errFile = await Deno.makeTempFile({ prefix: "lguest-bench-" });
  try {
    const args = ["-t", String(options.timeoutS ?? 60), "-o", outFile, "-e", errFile];
    if (options.marker !== undefined) args.push("-m", options.marker);
    const r = await new Deno.Command(probe, { args: [...args, "--", ...cmd], stdout: "piped", stderr: "piped" })
      .output();
    if (!r.success) throw new Error(`launch_probe failed: ${new TextDecoder().decode(r.stderr)}`);
    const parsed = JSON.parse(new TextDecoder().decode(r.stdout)) as Omit<ProbeResult, "output" | "stderr">;
    return { ...parsed, output: await Deno.readTextFile(outFile), stderr: await Deno.readTextFile(errFile) };
  } finally {
    await Deno.remove(outFile).catch(() => {});
    await Deno.remove(errFile).catch(() => {});
  }
}

/** One line describing a run that did not end cleanly. */
export function describeFailure(r: ProbeResult): string {
  const lines = [...r.stderr.trim().split("\n"), ...r.output.trim().split("\n")].filter((l) => l.length > 0);
  const tail = lines.slice(-3).join(" | ").slice(0, 300);
  const how = r.timedOut
    ? `no clean exit within the timeout (killed; ${r.outputBytes} bytes of console output)`
    : r.signal !== 0
    ? `killed by signal ${r.signal}`
    : `exit status ${r.exitCode}`;
  return tail.length > 0 ? `${how}; last output: ${tail}` : `${how}; no output`;
}
