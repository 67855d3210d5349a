/*V:419 What --tunnet may say, read in one place for both the command line
 * (which checks it before anything is opened) and NetDevice.open: an IPv4
 * address for the host end of a routed tap, or bridge:<name> for a place
 * on an existing bridge, whose name must be an interface name (1 to 15
 * letters, digits, '_', '.' or '-'). :*/

/** A parsed --tunnet value. */
export type TunnetSpec = { ip: number[] } | { bridge: string };

/**
 * Reads `<ipv4>` or `bridge:<name>`.
 * @param spec the value after --tunnet=
 * @returns the address as four bytes, or the bridge's name
 * @throws Error with one line naming the option and the problem
 */
export function parseTunnetSpec(spec: string): TunnetSpec {
  if (spec.startsWith("bridge:")) {
    const bridge = spec.slice("bridge:".length);
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new Error(`--tunnet=${spec}: bad bridge name '${bridge}'`);
    return { bridge };
  }
  const parts = spec.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new Error(`--tunnet=${spec}: expected an IPv4 address or bridge:<name>`);
  }
  return { ip: parts.map(Number) };
}
