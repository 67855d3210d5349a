/*L:060 Raw mode makes the terminal belong to the guest, so it must be
 * given back on every way out: a normal return, an exception, an unhandled
 * rejection, and the signals that ask us to go (SIGINT, SIGTERM, SIGHUP).
 * A signal stops the guest and the launcher then exits 128 + the signal's
 * number, as a shell would report it. :*/

import type { RawTerminal } from "./sys/termios.ts";

export interface TerminalGuard {
  /** The exit status a caught signal asks for, if one arrived. */
  readonly signalled: number | undefined;
  /** Restores the terminal and removes the listeners. */
  release(): void;
}

/**
 * Restores `term` on every way out and turns SIGINT/SIGTERM/SIGHUP into a stop.
 * @param term the terminal to restore
 * @param stop called once per signal
 */
export function guardTerminal(term: RawTerminal, stop: () => void): TerminalGuard {
  const restore = () => term.restore();
  let signalled: number | undefined;
  const onSignal = (code: number) => () => {
    restore();
    signalled ??= code;
    stop();
  };
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGINT", onSignal(130)],
    ["SIGTERM", onSignal(143)],
    ["SIGHUP", onSignal(129)],
  ];
  for (const [s, h] of signals) Deno.addSignalListener(s, h);
  globalThis.addEventListener("unload", restore);
  globalThis.addEventListener("error", restore);
  globalThis.addEventListener("unhandledrejection", restore);
  return {
    get signalled() {
      return signalled;
    },
    release() {
      restore();
      for (const [s, h] of signals) Deno.removeSignalListener(s, h);
    },
  };
}
