/** JSON for run results, whose `rip` is a bigint (JSON.stringify alone throws on one): bigints become hex strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? `0x${v.toString(16)}` : v);
}
