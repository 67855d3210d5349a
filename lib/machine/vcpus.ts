/*L:118 Several vCPUs. vCPU 0 is the bootstrap processor: build.ts puts it
 * at the kernel's entry and it runs from the first KVM_RUN. The others, the
 * application processors, are built the way a PC's are at power-on: CPUID
 * saying where each sits (L:210), the reset MSRs, LINT0/LINT1 wired, and
 * nothing else, because they do not run until the guest wakes them. Linux
 * does that with INIT and a startup IPI pointing at a real-mode trampoline
 * it copied below 1 MiB; the in-kernel local APIC delivers both, and KVM
 * holds each application processor in KVM_MP_STATE_UNINITIALIZED until
 * they arrive, so its thread sits in KVM_RUN without running a single guest
 * instruction. KVM puts every vCPU but the first in that state by itself
 * when it has an in-kernel irqchip; we read the state back and set it if a
 * KVM did otherwise, since an AP that ran from reset would execute whatever
 * is at the reset vector. :*/

import type { Kvm } from "../kvm/kvm.ts";
import type { Vm } from "../kvm/vm.ts";
import { Vcpu } from "../kvm/vcpu.ts";
import { KVM_CAP, MP_STATE } from "../kvm/ioctl.ts";
import { BOOT_MSRS, guestCpuid, wireLapic } from "../kvm/cpu_setup.ts";
import { MAX_CPUS } from "./config.ts";

/**
 * Checks a vCPU count.
 * @param cpus `MachineConfig.cpus` (undefined: 1)
 * @returns the count
 * @throws RangeError unless it is a whole number from 1 to {@link MAX_CPUS}
 */
export function cpuCount(cpus: number | undefined): number {
  const n = cpus ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CPUS) {
    throw new RangeError(`cpus must be a whole number from 1 to ${MAX_CPUS} (got ${cpus})`);
  }
  return n;
}

/**
 * Creates `cpus` vCPUs with their CPUID, MSRs and LAPIC wiring; vCPU 0 is left for the caller to put
 * at the kernel's entry, the others wait for INIT/SIPI.
 * @param undo each vCPU's close() is pushed here as soon as it exists
 * @returns the vCPUs, index = APIC id
 */
export function createVcpus(kvm: Kvm, vm: Vm, cpus: number, undo: Array<() => void>): Vcpu[] {
  const supported = kvm.supportedCpuid();
  const cpuidOptions = { tscDeadline: kvm.checkExtension(KVM_CAP.TSC_DEADLINE_TIMER) > 0 };
  const vcpus: Vcpu[] = [];
  for (let id = 0; id < cpus; id++) {
    const vcpu = Vcpu.create(kvm, vm, id);
    undo.push(() => vcpu.close());
    vcpu.setCpuid(guestCpuid(supported, id, cpus, cpuidOptions));
    vcpu.setMsrs(BOOT_MSRS);
    wireLapic(vcpu);
    if (id > 0 && vcpu.mpState() !== MP_STATE.UNINITIALIZED) vcpu.setMpState(MP_STATE.UNINITIALIZED);
    vcpus.push(vcpu);
  }
  return vcpus;
}
