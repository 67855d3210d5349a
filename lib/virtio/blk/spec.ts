/** What `--block` may say, read in one place for `lguest` and `lguest run`: `<file>` or `<file>,ro`. */

/**
 * Reads `<file>[,ro]`.
 * @param spec the value after --block=
 * @returns the file and whether the disk is read-only
 * @throws Error when there is no file name
 */
export function parseBlockSpec(spec: string): { path: string; readOnly: boolean } {
  const m = /^(.*?)(,ro)?$/.exec(spec)!;
  if (!m[1]) throw new Error(`--block needs a file name`);
  return { path: m[1], readOnly: m[2] !== undefined };
}
