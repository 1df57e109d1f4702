// Options that mean something only beside another one. An option the
// command would ignore is a usage error, never silently dropped: commander's
// Option.conflicts covers "not with", and `needs` here covers "only with"
// (`query --limit` pages the records list, so it needs `--records`). Both
// fail before anything is sent, in commander's one-line form and exit code.

import type { Command } from 'commander';

/** Refuses `option` unless `companion` is given too (attribute names: `limit`, `records`). */
export function needs(command: Command, option: string, companion: string): Command {
  return command.hook('preAction', (_, action) => {
    if (given(action, option) && !given(action, companion)) {
      action.error(`error: ${flagsOf(action, option)} cannot be used without ${flagsOf(action, companion)}`, { code: 'usage-tracker.companionMissing' });
    }
  });
}

function given(command: Command, name: string): boolean {
  return command.getOptionValue(name) !== undefined && command.getOptionValueSource(name) !== 'default';
}

function flagsOf(command: Command, name: string): string {
  const option = command.options.find((candidate) => candidate.attributeName() === name);
  if (!option) throw new Error(`no option ${name} on ${command.name()}`);
  return `option '${option.flags}'`;
}
