// lguest-test-needs: kvm
/*T:795 The benchmark suite's own checks. The test guest must carry a
 * well-formed PVH note (owner "Xen", type 18, in a PT_NOTE segment) whose
 * entry lies in its code, and the launcher's ELF loader must find it; when
 * QEMU is installed, QEMU's microvm must really boot the guest through that
 * entry and see our command line. The C exit peer must boot the same guest
 * and report a BENCH-PIO line; the guest's ring-3 disk loop must finish its
 * writes (and they must reach the file), and its network loop must get all
 * its frames taken through a tap in a namespace of its own; with the
 * offloads, its 64 KiB TCP segments must reach the host stack whole, and
 * net_host's must reach the guest whole, spread over merged buffers. The pure
 * pieces (medians, spreads, smaps parsing, the Markdown table) need no KVM
 * and are checked in bench_host_test.ts. No test here asserts a timing. :*/

import assert from "node:assert/strict";
import { buildTestGuest } from "./guest/build.ts";
import { HAVE_KVM, runLauncher } from "./helpers/launcher.ts";
import { programHeaders } from "./helpers/elf_phdrs.ts";
import { GuestMemory } from "../lib/memory.ts";
import { loadElf, PT_LOAD, PT_NOTE, XEN_ELFNOTE_PHYS32_ENTRY } from "../lib/boot/elf.ts";
import { cyclesPerExit } from "../scripts/bench/exit.ts";
import { buildPeer, which } from "../scripts/bench/tools.ts";
import { runWithMarker } from "../scripts/bench/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const QEMU = which("qemu-system-x86_64");
if (QEMU === undefined) console.log("bench_test: qemu-system-x86_64 not installed; the PVH boot test is skipped");

Deno.test("bench: the test guest carries a well-formed PVH note the ELF loader finds", async () => {
  const image = await Deno.readFile(await buildTestGuest());
  const phdrs = programHeaders(image);
  const notes = phdrs.filter((p) => p.type === PT_NOTE);
  assert.equal(notes.length, 1, "one PT_NOTE segment");
  const note = notes[0]!;
  assert.equal(note.align, 4);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  assert.equal(v.getUint32(note.offset, true), 4, 'namesz: "Xen\\0"');
  assert.equal(v.getUint32(note.offset + 4, true), 8, "descsz: a 64-bit address, as QEMU reads it");
  assert.equal(v.getUint32(note.offset + 8, true), XEN_ELFNOTE_PHYS32_ENTRY);
  assert.deepEqual([...image.subarray(note.offset + 12, note.offset + 16)], [0x58, 0x65, 0x6e, 0]);
  const entry = Number(v.getBigUint64(note.offset + 16, true));
  assert.equal(note.filesz, 24);

  const code = phdrs.find((p) => p.type === PT_LOAD && (p.flags & 1) !== 0)!;
  assert.ok(entry >= code.paddr && entry < code.paddr + code.filesz, "the PVH entry lies in the code segment");
  const first = image[code.offset + entry - code.paddr];
  assert.equal(first, 0xfa, "and starts with cli, like the 32-bit stub in start.S");

  const mem = GuestMemory.create(64 * 1024 * 1024);
  try {
    const loaded = loadElf(mem, image, "guest.elf");
    assert.equal(loaded.pvhEntry, entry, "lib/boot/elf.ts finds the same entry");
    assert.notEqual(loaded.entry, entry, "the 64-bit entry is still _start");
  } finally {
    mem.close();
  }
});

Deno.test({
  name: "bench: QEMU's microvm boots the test guest through its PVH entry",
  ignore: !HAVE_KVM || QEMU === undefined,
  async fn() {
    const guest = await buildTestGuest();
    const child = new Deno.Command(QEMU!, {
      args: [
        ...["-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "64", "-nodefaults"],
        ...["-no-user-config", "-nographic", "-display", "none", "-serial", "stdio", "-no-reboot"],
        ...["-device", "i8042", "-kernel", guest, "-append", "pvh.test=1"],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, `QEMU: ${new TextDecoder().decode(out.stderr)}\n${text}`);
    assert.match(text, /^lguest test guest$/m);
    assert.match(text, /^MODE: long /m, "the stub reached long mode");
    assert.match(text, /^CMDLINE: pvh\.test=1$/m, "pvh_main found the command line in hvm_start_info");
    const e820 = /^E820-COUNT: (\d+)$/m.exec(text);
    assert.ok(e820 && Number(e820[1]) >= 2, "and the memory map");
    assert.match(text, /^DONE$/m);
  },
});

Deno.test({
  name: "bench: the C exit peer boots the same guest and reports its exit loop",
  ignore: !HAVE_KVM,
  async fn() {
    const peer = await buildPeer(ROOT, "kvm_exit");
    const out = await new Deno.Command(peer, {
      args: [await buildTestGuest(), "64", "bench.pio=1000"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stdout, /^BENCH-PIO: 1000 \d+ cpl 3$/m);
    assert.ok((cyclesPerExit(stdout) ?? 0) > 0);
    assert.match(stderr, /^TSC-KHZ: [1-9]\d*$/m);
    assert.ok(Number(/^EXITS: (\d+)$/m.exec(stderr)?.[1]) >= 1000, "one exit per port write at least");
  },
});

Deno.test({
  name: "bench: the guest's ring-3 virtio-blk loop and the host peer both finish their requests",
  ignore: !HAVE_KVM,
  async fn() {
    const disk = await Deno.makeTempFile({ prefix: "lguest-bench-test-" });
    try {
      await Deno.writeFile(disk, new Uint8Array(4 * 1024 * 1024).fill(0x5a));
      const run = await runLauncher([
        "--no-acpi",
        `--block=${disk}`,
        "128",
        await buildTestGuest(),
        ...["bench.blk=64", "bench.blk.size=16", "bench.blk.qd=32", "bench.blk.op=1", "bench.blk.rand=1"],
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^BENCH-BLK: 64 16 32 w rand \d+ 0$/m, "64 writes of 16 KiB, none failed");
      const after = await Deno.readFile(disk);
      assert.ok(after.some((b) => b !== 0x5a), "the guest's buffers reached the file");
      const host = await new Deno.Command(await buildPeer(ROOT, "blk_host"), {
        args: [disk, "64", "16", "4", "r", "seq", "cache"],
        stdout: "piped",
      }).output();
      assert.match(new TextDecoder().decode(host.stdout), /^BENCH-BLK-HOST: 64 \d+ 0$/m);
    } finally {
      await Deno.remove(disk);
    }
  },
});

Deno.test({
  name: "bench: the guest's ring-3 virtio-net loop sends its frames through a tap in a netns",
  ignore: !HAVE_KVM || Deno.uid() !== 0,
  async fn() {
    const ns = `lgbtest-${Deno.pid}`;
    const ip = (...args: string[]) => new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
    assert.ok((await ip("netns", "add", ns)).success);
    try {
      const run = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          Deno.execPath(),
          "run",
          "-A",
          `${ROOT}cli.ts`,
          "--no-acpi",
          "--tunnet=10.98.0.1",
          "128",
        ]
          .concat([await buildTestGuest(), "bench.net=100", "bench.net.size=200"]),
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(run.stdout);
      assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
      assert.match(stdout, /^BENCH-NET: tx 100 200 \d+$/m, "the device took all 100 frames off the ring");
    } finally {
      await ip("netns", "del", ns);
    }
  },
});

Deno.test({
  name: "bench: the guest's 64 KiB TSO loops move whole segments both ways through a tap in a netns",
  ignore: !HAVE_KVM || Deno.uid() !== 0,
  async fn() {
    const ns = `lgbtso-${Deno.pid}`;
    const ip = (...args: string[]) => new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
    const netHost = await buildPeer(ROOT, "net_host");
    const guest = await buildTestGuest();
    assert.ok((await ip("netns", "add", ns)).success);
    try {
      await ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
      const run = async (dir: number, host: string[]) => {
        let hostOut = "";
        const cmd = [
          "ip",
          "netns",
          "exec",
          ns,
          Deno.execPath(),
          "run",
          "-A",
          `${ROOT}cli.ts`,
          "--no-acpi",
          "--tunnet=10.98.0.1",
        ]
          .concat(["128", guest, "bench.net=20", "bench.net.tso=1", `bench.net.dir=${dir}`]);
        const out = await runWithMarker(cmd, "BENCH-NET-READY", async () => {
          const r = await new Deno.Command("ip", { args: ["netns", "exec", ns, netHost, ...host], stdout: "piped" })
            .output();
          hostOut = new TextDecoder().decode(r.stdout);
        }, { timeoutMs: 120_000 });
        return { out, hostOut };
      };
      const tx = await run(0, ["tso-sink", "tap0", "20"]);
      assert.match(tx.out, /^BENCH-NET: tx 20 65214 \d+$/m, "the device took all 20 segments off the ring");
      const sink = /^BENCH-NET-HOST: sink (\d+) (\d+) \d+$/m.exec(tx.hostOut);
      assert.ok(sink && Number(sink[1]) >= 1, `the host stack took segments in: ${tx.hostOut}`);
      assert.equal(Number(sink[2]), Number(sink[1]) * 65214, "each one whole, as one 64 KiB frame");
      const rx = await run(1, ["tso-inject", "tap0", "20"]);
      const got = /^BENCH-NET: rx (\d+) 65214 \d+$/m.exec(rx.out);
      assert.ok(got && Number(got[1]) >= 1, `the guest received whole 64 KiB segments: ${rx.out}`);
    } finally {
      await ip("netns", "del", ns);
    }
  },
});
