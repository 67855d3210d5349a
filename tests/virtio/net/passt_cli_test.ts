/*T:472 --net=user from the command line, on a host without KVM: the
 * launcher starts passt for the card, then fails to build the machine
 * (an empty kernel file; LGUEST_KVM points nowhere as well), and passt
 * must not be left behind. To know
 * which process was passt, PATH leads to a small wrapper that writes its
 * pid and execs the real passt (same pid). Also: a bad --net is one line
 * before anything starts, and without passt the line says how to get it. :*/

import assert from "node:assert/strict";
import { netnsProblem } from "./netns.ts";
import { gone, passtIn, passtProblem, routableNetNs } from "./passt_rig.ts";

const CLI = new URL("../../../cli.ts", import.meta.url).pathname;
const problem = (await netnsProblem()) ?? (await passtProblem());
if (problem !== undefined) console.warn(`passt launcher tests skipped: ${problem}`);

async function launcher(args: string[], env: Record<string, string>, prefix: string[] = []) {
  const argv = [...prefix, Deno.execPath(), "run", "-A", CLI, ...args];
  const r = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

Deno.test("--net: a bad value is one line and exit 1", async () => {
  const kernel = await Deno.makeTempFile();
  try {
    const r = await launcher(["--net=user,hostfwd=tcp:1-:0", "64", kernel], {});
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "lguest: --net=user,hostfwd=tcp:1-:0: port 0 is not 1 to 65535\n");
  } finally {
    await Deno.remove(kernel);
  }
});

Deno.test("--net: without passt, one line says how to get it", async () => {
  const kernel = await Deno.makeTempFile();
  const empty = await Deno.makeTempDir();
  try {
    const r = await launcher(["--net=user", "64", kernel], { PATH: empty, LGUEST_KVM: "/nonexistent/kvm" });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "lguest: --net=user needs passt: apt-get install passt\n");
  } finally {
    await Deno.remove(kernel);
    await Deno.remove(empty);
  }
});

Deno.test({
  name: "--net: after a launcher error, passt is gone",
  ignore: problem !== undefined,
  fn: async () => {
    const ns = await routableNetNs();
    const dir = await Deno.makeTempDir();
    try {
      const kernel = `${dir}/kernel`;
      await Deno.writeTextFile(kernel, "");
      const real = new TextDecoder().decode(
        (await new Deno.Command("sh", { args: ["-c", "command -v passt"] }).output()).stdout,
      )
        .trim();
      await Deno.writeTextFile(`${dir}/passt`, `#!/bin/sh\necho $$ >> ${dir}/pids\nexec ${real} "$@"\n`, {
        mode: 0o755,
      });
      const r = await launcher(
        ["--net=user,hostfwd=tcp:18080-:80", "64", kernel],
        { PATH: `${dir}:${Deno.env.get("PATH")}`, LGUEST_KVM: "/nonexistent/kvm" },
        ["ip", "netns", "exec", ns.name],
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^lguest: [^\n]+\n$/, "one line: the launcher's error (an empty kernel)");
      const pids = (await Deno.readTextFile(`${dir}/pids`)).trim().split("\n").map(Number);
      assert.equal(pids.length, 1, "the launcher started passt once");
      assert.ok(await gone(pids[0]!), `passt ${pids[0]} outlived the launcher`);
      assert.deepEqual(passtIn(ns), []);
    } finally {
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
