/*L:073 The file's names are the user's (memory, disks, networks); the
 * launcher's are the command line's (memoryMiB, block, tunnet). This is the
 * one place that translates between them, both ways: a file becomes the
 * same fields a command line fills in, so cli.ts runs a machine from a file
 * exactly as it runs one from options; and the fields a run ends up with
 * become a file again for --print-config. :*/

import { resolve } from "node:path";
import type { EntryChoice } from "../machine/entry.ts";

/** What a run is made of, in the command line's terms (the fields of cli.ts's CliArgs that a file can set). */
export interface EffectiveConfig {
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** Kernel path. */
  kernel: string;
  /** Initrd path, if any. */
  initrd: string | undefined;
  /** The guest's command line, as words. */
  kernelArgs: string[];
  /** vCPUs. */
  cpus: number;
  /** False for --no-acpi. */
  acpi: boolean;
  /** --entry. */
  entry: EntryChoice;
  /** --block values: `<path>[,ro]`. */
  block: string[];
  /** --tunnet values. */
  tunnet: string[];
  /** --net values. */
  net: string[];
  /** --rng. */
  rng: boolean;
  /** --verbose. */
  verbose: boolean;
  /** --timings. */
  timings: boolean;
}

/** What one file sets: any of the fields, each absent when the file leaves it out. */
export type FileConfig = { -readonly [K in keyof EffectiveConfig]?: EffectiveConfig[K] };

/** A disk as the file writes it. */
interface DiskValue {
  path: string;
  readonly?: boolean;
}

/**
 * Translates a checked file (keys as in lib/config/keys.ts, paths already absolute) into launcher fields.
 * @param values the file's values, keyed by their YAML names, already checked against CONFIG
 */
export function toFields(values: Record<string, unknown>): FileConfig {
  const out: FileConfig = {};
  const v = values as {
    memory?: number;
    kernel?: string;
    initrd?: string;
    cmdline?: string | string[];
    cpus?: number;
    acpi?: boolean;
    entry?: EntryChoice;
    disks?: DiskValue[];
    networks?: ({ tunnet: string } | { net: string })[];
    rng?: boolean;
    verbose?: boolean;
    timings?: boolean;
  };
  if (v.memory !== undefined) out.memoryMiB = v.memory;
  if (v.kernel !== undefined) out.kernel = v.kernel;
  if (v.initrd !== undefined) out.initrd = v.initrd;
  if (v.cmdline !== undefined) out.kernelArgs = typeof v.cmdline === "string" ? words(v.cmdline) : v.cmdline;
  if (v.cpus !== undefined) out.cpus = v.cpus;
  if (v.acpi !== undefined) out.acpi = v.acpi;
  if (v.entry !== undefined) out.entry = v.entry;
  if (v.disks !== undefined) out.block = v.disks.map((d) => d.readonly ? `${d.path},ro` : d.path);
  if (v.networks !== undefined) {
    out.tunnet = v.networks.flatMap((n) => "tunnet" in n ? [n.tunnet] : []);
    out.net = v.networks.flatMap((n) => "net" in n ? [n.net] : []);
  }
  if (v.rng !== undefined) out.rng = v.rng;
  if (v.verbose !== undefined) out.verbose = v.verbose;
  if (v.timings !== undefined) out.timings = v.timings;
  return out;
}

/** A command-line string stays one word (quotes and all); an empty one is no words. */
function words(cmdline: string): string[] {
  return cmdline.trim() === "" ? [] : [cmdline];
}

/**
 * Translates a run's fields back into the file's keys, every key present, paths made absolute.
 * @param config the effective configuration
 * @param cwd the directory the command line's relative paths are relative to
 */
export function fromFields(config: EffectiveConfig, cwd: string): Record<string, unknown> {
  const abs = (p: string) => resolve(cwd, p);
  const out: Record<string, unknown> = {
    memory: config.memoryMiB,
    kernel: abs(config.kernel),
  };
  if (config.initrd !== undefined) out.initrd = abs(config.initrd);
  out.cmdline = config.kernelArgs.join(" ");
  out.cpus = config.cpus;
  out.acpi = config.acpi;
  out.entry = config.entry;
  out.disks = config.block.map((spec) => {
    const ro = spec.endsWith(",ro");
    return { path: abs(ro ? spec.slice(0, -3) : spec), readonly: ro };
  });
  out.networks = [...config.tunnet.map((tunnet) => ({ tunnet })), ...config.net.map((net) => ({ net }))];
  out.rng = config.rng;
  out.verbose = config.verbose;
  out.timings = config.timings;
  return out;
}
