/*T:312 Raw mode must never hurt a launcher whose stdin is not a terminal:
 * under a test runner, a pipe, a file or /dev/null. enter() has to say
 * "not a terminal" by returning false, change nothing, and leave restore()
 * harmless, so that every exit path may call it. (Raw mode on a real
 * pseudo-terminal is covered by the terminal tests.) :*/

import assert from "node:assert/strict";
import { RawTerminal } from "../../lib/sys/termios.ts";
import { close, O, open } from "../../lib/sys/calls.ts";

Deno.test("termios: a regular file is not a terminal: enter() is false, restore() is harmless", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
  const fd = open(path, O.RDWR);
  try {
    const t = new RawTerminal(fd);
    assert.equal(t.active, false);
    assert.equal(t.enter(), false);
    assert.equal(t.active, false);
    t.restore();
    t.restore();
    assert.equal(t.active, false);
    assert.equal(t.enter(), false, "still false on a second try");
  } finally {
    close(fd);
  }
  assert.deepEqual([...await Deno.readFile(path)], [1, 2, 3], "the file was not touched");
  await Deno.remove(path);
});

Deno.test("termios: /dev/null and a closed fd are not terminals either", () => {
  const fd = open("/dev/null", O.RDWR);
  try {
    const t = new RawTerminal(fd);
    assert.equal(t.enter(), false);
    assert.equal(t.active, false);
    t.restore();
  } finally {
    close(fd);
  }
  const gone = new RawTerminal(0x7fff_fff0);
  assert.equal(gone.enter(), false);
  gone.restore();
  assert.equal(gone.active, false);
});
