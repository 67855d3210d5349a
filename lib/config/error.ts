/** What a config file that cannot be used throws; in a file of its own so cli.ts can know it without loading YAML. */

/** A config file that cannot be used: one `<file>:<line>:<col>: <problem>` line per problem. */
export class ConfigError extends Error {
  /** The problems, one line each, in document order. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}
