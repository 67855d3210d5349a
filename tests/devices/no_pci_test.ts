/*T:345 The PCI configuration ports of a machine without PCI (L:337) must
 * answer what an absent host bridge answers, all ones of the access's size,
 * so the type-1 probe's address does not read back; they must take writes
 * without effect, and, the reason the device exists, they must be claimed:
 * the kernel's probe is not one "unclaimed" line under --verbose. :*/

import assert from "node:assert/strict";
import { NoPciHost, PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_COUNT } from "../../lib/devices/no_pci.ts";
import { handleExit } from "../../lib/kvm/exits.ts";
import { context, CONTINUE, page, pioExit } from "../kvm/exits_rig.ts";

Deno.test("no-pci: CONFIG_ADDRESS and CONFIG_DATA read as all ones of each size; writes change nothing", () => {
  const d = new NoPciHost();
  for (const offset of [0, 4, 6, 7]) {
    assert.equal(d.read(offset, 1), 0xff);
    assert.equal(d.read(offset, 2), 0xffff);
  }
  assert.equal(d.read(0, 4), 0xffffffff);
  assert.equal(d.write(0, 4, 0x80000000), undefined, "a write asks for nothing");
  assert.equal(d.read(0, 4), 0xffffffff, "the address written to 0xcf8 does not read back");
});

Deno.test("no-pci: Linux's type-1 probe through handleExit is claimed, silent, and finds no bridge", () => {
  const ctx = context();
  ctx.pio.add(PCI_CONFIG_PORT_BASE, PCI_CONFIG_PORT_COUNT, new NoPciHost());
  const { view } = page();
  // pci_check_type1(): outb 0x01 to 0xcfb, outl 0x80000000 to 0xcf8, inl 0xcf8.
  pioExit(view, { port: 0xcfb, size: 1, out: true, dataOffset: 80 });
  view.setUint8(80, 0x01);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  pioExit(view, { port: 0xcf8, size: 4, out: true, dataOffset: 80 });
  view.setUint32(80, 0x80000000, true);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  pioExit(view, { port: 0xcf8, size: 4, out: false, dataOffset: 80 });
  view.setUint32(80, 0, true);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.equal(view.getUint32(80, true), 0xffffffff, "no type-1 mechanism");
  // A configuration read of bus 0, device 0: no vendor.
  pioExit(view, { port: 0xcfc, size: 2, out: false, dataOffset: 80 });
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.equal(view.getUint16(80, true), 0xffff);
  assert.deepEqual(ctx.lines, [], "nothing was unclaimed");
});
