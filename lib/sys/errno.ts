/*S:110 When a libc call fails it leaves a number in errno. Numbers are for
 * machines; people read names, so every error we raise carries the name. The
 * table holds the values Linux uses on x86_64 (asm-generic/errno*.h). :*/

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  32: "EPIPE",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  40: "ELOOP",
  75: "EOVERFLOW",
  77: "EBADFD",
  88: "ENOTSOCK",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
};

/** Well-known errno values the launcher reacts to by number. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ENOSYS: 38,
} as const;

/** The symbolic name of an errno value, e.g. `errnoName(2) === "ENOENT"`. */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `errno ${errno}`;
}

/** A failed libc call: names the call, the errno and what it was acting on. */
export class SysError extends Error {
  /** The libc function that failed, e.g. `"open"` or `"ioctl(KVM_RUN)"`. */
  readonly call: string;
  /** The raw errno value. */
  readonly errno: number;
  /** The errno's symbolic name, e.g. `"ENOENT"`. */
  readonly code: string;
  /** The path, fd or other subject of the call, when there is one. */
  readonly subject: string | undefined;

  /** Makes the error; `subject` is the path or fd the call acted on, if any. */
  constructor(call: string, errno: number, subject?: string) {
    const code = errnoName(errno);
    const on = subject === undefined ? "" : ` on ${subject}`;
    super(`${call}${on} failed: ${code}`);
    this.name = "SysError";
    this.call = call;
    this.errno = errno;
    this.code = code;
    this.subject = subject;
  }
}
