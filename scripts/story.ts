/*T:001 The code is meant to be read as a guided tour, like the original
 * launcher. Chapter comments carry a part letter and a number
 * (slash-star L:100 ... colon-star-slash); this script gathers them from
 * every source file and prints them in reading order: the launcher's story
 * (L) first, then its foundations (S: libc, K: KVM, V: virtio) and last the
 * tests and tools (T). Two chapters with the same number are an error. :*/

const ROOT = new URL("..", import.meta.url).pathname;
const PARTS: Record<string, string> = {
  L: "The Launcher",
  S: "Talking to the host: libc through FFI",
  K: "Talking to KVM",
  V: "Virtio",
  T: "Tests and tools",
};
const ORDER = Object.keys(PARTS);
const CHAPTER = /\/\*([A-Z]):(\d+)([\s\S]*?):\*\//g;
const SOURCE = /\.(ts|c|S)$/;

interface Chapter {
  part: string;
  number: number;
  file: string;
  text: string;
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(".") || e.name === "node_modules") continue;
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* sources(path);
    else if (SOURCE.test(e.name)) yield path;
  }
}

function clean(text: string): string {
  return text.split("\n").map((l) => l.replace(/^\s*\* ?/, "").trimEnd()).join("\n").trim();
}

const chapters: Chapter[] = [];
for await (const path of sources(ROOT.replace(/\/$/, ""))) {
  const text = await Deno.readTextFile(path);
  for (const m of text.matchAll(CHAPTER)) {
    chapters.push({ part: m[1]!, number: Number(m[2]), file: path.slice(ROOT.length), text: clean(m[3]!) });
  }
}

const seen = new Map<string, string>();
const problems: string[] = [];
for (const c of chapters) {
  const key = `${c.part}:${c.number}`;
  if (!(c.part in PARTS)) problems.push(`${c.file}: unknown part letter in ${key}`);
  const other = seen.get(key);
  if (other) problems.push(`${key} appears in both ${other} and ${c.file}`);
  seen.set(key, c.file);
}
if (problems.length) {
  console.error(`story: ${problems.join("\n       ")}`);
  Deno.exit(1);
}

if (Deno.args.includes("--check")) {
  console.log(`story: ${chapters.length} chapters, no duplicates`);
  Deno.exit(0);
}

chapters.sort((a, b) => ORDER.indexOf(a.part) - ORDER.indexOf(b.part) || a.number - b.number);
let part = "";
for (const c of chapters) {
  if (c.part !== part) {
    part = c.part;
    console.log(`\n=== ${PARTS[part]} ===\n`);
  }
  console.log(`[${c.part}:${c.number}] (${c.file})\n${c.text}\n`);
}
