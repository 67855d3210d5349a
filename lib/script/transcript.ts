/*L:440 What a script reads. A program that drives a guest does what a
 * person at the terminal does: waits until the prompt appears, types, and
 * reads what came back. The transcript keeps the console's output as text
 * in two parts: what earlier waits have already consumed, and what is still
 * unread. A wait searches only the unread part, so the same prompt printed
 * twice is matched twice, once per wait, as expect(1) and pexpect do. Both
 * parts are capped, so a guest that prints for hours cannot grow the host's
 * memory; the consumed part is kept only for the last lines a failure
 * shows. :*/

/** What a successful wait returns. */
export interface ConsoleMatch {
  /** The match, with its groups. */
  match: RegExpExecArray;
  /** The console's text between the previous match (or the start) and this one. */
  before: string;
}

/** The most unread text kept; older unread text is dropped from the front. */
export const UNREAD_LIMIT = 1 << 20;

const SEEN_LIMIT = 16 << 10;

/** The console's output as text: what waits consumed, and what they have not read yet. */
export class Transcript {
  #unread = "";
  #seen = "";
  readonly #decoder = new TextDecoder();

  /** Adds output bytes (UTF-8, possibly split anywhere). */
  push(bytes: Uint8Array): void {
    this.#unread += this.#decoder.decode(bytes, { stream: true });
    if (this.#unread.length > UNREAD_LIMIT) this.#unread = this.#unread.slice(-UNREAD_LIMIT);
  }

  /**
   * Looks for `pattern` in the unread text; on a match, consumes everything up to its end.
   * @param pattern a regular expression (its flags are kept, except g and y) or a literal string
   * @returns the match and the text before it, or undefined if it is not there yet
   */
  take(pattern: RegExp | string): ConsoleMatch | undefined {
    const re = toRegExp(pattern);
    const match = re.exec(this.#unread);
    if (match === null) return undefined;
    const end = match.index + match[0].length;
    const before = this.#unread.slice(0, match.index);
    this.#seen = (this.#seen + this.#unread.slice(0, end)).slice(-SEEN_LIMIT);
    this.#unread = this.#unread.slice(end);
    return { match, before };
  }

  /** The unread text. */
  get unread(): string {
    return this.#unread;
  }

  /**
   * The last lines of output, read or not, for error messages.
   * @param n how many lines
   */
  lastLines(n: number): string[] {
    const lines = (this.#seen + this.#unread).split(/\r?\n/);
    if (lines.at(-1) === "") lines.pop();
    return lines.slice(-n);
  }
}

/** A pattern as a RegExp that searches from the start: a string matches literally. */
export function toRegExp(pattern: RegExp | string): RegExp {
  if (typeof pattern === "string") return new RegExp(pattern.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
  return new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ""));
}

/** How a pattern reads in a message. */
export function describePattern(pattern: RegExp | string): string {
  return typeof pattern === "string" ? JSON.stringify(pattern) : String(pattern);
}
