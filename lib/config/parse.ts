/*L:072 A config file is input from whoever wrote it, read before anything
 * is acquired, so it gets the care guest input gets: a size limit checked
 * before a byte is parsed; YAML 1.2's core schema (no `yes` meaning true, no
 * merge keys, no custom tags); duplicate keys refused by the yaml library
 * itself; and an alias limit, so a document whose anchors multiply into
 * billions of nodes fails in milliseconds instead of eating the host. Then
 * the tree is walked against the key table, node by node, so every problem
 * names the line and column of the value at fault, as a compiler would:
 * `vm.yaml:3:9: memory must be a whole number from 1 to 1048576, not -5`. :*/

import { dirname, resolve } from "node:path";
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, visit } from "yaml";
import { CONFIG, type KeyDef, type ObjectType, type ValueType } from "./keys.ts";
import { type FileConfig, toFields } from "./fields.ts";
import { parseNetSpec, parseTunnetSpec } from "../virtio/net/spec.ts";
import { ConfigError } from "./error.ts";

export { ConfigError };

/** The largest config file read, in bytes: a machine fits in a few hundred. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Aliases the yaml library may expand while reading a file (its `maxAliasCount`). */
export const MAX_ALIAS_COUNT = 100;

/** Which required keys the command line gives instead of the file. */
export interface Supplied {
  /** The command line has a memory size. */
  memory?: boolean;
  /** The command line has a kernel. */
  kernel?: boolean;
}

/** How cli.ts reads a config file (readConfig), passed in so a plain boot never loads the YAML parser. */
export type ConfigReader = (path: string, supplied: Supplied) => FileConfig;

/**
 * Reads and checks a config file.
 * @param path the file, as the user named it (messages use this spelling)
 * @param supplied required keys the command line provides, so the file may leave them out
 * @throws ConfigError naming every problem with its line and column
 */
export function readConfig(path: string, supplied: Supplied = {}): FileConfig {
  return parseConfig(readLimited(path), path, supplied);
}

/** The file's text, refused if it is not a readable regular file of at most MAX_CONFIG_BYTES of UTF-8. */
function readLimited(path: string): string {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such config file" : "cannot open the config file";
    throw new ConfigError([`${path}: ${why}${e instanceof Deno.errors.NotFound ? "" : `: ${message(e)}`}`]);
  }
  try {
    const st = file.statSync();
    if (!st.isFile) throw new ConfigError([`${path}: not a regular file`]);
    if (st.size > MAX_CONFIG_BYTES) {
      throw new ConfigError([
        `${path}:1:1: config file is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} allowed`,
      ]);
    }
    // Read one byte past the limit, so a file that grew after the stat is caught too.
    const buf = new Uint8Array(MAX_CONFIG_BYTES + 1);
    let n = 0;
    while (n < buf.length) {
      const got = file.readSync(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    if (n > MAX_CONFIG_BYTES) {
      throw new ConfigError([`${path}:1:1: config file is more than ${MAX_CONFIG_BYTES} bytes`]);
    }
    const bytes = buf.subarray(0, n);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      const text = new TextDecoder().decode(bytes);
      const { line, col } = new LineCounterOf(text).at(text.indexOf("\uFFFD"));
      throw new ConfigError([`${path}:${line}:${col}: not UTF-8 text`]);
    }
  } finally {
    file.close();
  }
}

/** Line and column of an offset, for text the yaml library never saw. */
class LineCounterOf {
  readonly #lc = new LineCounter();
  constructor(text: string) {
    let at = 0;
    this.#lc.addNewLine(0);
    for (const line of text.split("\n")) {
      at += line.length + 1;
      this.#lc.addNewLine(at);
    }
  }
  at(offset: number): { line: number; col: number } {
    return this.#lc.linePos(Math.max(0, offset));
  }
}

/**
 * Checks a config file's text.
 * @param text the file's contents
 * @param path the file's name: messages start with it, and relative paths in it are relative to its directory
 * @param supplied required keys the command line provides
 * @throws ConfigError naming every problem with its line and column
 */
export function parseConfig(text: string, path: string, supplied: Supplied = {}): FileConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    schema: "core",
    uniqueKeys: true,
    strict: true,
  });
  const where = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${path}:${line}:${col}`;
  };
  // The first syntax problem only: the ones after it are usually its echoes.
  const bad = doc.errors[0] ?? doc.warnings[0];
  if (bad) throw new ConfigError([`${where(bad.pos[0])}: ${bad.message.split("\n")[0]}`]);
  try {
    doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    if (!/excessive alias/i.test(e.message)) {
      throw new ConfigError([`${where(firstAlias(doc, true))}: ${e.message.split("\n")[0]}`]);
    }
    throw new ConfigError([
      `${
        where(firstAlias(doc, false))
      }: YAML aliases expand too far (more than ${MAX_ALIAS_COUNT}): refusing the document`,
    ]);
  }
  const reader = new Reader(doc, where, resolve(dirname(path)));
  const values = reader.root(supplied);
  if (reader.problems.length > 0) throw new ConfigError(reader.problems);
  return toFields(values ?? {});
}

/** Where the document's first alias is, or its first one naming no anchor (the start of the file if none). */
function firstAlias(doc: Document, unresolved: boolean): number {
  let at = 0;
  visit(doc, {
    Alias(_, node) {
      if (unresolved && node.resolve(doc) !== undefined) return;
      at = node.range?.[0] ?? 0;
      return visit.BREAK;
    },
  });
  return at;
}

/** Walks a parsed document against the key table, collecting problems. */
class Reader {
  readonly problems: string[] = [];
  constructor(
    private readonly doc: Document,
    private readonly where: (offset: number) => string,
    private readonly dir: string,
  ) {}

  /** The file's values by key, or undefined when the document is not a mapping. */
  root(supplied: Supplied): Record<string, unknown> | undefined {
    const node = this.doc.contents;
    if (node === null || (isScalar(node) && node.value === null)) {
      this.problem(0, "empty config: expected a mapping with at least memory and kernel");
      return undefined;
    }
    const given = new Set(Object.entries(supplied).filter(([, v]) => v).map(([k]) => k));
    return this.object(node, CONFIG, "", given);
  }

  private problem(offset: number, text: string): void {
    this.problems.push(`${this.where(offset)}: ${text}`);
  }

  private deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  private object(
    raw: unknown,
    type: ObjectType,
    prefix: string,
    optional: ReadonlySet<string> = new Set(),
  ): Record<string, unknown> | undefined {
    const node = this.deref(raw);
    const where = prefix.replace(/\.$/, "");
    if (!isMap(node)) {
      this.problem(start(raw), `${where || "the config"} must be a mapping (key: value), not ${describe(node)}`);
      return undefined;
    }
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    let strays = 0;
    for (const pair of node.items) {
      const key = this.deref(pair.key);
      if (!isScalar(key) || typeof key.value !== "string") {
        this.problem(start(pair.key), `${where || "a config"} key must be a plain name, not ${describe(key)}`);
        continue;
      }
      const def = type.keys.find((k) => k.name === key.value);
      if (def === undefined) {
        const known = type.keys.map((k) => k.name).join(", ");
        this.problem(start(key), `${type.unknown} '${key.value}'${where ? ` in ${where}` : ""} (known: ${known})`);
        strays++;
        continue;
      }
      seen.add(def.name);
      const value = this.value(pair.value ?? pair.key, pair.value === null, def, `${prefix}${def.name}`);
      if (value !== undefined) out[def.name] = value;
    }
    if (type.oneKey && strays === 0 && seen.size !== 1) {
      const keys = type.keys.map((k) => k.name).join(" or ");
      this.problem(start(raw), `${where ? `${where}: ` : ""}a ${type.noun} has exactly one key, ${keys}`);
    }
    // A misspelt key already has its line; "missing path" after "unknown disk key 'paht'" would be its echo.
    for (const def of strays > 0 ? [] : type.keys) {
      if (!def.required || seen.has(def.name) || optional.has(def.name)) continue;
      const hint = type === CONFIG ? " (or give it on the command line)" : "";
      this.problem(start(raw), `${where ? `${where}: ` : ""}missing required key '${def.name}'${hint}`);
    }
    return out;
  }

  private value(raw: unknown, missing: boolean, def: KeyDef, name: string): unknown {
    const node = this.deref(raw);
    const at = start(raw);
    if (missing || (isScalar(node) && node.value === null)) {
      this.problem(at, `${name} has no value (expected ${expected(def.type)})`);
      return undefined;
    }
    const t = def.type;
    const scalar = isScalar(node) ? node.value : undefined;
    const wrong = () => {
      this.problem(at, `${name} must be ${expected(t)}, not ${describe(node)}`);
      return undefined;
    };
    switch (t.kind) {
      case "integer":
        if (typeof scalar !== "number") return wrong();
        if (!Number.isInteger(scalar) || scalar < t.minimum || scalar > t.maximum) {
          this.problem(at, `${name} must be ${expected(t)}, not ${scalar}`);
          return undefined;
        }
        return scalar;
      case "boolean":
        return typeof scalar === "boolean" ? scalar : wrong();
      case "enum":
        if (typeof scalar !== "string") return wrong();
        if (!t.values.includes(scalar)) {
          this.problem(at, `${name} must be ${expected(t)}, not '${scalar}'`);
          return undefined;
        }
        return scalar;
      case "file":
        return typeof scalar === "string" ? this.file(scalar, at, name) : wrong();
      case "tunnet":
        if (typeof scalar !== "string") return wrong();
        try {
          parseTunnetSpec(scalar);
          return scalar;
        } catch (e) {
          this.problem(at, `${name} '${scalar}': ${message(e).replace(/^--tunnet=[^:]*: /, "")}`);
          return undefined;
        }
      case "net":
        if (typeof scalar !== "string") return wrong();
        try {
          parseNetSpec(scalar);
          return scalar;
        } catch (e) {
          this.problem(at, `${name} '${scalar}': ${message(e).replace(`--net=${scalar}: `, "")}`);
          return undefined;
        }
      case "words":
        if (typeof scalar === "string") return scalar;
        if (!isSeq(node)) return wrong();
        return this.words(node.items, name);
      case "list": {
        if (!isSeq(node)) return wrong();
        const items = node.items.map((item, i) => this.object(item, t.item, `${name}[${i}].`));
        return items.every((x) => x !== undefined) ? items : undefined;
      }
    }
  }

  private words(items: readonly unknown[], name: string): string[] | undefined {
    const out: string[] = [];
    for (const [i, raw] of items.entries()) {
      const node = this.deref(raw);
      if (isScalar(node) && typeof node.value === "string") out.push(node.value);
      else this.problem(start(raw), `${name}[${i}] must be a string (quote it), not ${describe(node)}`);
    }
    return out.length === items.length ? out : undefined;
  }

  /** A path relative to the config file, which must name a regular file. */
  private file(raw: string, at: number, name: string): string | undefined {
    if (raw === "") {
      this.problem(at, `${name} is an empty path`);
      return undefined;
    }
    const path = resolve(this.dir, raw);
    try {
      if (Deno.statSync(path).isFile) return path;
      this.problem(at, `${name} '${raw}' is not a regular file (${path} is a directory or a device)`);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "does not exist" : `cannot be read: ${message(e)}`;
      this.problem(at, `${name} '${raw}' ${why}${raw === path ? "" : ` (${path})`}`);
    }
    return undefined;
  }
}

/** The offset a node (or the alias that names it) starts at. */
function start(node: unknown): number {
  return (node as Node | null)?.range?.[0] ?? 0;
}

/** What a node is, for "must be X, not Y". */
function describe(node: unknown): string {
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (!isScalar(node)) return "nothing";
  const v = node.value;
  if (v === null) return "null";
  if (typeof v === "string") return `the string '${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (typeof v === "number") return `the number ${v}`;
  if (typeof v === "boolean") return `${v}`;
  return `a ${node.tag ?? typeof v} value`;
}

/** What a value type accepts, in words. */
export function expected(t: ValueType): string {
  switch (t.kind) {
    case "integer":
      return `a whole number from ${t.minimum} to ${t.maximum}`;
    case "boolean":
      return "true or false";
    case "enum":
      return `one of ${t.values.join(", ")}`;
    case "file":
      return "a path to a file";
    case "tunnet":
      return "an IPv4 address or bridge:<name>";
    case "net":
      return "user[,hostfwd=tcp:<hostport>-:<guestport>]...";
    case "words":
      return "a string or a list of strings";
    case "list":
      return `a list of ${t.item.noun}s`;
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
