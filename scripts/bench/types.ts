/*T:700 The benchmark suite's vocabulary. A run is a list of sections, one
 * per question the issue asks (exit cost, launch time, memory, ...). Each
 * section holds figures: one number for lguest and one for its peer,
 * measured side by side in the same run, with every sample kept, the
 * median of each side, and the ratio between them. Absolute times on a
 * shared two-core machine drift from minute to minute; a ratio of two
 * things measured back to back drifts much less, so the ratio is the
 * headline and the target is written against it wherever it can be. :*/

/** What a figure is compared against, and whether this run met it. */
export interface Target {
  /** The target in words, e.g. "ratio <= 1.10". */
  text: string;
  /** True or false once measured; null when it could not be judged. */
  met: boolean | null;
}

/** The facts every figure carries about where and what it measured. */
export interface FigureContext {
  /** CPU model name from /proc/cpuinfo. */
  cpu: string;
  /** KVM flavour: hardware, pvm or none. */
  kvm: string;
  /** The git commit the launcher was built from (with "-dirty" if modified). */
  commit: string;
  /** The peer's name and version. */
  peer: string;
}

/**
 * How one set of samples spread: how many there were, the smallest, the
 * median and the largest, in `unit`. A median alone cannot tell a steady
 * 10% gap from one noisy run; with min and max beside it, the reader can.
 */
export interface Spread {
  /** How many samples (runs) there were. */
  samples: number;
  /** The smallest. */
  min: number;
  /** The median. */
  median: number;
  /** The largest. */
  max: number;
  /** Their unit, e.g. "µs/exit", or "×" for ratios. */
  unit: string;
}

/** The spread of each side of a figure and of its per-pair ratios. */
export interface FigureSpread {
  /** lguest's samples (null when it produced none). */
  lguest: Spread | null;
  /** The peer's samples (null when it produced none). */
  peer: Spread | null;
  /** The per-pair ratios lguest/peer (null when no pair had both). */
  ratio: Spread | null;
}

/**
 * What lguest adds over its peer, as a difference rather than a ratio: the
 * exit benchmark's "ns added per exit by the launcher over the C loop".
 * Where an exit costs tens of µs in the host kernel (PVM), a ratio near 1
 * hides a fixed per-exit overhead that would dominate where an exit costs
 * one µs (hardware KVM); the difference does not depend on the kernel's share.
 */
export interface Added {
  /** What it is, for the table. */
  label: string;
  /** Its unit, e.g. "ns/exit". */
  unit: string;
  /** lguest's median minus the peer's median, in `unit`; null without both. */
  value: number | null;
  /** The per-pair differences (runs back to back), in `unit`. */
  pairs: Spread | null;
  /** The goal, e.g. "≤ 300 ns added per exit", and whether this run met it. */
  target: Target;
}

/** One compared number: lguest against a peer. */
export interface Figure {
  /** Stable id, e.g. "exit.ring3". */
  id: string;
  /** What is measured, for the table. */
  label: string;
  /** Unit of lguest and peer, e.g. "µs/exit". */
  unit: string;
  /** Which direction is better. */
  better: "lower" | "higher";
  /** Median of lguest's samples, or null if it produced none. */
  lguest: number | null;
  /** Median of the peer's samples, or null if it produced none. */
  peer: number | null;
  /** Median of the per-pair ratios lguest/peer (pairs run back to back). */
  ratio: number | null;
  /** Every sample, in run order. */
  samples: { lguest: number[]; peer: number[] };
  /**
   * Sample counts and min/median/max of each side and of the ratios.
   * Absent in results written before the spread was recorded (the
   * renderer then computes it from `samples`).
   */
  spread?: FigureSpread;
  /** What lguest adds over the peer, where a difference says more than a ratio. */
  added?: Added;
  /** The target this figure answers, if any. */
  target?: Target;
  /** Where, what and against whom. */
  context: FigureContext;
  /** What the peer did when it produced no number (error, timeout). */
  peerOutcome?: string;
  /** A short remark for the table. */
  note?: string;
}

/** How a section ended. */
export type SectionStatus = "measured" | "skipped" | "failed" | "not-measured";

/** One benchmark's results. */
export interface Section {
  /** Stable id, e.g. "exit". */
  id: string;
  /** Heading, e.g. "1. Exit round trip". */
  title: string;
  /** measured, or why not. */
  status: SectionStatus;
  /** Why it was skipped, failed or not measured. */
  reason?: string;
  /** The figures, in table order. */
  figures: Figure[];
  /** Findings computed in the run: what explains a gap, what would close it. */
  analysis: string[];
  /** ISO time this section was measured (absent in older results). */
  measuredAt?: string;
}

/** The machine a run happened on. */
export interface MachineInfo {
  /** CPU model name. */
  cpu: string;
  /** Online CPUs. */
  cpus: number;
  /** hardware, pvm or none. */
  kvm: string;
  /** uname -r. */
  hostKernel: string;
  /** git commit of the tree, "-dirty" appended when it has changes. */
  commit: string;
  /** Deno version. */
  deno: string;
  /** QEMU version line, or why there is none. */
  qemu: string;
  /** gcc version line. */
  gcc: string;
  /** 1-minute load average when the run started. */
  loadAverage: number;
}

/** What every benchmark gets to work with. */
export interface BenchContext {
  /** Root of the repository (with a trailing slash). */
  root: string;
  /** The machine, for figure contexts. */
  machine: MachineInfo;
  /** Paths of the built helper programs and the test guest. */
  tools: Tools;
  /** Repetitions per side (pairs). */
  repeats: number;
  /** Writes one progress line to stderr. */
  log: (line: string) => void;
}

/** Programs built for the run. */
export interface Tools {
  /** The lguest test guest ELF (with its PVH note). */
  guest: string;
  /** bench/kvm_exit.c, built. */
  kvmExit: string;
  /** bench/launch_probe.c, built. */
  probe: string;
  /** bench/blk_host.c, built. */
  blkHost: string;
  /** bench/net_host.c, built. */
  netHost: string;
  /** qemu-system-x86_64, if installed. */
  qemu: string | undefined;
}

/** A benchmark: a title and a function producing its section. */
export interface Benchmark {
  /** Stable id (used by --only). */
  id: string;
  /** Heading. */
  title: string;
  /** Runs it. Must not throw for expected failures: return a section saying so. */
  run(ctx: BenchContext): Promise<Section>;
}
