/*T:111 The machinery behind the layout test. Every check is one C
 * expression and the number we expect it to equal. We turn a list of checks
 * into a small C program, one printf per check, compile it with the host's
 * gcc against the system headers, run it, and compare what it printed with
 * what the TypeScript tables say. A macro the headers may lack is wrapped in
 * #ifdef so that it prints "missing" instead of stopping the whole build. :*/

import type { Field, Layout } from "../../lib/kvm/structs.ts";

/** The struct layout types the checks are built from (re-exported from lib/kvm/structs.ts). */
export type { Field, Layout };

/** One number to compare: what the project declares and the C expression that should equal it. */
export interface Check {
  /** Human-readable name used in failure messages, e.g. "struct kvm_run: offsetof(io.port)". */
  readonly name: string;
  /** The value the project declares. */
  readonly expected: number | bigint;
  /** A C expression of integer type; printed as (unsigned long). */
  readonly expr: string;
  /** When set, the expression is only compiled if this macro is defined; otherwise the probe prints "missing". */
  readonly ifdef?: string;
  /** With `ifdef`: a missing macro is accepted rather than reported. */
  readonly mayBeMissing?: boolean;
  /** Compare only the low `bits` bits of both sides (e.g. 32 for a u32 flag word); default 64. */
  readonly bits?: number;
}

/** What running a probe found. */
export interface ProbeResult {
  /** One line per check that did not hold, naming it and both values. */
  readonly problems: string[];
  /** How many checks were compared (present in C and not allow-listed as missing). */
  readonly compared: number;
  /** Names of allow-listed checks whose macro was missing. */
  readonly skipped: string[];
}

const C_PATH = /^[A-Za-z_]\w*(\.[A-Za-z_]\w*|\[\d+\])*$/;

/**
 * True when `gcc` can be started.
 * @returns whether gcc is on PATH and runs
 */
export async function hasGcc(): Promise<boolean> {
  try {
    const r = await new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * The checks for one struct: its sizeof, and offsetof and sizeof of every member.
 * A member declared with size 0 (a flexible array) gets only its offset checked.
 * @param layout the declared layout, keyed by C member path
 * @returns one check per number in the layout
 */
export function layoutChecks(layout: Layout): Check[] {
  const t = layout.c;
  const checks: Check[] = [{ name: `${t}: sizeof`, expected: layout.size, expr: `sizeof(${t})` }];
  for (const [path, field] of Object.entries(layout.fields)) {
    if (!C_PATH.test(path)) throw new Error(`${t}: "${path}" is not a C member designator`);
    checks.push({ name: `${t}: offsetof(${path})`, expected: field.offset, expr: `offsetof(${t}, ${path})` });
    if (field.size !== 0) {
      checks.push({ name: `${t}: sizeof(${path})`, expected: field.size, expr: `sizeof(((${t} *)0)->${path})` });
    }
  }
  return checks;
}

/**
 * One check per key of a constant table, against the C macro `prefix + key`.
 * Every macro is guarded with #ifdef, so a missing one is reported by name
 * rather than breaking the build.
 * @param prefix the C prefix, e.g. "KVM_CAP_"
 * @param table the project's table of values
 * @param mayBeMissing keys known to have no C macro
 * @param bits compare only this many low bits (for flag words narrower than 64 bits)
 * @returns one check per key
 */
export function macroChecks(
  prefix: string,
  table: Readonly<Record<string, number | bigint>>,
  mayBeMissing: readonly string[] = [],
  bits = 64,
): Check[] {
  return Object.entries(table).map(([key, expected]) => {
    const macro = `${prefix}${key}`;
    if (!/^[A-Za-z_]\w*$/.test(macro)) throw new Error(`"${macro}" is not a C identifier`);
    return { name: macro, expected, expr: macro, ifdef: macro, mayBeMissing: mayBeMissing.includes(key), bits };
  });
}

function cComment(s: string): string {
  return s.replaceAll("*/", "* /");
}

/**
 * The C program for a list of checks: line `i value` (or `i missing`) for check i, then `end n`.
 * @param includes headers, e.g. ["linux/kvm.h"]
 * @param checks what to print
 * @returns C source text
 */
export function probeSource(includes: readonly string[], checks: readonly Check[]): string {
  const lines = ["#include <stdio.h>", "#include <stddef.h>", ...includes.map((h) => `#include <${h}>`), ""];
  lines.push("int main(void)", "{");
  checks.forEach((c, i) => {
    lines.push(`\t/* ${cComment(c.name)} */`);
    if (c.ifdef) lines.push(`#ifdef ${c.ifdef}`);
    lines.push(`\tprintf("${i} %lu\\n", (unsigned long)(${c.expr}));`);
    if (c.ifdef) lines.push("#else", `\tprintf("${i} missing\\n");`, "#endif");
  });
  lines.push(`\tprintf("end ${checks.length}\\n");`, "\treturn 0;", "}", "");
  return lines.join("\n");
}

function show(v: bigint): string {
  return `${v} (0x${v.toString(16)})`;
}

/**
 * Compiles and runs the probe for `checks` and compares every printed value.
 * Throws if gcc rejects the program (its message names the offending line,
 * which carries the check's name in a comment) or the program fails.
 * @param includes headers to include
 * @param checks the checks
 * @returns the mismatches and counts
 */
export async function runProbe(includes: readonly string[], checks: readonly Check[]): Promise<ProbeResult> {
  const dir = await Deno.makeTempDir({ prefix: "lguest-layout-" });
  try {
    const src = `${dir}/probe.c`;
    const exe = `${dir}/probe`;
    await Deno.writeTextFile(src, probeSource(includes, checks));
    const cc = await new Deno.Command("gcc", {
      args: ["-O0", "-Wall", "-Werror", "-o", exe, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!cc.success) {
      throw new Error(`gcc could not compile the layout probe:\n${new TextDecoder().decode(cc.stderr)}`);
    }
    const run = await new Deno.Command(exe, { stdout: "piped", stderr: "piped" }).output();
    if (!run.success) throw new Error(`layout probe exited with ${run.code}: ${new TextDecoder().decode(run.stderr)}`);
    const out = new TextDecoder().decode(run.stdout).trimEnd().split("\n");
    if (out.at(-1) !== `end ${checks.length}`) {
      throw new Error(`layout probe output is truncated: last line ${JSON.stringify(out.at(-1))}`);
    }
    const problems: string[] = [];
    const skipped: string[] = [];
    let compared = 0;
    const seen = new Set<number>();
    for (const line of out.slice(0, -1)) {
      const m = /^(\d+) (\d+|missing)$/.exec(line);
      const check = m ? checks[Number(m[1])] : undefined;
      if (!m || !check) throw new Error(`unexpected layout probe output: ${JSON.stringify(line)}`);
      seen.add(Number(m[1]));
      if (m[2] === "missing") {
        if (check.mayBeMissing) skipped.push(check.name);
        else problems.push(`${check.name}: declared ${show(BigInt(check.expected))}, but no such macro in C`);
        continue;
      }
      compared++;
      const bits = check.bits ?? 64;
      const declared = BigInt.asUintN(bits, BigInt(check.expected));
      const actual = BigInt.asUintN(bits, BigInt(m[2]!));
      if (declared !== actual) problems.push(`${check.name}: declared ${show(declared)}, C says ${show(actual)}`);
    }
    if (seen.size !== checks.length) throw new Error(`layout probe printed ${seen.size} of ${checks.length} checks`);
    return { problems, compared, skipped };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
