/*T:632 Running the launcher on a pseudo-terminal, for the tests that need
 * a real terminal: tests/helpers/pty_run.py opens the pty, follows a script
 * of steps (wait for text, type, send a signal, probe raw mode) and reports
 * the exit code, whether the terminal settings came back, and the output. :*/

const ROOT = new URL("../..", import.meta.url).pathname;

/** One step of a pty script (see pty_run.py). */
export type PtyStep = { expect: string } | { send: string; pause?: number } | { signal: string } | { probe: true };

/** What a run on the pty showed. */
export interface PtyResult {
  /** The launcher's exit code. */
  code: number;
  /** True if the terminal's settings were as before when it exited. */
  restored: boolean;
  /** Raw-mode probes, in order. */
  raw: boolean[];
  /** Everything written to the terminal. */
  output: string;
  /** What the launcher wrote to stderr (kept apart from the terminal). */
  stderr: string;
}

/** True when python3 with pty and termios is here; otherwise the tests that need it say so and skip. */
export const HAVE_PTY: boolean = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "import pty, termios"] }).outputSync().success;
  } catch {
    return false;
  }
})();

/**
 * Runs `cli.ts args` on a fresh pseudo-terminal, following `steps`.
 * @param steps the script
 * @param args the launcher's arguments
 * @returns exit code, restoration, probes and output
 */
export async function onPty(steps: PtyStep[], args: string[]): Promise<PtyResult> {
  const out = await new Deno.Command("python3", {
    args: [
      `${ROOT}tests/helpers/pty_run.py`,
      JSON.stringify(steps),
      "--",
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}cli.ts`,
      ...args,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout));
}
