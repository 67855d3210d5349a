/*T:231 The README's library example is run as it is written there. The
 * first TypeScript block under "As a library" is copied, byte for byte,
 * into an empty directory beside a mod.ts that only re-exports ours, so
 * its `./mod.ts`, `bzImage` and `disk.img` resolve there. With no bzImage,
 * create() throws after the example has opened a disk (with its threads),
 * an entropy device and a console: the example must print one line and
 * exit 1 by itself within 2 s of it, which it can only do if create()
 * closed the devices it was handed. :*/

import assert from "node:assert/strict";
import { exampleDir, libraryExample, runExample } from "./helpers/readme_example.ts";

const EXIT_WITHIN_MS = 2000;

Deno.test("README: the library example is found, and it builds a machine with devices", async () => {
  const code = await libraryExample();
  assert.match(code, /^import \{[^}]*Machine[^}]*\} from "\.\/mod\.ts";$/m);
  assert.match(code, /Machine\.create\(/);
  assert.match(code, /BlockDevice\.open\("disk\.img"\)/);
});

Deno.test("README: the library example exits by itself with one line when create() throws", async () => {
  const dir = await exampleDir();
  try {
    const { code, stdout, stderr, context, lingerMs: linger } = await runExample(
      dir,
      { stream: "stderr", text: "\n" },
      30_000,
    );
    assert.equal(code, 1, context);
    assert.match(stderr, /^lguest: [^\n]*bzImage[^\n]*\n$/, context);
    assert.equal(stdout, "", context);
    assert.ok(linger < EXIT_WITHIN_MS, `the example lived ${linger} ms after its error line\n${context}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
