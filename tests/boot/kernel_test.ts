import { deepEqual, equal, ok } from "node:assert/strict";
import { ELF_CMDLINE_SIZE, ELF_INITRD_ADDR_MAX, loadKernel, loadKernelImage } from "../../lib/boot/kernel.ts";
import { buildBzImage, expectBootError, MiB, validElf, withMemory } from "./images.ts";
import { programHeaders } from "../helpers/elf_phdrs.ts";

Deno.test("kernel: dispatches ELF and bzImage", () => {
  withMemory(64 * MiB, (mem) => {
    const elf = loadKernelImage(mem, validElf(), "vmlinux");
    equal(elf.kind, "elf");
    equal(elf.entry, 0x100000);
    equal(elf.kernelEnd, 0x200800);
    equal(elf.setupHeader, undefined);
    equal(elf.initrdAddrMax, ELF_INITRD_ADDR_MAX);
    equal(elf.cmdlineSize, ELF_CMDLINE_SIZE);
  });
  withMemory(64 * MiB, (mem) => {
    const bz = loadKernelImage(mem, buildBzImage(), "bzImage");
    equal(bz.kind, "bzimage");
    equal(bz.entry, 0x1000200);
    equal(bz.kernelEnd, 0x1800000);
    ok(bz.setupHeader !== undefined);
    equal(bz.cmdlineSize, 2047);
  });
});

Deno.test("kernel: unreadable, empty and unrecognised files are named", () => {
  const dir = Deno.makeTempDirSync();
  try {
    withMemory(16 * MiB, (mem) => {
      expectBootError(
        () => loadKernel(mem, `${dir}/missing`),
        new RegExp(`^kernel ${dir}/missing: no such file$`),
      );
      expectBootError(() => loadKernel(mem, dir), /: is a directory$/);
      Deno.writeFileSync(`${dir}/empty`, new Uint8Array());
      expectBootError(() => loadKernel(mem, `${dir}/empty`), /empty: file is empty$/);
      Deno.writeFileSync(`${dir}/junk`, new TextEncoder().encode("#!/bin/sh\n"));
      expectBootError(
        () => loadKernel(mem, `${dir}/junk`),
        /junk: not a bzImage .* and not an ELF file/,
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// The synthetic images above are built by code we wrote, so they can
// share our misunderstandings. This test asks the real toolchain instead: gcc
// and ld lay out a tiny freestanding x86_64 program, with a PVH note section
// of the kind Linux emits, and we check every byte of every segment lands
// where its program header says.

const TINY_GUEST = `
__asm__(".pushsection .note.xen, \\"a\\", @note\\n"
        ".balign 4\\n"
        ".long 4, 4, 18\\n"
        ".asciz \\"Xen\\"\\n"
        ".long _start\\n"
        ".popsection");
static const char msg[] = "hello from a tiny guest";
volatile const char *p = msg;
volatile int counter = 42;
void _start(void) { for (;;) { counter += *p; __asm__ volatile("hlt"); } }
`;

function compileTinyGuest(dir: string): string | null {
  const src = `${dir}/tiny.c`;
  const out = `${dir}/tiny`;
  Deno.writeTextFileSync(src, TINY_GUEST);
  try {
    const result = new Deno.Command("gcc", {
      args: [
        "-nostdlib",
        "-static",
        "-no-pie",
        "-O1",
        "-fno-asynchronous-unwind-tables",
        "-Wl,-Ttext=0x200000",
        "-Wl,--build-id=none",
        "-o",
        out,
        src,
      ],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!result.success) {
      console.log(`gcc failed, skipping: ${new TextDecoder().decode(result.stderr)}`);
      return null;
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return out;
}

Deno.test("kernel: loads a real gcc-built static x86_64 ELF", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = compileTinyGuest(dir);
    if (path === null) {
      console.log("gcc not available: skipping the real-ELF test");
      return;
    }
    const file = Deno.readFileSync(path);
    const entry = Number(new DataView(file.buffer).getBigUint64(24, true));
    const loads = programHeaders(file).filter((p) => p.type === 1);
    ok(loads.length >= 2);
    withMemory(16 * MiB, (mem) => {
      const k = loadKernel(mem, path);
      equal(k.kind, "elf");
      equal(k.entry, entry);
      equal(k.pvhEntry, entry);
      equal(k.kernelEnd, Math.max(...loads.map((p) => p.paddr + p.memsz)));
      for (const p of loads) {
        deepEqual(
          mem.slice(p.paddr, p.filesz),
          file.subarray(p.offset, p.offset + p.filesz),
        );
        const tail = mem.slice(p.paddr + p.filesz, p.memsz - p.filesz);
        ok(tail.every((b) => b === 0));
      }
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
