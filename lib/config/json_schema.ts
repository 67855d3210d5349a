/*L:075 The JSON Schema is the key table again, in the form editors read
 * (a `# yaml-language-server: $schema=...` line at the top of a config file
 * turns on completion and checking). It is generated, never written by
 * hand: `deno task schema` rewrites schema/lguest-config.schema.json, and a
 * test fails when the committed file and the table disagree. What a schema
 * cannot say (that a path names a regular file, relative to the config)
 * is said in the descriptions. :*/

import { CONFIG, type KeyDef, type ObjectType, type ValueType } from "./keys.ts";

/** Where the committed schema lives, relative to the repository root. */
export const SCHEMA_PATH = "schema/lguest-config.schema.json";

type Json = { [key: string]: unknown };

/** The JSON Schema (draft 2020-12) for config files, built from the key table. */
export function configJsonSchema(): Json {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "lguest machine config",
    description: "A machine for `lguest --config=<file>` or `lguest <file>`. Command-line options override it; " +
      "memory and kernel may come from the command line instead.",
    ...object(CONFIG),
  };
}

function object(t: ObjectType): Json {
  const properties: Json = {};
  for (const key of t.keys) properties[key.name] = property(key);
  const required = t.keys.filter((k) => k.required).map((k) => k.name);
  const out: Json = { type: "object", additionalProperties: false, required, properties };
  if (t.oneKey) out.oneOf = t.keys.map((k) => ({ required: [k.name] }));
  return out;
}

function property(key: KeyDef): Json {
  const cli = key.cli === undefined ? "" : ` Command line: ${key.cli}.`;
  const out: Json = { description: `${key.doc}${cli}`, ...value(key.type) };
  if (key.default !== undefined) out.default = key.default;
  return out;
}

function value(t: ValueType): Json {
  switch (t.kind) {
    case "integer":
      return { type: "integer", minimum: t.minimum, maximum: t.maximum };
    case "boolean":
      return { type: "boolean" };
    case "enum":
      return { type: "string", enum: [...t.values] };
    case "file":
      return { type: "string", minLength: 1, $comment: "a regular file, relative to the config file" };
    case "tunnet":
      return {
        type: "string",
        pattern: "^(bridge:[A-Za-z0-9_.-]{1,15}|[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3})$",
      };
    case "net":
      return { type: "string", pattern: "^user(,(hostfwd|t|u)=[^,]+)*$" };
    case "words":
      return { oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] };
    case "list":
      return { type: "array", items: object(t.item) };
  }
}

/** The schema file's text: two-space JSON and a final newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

if (import.meta.main) {
  const root = new URL("../..", import.meta.url).pathname;
  await Deno.mkdir(`${root}schema`, { recursive: true });
  await Deno.writeTextFile(`${root}${SCHEMA_PATH}`, configJsonSchemaText());
  console.log(`wrote ${SCHEMA_PATH}`);
}
