/*T:343 The keyboard controller exists in this launcher for one reason: a
 * 0xFE written to its command port is how Linux reboots a PC, and that must
 * end the VM cleanly. The rest is the little a kernel's probe asks before it
 * decides there is a controller with nothing plugged in: the command byte
 * (read and write), the self-test answer, and a status register whose
 * "output full" bit tells the truth. Offsets are those on the bus: data at
 * 0 (port 0x60), command/status at 4 (port 0x64). Port 0x80 is the POST
 * code sink Linux writes for I/O delays. :*/

import assert from "node:assert/strict";
import { I8042, I8042_COMMAND_PORT, I8042_DATA_PORT, PostCodePort } from "../../lib/devices/i8042.ts";

const DATA = 0;
const CMD = 4;
const OBF = 0x01;
const SYS = 0x04;
const CMDBIT = 0x08;

Deno.test("i8042: ports and the idle status", () => {
  assert.equal(I8042_DATA_PORT, 0x60);
  assert.equal(I8042_COMMAND_PORT, 0x64);
  const k = new I8042();
  assert.equal(k.name, "i8042");
  assert.equal(k.read(CMD, 1), SYS, "system flag set, output buffer empty");
  assert.equal(k.read(DATA, 1), 0, "empty data port");
  assert.equal(k.read(1, 1), 0xff, "other offsets read as all ones");
});

Deno.test("i8042: 0xFE on the command port asks for a reset; on the data port it does not", () => {
  const k = new I8042();
  assert.equal(k.write(DATA, 1, 0xfe), undefined);
  assert.equal(k.write(CMD, 1, 0xfe), "reset");
  assert.equal(k.write(CMD, 1, 0x1fe), "reset", "only the low byte counts");
  assert.equal(new I8042().write(CMD, 1, 0xff), undefined);
});

Deno.test("i8042: reading the command byte fills the output buffer; a data read empties it", () => {
  const k = new I8042();
  assert.equal(k.write(CMD, 1, 0x20), undefined);
  assert.equal(k.read(CMD, 1), OBF | SYS | CMDBIT);
  assert.equal(k.read(DATA, 1), 0x45, "the default command byte");
  assert.equal(k.read(CMD, 1) & OBF, 0);
  assert.equal(k.read(DATA, 1), 0);
});

Deno.test("i8042: writing the command byte (0x60, then data) changes what 0x20 returns", () => {
  const k = new I8042();
  k.write(CMD, 1, 0x60);
  k.write(DATA, 1, 0x47);
  assert.equal(k.read(CMD, 1) & CMDBIT, 0, "last write was data");
  k.write(CMD, 1, 0x20);
  assert.equal(k.read(DATA, 1), 0x47);
  // A data byte with no pending 0x60 leaves it alone.
  k.write(DATA, 1, 0x11);
  k.write(CMD, 1, 0x20);
  assert.equal(k.read(DATA, 1), 0x47);
  // Another command between 0x60 and the data cancels the write.
  k.write(CMD, 1, 0x60);
  k.write(CMD, 1, 0xad);
  k.write(DATA, 1, 0x99);
  k.write(CMD, 1, 0x20);
  assert.equal(k.read(DATA, 1), 0x47);
});

Deno.test("i8042: self-test answers 0x55; answers queue in order", () => {
  const k = new I8042();
  k.write(CMD, 1, 0xaa);
  k.write(CMD, 1, 0x20);
  assert.equal(k.read(CMD, 1) & OBF, OBF);
  assert.equal(k.read(DATA, 1), 0x55);
  assert.equal(k.read(CMD, 1) & OBF, OBF, "the second answer is still waiting");
  assert.equal(k.read(DATA, 1), 0x45);
  assert.equal(k.read(CMD, 1) & OBF, 0);
});

Deno.test("i8042: unknown commands are accepted silently", () => {
  const k = new I8042();
  for (const c of [0xa7, 0xa8, 0xad, 0xae, 0xd4]) assert.equal(k.write(CMD, 1, c), undefined);
  assert.equal(k.read(CMD, 1) & OBF, 0, "no answer queued");
});

Deno.test("i8042: PostCodePort swallows writes and reads 0xff", () => {
  const p = new PostCodePort();
  assert.equal(p.name, "post");
  assert.equal(p.read(), 0xff);
  assert.equal(p.write(0, 1, 0x1234), undefined);
  assert.equal(p.last, 0x34);
  assert.equal(p.read(), 0xff);
});

Deno.test("i8042: two vCPU threads' views share one controller: a command byte written on one is read on the other", () => {
  const shared = I8042.sharedState();
  const a = new I8042(shared);
  const b = new I8042(shared);
  a.write(CMD, 1, 0x60); // write the command byte: the next data byte is it
  b.write(DATA, 1, 0x47);
  b.write(CMD, 1, 0x20); // read the command byte
  assert.equal(a.read(CMD, 1) & OBF, OBF, "the answer is waiting for either thread");
  assert.equal(a.read(DATA, 1), 0x47);
  assert.equal(b.read(CMD, 1) & OBF, 0, "and is gone once read");
  assert.equal(new I8042().read(CMD, 1) & OBF, 0, "a controller of its own shares nothing");
});
