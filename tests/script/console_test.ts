/*T:765 The scripted console without a guest. The transcript's rules
 * (L:440) are pure; the console itself is driven through the guest's end
 * of its real socket pair, written the way the vCPU thread writes the
 * UART's output, while a real event loop reads our end. :*/

import assert from "node:assert/strict";
import { toRegExp, Transcript, UNREAD_LIMIT } from "../../lib/script/transcript.ts";
import { ScriptConsole } from "../../lib/script/console.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { read, write } from "../../lib/sys/calls.ts";
import { leftOpen, openFds } from "../helpers/fd_census.ts";

const enc = new TextEncoder();

Deno.test("transcript: each wait consumes up to its match, so a prompt printed twice matches twice", () => {
  const t = new Transcript();
  t.push(enc.encode("boot\n# ls\nfile\n# "));
  const a = t.take(/# /);
  assert.equal(a?.before, "boot\n");
  const b = t.take("# ");
  assert.equal(b?.before, "ls\nfile\n");
  assert.equal(t.take("# "), undefined);
  assert.equal(t.unread, "");
  assert.deepEqual(t.lastLines(2), ["file", "# "]);
});

Deno.test("transcript: UTF-8 split across chunks, groups, literal strings, g/y flags ignored", () => {
  const t = new Transcript();
  const bytes = enc.encode("état=42 (x)");
  t.push(bytes.subarray(0, 1));
  t.push(bytes.subarray(1));
  assert.equal(t.take("(x)")?.before, "état=42 ");
  t.push(enc.encode("code 7\n"));
  assert.equal(t.take(/code (\d+)/gy)?.match[1], "7");
  assert.equal(toRegExp(/a/gi).flags, "i");
});

Deno.test("transcript: unread text is capped from the front", () => {
  const t = new Transcript();
  t.push(enc.encode("START"));
  t.push(new Uint8Array(UNREAD_LIMIT).fill(0x61));
  assert.equal(t.unread.length, UNREAD_LIMIT);
  assert.equal(t.take("START"), undefined);
});

/** A console with a running loop; `guest(text)` writes as the UART would. */
function rig() {
  const before = openFds();
  const con = new ScriptConsole();
  const loop = new EventLoop();
  con.attach(loop);
  const running = loop.run();
  return {
    con,
    before,
    guest: (s: string) => assert.equal(write(con.guestFd, enc.encode(s)), enc.encode(s).length),
    async end(why: string) {
      loop.stop();
      await running;
      con.detach(why);
      loop.close();
      con.close();
    },
  };
}

Deno.test("console: waitFor sees output written later; readable gets every byte; write reaches the guest's end", async () => {
  const r = rig();
  const chunks: string[] = [];
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const c of r.con.readable) chunks.push(dec.decode(c));
  })();
  const waiting = r.con.waitFor(/login: /, { timeoutMs: 5000 });
  r.guest("Debian\nmachine ");
  r.guest("login: ");
  const m = await waiting;
  assert.equal(m.before, "Debian\nmachine ");
  await r.con.write("root\n");
  const got = new Uint8Array(16);
  const n = read(r.con.guestFd, got);
  assert.equal(new TextDecoder().decode(got.subarray(0, n)), "root\n");
  r.guest("tail");
  await r.end("the run ended (guest powered off)");
  await reading;
  assert.equal(chunks.join(""), "Debian\nmachine login: tail");
  assert.deepEqual(leftOpen(r.before, openFds()), []);
});

Deno.test("console: a timeout names the pattern and shows the last lines", async () => {
  const r = rig();
  r.guest("line one\nline two\n");
  await assert.rejects(r.con.waitFor("# ", { timeoutMs: 100 }), (e: Error) => {
    assert.match(e.message, /"# " did not appear within 100 ms/);
    assert.match(e.message, /\| line one\n {2}\| line two/);
    return true;
  });
  await r.end("done");
});

Deno.test("console: the run's end fails a pending wait, with what the guest wrote last, and later waits", async () => {
  const r = rig();
  const waiting = r.con.waitFor("never", { timeoutMs: 60_000 });
  await assert.rejects(r.con.waitFor("x"), /already waiting/);
  r.guest("last words\n");
  await r.end("the run ended (guest reset)");
  await assert.rejects(waiting, /"never" never appeared: the run ended \(guest reset\).*\n {2}\| last words/s);
  await assert.rejects(r.con.waitFor("y"), /never appeared: the run ended/);
  await assert.rejects(r.con.write("z"), /machine is closed/);
});
