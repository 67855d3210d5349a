/**
 * Typed libc access through Deno FFI.
 * @module
 */
export * from "./errno.ts";
export * from "./calls.ts";
export * from "./iovec.ts";
export * from "./epoll.ts";
export * from "./termios.ts";
