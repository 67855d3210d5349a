/*T:822 A config file and a command line are two spellings of one
 * machine. Every key read from a file lands in the field its option fills;
 * --print-config writes the effective configuration back out, and reading
 * that output gives the same machine again, from any directory (its paths
 * are absolute). Options on the command line win over the file's, a
 * --block or --tunnet replaces the file's whole list, and plain arguments
 * keep their places: memory, kernel, then the guest's words. :*/

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { type CliArgs, parseCli } from "../../cli.ts";
import { readConfig } from "../../lib/config/parse.ts";
import { printConfig } from "../../lib/config/print.ts";
import { CONFIG } from "../../lib/config/keys.ts";
import { runLauncher } from "../helpers/launcher.ts";
import { fixture, FULL_YAML } from "./fixture.ts";

const cli = (argv: string[]) => parseCli(argv, readConfig);

/** The fields a machine is made of, with the command line as one string (a file may split it into words). */
function machineOf(a: CliArgs) {
  const { help: _h, version: _v, printConfig: _p, kernelArgs, ...rest } = a;
  return { ...rest, cmdline: kernelArgs.join(" ") };
}

Deno.test("config: every key of a file lands in its command-line field", async () => {
  await using fx = await fixture();
  const a = cli([await fx.write("full.yaml", FULL_YAML)]);
  assert.deepEqual(machineOf(a), {
    memoryMiB: 96,
    kernel: `${fx.dir}/k`,
    initrd: `${fx.dir}/i`,
    cmdline: "console=ttyS0 root=/dev/vda quiet",
    cpus: 3,
    acpi: false,
    entry: "linux64",
    block: [`${fx.dir}/d.img,ro`, `${fx.dir}/sub/e.img`],
    tunnet: ["10.1.2.3", "bridge:br0"],
    net: ["user,hostfwd=tcp:8080-:80"],
    rng: true,
    verbose: true,
    timings: true,
  });
  assert.deepEqual(a.kernelArgs, ["console=ttyS0", "root=/dev/vda", "quiet"], "a list stays words");
  assert.equal(a.printConfig, false);
  // The defaults, when the file says only what it must.
  const b = cli([await fx.write("min.yml", "memory: 64\nkernel: sub/../k\ncmdline: console=hvc0 quiet\n")]);
  assert.deepEqual(machineOf(b), {
    memoryMiB: 64,
    kernel: `${fx.dir}/k`,
    initrd: undefined,
    cmdline: "console=hvc0 quiet",
    cpus: 1,
    acpi: true,
    entry: "auto",
    block: [],
    tunnet: [],
    net: [],
    rng: false,
    verbose: false,
    timings: false,
  });
});

Deno.test("config: file -> effective config -> --print-config -> parse gives the same machine, every key", async () => {
  await using fx = await fixture();
  const first = cli([await fx.write("full.yaml", FULL_YAML)]);
  const printed = printConfig(first);
  const keys = Object.keys(parseYaml(printed));
  assert.deepEqual(keys, CONFIG.keys.map((k) => k.name), "every key of the table is printed, in its order");
  // Read back from another directory: the printed paths do not depend on where the file is.
  const again = cli([await fx.write("elsewhere/printed.yaml", printed)]);
  assert.deepEqual(machineOf(again), machineOf(first));
  assert.equal(printConfig(again), printed, "printing is a fixed point");
  // One key at a time away from its default, so no key rides on another.
  const changes: Record<string, string> = {
    initrd: "initrd: i",
    cmdline: "cmdline: [a, b]",
    cpus: "cpus: 2",
    acpi: "acpi: false",
    entry: "entry: pvh",
    disks: "disks: [{path: x.img}]",
    networks: "networks: [{tunnet: bridge:br1}, {net: 'user,t=22:2222'}]",
    rng: "rng: true",
    verbose: "verbose: true",
    timings: "timings: true",
  };
  const base = machineOf(cli([await fx.write("base.yaml", "memory: 64\nkernel: k\n")]));
  for (const key of CONFIG.keys.map((k) => k.name).filter((k) => k !== "memory" && k !== "kernel")) {
    assert.ok(changes[key], `a round-trip case for '${key}'`);
    const one = cli([await fx.write(`${key}.yaml`, `memory: 64\nkernel: k\n${changes[key]}\n`)]);
    assert.notDeepEqual(machineOf(one), base, `${key} changes the machine`);
    const back = cli([await fx.write(`out/${key}.yaml`, printConfig(one))]);
    assert.deepEqual(machineOf(back), machineOf(one), `${key} round-trips`);
  }
});

Deno.test("config: the command line wins over the file", async () => {
  await using fx = await fixture();
  const full = await fx.write("full.yaml", FULL_YAML);
  const a = cli([
    "--cpus=1",
    "--entry=pvh",
    `--block=${fx.dir}/x.img`,
    "--tunnet=10.9.9.9",
    `--initrd=${fx.dir}/k2`,
    `--config=${full}`,
    "200",
    `${fx.dir}/k2`,
    "hello",
  ]);
  assert.equal(a.memoryMiB, 200);
  assert.equal(a.kernel, `${fx.dir}/k2`);
  assert.deepEqual(a.kernelArgs, ["hello"], "the guest's words replace the file's cmdline");
  assert.equal(a.cpus, 1);
  assert.equal(a.entry, "pvh");
  assert.equal(a.initrd, `${fx.dir}/k2`);
  assert.deepEqual(a.block, [`${fx.dir}/x.img`], "--block replaces the file's disks");
  assert.deepEqual(a.tunnet, ["10.9.9.9"], "--tunnet replaces the file's networks");
  assert.deepEqual(a.net, [], "... of both kinds");
  const n = cli([`--net=user`, `--config=${full}`]);
  assert.deepEqual([n.tunnet, n.net], [[], ["user"]], "--net replaces them too");
  assert.equal(a.acpi, false, "what the command line leaves alone comes from the file");
  assert.equal(a.rng, true);
  // Only a memory size: the kernel and its words still come from the file.
  const b = cli(["--config", full, "512"]);
  assert.equal(b.memoryMiB, 512);
  assert.equal(b.kernel, `${fx.dir}/k`);
  assert.deepEqual(b.kernelArgs, ["console=ttyS0", "root=/dev/vda", "quiet"]);
  // Flags turn on what the file leaves off; --no-acpi turns off what it leaves on.
  const min = await fx.write("min.yaml", "memory: 64\nkernel: k\n");
  const c = cli(["--rng", "--verbose", "--timings", "--no-acpi", min]);
  assert.deepEqual([c.rng, c.verbose, c.timings, c.acpi], [true, true, true, false]);
  // A file may leave out what the command line gives.
  const d = cli([`--config=${await fx.write("nokernel.yaml", "cpus: 2\n")}`, "32", `${fx.dir}/k`]);
  assert.deepEqual([d.memoryMiB, d.kernel, d.cpus], [32, `${fx.dir}/k`, 2]);
  // A .yaml file is a config only when it is the only plain argument.
  assert.equal(cli(["64", min]).kernel, min, "in the kernel's place it is a kernel");
  assert.throws(() => cli([`--config=${fx.dir}/none.yaml`]), /none\.yaml: no such config file/);
});

Deno.test("cli: --print-config turns a command line into a file that boots the same machine", async () => {
  await using fx = await fixture();
  const argv = [
    "--print-config",
    "--block=d.img,ro",
    "--block=sub/e.img",
    "--tunnet=10.0.0.1",
    "--rng",
    "--cpus=2",
    "--initrd=i",
    "64",
    "k",
    "console=ttyS0",
    "quiet",
  ];
  const printed = await runLauncherIn(fx.dir, argv);
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(printed.stderr, "");
  const file = await fx.write("elsewhere/vm.yaml", printed.stdout);
  const fromFile = cli([file]);
  const fromLine = machineOf(cli(argv.slice(1)));
  assert.deepEqual(machineOf(fromFile), {
    ...fromLine,
    kernel: `${fx.dir}/k`,
    initrd: `${fx.dir}/i`,
    block: [`${fx.dir}/d.img,ro`, `${fx.dir}/sub/e.img`],
  });
  // And the launcher reading that file prints the same file again.
  const again = await runLauncherIn(fx.dir, ["--print-config", file]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, printed.stdout);
});

/** Runs the launcher with `dir` as its working directory (relative paths on its command line are relative to it). */
async function runLauncherIn(dir: string, argv: string[]) {
  const before = Deno.cwd();
  Deno.chdir(dir);
  try {
    return await runLauncher(argv);
  } finally {
    Deno.chdir(before);
  }
}
