/*L:071 A machine config file says in YAML what a command line says in
 * options, key for key: memory and kernel for the two plain arguments,
 * cmdline for the guest's words after them, and one key per option. The keys
 * live in one table, as data, and three readers share it: the parser
 * (lib/config/parse.ts) checks a file against it, the printer
 * (lib/config/print.ts) writes the effective configuration back out in its
 * order, and lib/config/json_schema.ts turns it into the JSON Schema that
 * editors validate with. A key added here is a key in all three. :*/

import { MAX_CPUS, MAX_MEMORY_MIB } from "../machine/config.ts";
import { ENTRY_CHOICES } from "../machine/entry.ts";

/** What a value must be; each kind is checked by the parser and described in the JSON Schema. */
export type ValueType =
  | { readonly kind: "integer"; readonly minimum: number; readonly maximum: number }
  | { readonly kind: "boolean" }
  /** A path to a regular file, relative to the config file's directory unless absolute. */
  | { readonly kind: "file" }
  | { readonly kind: "enum"; readonly values: readonly string[] }
  /** A string, or a list of strings joined with spaces. */
  | { readonly kind: "words" }
  /** What --tunnet takes: an IPv4 address or bridge:<name>. */
  | { readonly kind: "tunnet" }
  /** What --net takes: user[,hostfwd=...]. */
  | { readonly kind: "net" }
  | { readonly kind: "list"; readonly item: ObjectType };

/** A mapping with fixed keys (the file itself, a disk, a network). */
export interface ObjectType {
  /** What the mapping is, for messages: "config", "disk", "network". */
  readonly noun: string;
  /** How an unknown key is named in messages ("unknown network type 'tap'"). */
  readonly unknown: string;
  /** Its keys, in the order they are printed. */
  readonly keys: readonly KeyDef[];
  /** True when the mapping has exactly one of its keys (a network is one kind or another). */
  readonly oneKey?: boolean;
}

/** One key of a mapping. */
export interface KeyDef {
  /** The key as written in YAML. */
  readonly name: string;
  /** What its value must be. */
  readonly type: ValueType;
  /** One sentence for the JSON Schema's description. */
  readonly doc: string;
  /** True when the mapping must have it (the file's memory and kernel may come from the command line instead). */
  readonly required?: boolean;
  /** The value when the key is absent, if there is one. */
  readonly default?: number | boolean | string;
  /** The command-line spelling, for messages and the schema. */
  readonly cli?: string;
}

/** A disk: `--block=<path>[,ro]`. */
export const DISK: ObjectType = {
  noun: "disk",
  unknown: "unknown disk key",
  keys: [
    { name: "path", type: { kind: "file" }, required: true, doc: "The file that backs the disk." },
    { name: "readonly", type: { kind: "boolean" }, default: false, doc: "Read-only (--block=<file>,ro)." },
  ],
};

/** A network card: one key, its mode (`tunnet`: a tap; `net`: user mode, passt). */
export const NETWORK: ObjectType = {
  noun: "network",
  unknown: "unknown network type",
  oneKey: true,
  keys: [{
    name: "tunnet",
    type: { kind: "tunnet" },
    cli: "--tunnet",
    doc: "A tap whose host side gets this IPv4 address /24 (routed), or bridge:<name> to join a bridge.",
  }, {
    name: "net",
    type: { kind: "net" },
    cli: "--net",
    doc: "A user-mode network through passt: user, then ,hostfwd=tcp:<hostport>-:<guestport> (or udp) " +
      "or ,t=<spec>/,u=<spec> in passt's -t/-u syntax, each repeatable.",
  }],
};

/** The config file's own keys, in the order --print-config writes them. */
export const CONFIG: ObjectType = {
  noun: "config",
  unknown: "unknown key",
  keys: [
    {
      name: "memory",
      type: { kind: "integer", minimum: 1, maximum: MAX_MEMORY_MIB },
      required: true,
      cli: "<mem-in-mb>",
      doc: "Guest RAM in MiB.",
    },
    {
      name: "kernel",
      type: { kind: "file" },
      required: true,
      cli: "<vmlinux|bzImage>",
      doc: "The kernel: an ELF vmlinux or a bzImage.",
    },
    { name: "initrd", type: { kind: "file" }, cli: "--initrd", doc: "An initrd or initramfs." },
    {
      name: "cmdline",
      type: { kind: "words" },
      cli: "[kernel args...]",
      doc: "The kernel command line: a string, or a list of words joined with spaces.",
    },
    {
      name: "cpus",
      type: { kind: "integer", minimum: 1, maximum: MAX_CPUS },
      default: 1,
      cli: "--cpus",
      doc: "Number of vCPUs.",
    },
    {
      name: "acpi",
      type: { kind: "boolean" },
      default: true,
      cli: "--no-acpi",
      doc: "Describe the machine with ACPI tables; false declares the virtio devices on the command line instead.",
    },
    {
      name: "entry",
      type: { kind: "enum", values: ENTRY_CHOICES },
      default: "auto",
      cli: "--entry",
      doc: "How the kernel is entered: auto (PVH if the ELF has the note), pvh, or linux64.",
    },
    {
      name: "disks",
      type: { kind: "list", item: DISK },
      cli: "--block",
      doc: "Virtio disks, in order (the first is /dev/vda).",
    },
    {
      name: "networks",
      type: { kind: "list", item: NETWORK },
      cli: "--tunnet, --net",
      doc: "Virtio network cards, in order (the first is eth0; the net cards come after the tunnet ones).",
    },
    { name: "rng", type: { kind: "boolean" }, default: false, cli: "--rng", doc: "A virtio entropy device." },
    {
      name: "verbose",
      type: { kind: "boolean" },
      default: false,
      cli: "--verbose",
      doc: "Log boot decisions and device activity on stderr.",
    },
    {
      name: "timings",
      type: { kind: "boolean" },
      default: false,
      cli: "--timings",
      doc: "At exit, print when each phase of the boot ended.",
    },
  ],
};
