/*T:236 The test VM's one known fault. Under the test VM, the launcher's
 * guests run on a nested KVM whose SVM is emulated by QEMU's TCG, and that
 * emulation now and then hands the guest a timer interrupt while the guest
 * is still inside the previous one, with interrupts off. A Linux guest
 * built with CONFIG_SMP then deadlocks on itself: its one vCPU spins in
 * `queued_spin_lock_slowpath` for ever, on a lock the timer interrupt
 * takes (read back from the stopped vCPU's registers, rdi and the kernel's
 * symbols: timekeeper_lock, jiffies_lock, the hrtimer base's lock, the
 * runqueue's lock; rflags 0x2, interrupts off). It comes more often the
 * busier the host: with two other programs keeping the host's two cores
 * busy, 9 of 26 boots stalled, some test VMs stalling boot after boot and
 * others not at all; on an idle host, none of 10. CI's run hit it in both
 * of its Linux boots. Pinning the launcher to one of the test VM's CPUs
 * did not help, nor did kvm_amd's vgif=0 end it. Hardware KVM does not do
 * this, and nothing the launcher does can cause it: it never injects an
 * interrupt itself, the in-kernel LAPIC decides when they are taken.
 *
 * So the Linux boot tests, in the test VM only, recognise exactly that
 * end (the run was out of time and a vCPU was stopped inside the spin-lock
 * slow path) and boot again, a bounded number of times, saying so. Any
 * other failure, and the same stall on hardware KVM, fails the test. :*/

import { kvmFlavour } from "../../lib/kvm/kvm.ts";

/**
 * The [start, end) address range of `symbol` in a kernel's symbols: a
 * System.map (Debian ships one beside its stripped kernel) or, for any other
 * path, what `nm -n` lists for the ELF. Both are "address type name" lines.
 */
async function symbolRange(symbols: string, symbol: string): Promise<[bigint, bigint] | undefined> {
  let text: string;
  if (symbols.slice(symbols.lastIndexOf("/") + 1).startsWith("System.map")) {
    text = await Deno.readTextFile(symbols);
  } else {
    const out = await new Deno.Command("nm", { args: ["-n", symbols], stdout: "piped", stderr: "null" }).output();
    if (!out.success) return undefined;
    text = new TextDecoder().decode(out.stdout);
  }
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.endsWith(` ${symbol}`));
  if (at < 0) return undefined;
  const start = BigInt(`0x${lines[at]!.split(" ")[0]}`);
  const next = lines.slice(at + 1).map((l) => BigInt(`0x${l.split(" ")[0] || "0"}`)).find((a) => a > start);
  return next === undefined ? undefined : [start, next];
}

/**
 * Says why a boot ended in the test VM's known emulator stall, or undefined if it did not.
 * @param launcher the launcher's stderr (run with --verbose, ended by SIGTERM after the time was up)
 * @param timedOut whether the boot ran out of time
 * @param symbols the kernel's ELF image with symbols, or its System.map, for the spin-lock slow path's addresses
 */
export async function emulatorStall(launcher: string, timedOut: boolean, symbols: string): Promise<string | undefined> {
  if (!timedOut || Deno.env.get("LGUEST_TEST_VM") !== "tcg") return undefined;
  const range = await symbolRange(symbols, "queued_spin_lock_slowpath");
  if (range === undefined) return undefined;
  const rips = [...launcher.matchAll(/at rip (0x[0-9a-f]+)/g)].map((m) => BigInt(m[1]!));
  const spinning = rips.find((rip) => rip >= range[0] && rip < range[1]);
  if (spinning === undefined) return undefined;
  return `a vCPU was stopped spinning in queued_spin_lock_slowpath (rip 0x${spinning.toString(16)}): ` +
    `the test VM's emulated SVM let an interrupt in with interrupts off (T:236)`;
}

/*T:234 Another known fault of the test VM (the first is T:236), seen twice in the CI runs of
 * 2026-12-05 (Debian's 6.1 kernel, once as its PVH vmlinux on a tap, once
 * as its bzImage on passt; six more boots of the same tests passed): a
 * guest vCPU in user mode takes an interrupt, and the kernel's error_entry
 * faults on its own entry stack, again and again, until that stack
 * overflows and the kernel panics ("Fatal exception in interrupt"). The
 * register dump says why: GS and KERNEL_GS_BASE hold the same value, the
 * kernel's per-CPU base. A Linux guest in user mode never has that (its
 * user GS base is not the kernel's), and the launcher sets no vCPU state
 * after boot (no KVM_SET_SREGS or KVM_SET_MSRS once the guest runs), so
 * the swap was lost below it, in the nested SVM the test VM emulates. As
 * with T:236, the Linux tests boot again on exactly this end, in the test
 * VM only, saying so; on hardware KVM it fails the test. :*/

/**
 * Says why a boot ended in the test VM's known GS-base panic (T:234), or undefined if it did not.
 * @param console the guest's console output
 */
export function emulatorPanic(console: string): string | undefined {
  if (Deno.env.get("LGUEST_TEST_VM") !== "tcg") return undefined;
  if (!/Kernel panic - not syncing: Fatal exception/.test(console)) return undefined;
  if (!/RIP: 0010:error_entry\+/.test(console)) return undefined;
  const gs = /\bGS:([0-9a-f]{16})\(0000\) knlGS:([0-9a-f]{16})/.exec(console);
  if (gs === null || gs[1] !== gs[2]) return undefined;
  return `the guest kernel panicked in error_entry with GS = KERNEL_GS_BASE = 0x${gs[1]}: ` +
    `the test VM's emulated SVM left them equal (T:234)`;
}

/** How many times a Linux boot test boots again after the known emulator stall. */
export const EMULATOR_STALL_RETRIES = 5;

/** What a boot attempt tells the fault checks: the launcher's stderr, whether the boot ran out of time, the guest's console. */
export interface StallView {
  stderr: string;
  timedOut: boolean;
  console?: string;
}

/**
 * Runs `attempt` until it does not end in one of the known emulator faults (T:236, T:234), at most
 * EMULATOR_STALL_RETRIES more times, saying so each time; the one loop every
 * Linux boot test uses.
 * @param label what the retry line starts with
 * @param symbols the kernel's ELF with symbols, or its System.map
 * @param attempt one boot
 * @param view what of a boot the stall check reads
 */
export async function pastEmulatorStalls<T>(
  label: string,
  symbols: string,
  attempt: () => Promise<T>,
  view: (t: T) => StallView,
): Promise<T> {
  for (let retry = 0;; retry++) {
    const t = await attempt();
    const { stderr, timedOut, console: out } = view(t);
    const stall = (await emulatorStall(stderr, timedOut, symbols)) ?? emulatorPanic(out ?? "");
    if (stall === undefined || retry === EMULATOR_STALL_RETRIES) return t;
    console.log(`${label}: boot ${retry + 1} ended in the known emulator stall (${stall}); booting again`);
  }
}

/*T:237 The same stall, avoided. Booting the project's Linux again and again
 * in one test VM, with and without `nopv` (which makes the guest ignore
 * that it runs on KVM: no kvmclock, no paravirtual EOI, no async page
 * faults, no steal time), 3 of 16 boots without it stalled as T:236 says
 * and none of 16 with it (and none of 2 in an earlier session); the boots
 * ran interleaved, so both saw the same host and the same VM; a later run
 * still stalled once with it, so it makes the stall rarer, not impossible.
 * Which paravirtual path the emulated SVM gets wrong is not known. So in the
 * test VM, and only there, the Linux tests add `nopv` to the guest's
 * command line; on hardware KVM the guest keeps every paravirtual feature,
 * and the retry above stays as the backstop. :*/

/*T:239 What `nopv` takes away has to be given back another way. Without
 * kvmclock the guest must measure the TSC's frequency itself, and under
 * the emulator the PIT it measures against jitters too much for Linux to
 * trust the result ("Unable to calibrate against PIT"). A kernel that also
 * believes the ACPI tables' hardware-reduced flag (Debian's) then has no
 * timer it can program, and its boot stops. The TSC the nested guest reads
 * is the test VM's own, whose frequency the test VM's kernel measured (its
 * /proc/cpuinfo "cpu MHz"), so the tests pass that on with
 * `tsc_early_khz=`, as a user would on a machine whose TSC Linux cannot
 * calibrate. :*/

/** The test VM's TSC frequency in kHz, from /proc/cpuinfo's "cpu MHz" (T:239). */
function tscKhz(): number | undefined {
  try {
    const mhz = /^cpu MHz\s*:\s*([0-9.]+)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1];
    return mhz === undefined ? undefined : Math.round(Number(mhz) * 1000);
  } catch {
    return undefined;
  }
}

/** Kernel command-line words the Linux tests add in the test VM only (T:237, T:239). */
export const TEST_VM_GUEST_ARGS: readonly string[] = Deno.env.get("LGUEST_TEST_VM") === "tcg"
  ? ["nopv", ...[tscKhz()].filter((k) => k !== undefined && k > 0).map((k) => `tsc_early_khz=${k}`)]
  : [];

/**
 * Why Linux cannot reach userspace on this host, or undefined if it can (hardware KVM, or the test VM's nested KVM).
 * @returns one line for the test's ignore reason
 */
export function linuxUnreachable(): string | undefined {
  const flavour = kvmFlavour();
  if (flavour === "none") return "no /dev/kvm here (deno task test runs this file in the test VM)";
  if (flavour === "pvm") {
    return "PVM emulates guest ring 0, so Linux cannot reach userspace here (deno task test runs this file in the test VM)";
  }
  return undefined;
}
