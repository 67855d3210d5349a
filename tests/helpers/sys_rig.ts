/** What the libc wrapper tests share: a temp file to work on, a bad descriptor, and a SysError check. */

import assert from "node:assert/strict";
import { close, O, open } from "../../lib/sys/calls.ts";
import { errnoName, SysError } from "../../lib/sys/errno.ts";

/** A descriptor number no process can have open (far above any fd limit). */
export const BAD_FD = 0x7fff_fff0;

/** Runs `body` with a fresh temp file opened read-write, then cleans up. */
export async function withTempFile(body: (fd: number, path: string) => void | Promise<void>): Promise<void> {
  const path = await Deno.makeTempFile({ prefix: "lguest-sys-" });
  const fd = open(path, O.RDWR);
  try {
    await body(fd, path);
  } finally {
    close(fd);
    await Deno.remove(path);
  }
}

/** Checks that `fn` throws a SysError with this call, errno name and subject. */
export function throwsSys(fn: () => unknown, call: string, code: string, subject?: string): SysError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof SysError, `expected a SysError, got ${caught}`);
  assert.equal(caught.name, "SysError");
  assert.equal(caught.call, call);
  assert.equal(caught.code, code);
  assert.equal(errnoName(caught.errno), code);
  assert.ok(caught.message.includes(call), caught.message);
  assert.ok(caught.message.includes(code), caught.message);
  if (subject !== undefined) {
    assert.equal(caught.subject, subject);
    assert.ok(caught.message.includes(subject), caught.message);
  }
  return caught;
}
