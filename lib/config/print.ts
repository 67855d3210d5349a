/*L:074 `--print-config` turns whatever the command line and any config file
 * added up to into a file: every key written out, defaults included, paths
 * made absolute (a relative path means something else once the file is
 * moved), in the key table's order. Reading that file back gives the same
 * machine, which the tests check key by key. :*/

import { Document } from "yaml";
import { CONFIG } from "./keys.ts";
import { type EffectiveConfig, fromFields } from "./fields.ts";

/**
 * The effective configuration as a YAML config file.
 * @param config the fields a run would use
 * @param cwd the directory relative command-line paths are relative to (default: the current one)
 */
export function printConfig(config: EffectiveConfig, cwd: string = Deno.cwd()): string {
  const values = fromFields(config, cwd);
  const ordered: Record<string, unknown> = {};
  for (const key of CONFIG.keys) if (values[key.name] !== undefined) ordered[key.name] = values[key.name];
  const doc = new Document(ordered);
  doc.commentBefore = " lguest machine config (lguest --print-config); boot it with: lguest <this file>";
  return doc.toString({ lineWidth: 0 });
}
