// ConfigError: every problem found in a configuration, one entry each, with
// the file (or `defaults`) it came from. A problem is one line, except a YAML
// syntax error, which is followed by the offending line and a caret.

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((problem) => `  - ${problem.replace(/\n/g, '\n    ')}`).join('\n')}`);
  }
}
