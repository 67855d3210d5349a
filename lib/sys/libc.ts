/*S:100 Everything the launcher asks of the host kernel goes through libc, and
 * libc is reached through exactly one Deno.dlopen per thread: this table. Each
 * line carries the C prototype it binds, so a reader can check the types
 * against the man page. The vCPU Worker imports this module too and so gets
 * its own handle; errno is thread-local, and every call here is synchronous,
 * so errno is read on the thread that made the call. The one exception is
 * epoll_wait_async, which runs on Deno's blocking pool: its errno stays on
 * a pool thread we cannot reach, so a failed wait is repeated synchronously
 * to learn why (S:145). :*/

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" }, // int *__errno_location(void)
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" }, // int open(const char *path, int flags, mode_t mode)
  close: { parameters: ["i32"], result: "i32" }, // int close(int fd)
  ioctl: { parameters: ["i32", "u64", "pointer"], result: "i32" }, // int ioctl(int fd, unsigned long req, void *arg)
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" }, // int ioctl(int fd, unsigned long req, unsigned long arg)
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" }, // void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
  munmap: { parameters: ["pointer", "usize"], result: "i32" }, // int munmap(void *addr, size_t len)
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" }, // int madvise(void *addr, size_t len, int advice)
  read: { parameters: ["i32", "pointer", "usize"], result: "isize" }, // ssize_t read(int fd, void *buf, size_t n)
  write: { parameters: ["i32", "pointer", "usize"], result: "isize" }, // ssize_t write(int fd, const void *buf, size_t n)
  pread: { parameters: ["i32", "pointer", "usize", "i64"], result: "isize" }, // ssize_t pread(int fd, void *buf, size_t n, off_t off)
  pwrite: { parameters: ["i32", "pointer", "usize", "i64"], result: "isize" }, // ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
  readv: { parameters: ["i32", "pointer", "i32"], result: "isize" }, // ssize_t readv(int fd, const struct iovec *iov, int cnt)
  writev: { parameters: ["i32", "pointer", "i32"], result: "isize" }, // ssize_t writev(int fd, const struct iovec *iov, int cnt)
  preadv: { parameters: ["i32", "pointer", "i32", "i64"], result: "isize" }, // ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
  pwritev: { parameters: ["i32", "pointer", "i32", "i64"], result: "isize" }, // ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" }, // off_t lseek(int fd, off_t off, int whence)
  fdatasync: { parameters: ["i32"], result: "i32" }, // int fdatasync(int fd)
  ftruncate: { parameters: ["i32", "i64"], result: "i32" }, // int ftruncate(int fd, off_t len)
  eventfd: { parameters: ["u32", "i32"], result: "i32" }, // int eventfd(unsigned int initval, int flags)
  epoll_create1: { parameters: ["i32"], result: "i32" }, // int epoll_create1(int flags)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "pointer"], result: "i32" }, // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
  epoll_wait: { parameters: ["i32", "pointer", "i32", "i32"], result: "i32" }, // int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
  epoll_wait_async: {
    name: "epoll_wait",
    parameters: ["i32", "pointer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  }, // same, on a pool thread
  poll: { parameters: ["pointer", "u64", "i32"], result: "i32" }, // int poll(struct pollfd *fds, nfds_t n, int timeout)
  fcntl: { parameters: ["i32", "i32", "i64"], result: "i32" }, // int fcntl(int fd, int cmd, long arg)
  isatty: { parameters: ["i32"], result: "i32" }, // int isatty(int fd)
  tcgetattr: { parameters: ["i32", "pointer"], result: "i32" }, // int tcgetattr(int fd, struct termios *t)
  tcsetattr: { parameters: ["i32", "i32", "pointer"], result: "i32" }, // int tcsetattr(int fd, int when, const struct termios *t)
  getrandom: { parameters: ["pointer", "usize", "u32"], result: "isize" }, // ssize_t getrandom(void *buf, size_t n, unsigned int flags)
  gettid: { parameters: [], result: "i32" }, // pid_t gettid(void)
  getpid: { parameters: [], result: "i32" }, // pid_t getpid(void)
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" }, // int tgkill(pid_t tgid, pid_t tid, int sig)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" }, // int socket(int domain, int type, int protocol)
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" }, // int socketpair(int domain, int type, int protocol, int sv[2])
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" }, // int connect(int fd, const struct sockaddr *addr, socklen_t len)
  setns: { parameters: ["i32", "i32"], result: "i32" }, // int setns(int fd, int nstype)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" }, // int clock_gettime(clockid_t clk, struct timespec *tp)
} as const satisfies Deno.ForeignLibraryInterface;

/** The symbols of this thread's libc handle. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

function openLibc(): Libc {
  try {
    return Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch (cause) {
    throw new Error("cannot load libc.so.6 (is --allow-ffi granted?)", { cause });
  }
}

/** This thread's libc, opened on first import of this module. */
export const libc: Libc = openLibc();

let errnoView: Deno.UnsafePointerView | undefined;

/** The calling thread's errno. Read it immediately after the failing call. */
export function lastErrno(): number {
  if (errnoView === undefined) {
    const p = libc.__errno_location();
    if (p === null) throw new Error("__errno_location returned NULL");
    errnoView = new Deno.UnsafePointerView(p);
  }
  return errnoView.getInt32();
}
