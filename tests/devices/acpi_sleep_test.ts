/*T:344 The ACPI sleep registers are the machine's off switch for a kernel
 * with ACPI. The write Linux's power-off makes (SLP_EN with the type \_S5_
 * names) must end the VM cleanly, through the same exit path and verdict
 * as the keyboard controller's reset; nothing else may: a write without
 * SLP_EN, or another sleep type, which instead sets WAK_STS so a kernel
 * polling the status register is let go. The status register's WAK_STS
 * clears when written with 1, as ACPI says. :*/

import assert from "node:assert/strict";
import { ACPI_SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, AcpiSleepPort } from "../../lib/devices/acpi_sleep.ts";
import {
  ACPI_S5_SLEEP_TYPE,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_ENABLE,
  ACPI_SLEEP_STATUS_PORT,
  ACPI_WAKE_STATUS,
} from "../../lib/boot/acpi/layout.ts";
import { handleExit } from "../../lib/kvm/exits.ts";
import { assertStop, context, CONTINUE, page, pioExit } from "../kvm/exits_rig.ts";

const CONTROL = 0;
const STATUS = 1;
const S5 = ACPI_SLEEP_ENABLE | (ACPI_S5_SLEEP_TYPE << 2);

Deno.test("acpi sleep: it decodes the FADT's two registers and nothing else", () => {
  assert.equal(ACPI_SLEEP_PORT_BASE, ACPI_SLEEP_CONTROL_PORT);
  assert.equal(ACPI_SLEEP_PORT_BASE + ACPI_SLEEP_PORT_COUNT - 1, ACPI_SLEEP_STATUS_PORT);
  const d = new AcpiSleepPort();
  assert.equal(d.name, "acpi-sleep");
  assert.equal(d.read(STATUS, 1), 0, "WAK_STS is clear at start");
  assert.equal(d.read(CONTROL, 1), 0);
});

Deno.test("acpi sleep: SLP_EN with type 5 asks for power-off, the write Linux makes (0x34)", () => {
  assert.equal(S5, 0x34);
  assert.equal(new AcpiSleepPort().write(CONTROL, 1, S5), "power-off");
  // Bits outside SLP_TYP and SLP_EN do not change the request.
  assert.equal(new AcpiSleepPort().write(CONTROL, 1, S5 | 0xc3), "power-off");
  // A 16-bit write at the control port carries the request in its low byte.
  assert.equal(new AcpiSleepPort().write(CONTROL, 2, 0x8000 | S5), "power-off");
});

Deno.test("acpi sleep: type 5 without SLP_EN, other types, and the status port never stop the VM", () => {
  const d = new AcpiSleepPort();
  assert.equal(d.write(CONTROL, 1, ACPI_S5_SLEEP_TYPE << 2), undefined, "type 5 without SLP_EN");
  assert.equal(d.read(STATUS, 1), 0, "no transition, no wake");
  for (let type = 0; type < 8; type++) {
    if (type === ACPI_S5_SLEEP_TYPE) continue;
    const e = new AcpiSleepPort();
    assert.equal(e.write(CONTROL, 1, ACPI_SLEEP_ENABLE | (type << 2)), undefined, `S${type}`);
    assert.equal(e.read(STATUS, 1), ACPI_WAKE_STATUS, `S${type}: woken at once, so the kernel's poll ends`);
  }
  assert.equal(d.write(STATUS, 1, S5), undefined, "the request written to the status port");
});

Deno.test("acpi sleep: WAK_STS is write-1-to-clear", () => {
  const d = new AcpiSleepPort();
  d.write(CONTROL, 1, ACPI_SLEEP_ENABLE | (1 << 2));
  assert.equal(d.read(STATUS, 1), ACPI_WAKE_STATUS);
  d.write(STATUS, 1, 0x00);
  assert.equal(d.read(STATUS, 1), ACPI_WAKE_STATUS, "writing 0 leaves it");
  d.write(STATUS, 1, ACPI_WAKE_STATUS);
  assert.equal(d.read(STATUS, 1), 0, "writing 1 clears it");
  d.write(CONTROL, 1, ACPI_SLEEP_ENABLE | (3 << 2));
  assert.equal(d.read(CONTROL, 2), ACPI_WAKE_STATUS << 8, "a 16-bit read sees status in its high byte");
});

Deno.test("acpi sleep: through handleExit, Linux's power-off sequence stops the VM cleanly", () => {
  const ctx = context();
  ctx.pio.add(ACPI_SLEEP_PORT_BASE, ACPI_SLEEP_PORT_COUNT, new AcpiSleepPort());
  const { view } = page();
  // Clear WAK_STS, then read the status back, as acpi_hw_extended_sleep() does before it sleeps.
  pioExit(view, { port: ACPI_SLEEP_STATUS_PORT, size: 1, out: true, dataOffset: 80 });
  view.setUint8(80, ACPI_WAKE_STATUS);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  pioExit(view, { port: ACPI_SLEEP_STATUS_PORT, size: 1, out: false, dataOffset: 80 });
  view.setUint8(80, 0xee);
  assert.deepEqual(handleExit(view, ctx), CONTINUE);
  assert.equal(view.getUint8(80), 0);
  pioExit(view, { port: ACPI_SLEEP_CONTROL_PORT, size: 1, out: true, dataOffset: 80 });
  view.setUint8(80, S5);
  assertStop(handleExit(view, ctx), "power-off", /^power-off requested by acpi-sleep$/);
});
