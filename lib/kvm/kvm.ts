/*K:120 /dev/kvm is the front door. We check the API version (12 since
 * Linux 2.6.22) and the capabilities the launcher relies on before building
 * anything, so a host that lacks one fails with a sentence, not a mystery
 * later. The same handle answers which CPUID leaves this host can give a
 * guest and how large each vCPU's shared kvm_run page is. :*/

import { close, ioctl, ioctlInt, O, open, SysError } from "../sys/mod.ts";
import { KVM, KVM_CAP, KVM_CONST } from "./ioctl.ts";
import { KVM_CPUID2, KVM_CPUID_ENTRY2 } from "./structs.ts";

/** A /dev/kvm problem the user can act on. */
export class KvmUnavailableError extends Error {
  /** Makes the error; `message` says what is wrong with /dev/kvm in one line. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KvmUnavailableError";
  }
}

/** One CPUID leaf as KVM reports it. */
export interface CpuidEntry {
  /** Leaf (EAX input). */
  function: number;
  /** Subleaf (ECX input). */
  index: number;
  /** KVM_CPUID_FLAG_* bits. */
  flags: number;
  /** Output registers. */
  eax: number;
  /** Output registers. */
  ebx: number;
  /** Output registers. */
  ecx: number;
  /** Output registers. */
  edx: number;
}

/** Capabilities the launcher cannot work without. */
const REQUIRED: ReadonlyArray<[keyof typeof KVM_CAP, string]> = [
  ["USER_MEMORY", "user memory slots"],
  ["SET_TSS_ADDR", "KVM_SET_TSS_ADDR"],
  ["EXT_CPUID", "KVM_GET_SUPPORTED_CPUID"],
  ["IRQCHIP", "an in-kernel interrupt controller"],
  ["PIT2", "an in-kernel timer (PIT2)"],
  ["IMMEDIATE_EXIT", "immediate_exit"],
];

/** An open /dev/kvm. */
export class Kvm {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** The /dev/kvm descriptor. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Opens /dev/kvm and checks the API version and required capabilities.
   * @param path the device node, normally /dev/kvm
   */
  static open(path = "/dev/kvm"): Kvm {
    let fd: number;
    try {
      fd = open(path, O.RDWR);
    } catch (e) {
      if (e instanceof SysError) {
        const why = e.code === "ENOENT"
          ? "does not exist (is the kvm module loaded?)"
          : e.code === "EACCES" || e.code === "EPERM"
          ? "is not accessible (add yourself to the kvm group, or run as root)"
          : `cannot be opened (${e.code})`;
        throw new KvmUnavailableError(`${path} ${why}`, { cause: e });
      }
      throw e;
    }
    const kvm = new Kvm(fd);
    try {
      const version = ioctlInt(fd, KVM.GET_API_VERSION, 0, "KVM_GET_API_VERSION");
      if (version !== KVM_CONST.API_VERSION) {
        throw new KvmUnavailableError(`${path} speaks KVM API ${version}, we need ${KVM_CONST.API_VERSION}`);
      }
      for (const [cap, what] of REQUIRED) {
        if (kvm.checkExtension(KVM_CAP[cap]) <= 0) {
          throw new KvmUnavailableError(`${path} lacks ${what} (KVM_CAP_${cap})`);
        }
      }
    } catch (e) {
      kvm.close();
      throw e;
    }
    return kvm;
  }

  /** KVM_CHECK_EXTENSION: 0 when unsupported, else a capability value. */
  checkExtension(cap: number): number {
    return ioctlInt(this.#fd, KVM.CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION");
  }

  /** Size of the per-vCPU kvm_run mapping. */
  vcpuMmapSize(): number {
    return ioctlInt(this.#fd, KVM.GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
  }

  /** KVM_GET_SUPPORTED_CPUID: every leaf this host can offer a guest. */
  supportedCpuid(): CpuidEntry[] {
    const max = KVM_CONST.MAX_CPUID_ENTRIES;
    const buf = new Uint8Array(KVM_CPUID2.size + max * KVM_CPUID_ENTRY2.size);
    const view = new DataView(buf.buffer);
    view.setUint32(KVM_CPUID2.fields.nent.offset, max, true);
    ioctl(this.#fd, KVM.GET_SUPPORTED_CPUID, buf, "KVM_GET_SUPPORTED_CPUID");
    const n = view.getUint32(KVM_CPUID2.fields.nent.offset, true);
    const out: CpuidEntry[] = [];
    const F = KVM_CPUID_ENTRY2.fields;
    for (let i = 0; i < n; i++) {
      const b = KVM_CPUID2.size + i * KVM_CPUID_ENTRY2.size;
      out.push({
        function: view.getUint32(b + F.function.offset, true),
        index: view.getUint32(b + F.index.offset, true),
        flags: view.getUint32(b + F.flags.offset, true),
        eax: view.getUint32(b + F.eax.offset, true),
        ebx: view.getUint32(b + F.ebx.offset, true),
        ecx: view.getUint32(b + F.ecx.offset, true),
        edx: view.getUint32(b + F.edx.offset, true),
      });
    }
    return out;
  }

  /** Closes /dev/kvm; safe to call twice. */
  close(): void {
    close(this.#fd);
    this.#fd = -1;
  }
}

/**
 * Which KVM this host has: none (no /dev/kvm), PVM (a /dev/kvm backed by
 * the kvm_pvm module, which emulates guest ring 0) or hardware
 * virtualization (see ENVIRONMENT.md). A host can have the kvm_pvm module
 * loaded and still no /dev/kvm, so the device is looked for first.
 */
export function kvmFlavour(): "hardware" | "pvm" | "none" {
  const exists = (path: string) => {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  };
  if (!exists("/dev/kvm")) return "none";
  return exists("/sys/module/kvm_pvm") ? "pvm" : "hardware";
}
