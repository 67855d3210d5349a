/*T:796 The benchmarks never report emulated timings: inside the test VM
 * (which the runner marks in the environment and on the VM kernel's command
 * line) `deno task bench` refuses in one line and measures nothing. :*/

import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("bench: refuses to measure inside the test VM, in one line, writing nothing", async () => {
  const before = await Deno.stat(`${ROOT}bench/results.json`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}scripts/bench.ts`, "--only=exit"],
    env: { LGUEST_TEST_VM: "tcg" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1);
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /^bench: refusing to measure inside the test VM: .*timings mean nothing/);
  assert.equal((await Deno.stat(`${ROOT}bench/results.json`)).mtime?.getTime(), before.mtime?.getTime());
});
