/*T:050 `deno task compile` makes the single `lguest` binary for hosts
 * without Deno. The Workers (the vCPU's, the disk's queue thread and I/O
 * helpers, the network card's data path: bundle.ts's one list) are loaded
 * by URL at run time, so they must be named with --include or the binary
 * would not contain them. deno
 * compile fetches its runtime base (denort) from Deno's download host;
 * where that is unreachable, point DENORT_BIN at a denort binary you
 * have. :*/

import { WORKERS } from "./bundle.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const out = Deno.args[0] ?? `${ROOT}dist/lguest`;
const args = [
  "compile",
  "--allow-all",
  ...WORKERS.flatMap((w) => ["--include", `${ROOT}${w}`]),
  "--output",
  out,
  `${ROOT}cli.ts`,
];
console.error(
  `compile: deno ${args.join(" ")}${Deno.env.get("DENORT_BIN") ? ` (DENORT_BIN=${Deno.env.get("DENORT_BIN")})` : ""}`,
);
const r = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "inherit" }).output();
if (!r.success) {
  console.error("compile: failed (deno compile needs its denort base binary: network access, or DENORT_BIN)");
  Deno.exit(1);
}
console.error(`compile: wrote ${out}`);
