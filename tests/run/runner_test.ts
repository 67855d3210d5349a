/*T:766 The runner's parts that need no guest: the initramfs it makes
 * (unpacked here by a reader of our own, entry by entry), the marker
 * filter fed the console's bytes split at every possible place, and
 * `lguest run`'s answers to bad arguments and a kernel that is not there:
 * one line and status 125, before /dev/kvm is opened. :*/

import assert from "node:assert/strict";
import { runInitramfs } from "../../lib/run/initramfs.ts";
import { MarkerFilter } from "../../lib/run/command.ts";
import { parseRunArgs, RUN_FAILED } from "../../lib/run/cli.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** name → [mode, data] from a newc archive. */
function unpack(cpio: Uint8Array): Map<string, [number, Uint8Array]> {
  const dec = new TextDecoder();
  const out = new Map<string, [number, Uint8Array]>();
  let off = 0;
  const pad = (n: number) => (n + 3) & ~3;
  for (;;) {
    const head = dec.decode(cpio.subarray(off, off + 110));
    assert.equal(head.slice(0, 6), "070701");
    const field = (i: number) => parseInt(head.slice(6 + i * 8, 14 + i * 8), 16);
    const [mode, size, nameSize] = [field(1), field(6), field(11)];
    const name = dec.decode(cpio.subarray(off + 110, off + 110 + nameSize - 1));
    const dataAt = pad(off + 110 + nameSize);
    if (name === "TRAILER!!!") return out;
    out.set(name, [mode, cpio.subarray(dataAt, dataAt + size)]);
    off = pad(dataAt + size);
  }
}

Deno.test("runner initramfs: /init runs the command between the nonce's markers, busybox is the static one", async () => {
  const files = unpack(await gunzip(await runInitramfs({ command: "uname -r; exit 3", nonce: "abc123" })));
  const text = (name: string) => new TextDecoder().decode(files.get(name)?.[1]);
  assert.equal(text("lguest/command"), "uname -r; exit 3\n");
  assert.match(text("init"), /echo LGUEST-RUN-BEGIN-abc123\n/);
  assert.match(text("init"), /printf 'LGUEST-RUN-END-abc123 %d\\n' "\$status"/);
  assert.match(text("init"), /reboot -f/);
  assert.deepEqual(files.get("bin/busybox")?.[1], await Deno.readFile("/bin/busybox"));
  assert.equal(files.get("dev/console")?.[0], 0o020600);
  assert.equal(text("bin/sh"), "busybox");
  const shell = unpack(await gunzip(await runInitramfs({ nonce: "x1" })));
  assert.equal(shell.has("lguest/command"), false);
  await assert.rejects(runInitramfs({ nonce: "a b" }), /bad nonce/);
  await assert.rejects(
    runInitramfs({ nonce: "a", busybox: "/etc/passwd" }),
    /not a static binary: install Debian's busybox-static/,
  );
});

Deno.test("marker filter: the command's output and status, however the console's bytes are split", () => {
  const enc = new TextEncoder();
  const stream = enc.encode(
    "[boot] LGUEST-RUN-BEGIN-n1 is not this\nLGUEST-RUN-BEGIN-n1\nline one\nLGUEST-RUN-END-n0 9\nno newline" +
      "LGUEST-RUN-END-n1 42\nreboot: Restarting\n",
  );
  for (let a = 0; a <= stream.length; a++) {
    for (const b of [a, Math.min(stream.length, a + 1), Math.min(stream.length, a + 7)]) {
      const out: string[] = [];
      const boot: string[] = [];
      const dec = (s: string[]) => (x: Uint8Array) => s.push(new TextDecoder().decode(x));
      const f = new MarkerFilter("n1", dec(out), dec(boot));
      for (const part of [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]) f.push(part);
      assert.equal(out.join(""), "line one\nLGUEST-RUN-END-n0 9\nno newline", `split at ${a}, ${b}`);
      assert.equal(boot.join(""), "[boot] LGUEST-RUN-BEGIN-n1 is not this\n");
      assert.equal(f.status, 42);
    }
  }
  // Output is passed on as it comes: only a tail that could start the end marker waits for more.
  const live: string[] = [];
  const cut = new MarkerFilter("n1", (x) => live.push(new TextDecoder().decode(x)));
  cut.push(enc.encode("LGUEST-RUN-BEGIN-n1\nstarted\n"));
  assert.equal(live.join(""), "started\n");
  cut.push(enc.encode("partial LGUEST-RU"));
  assert.equal(live.join(""), "started\npartial ");
  cut.push(enc.encode("N-AWAY, then the guest died"));
  assert.equal(live.join(""), "started\npartial LGUEST-RUN-AWAY, then the guest died");
  assert.equal(cut.status, undefined);
});

Deno.test("lguest run: argument rules", () => {
  const a = parseRunArgs(["--mem", "64", "-v", "k", "--", "ls", "-l"]);
  assert.deepEqual([a.kernel, a.command, a.memoryMiB, a.verbose, a.acpi], ["k", "ls -l", 64, true, true]);
  assert.equal(parseRunArgs(["--no-acpi", "k", "uname", "-r"]).command, "uname -r");
  assert.deepEqual(parseRunArgs(["--append", "nopv  quiet", "--append=x=1", "k", "true"]).append, [
    "nopv",
    "quiet",
    "x=1",
  ]);
  assert.throws(() => parseRunArgs(["k"]), /no command given/);
  assert.throws(() => parseRunArgs([]), /no kernel given/);
  assert.throws(() => parseRunArgs(["--cpus=two", "k", "x"]), /--cpus wants a positive whole number, not 'two'/);
});

Deno.test("lguest run: a missing kernel or a bad option is one line and status 125", async () => {
  for (
    const [args, pattern] of [
      [["run", "/nonexistent/bzImage", "true"], /^lguest: kernel \/nonexistent\/bzImage: no such file\n$/],
      [["run", "--bogus", "k", "true"], /^lguest: .*'--bogus'.*\n$/],
      [["run", "k"], /^lguest: run: no command given \(see lguest run --help\)\n$/],
    ] as const
  ) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, ...args],
      env: { LGUEST_KVM: "/nonexistent/kvm" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, RUN_FAILED, err);
    assert.match(err, pattern);
    assert.equal(r.stdout.length, 0);
  }
});
