/*L:155 Kernels and initrds are files the user named on the command line, so
 * "cannot read it" deserves the same care as "cannot boot it": one line with
 * the path and the reason in plain words, not a stack trace from deep inside
 * the runtime. :*/

import { BootError, sizeText } from "./errors.ts";

/** The largest image we will read into the launcher (files this big are not kernels). */
export const MAX_IMAGE_SIZE = 2 * 1024 ** 3;

function reason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return e instanceof Error ? e.message : String(e);
}

/**
 * Reads a whole boot image (kernel or initrd) from disk.
 * @param path the file
 * @param what "kernel" or "initrd", for error messages
 * @returns the file's bytes, never empty
 * @throws BootError naming the path and the reason
 */
export function readImageFile(path: string, what: string): Uint8Array {
  let size: number;
  try {
    const info = Deno.statSync(path);
    if (info.isDirectory) throw new Deno.errors.IsADirectory(path);
    size = info.size;
  } catch (e) {
    throw new BootError(`${what} ${path}: ${reason(e)}`);
  }
  if (size > MAX_IMAGE_SIZE) {
    throw new BootError(`${what} ${path}: too large (${sizeText(size)})`);
  }
  let data: Uint8Array;
  try {
    data = Deno.readFileSync(path);
  } catch (e) {
    throw new BootError(`${what} ${path}: ${reason(e)}`);
  }
  if (data.length === 0) throw new BootError(`${what} ${path}: file is empty`);
  return data;
}

/** A boot image as the caller gave it: a path, or the bytes themselves. */
export type ImageSource = string | Uint8Array;

/**
 * How an image is named in messages: its path, or its size when it was given as bytes.
 * @param source the path or the bytes
 */
export function imageLabel(source: ImageSource): string {
  return typeof source === "string" ? source : `(${source.length} bytes given)`;
}

/**
 * A boot image's bytes, from a file (see {@link readImageFile}) or as given (checked the same way).
 * @param source the path or the bytes (used in place, not copied)
 * @param what "kernel" or "initrd", for error messages
 * @throws BootError for an empty or oversized image, or a file that cannot be read
 */
export function readImage(source: ImageSource, what: string): Uint8Array {
  if (typeof source === "string") return readImageFile(source, what);
  if (source.length === 0) throw new BootError(`${what} ${imageLabel(source)}: empty`);
  if (source.length > MAX_IMAGE_SIZE) throw new BootError(`${what} ${imageLabel(source)}: too large`);
  return source;
}
