/** The README's library example, as written, in a directory of its own (T:231). */

import { StreamText } from "./exposure.ts";

const README = new URL("../../README.md", import.meta.url);
const MOD = new URL("../../mod.ts", import.meta.url).href;

/** The first ```ts block after the "### As a library" heading. */
export async function libraryExample(): Promise<string> {
  const text = await Deno.readTextFile(README);
  const section = text.slice(text.indexOf("\n### As a library\n"));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  if (m === null || !section.startsWith("\n### As a library")) throw new Error("README has no library example");
  return m[1]!;
}

/**
 * Writes the example into a new directory with a mod.ts that re-exports ours.
 * @returns the directory, holding main.ts, mod.ts and an empty disk.img
 */
export async function exampleDir(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/main.ts`, await libraryExample());
  await Deno.writeTextFile(`${dir}/mod.ts`, `export * from ${JSON.stringify(MOD)};\n`);
  await Deno.writeFile(`${dir}/disk.img`, new Uint8Array(1024 * 1024));
  return dir;
}

/** What one run of the example printed, and when. */
export interface ExampleRun {
  /** Exit status. */
  code: number;
  /** Its stdout. */
  stdout: string;
  /** Its stderr. */
  stderr: string;
  /** Both, for assertion messages. */
  context: string;
  /** How long the process lived after `marker` first appeared (NaN if it never did). */
  lingerMs: number;
}

/**
 * Runs the example in `dir` and measures how long it lived after `marker` appeared on `stream`.
 * @param timeoutMs after this the process is killed
 */
export async function runExample(
  dir: string,
  marker: { stream: "stdout" | "stderr"; text: string },
  timeoutMs: number,
): Promise<ExampleRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${dir}/main.ts`],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const stdout = new StreamText(child.stdout);
  const stderr = new StreamText(child.stderr);
  const seen = (marker.stream === "stdout" ? stdout : stderr).waitFor(marker.text, timeoutMs - 5000)
    .then(() => Date.now(), () => NaN);
  const status = await child.status;
  const exitedAt = Date.now();
  clearTimeout(killer);
  await Promise.all([stdout.done, stderr.done]);
  return {
    code: status.code,
    stdout: stdout.text,
    stderr: stderr.text,
    context: `stdout:\n${stdout.text}\nstderr:\n${stderr.text}`,
    lingerMs: exitedAt - await seen,
  };
}
