/** The launcher version, kept equal to deno.json. */
export const VERSION = "0.1.0";
