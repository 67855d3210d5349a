/* The random driver of the mmio fuzz test (T:660): what it writes, and
 * where. Values are drawn mostly from the ones that matter to each
 * register (the selectors' edges, status bytes, queue sizes around the
 * powers of two, ring addresses in and out of RAM and misaligned), and
 * sometimes from anywhere. Bring-ups come whole, with random choices along
 * the way, since a random walk would almost never reach DRIVER_OK.
 *
 * The rings live in zeroed RAM, so a live queue never has a buffer to
 * serve: what the device does is entirely up to the device actions mixed
 * in. One care keeps it so. Without EVENT_IDX the device writes 1 to the
 * used ring's flags when it starts a turn; a used ring placed exactly two
 * bytes after an available ring would turn that 1 into an available index
 * and conjure a request out of nothing. The address pools never allow it,
 * and the writes that may go anywhere never go to the address registers. */

import fc from "fast-check";
import { MMIO_REG, MMIO_WINDOW } from "../../../lib/virtio/mmio/regs.ts";

const R = MMIO_REG;

/** One step: a driver write, or something the device does on its own (posted to its own window). */
export type Op =
  | { k: "write"; offset: number; size: number; value: number }
  | { k: "device"; what: "fail" | "config" | "used"; hook: number };

const ADDRESS_REGS: readonly number[] = [
  R.QUEUE_DESC_LOW,
  R.QUEUE_DESC_HIGH,
  R.QUEUE_AVAIL_LOW,
  R.QUEUE_AVAIL_HIGH,
  R.QUEUE_USED_LOW,
  R.QUEUE_USED_HIGH,
];

const u32 = fc.nat(0xffffffff);

function mostly(values: readonly number[], other: fc.Arbitrary<number> = u32): fc.Arbitrary<number> {
  return fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: other });
}

function write(offset: number, value: fc.Arbitrary<number>): fc.Arbitrary<Op[]> {
  return value.map((v) => [{ k: "write", offset, size: 4, value: v }]);
}

/**
 * Random runs of steps for a RAM of `ram` bytes.
 * @param hooks the offsets, in the device's window, of its three actions
 */
export function ops(ram: number, hooks: Record<"fail" | "config" | "used", number>): fc.Arbitrary<Op[]> {
  const beyond = fc.integer({ min: ram, max: 0xffffffff });
  const pools = {
    desc: mostly([0x1000, 0x1008, ram - 0x100, ram], beyond),
    avail: mostly([0x3000, 0x3001, 0x3002, ram - 0x20, ram], beyond),
    used: mostly([0x5000, 0x5002, ram - 0x88, ram - 0x86, ram], beyond),
    high: fc.constantFrom(0, 0, 0, 1, 0xffffffff),
  };
  const statusBytes = [0, 1, 3, 0xb, 0xf, 0x7, 0x80, 0x40, 0x4b, 0x8b, 0x30, 0x100, 0x10b];
  const featurePages = [0, 1, 0x30000000, 0x10000000, 0x20000000, 5, 0xffffffff];
  const queueNums = [0, 1, 2, 3, 8, 16, 256, 257, 512, 0x8000, 0xffffffff];
  const single = fc.oneof(
    write(R.STATUS, fc.oneof(fc.constantFrom(...statusBytes), fc.nat(0xff), u32)),
    write(R.DEVICE_FEATURES_SEL, mostly([0, 1, 2, 3, 0xffffffff])),
    write(R.DRIVER_FEATURES_SEL, mostly([0, 1, 2, 3, 0xffffffff])),
    write(R.DRIVER_FEATURES, mostly(featurePages)),
    write(R.QUEUE_SEL, mostly([0, 0, 1, 2, 0xffffffff])),
    write(R.QUEUE_NUM, mostly(queueNums)),
    write(R.QUEUE_READY, mostly([0, 1, 1, 2])),
    write(R.QUEUE_NOTIFY, mostly([0, 1, 0x10000])),
    write(R.INTERRUPT_ACK, mostly([1, 2, 3])),
    fc.constantFrom(R.QUEUE_DESC_LOW, R.QUEUE_AVAIL_LOW, R.QUEUE_USED_LOW).chain((low) =>
      write(low, low === R.QUEUE_DESC_LOW ? pools.desc : low === R.QUEUE_AVAIL_LOW ? pools.avail : pools.used)
    ),
    fc.constantFrom(R.QUEUE_DESC_HIGH, R.QUEUE_AVAIL_HIGH, R.QUEUE_USED_HIGH).chain((high) => write(high, pools.high)),
  );
  const anywhere = fc.record({
    k: fc.constant("write" as const),
    offset: fc.oneof(fc.nat(MMIO_WINDOW - 1), fc.integer({ min: R.CONFIG - 4, max: R.CONFIG + 80 })),
    size: fc.constantFrom(1, 2, 4, 8),
  }).chain((w) =>
    (w.size === 8 ? fc.maxSafeNat() : fc.nat(2 ** (8 * w.size) - 1)).map((value): Op[] =>
      w.size === 4 && ADDRESS_REGS.includes(w.offset) ? [] : [{ ...w, value }]
    )
  );
  const device = fc.constantFrom("fail", "config", "used", "used").map((what): Op[] => [
    { k: "device", what, hook: hooks[what] },
  ]);
  const bringUp = fc.record({
    polite: fc.constantFrom(true, true, false),
    reset: fc.boolean(),
    statuses: fc.tuple(
      fc.constantFrom(1, 1, 1, 0),
      fc.constantFrom(3, 3, 3, 2, 0),
      fc.constantFrom(0xb, 0xb, 0x8, 0x9, 0xa),
    ),
    low: mostly(featurePages),
    high: mostly([1, 1, 0, 5]),
    page: fc.option(fc.tuple(fc.constantFrom(2, 3, 4, 0xffffffff), fc.constantFrom(0, 1, 0x80000000)), { freq: 3 }),
    queue: fc.constantFrom(0, 0, 0, 1),
    num: mostly(queueNums),
    rings: fc.tuple(pools.desc, pools.avail, pools.used),
    highs: fc.tuple(pools.high, pools.high, pools.high),
    highFirst: fc.boolean(),
    ready: fc.constantFrom(true, true, true, false),
    driverOk: fc.constantFrom(true, true, false),
  }).map((random): Op[] => {
    const polite = {
      reset: true,
      statuses: [1, 3, 0xb],
      low: 0x30000000,
      high: 1,
      page: null,
      queue: 0,
      num: [1, 2, 8, 16, 256].includes(random.num) ? random.num : 16,
      rings: [0x1000, 0x3000, 0x5000],
      highs: [0, 0, 0],
      ready: true,
    };
    const b = random.polite ? { ...random, ...polite } : random;
    const rings: [number, number][][] = [R.QUEUE_DESC_LOW, R.QUEUE_AVAIL_LOW, R.QUEUE_USED_LOW].map((low, i) => {
      const pair: [number, number][] = [[low, b.rings[i]!], [low + 4, b.highs[i]!]];
      return b.highFirst ? pair.reverse() : pair;
    });
    const steps: [number, number][] = [
      ...(b.reset ? [[R.STATUS, 0] as [number, number]] : []),
      ...b.statuses.slice(0, 2).filter((v) => v !== 0).map((v): [number, number] => [R.STATUS, v]),
      [R.DRIVER_FEATURES_SEL, 0],
      [R.DRIVER_FEATURES, b.low],
      [R.DRIVER_FEATURES_SEL, 1],
      [R.DRIVER_FEATURES, b.high],
      ...(b.page === null
        ? []
        : [[R.DRIVER_FEATURES_SEL, b.page[0]], [R.DRIVER_FEATURES, b.page[1]]] as [number, number][]),
      [R.STATUS, b.statuses[2]!],
      [R.QUEUE_SEL, b.queue],
      [R.QUEUE_NUM, b.num],
      ...rings.flat(),
      ...(b.ready ? [[R.QUEUE_READY, 1] as [number, number]] : []),
      ...(b.driverOk ? [[R.STATUS, 0xf] as [number, number]] : []),
    ];
    return steps.map(([offset, value]) => ({ k: "write", offset, size: 4, value }));
  });
  const chunk = fc.oneof(
    { weight: 8, arbitrary: single },
    { weight: 2, arbitrary: anywhere },
    { weight: 3, arbitrary: device },
    { weight: 3, arbitrary: bringUp },
  );
  return fc.array(chunk, { minLength: 1, maxLength: 30, size: "max" }).map((chunks) => chunks.flat()).filter((o) =>
    o.length > 0
  );
}
