/*T:315 How stop() reaches a vCPU, tested without KVM. A thread asleep in
 * a system call is kicked out of it with a signal (chapter L:410), and the
 * signal must be one Deno leaves alone: a SIGUSR1 would open V8's debugger
 * on 127.0.0.1:9229 for anyone on the machine. So a separate program
 * (T:318) puts a thread to sleep in poll(2), waits past the half second
 * after start-up when Deno begins to listen for SIGUSR1, kicks the thread
 * with the launcher's own kickThread(), and stays alive while we check from
 * outside that poll returned EINTR at once, that the process listens on no
 * TCP or UDP port, and that Deno never printed its debugger banner. The
 * socket check itself is tested first against sockets we open on purpose,
 * so that it cannot pass by seeing nothing. :*/

import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { KICK_SIGNAL } from "../../lib/vcpu_thread.ts";
import { Errno } from "../../lib/sys/errno.ts";
import { assertAlive, DEBUGGER_BANNER, listeningSockets, StreamText, watchNotListening } from "../helpers/exposure.ts";

const PROBE = new URL("../helpers/kick_probe.ts", import.meta.url).pathname;

Deno.test("kick: the socket check sees a listening TCP port and a bound UDP port, and their closing", async () => {
  assert.deepEqual(listeningSockets(Deno.pid), [], "nothing listens before");
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const udp = createSocket("udp4");
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
  try {
    const found = listeningSockets(Deno.pid);
    const tcpPort = (tcp.addr as Deno.NetAddr).port;
    assert.ok(found.some((s) => s.table === "tcp" && s.local === `127.0.0.1:${tcpPort}`), JSON.stringify(found));
    assert.ok(found.some((s) => s.table === "udp" && s.local === `127.0.0.1:${udp.address().port}`));
  } finally {
    tcp.close();
    await new Promise<void>((r) => udp.close(() => r()));
  }
  assert.deepEqual(listeningSockets(Deno.pid), [], "nothing listens after");
});

Deno.test("kick: the socket check refuses a process that has exited", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  assert.throws(() => listeningSockets(child.pid), /has exited/);
});

Deno.test("kick: the kick signal is SIGUSR2, by name and by number", async () => {
  assert.notEqual(KICK_SIGNAL.name, "SIGUSR1", "SIGUSR1 opens Deno's debugger port (L:410)");
  assert.notEqual(KICK_SIGNAL.number, 10, "signal 10 is SIGUSR1 on x86_64 (L:410)");
  assert.equal(KICK_SIGNAL.name, "SIGUSR2");
  const out = await new Deno.Command("sh", { args: ["-c", `kill -l ${KICK_SIGNAL.number}`] }).output();
  assert.equal(`SIG${new TextDecoder().decode(out.stdout).trim()}`, KICK_SIGNAL.name, "number and name agree");
});

Deno.test("kick: a thread blocked in poll returns EINTR, and the process opens no port and no debugger", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", PROBE],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const stdout = new StreamText(child.stdout);
  const stderr = new StreamText(child.stderr);
  try {
    const line = (await stdout.waitFor("KICKED ", 20_000).catch((e) => {
      throw new Error(`probe failed (stderr: ${stderr.text})`, { cause: e });
    })).split("\n")[0]!;
    const kicked = JSON.parse(line);
    assert.deepEqual(kicked.signal, KICK_SIGNAL);
    assert.ok(
      kicked.uptimeMs > 1000,
      `kicked ${kicked.uptimeMs} ms after start-up, when SIGUSR1 would open the debugger`,
    );
    assert.equal(kicked.result, -1, `poll returned (stderr: ${stderr.text})`);
    assert.equal(kicked.errno, Errno.EINTR, "poll was interrupted");
    assert.ok(kicked.latencyMs < 1000, `poll returned ${kicked.latencyMs} ms after the kick`);
    await watchNotListening(child.pid, "after the kick", 1500);
    assertAlive(child.pid);
  } finally {
    await child.stdin.close();
    clearTimeout(killer);
  }
  const status = await child.status;
  await Promise.all([stdout.done, stderr.done]);
  assert.equal(status.code, 0, stderr.text);
  assert.ok(!stderr.text.includes(DEBUGGER_BANNER), `stderr: ${stderr.text}`);
  assert.ok(!stdout.text.includes(DEBUGGER_BANNER), `stdout: ${stdout.text}`);
});
