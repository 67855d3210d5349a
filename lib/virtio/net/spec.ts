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

/*V:465 What --net may say. Only one mode so far, user (passt, V:464),
 * then comma-separated options, each repeatable: QEMU's
 * hostfwd=tcp:[<hostaddr>]:<hostport>-:<guestport> (or udp), and passt's
 * own port syntax as t=<spec> or u=<spec>, handed to passt's -t and -u as
 * they are (a passt list with commas is written as several t= options).
 * Everything is checked here, before anything starts, and turned into
 * passt's arguments. :*/

/** A parsed --net value. */
export interface NetSpec {
  /** The backend: passt. */
  mode: "user";
  /** passt arguments for the port forwards (`-t 8080:80`, ...). */
  passtArgs: string[];
}

const HOSTFWD = /^(tcp|udp):(?:((?:[0-9]{1,3}\.){3}[0-9]{1,3})?:)?([0-9]{1,5})-(?:([^:]*):)?([0-9]{1,5})$/;
const PASST_PORTS = /^[A-Za-z0-9.:/%~_-]+$/;

/**
 * Reads `user[,hostfwd=tcp:<hostport>-:<guestport>][,t=<passt spec>][,u=<passt spec>]...`.
 * @param spec the value after --net=
 * @returns the mode and passt's arguments
 * @throws Error with one line naming the option and the problem
 */
export function parseNetSpec(spec: string): NetSpec {
  const [mode, ...opts] = spec.split(",");
  const bad = (why: string): never => {
    throw new Error(`--net=${spec}: ${why}`);
  };
  if (mode !== "user") bad(`unknown mode '${mode}' (known: user)`);
  const passtArgs: string[] = [];
  for (const opt of opts) {
    const eq = opt.indexOf("=");
    const [key, value] = eq < 0 ? [opt, ""] : [opt.slice(0, eq), opt.slice(eq + 1)];
    if (key === "hostfwd") {
      const m = HOSTFWD.exec(value);
      if (m === null) bad(`hostfwd=${value}: expected tcp|udp:[<hostaddr>]:<hostport>-:<guestport>`);
      const [, proto, addr, host, guestAddr, guest] = m!;
      if (guestAddr !== undefined && guestAddr !== "") {
        bad(`hostfwd=${value}: passt forwards to the guest's one address`);
      }
      for (const p of [host!, guest!]) if (Number(p) < 1 || Number(p) > 65535) bad(`port ${p} is not 1 to 65535`);
      passtArgs.push(proto === "tcp" ? "-t" : "-u", `${addr === undefined ? "" : `${addr}/`}${host}:${guest}`);
    } else if (key === "t" || key === "u") {
      if (!PASST_PORTS.test(value)) bad(`${key}=${value}: not a passt port list (see passt --help, -${key})`);
      passtArgs.push(`-${key}`, value);
    } else {
      bad(`unknown option '${key}' (known: hostfwd, t, u)`);
    }
  }
  return { mode: "user", passtArgs };
}
