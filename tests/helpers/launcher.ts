/*T:040 Tests run the launcher the way a user does: as a separate process,
 * `deno run -A cli.ts ...`, with stdin, stdout and stderr captured, so what
 * they check is exactly what a person would see, exit status included. :*/

const ROOT = new URL("../..", import.meta.url).pathname;

/** What one launcher run printed and returned. */
export interface LauncherRun {
  /** Exit status. */
  code: number;
  /** Everything written to stdout (the guest console). */
  stdout: string;
  /** Everything written to stderr (the launcher's own lines). */
  stderr: string;
}

/** True when /dev/kvm can be opened here; otherwise tests print why and skip. */
export const HAVE_KVM: boolean = (() => {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
})();

/** Runs `cli.ts` with `args`; stdin is /dev/null unless `stdin` is given. */
export async function runLauncher(
  args: readonly string[],
  options: { stdin?: Uint8Array; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<LauncherRun> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}cli.ts`, ...args],
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env ?? {},
  });
  const child = cmd.spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  if (options.stdin) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin);
    await w.close();
  }
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** FNV-1a 32-bit, the checksum the test guest computes over the initrd. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h >>> 0;
}

/** Parses the guest's "KEY: value" lines into a multimap. */
export function guestReport(stdout: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of stdout.split("\n")) {
    const m = /^([A-Z0-9-]+):(?: (.*))?$/.exec(line.trimEnd());
    if (!m) continue;
    const list = out.get(m[1]!) ?? [];
    list.push(m[2] ?? "");
    out.set(m[1]!, list);
  }
  return out;
}
