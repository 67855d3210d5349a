/*T:821 Every way a config file can be wrong ends the same way: exit 1,
 * nothing on stdout, and exactly one line on stderr,
 * `lguest: <file>:<line>:<col>: <problem>`, pointing at the value at fault,
 * before anything is acquired. Each case runs the real launcher with a
 * private TMPDIR, which must still be empty afterwards, and no tap may have
 * appeared (one case names a network and fails on a later key). A billion-
 * laughs document and a 10 MB file must fail fast, not eat the host. :*/

import assert from "node:assert/strict";
import { runLauncher } from "../helpers/launcher.ts";
import { fixture } from "./fixture.ts";

interface Case {
  /** What is wrong. */
  name: string;
  /** The file's text (a function for big or binary files). */
  text: string | (() => Uint8Array);
  /** Where the problem is. */
  line: number;
  col: number;
  /** What the line must say after the position. */
  says: RegExp;
}

const GOOD = "memory: 64\nkernel: k\n";
const laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
for (let i = 1; i < 10; i++) {
  const p = String.fromCharCode(96 + i), n = String.fromCharCode(97 + i);
  laughs.push(`${n}: &${n} [${Array(9).fill(`*${p}`).join(", ")}]`);
}

const CASES: Case[] = [
  { name: "tab indentation", text: `${GOOD}disks:\n\t- path: d.img\n`, line: 4, col: 1, says: /Tabs/ },
  { name: "duplicate key", text: `${GOOD}memory: 128\n`, line: 3, col: 1, says: /unique/ },
  { name: "negative memory", text: "memory: -5\nkernel: k\n", line: 1, col: 9, says: /memory must be .* not -5/ },
  { name: "zero memory", text: "memory: 0\nkernel: k\n", line: 1, col: 9, says: /memory must be a whole number/ },
  { name: "fractional memory", text: "memory: 1.5\nkernel: k\n", line: 1, col: 9, says: /not 1\.5/ },
  { name: "memory as a string", text: "memory: '64'\nkernel: k\n", line: 1, col: 9, says: /not the string '64'/ },
  { name: "memory too large", text: "memory: 2000000\nkernel: k\n", line: 1, col: 9, says: /to 1048576/ },
  { name: "unknown key", text: `${GOOD}devices: []\n`, line: 3, col: 1, says: /unknown key 'devices' \(known: memory/ },
  {
    name: "unknown network type",
    text: `${GOOD}networks:\n  - tap: tap0\n`,
    line: 4,
    col: 5,
    says: /unknown network type 'tap' in networks\[0\]/,
  },
  {
    name: "a disk that is a directory (after a good network)",
    text: `${GOOD}networks: [{ tunnet: 10.77.0.1 }]\ndisks: [{ path: dir }]\n`,
    line: 4,
    col: 17,
    says: /disks\[0\]\.path 'dir' is not a regular file/,
  },
  { name: "a disk that does not exist", text: `${GOOD}disks: [{path: gone.img}]\n`, line: 3, col: 16, says: /exist/ },
  { name: "missing kernel", text: "memory: 64\n", line: 1, col: 1, says: /missing required key 'kernel'/ },
  { name: "billion laughs", text: `${laughs.join("\n")}\n${GOOD}`, line: 2, col: 8, says: /aliases expand too far/ },
  {
    name: "a 10 MB file",
    text: () => new TextEncoder().encode(`${GOOD}# ${"x".repeat(10 * 1024 * 1024)}\n`),
    line: 1,
    col: 1,
    says: /more than the 1048576 allowed/,
  },
  { name: "unresolved alias", text: `${GOOD}initrd: *nowhere\n`, line: 3, col: 9, says: /Unresolved alias/ },
  { name: "zero cpus", text: `${GOOD}cpus: 0\n`, line: 3, col: 7, says: /cpus must be .* from 1 to 64, not 0/ },
  { name: "too many cpus", text: `${GOOD}cpus: 65\n`, line: 3, col: 7, says: /not 65/ },
  { name: "unknown entry", text: `${GOOD}entry: bios\n`, line: 3, col: 8, says: /one of auto, pvh, linux64/ },
  {
    name: "YAML 1.1 boolean",
    text: `${GOOD}acpi: yes\n`,
    line: 3,
    col: 7,
    says: /true or false, not the string 'yes'/,
  },
  { name: "cmdline as a mapping", text: `${GOOD}cmdline: {a: 1}\n`, line: 3, col: 10, says: /a string or a list/ },
  { name: "a number in cmdline", text: `${GOOD}cmdline: [ro, 3]\n`, line: 3, col: 15, says: /cmdline\[1\] .*quote/ },
  { name: "disks as a string", text: `${GOOD}disks: d.img\n`, line: 3, col: 8, says: /a list of disks/ },
  {
    name: "readonly as a string",
    text: `${GOOD}disks:\n  - path: d.img\n    readonly: "no"\n`,
    line: 5,
    col: 15,
    says: /disks\[0\]\.readonly must be true or false/,
  },
  { name: "bad address", text: `${GOOD}networks: [{tunnet: 300.1.1.1}]\n`, line: 3, col: 21, says: /'300\.1\.1\.1'/ },
  {
    name: "bad bridge",
    text: `${GOOD}networks: [{tunnet: "bridge:far-too-long-a-name"}]\n`,
    line: 3,
    col: 21,
    says: /bad bridge name/,
  },
  {
    name: "bad --net option",
    text: `${GOOD}networks: [{net: "user,hostfwd=tcp:8080-:99999"}]\n`,
    line: 3,
    col: 18,
    says: /networks\[0\]\.net 'user,hostfwd=tcp:8080-:99999': port 99999 is not 1 to 65535/,
  },
  {
    name: "a network of two kinds",
    text: `${GOOD}networks: [{tunnet: 10.0.0.1, net: user}]\n`,
    line: 3,
    col: 12,
    says: /networks\[0\]: a network has exactly one key, tunnet or net/,
  },
  { name: "a network of no kind", text: `${GOOD}networks: [{}]\n`, line: 3, col: 12, says: /exactly one key/ },
  { name: "two documents", text: `${GOOD}---\n${GOOD}`, line: 3, col: 1, says: /multiple documents/ },
  { name: "a list, not a mapping", text: "- memory: 64\n", line: 1, col: 1, says: /must be a mapping/ },
  { name: "an empty file", text: "", line: 1, col: 1, says: /empty config/ },
  { name: "unclosed flow list", text: `${GOOD}cmdline: [a, b\n`, line: 4, col: 1, says: /end with a \]/ },
  {
    name: "not UTF-8",
    text: () => new Uint8Array([...new TextEncoder().encode(`${GOOD}cmdline: "`), 0xff, 0x22, 0x0a]),
    line: 3,
    col: 11,
    says: /not UTF-8/,
  },
  { name: "an unknown tag", text: `${GOOD}initrd: !file i\n`, line: 3, col: 9, says: /Unresolved tag/ },
  { name: "initrd is a directory", text: `${GOOD}initrd: dir\n`, line: 3, col: 9, says: /not a regular file/ },
  { name: "a key with no value", text: `${GOOD}rng:\n`, line: 3, col: 5, says: /rng has no value/ },
  { name: "a list as a key", text: `${GOOD}[a]: 1\n`, line: 3, col: 1, says: /key must be a plain name/ },
];

function taps(): Set<string> {
  return new Set([...Deno.readDirSync("/sys/class/net")].map((e) => e.name).filter((n) => n.startsWith("tap")));
}

Deno.test(`config: ${CASES.length} malformed files, one line each with file:line:col, exit 1, nothing left`, async () => {
  await using fx = await fixture();
  const tapsBefore = taps();
  const failures: string[] = [];
  const run = async (c: Case, i: number) => {
    const file = await fx.write(`case${i}.yaml`, typeof c.text === "string" ? c.text : c.text());
    const tmp = await Deno.makeTempDir({ prefix: "lguest-config-tmpdir-" });
    try {
      const started = performance.now();
      const r = await runLauncher([file], { env: { TMPDIR: tmp } });
      const ms = performance.now() - started;
      const lines = r.stderr.trimEnd().split("\n");
      const prefix = `lguest: ${file}:${c.line}:${c.col}: `;
      if (r.code !== 1) failures.push(`${c.name}: exit ${r.code}, stderr ${r.stderr}`);
      else if (r.stdout !== "") failures.push(`${c.name}: stdout ${JSON.stringify(r.stdout)}`);
      else if (lines.length !== 1) failures.push(`${c.name}: ${lines.length} lines:\n${r.stderr}`);
      else if (!lines[0]!.startsWith(prefix)) failures.push(`${c.name}: want ${prefix}..., got ${lines[0]}`);
      else if (!c.says.test(lines[0]!.slice(prefix.length))) failures.push(`${c.name}: ${lines[0]} !~ ${c.says}`);
      else if ([...Deno.readDirSync(tmp)].length > 0) failures.push(`${c.name}: left files in TMPDIR`);
      else if (ms > 20_000) failures.push(`${c.name}: took ${ms.toFixed(0)} ms`);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  };
  // Four launchers at a time: enough to be quick, few enough for a small shared host.
  for (let i = 0; i < CASES.length; i += 4) {
    await Promise.all(CASES.slice(i, i + 4).map((c, j) => run(c, i + j)));
  }
  assert.ok(CASES.length >= 20, "at least 20 cases");
  assert.deepEqual(failures, [], failures.join("\n"));
  assert.deepEqual(taps(), tapsBefore, "no tap appeared");
});
