/*T:823 The committed JSON Schema is the key table's, byte for byte (run
 * `deno task schema` after changing lib/config/keys.ts), and it describes
 * what the parser accepts: every example under examples/ is a valid config
 * once the files it names exist, and its keys are the schema's. :*/

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { configJsonSchema, configJsonSchemaText, SCHEMA_PATH } from "../../lib/config/json_schema.ts";
import { CONFIG } from "../../lib/config/keys.ts";
import { parseConfig } from "../../lib/config/parse.ts";
import { fixture } from "./fixture.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

Deno.test("config schema: the committed file is the generated one", async () => {
  const committed = await Deno.readTextFile(`${ROOT}${SCHEMA_PATH}`);
  assert.equal(committed, configJsonSchemaText(), `${SCHEMA_PATH} is stale: run deno task schema`);
  const schema = configJsonSchema() as { properties: Record<string, unknown>; required: string[] };
  assert.deepEqual(Object.keys(schema.properties), CONFIG.keys.map((k) => k.name));
  assert.deepEqual(schema.required, ["memory", "kernel"]);
});

Deno.test("config schema: every example is valid, and uses only the schema's keys", async () => {
  const schema = configJsonSchema() as { properties: Record<string, { enum?: string[] }> };
  const examples = [...Deno.readDirSync(`${ROOT}examples`)].map((e) => e.name).filter((n) => /\.ya?ml$/.test(n));
  assert.ok(examples.includes("demo.yaml") && examples.includes("linux.yaml"), `examples: ${examples}`);
  await using fx = await fixture();
  for (const name of examples) {
    const text = await Deno.readTextFile(`${ROOT}examples/${name}`);
    const raw = parseYaml(text) as Record<string, unknown>;
    for (const key of Object.keys(raw)) assert.ok(key in schema.properties, `${name}: '${key}' is in the schema`);
    // The files an example names are built, not committed: stand-ins with those names, next to a copy.
    for (const key of ["kernel", "initrd"]) if (typeof raw[key] === "string") await fx.write(raw[key], "stand-in\n");
    const config = parseConfig(text, `${fx.dir}/${name}`);
    assert.equal(config.kernel, `${fx.dir}/${raw.kernel}`, `${name}: its kernel is relative to it`);
    assert.ok((config.memoryMiB ?? 0) > 0);
  }
});
