/*S:120 Typed doors onto libc. Each wrapper turns the C convention (-1 and
 * errno) into an exception that names the call, the errno and the fd or path,
 * and turns BigInt results into plain numbers where they always fit. Guest
 * memory is addressed by BigInt host addresses: `at()` makes the pointer. :*/

import { lastErrno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

/** open(2) flags and other constants the launcher uses (x86_64 values). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECT: 0o40000,
  CLOEXEC: 0o2000000,
} as const;

/** mmap(2) protection and flag bits. */
export const MAP = {
  PROT_NONE: 0,
  PROT_READ: 1,
  PROT_WRITE: 2,
  PROT_EXEC: 4,
  SHARED: 0x01,
  PRIVATE: 0x02,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  NORESERVE: 0x4000,
  HUGETLB: 0x40000,
} as const;

/** madvise(2) advice values. */
export const MADV = { DONTNEED: 4, HUGEPAGE: 14, DONTDUMP: 16 } as const;

const encoder = new TextEncoder();

/** A NUL-terminated copy of `s`, ready to pass as `const char *`. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, bytes);
  return bytes;
}

/** A pointer to host address `addr` (0 gives NULL). */
export function at(addr: bigint): Deno.PointerValue {
  return Deno.UnsafePointer.create(addr);
}

/** The host address of a pointer (NULL gives 0n). */
export function addressOf(p: Deno.PointerValue): bigint {
  return p === null ? 0n : Deno.UnsafePointer.value(p);
}

/** The host address of a typed array's first byte. */
export function bufferAddress(buf: ArrayBufferView<ArrayBuffer>): bigint {
  return addressOf(Deno.UnsafePointer.of(buf));
}

function fail(call: string, subject?: string): never {
  throw new SysError(call, lastErrno(), subject);
}

function checked(r: number, call: string, subject?: string): number {
  if (r < 0) fail(call, subject);
  return r;
}

function checkedSize(r: number | bigint, call: string, fd: number): number {
  const n = Number(r);
  if (n < 0) fail(call, `fd ${fd}`);
  return n;
}

/** open(2); throws naming the path. */
export function open(path: string, flags: number, mode = 0o644): number {
  return checked(libc.open(cString(path), flags | O.CLOEXEC, mode), "open", path);
}

/** close(2). Closing a negative fd is a no-op, so `close()` is safe twice. */
export function close(fd: number): void {
  if (fd < 0) return;
  checked(libc.close(fd), "close", `fd ${fd}`);
}

/** ioctl(2) with a pointer (or NULL) argument; `name` labels errors. */
export function ioctl(
  fd: number,
  request: number | bigint,
  arg: ArrayBufferView<ArrayBuffer> | null,
  name: string,
): number {
  const p = arg === null ? null : Deno.UnsafePointer.of(arg);
  return checked(libc.ioctl(fd, BigInt(request), p), `ioctl(${name})`, `fd ${fd}`);
}

/** ioctl(2) with an integer argument; `name` labels errors. */
export function ioctlInt(fd: number, request: number | bigint, arg: number | bigint, name: string): number {
  return checked(libc.ioctl_int(fd, BigInt(request), BigInt(arg)), `ioctl(${name})`, `fd ${fd}`);
}

/** mmap(2); returns the host address. */
export function mmap(len: number, prot: number, flags: number, fd = -1, offset = 0, addr = 0n): bigint {
  const p = libc.mmap(at(addr), BigInt(len), prot, flags, fd, BigInt(offset));
  const a = addressOf(p);
  if (a === 0xffffffffffffffffn) fail("mmap", `${len} bytes`);
  return a;
}

/** munmap(2). */
export function munmap(addr: bigint, len: number): void {
  checked(libc.munmap(at(addr), BigInt(len)), "munmap", `0x${addr.toString(16)}`);
}

/** madvise(2); advice failures are reported to the caller as false. */
export function madvise(addr: bigint, len: number, advice: number): boolean {
  return libc.madvise(at(addr), BigInt(len), advice) === 0;
}

/** read(2) into host memory; returns bytes read, or -1 for EAGAIN. */
export function readAt(fd: number, addr: bigint, len: number): number {
  const n = Number(libc.read(fd, at(addr), BigInt(len)));
  if (n < 0 && lastErrno() === Errno.EAGAIN) return -1;
  return checkedSize(n, "read", fd);
}

/** write(2) from host memory; returns bytes written, or -1 for EAGAIN. */
export function writeAt(fd: number, addr: bigint, len: number): number {
  const n = Number(libc.write(fd, at(addr), BigInt(len)));
  if (n < 0 && lastErrno() === Errno.EAGAIN) return -1;
  return checkedSize(n, "write", fd);
}

/** read(2) into a buffer; returns bytes read, or -1 for EAGAIN. */
export function read(fd: number, buf: ArrayBufferView<ArrayBuffer>): number {
  return readAt(fd, bufferAddress(buf), buf.byteLength);
}

/** write(2) from a buffer; returns bytes written, or -1 for EAGAIN. */
export function write(fd: number, buf: ArrayBufferView<ArrayBuffer>): number {
  return writeAt(fd, bufferAddress(buf), buf.byteLength);
}

/** Writes all of `buf`, retrying short writes and waiting out EAGAIN. */
export function writeAll(fd: number, buf: Uint8Array<ArrayBuffer>): void {
  let done = 0;
  while (done < buf.length) {
    const n = write(fd, buf.subarray(done));
    if (n < 0) pollOne(fd, POLL.OUT, -1);
    else done += n;
  }
}

/** pread(2) into a buffer at a file offset. */
export function pread(fd: number, buf: ArrayBufferView<ArrayBuffer>, offset: number): number {
  return checkedSize(libc.pread(fd, Deno.UnsafePointer.of(buf), BigInt(buf.byteLength), BigInt(offset)), "pread", fd);
}

/** pwrite(2) from a buffer at a file offset. */
export function pwrite(fd: number, buf: ArrayBufferView<ArrayBuffer>, offset: number): number {
  return checkedSize(libc.pwrite(fd, Deno.UnsafePointer.of(buf), BigInt(buf.byteLength), BigInt(offset)), "pwrite", fd);
}

/*S:131 Deno.UnsafePointer.of costs about a quarter of a microsecond, as
 * much as the tap's writev it would be handed to (measured: 0.60 against
 * 0.34 µs per 64-byte frame), and a device reuses the same iovec array for
 * every frame and request. So the vectored calls look the array's pointer
 * up in a WeakMap, made on first use, and the entry goes with the array.
 * Only for arrays over 64 bytes: V8 keeps smaller typed arrays inside its
 * own heap, where a collection may move them, so their address is good for
 * one call only; a larger array's backing store is allocated outside the
 * heap and never moves. Every iovec array the devices use holds hundreds
 * of entries. :*/
const iovPointers = new WeakMap<BigUint64Array, Deno.PointerValue>();
/** V8's V8_TYPED_ARRAY_MAX_SIZE_IN_HEAP: typed arrays up to this many bytes may live in the moving heap. */
const MAX_ON_HEAP_BYTES = 64;

function iovPointer(iov: BigUint64Array<ArrayBuffer>): Deno.PointerValue {
  if (iov.byteLength <= MAX_ON_HEAP_BYTES) return Deno.UnsafePointer.of(iov);
  let p = iovPointers.get(iov);
  if (p === undefined) {
    p = Deno.UnsafePointer.of(iov);
    iovPointers.set(iov, p);
  }
  return p;
}

/** readv(2) over an iovec array (see iovec.ts); -1 for EAGAIN. */
export function readv(fd: number, iov: BigUint64Array<ArrayBuffer>, count: number): number {
  const n = Number(libc.readv(fd, iovPointer(iov), count));
  if (n < 0 && lastErrno() === Errno.EAGAIN) return -1;
  return checkedSize(n, "readv", fd);
}

/** writev(2) over an iovec array; -1 for EAGAIN. */
export function writev(fd: number, iov: BigUint64Array<ArrayBuffer>, count: number): number {
  const n = Number(libc.writev(fd, iovPointer(iov), count));
  if (n < 0 && lastErrno() === Errno.EAGAIN) return -1;
  return checkedSize(n, "writev", fd);
}

/** preadv(2) over an iovec array at a file offset. */
export function preadv(fd: number, iov: BigUint64Array<ArrayBuffer>, count: number, offset: number): number {
  return checkedSize(libc.preadv(fd, iovPointer(iov), count, BigInt(offset)), "preadv", fd);
}

/** pwritev(2) over an iovec array at a file offset. */
export function pwritev(fd: number, iov: BigUint64Array<ArrayBuffer>, count: number, offset: number): number {
  return checkedSize(libc.pwritev(fd, iovPointer(iov), count, BigInt(offset)), "pwritev", fd);
}

/** lseek(2); returns the new offset. `SEEK_END` is 2. */
export function lseek(fd: number, offset: number, whence: number): number {
  return checkedSize(libc.lseek(fd, BigInt(offset), whence), "lseek", fd);
}

/** fdatasync(2). */
export function fdatasync(fd: number): void {
  checked(libc.fdatasync(fd), "fdatasync", `fd ${fd}`);
}

/** ftruncate(2). */
export function ftruncate(fd: number, len: number): void {
  checked(libc.ftruncate(fd, BigInt(len)), "ftruncate", `fd ${fd}`);
}

/** eventfd(2) flags. */
export const EFD = { NONBLOCK: 0o4000, CLOEXEC: 0o2000000 } as const;

/** eventfd(2), non-blocking and close-on-exec unless flags say otherwise. */
export function eventfd(initval = 0, flags: number = EFD.NONBLOCK | EFD.CLOEXEC): number {
  return checked(libc.eventfd(initval, flags), "eventfd");
}

/*S:125 An eventfd is our doorbell and our interrupt line (an irqfd is an
 * eventfd KVM listens to): writing 1 adds to its counter and wakes whoever
 * waits. Only two answers are not errors. Eight bytes written is the usual
 * one. EAGAIN means the counter sits at its ceiling, 0xffff_ffff_ffff_fffe:
 * it is far from zero, so the fd is already readable and whoever waits on it
 * is already woken (KVM, for an irqfd, already has the interrupt pending).
 * Every reader here drains the counter whole, so the lost increment changes
 * nothing, and we must not wait for room either: the reader may be us. Any
 * other failure (a closed fd, one not open for writing) would be a lost
 * wake-up or a lost interrupt, a guest hung with no word why, so it is
 * thrown, naming the fd and the errno. :*/

const EVENTFD_ONE = new BigUint64Array(new ArrayBuffer(8)).fill(1n);
// An ArrayBuffer's memory never moves, so the pointer can be kept.
const eventfdOne = Deno.UnsafePointer.of(EVENTFD_ONE);
const eventfdScratch = new BigUint64Array(1);

/**
 * Adds 1 to an eventfd's counter, waking whoever polls it. A counter
 * already at its ceiling is left there (the fd is readable already).
 * @param fd a non-blocking eventfd
 * @param what what the fd is, for errors (e.g. `"virtio-net irqfd"`)
 * @throws SysError naming the write, the fd and the errno
 */
export function signalEventfd(fd: number, what = "eventfd"): void {
  const n = Number(libc.write(fd, eventfdOne, 8n));
  if (n === 8) return;
  if (n < 0) {
    const e = lastErrno();
    if (e === Errno.EAGAIN) return;
    throw new SysError("write", e, `${what} ${fd}`);
  }
  throw new Error(`write on ${what} ${fd} wrote ${n} of 8 bytes`);
}

/** Reads an eventfd's counter back to 0 (nothing to do if it already is: the fd is non-blocking). */
export function drainEventfd(fd: number): void {
  readAt(fd, bufferAddress(eventfdScratch), 8);
}

/** fcntl(2) commands. */
export const F = { GETFL: 3, SETFL: 4 } as const;

/** fcntl(2) with an integer argument. */
export function fcntl(fd: number, cmd: number, arg = 0): number {
  return checked(libc.fcntl(fd, cmd, BigInt(arg)), "fcntl", `fd ${fd}`);
}

/** Sets O_NONBLOCK on a descriptor we own (never on the shared 0/1/2). */
export function setNonBlocking(fd: number): void {
  fcntl(fd, F.SETFL, fcntl(fd, F.GETFL) | O.NONBLOCK);
}

/** isatty(3). */
export function isatty(fd: number): boolean {
  return libc.isatty(fd) === 1;
}

/** Fills `buf` from the kernel's CSPRNG (getrandom(2), flags 0). */
export function getrandom(buf: Uint8Array<ArrayBuffer>): number {
  const n = Number(libc.getrandom(Deno.UnsafePointer.of(buf), BigInt(buf.length), 0));
  if (n < 0) fail("getrandom");
  return n;
}

/** getrandom(2) straight into host memory at `addr` (e.g. a guest buffer). */
export function getrandomAt(addr: bigint, len: number): number {
  const n = Number(libc.getrandom(at(addr), BigInt(len), 0));
  if (n < 0) fail("getrandom");
  return n;
}

/** gettid(2): the calling OS thread's id. */
export function gettid(): number {
  return libc.gettid();
}

/** getpid(2). */
export function getpid(): number {
  return libc.getpid();
}

/** tgkill(2): sends `sig` to one thread of process `tgid`. */
export function tgkill(tgid: number, tid: number, sig: number): void {
  checked(libc.tgkill(tgid, tid, sig), "tgkill", `thread ${tid}`);
}

/** socket(2). */
export function socket(domain: number, type: number, protocol = 0): number {
  return checked(libc.socket(domain, type | O.CLOEXEC, protocol), "socket");
}

/** socketpair(2), close-on-exec; returns both ends. */
export function socketpair(domain: number, type: number, protocol = 0): [number, number] {
  const sv = new Int32Array(2);
  checked(libc.socketpair(domain, type | O.CLOEXEC, protocol, sv), "socketpair");
  return [sv[0]!, sv[1]!];
}

/** AF_UNIX and the socket types we use (<sys/socket.h>). */
export const AF_UNIX = 1;
/** SOCK_STREAM (<sys/socket.h>). */
export const SOCK_STREAM = 1;
/** sun_path's size in struct sockaddr_un (<sys/un.h>), NUL included. */
const SUN_PATH = 108;

/**
 * connect(2) to a UNIX socket at `path`; throws naming the path (ENOENT before the listener binds it,
 * ECONNREFUSED once nobody listens).
 */
export function connectUnix(fd: number, path: string): void {
  const bytes = encoder.encode(path);
  if (bytes.length >= SUN_PATH) throw new RangeError(`socket path '${path}' is longer than ${SUN_PATH - 1} bytes`);
  const addr = new Uint8Array(2 + SUN_PATH); // struct sockaddr_un: sun_family, then sun_path
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  checked(libc.connect(fd, addr, 2 + bytes.length + 1), "connect", path);
}

/** setns(2): moves the calling thread into the namespace `fd` refers to (nstype e.g. CLONE_NEWNET). */
export function setns(fd: number, nstype: number): void {
  checked(libc.setns(fd, nstype), "setns", `fd ${fd}`);
}

/** poll(2) event bits. */
export const POLL = { IN: 1, OUT: 4, ERR: 8, HUP: 16, NVAL: 32 } as const;

/** poll(2) on one fd; returns the revents bits (0 on timeout). */
export function pollOne(fd: number, events: number, timeoutMs: number): number {
  const pfd = new Int32Array(2);
  pfd[0] = fd;
  pfd[1] = events;
  for (;;) {
    const r = libc.poll(Deno.UnsafePointer.of(pfd), 1n, timeoutMs);
    if (r >= 0) return r === 0 ? 0 : pfd[1]! >>> 16;
    if (lastErrno() !== Errno.EINTR) fail("poll", `fd ${fd}`);
  }
}
