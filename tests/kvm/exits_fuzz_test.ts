/*T:331 The property: any page, any exit. The generator biases the fields
 * that matter (exit reason, PIO size/count/offset, MMIO address and length)
 * toward the interesting values and leaves the rest of the page random. :*/

import assert from "node:assert/strict";
import fc from "fast-check";
import type { BusAction, BusDevice } from "../../lib/bus.ts";
import { handleExit } from "../../lib/kvm/exits.ts";
import { KVM_EXIT } from "../../lib/kvm/ioctl.ts";
import { KVM_RUN } from "../../lib/kvm/structs.ts";
import { context, page, R, set } from "./exits_rig.ts";

const REASONS = [...Object.values(KVM_EXIT), 99, 0xffff_ffff];
const WIDTHS = new Set([1, 2, 4, 8]);

Deno.test("exits: property: random kvm_run pages never throw and stay within bounds", () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const gen = fc.record({
    bytes: fc.uint8Array({ minLength: KVM_RUN.size, maxLength: KVM_RUN.size }),
    reason: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...REASONS) }, { weight: 1, arbitrary: u32 }),
    ioSize: fc.option(fc.constantFrom(0, 1, 2, 3, 4, 8, 255)),
    ioCount: fc.option(fc.oneof(fc.integer({ min: 0, max: 8 }), u32)),
    ioOffset: fc.option(fc.oneof(fc.integer({ min: 0, max: KVM_RUN.size + 8 }), fc.bigInt(0n, 2n ** 64n - 1n))),
    port: fc.option(fc.oneof(fc.integer({ min: 0x3f0, max: 0x408 }), fc.integer({ min: 0x58, max: 0x88 }))),
    mmioAddr: fc.option(
      fc.oneof(
        fc.bigInt(0xcfff_fff0n, 0xd000_0210n),
        fc.bigInt(0xfedf_fff0n, 0xfee0_1010n),
        fc.bigInt(0n, 2n ** 64n - 1n),
      ),
    ),
    mmioLen: fc.option(fc.oneof(fc.integer({ min: 0, max: 10 }), u32)),
  });
  fc.assert(
    fc.property(gen, (g) => {
      const { bytes, view } = page();
      bytes.set(g.bytes);
      set(view, { exit_reason: g.reason });
      if (g.ioSize !== null) set(view, { "io.size": g.ioSize });
      if (g.ioCount !== null) set(view, { "io.count": g.ioCount });
      if (g.ioOffset !== null) set(view, { "io.data_offset": g.ioOffset });
      if (g.port !== null) set(view, { "io.port": g.port });
      if (g.mmioAddr !== null) set(view, { "mmio.phys_addr": g.mmioAddr });
      if (g.mmioLen !== null) set(view, { "mmio.len": g.mmioLen });
      const before = bytes.slice();

      const ctx = context();
      const problems: string[] = [];
      const watch = (name: string, length: number, action: BusAction = undefined): BusDevice => {
        const check = (kind: string, offset: number, size: number) => {
          if (!Number.isInteger(offset) || offset < 0 || offset >= length) problems.push(`${name} ${kind} @${offset}`);
          if (!WIDTHS.has(size)) problems.push(`${name} ${kind} size ${size}`);
        };
        return {
          name,
          read: (offset, size) => {
            check("read", offset, size);
            return (offset * 0x01010101 + size) % 2 ** (8 * Math.min(size, 6));
          },
          write: (offset, size, value) => {
            check("write", offset, size);
            if (!Number.isSafeInteger(value) || value < 0) problems.push(`${name} write value ${value}`);
            return action;
          },
        };
      };
      ctx.pio.add(0x3f8, 8, watch("serial", 8));
      ctx.pio.add(0x60, 5, watch("i8042", 5, "reset"));
      ctx.pio.add(0x80, 1, watch("post", 1));
      ctx.mmio.add(0xd000_0000, 0x200, watch("virtio", 0x200));
      ctx.mmio.add(0xfee0_0000, 0x1000, watch("lapic", 0x1000, "reset"));

      // Only the exit's own data area may change; it is computed before the
      // exit is handled, because IN data may overwrite the header itself.
      const reason = view.getUint32(R.exit_reason.offset, true);
      let lo = 0;
      let hi = 0;
      if (reason === KVM_EXIT.IO) {
        lo = Number(view.getBigUint64(R["io.data_offset"].offset, true));
        hi = lo + view.getUint8(R["io.size"].offset) * view.getUint32(R["io.count"].offset, true);
      } else if (reason === KVM_EXIT.MMIO) {
        lo = R["mmio.data"].offset;
        hi = lo + 8;
      }
      const r = handleExit(view, ctx);
      assert.ok(["continue", "interrupted", "stop"].includes(r.kind), JSON.stringify(r));
      if (r.kind === "stop") {
        assert.equal(typeof r.clean, "boolean");
        assert.ok(r.reason.length > 0);
      }
      assert.deepEqual(problems, []);

      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] !== before[i]) assert.ok(i >= lo && i < hi, `byte ${i} changed outside [${lo}, ${hi})`);
      }
    }),
    { numRuns: 5000 },
  );
});
