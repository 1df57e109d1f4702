// Turns zod's issues about a configuration into the sentences a user reads:
// the key path (and the variable, when the value came from one), what is
// allowed, and what was given. The sentences are protocols/issues.ts's, in a
// YAML file's words (a map is "key: value lines", .nan is .nan); what only a
// configuration has is here: which variable set a key or turned its section
// on, and what an empty section means. docs/configuration.md, Errors.

import type { z } from 'zod';
import { describeIssue, keyPath, sentenceMap, shownScalar, TYPE_NOUNS, type Issue, type KnownKeys, type Wording } from '../../protocols/issues.js';
import { ENV_OVERRIDES, type EnvOrigins } from './env.js';

export type { KnownKeys } from '../../protocols/issues.js';

const YAML_NOUNS: Readonly<Record<string, string>> = {
  ...TYPE_NOUNS,
  object: 'a map (key: value lines)',
  record: 'a map (key: value lines)',
  null: 'empty',
};

const YAML_WORDING: Wording = {
  key: 'key',
  topKeys: 'the sections are',
  nouns: YAML_NOUNS,
  unknownKeysTogether: false,
  given: (issue) => (issue.code === 'invalid_type' ? ` (got ${typed(issue.input, issue.expected)})` : shown((issue as { input?: unknown }).input)),
};

/** The error map of a configuration parse: a sentence for each issue the schema left without a message. */
export function issueMessage(known: KnownKeys): z.core.$ZodErrorMap {
  return sentenceMap(known, { nouns: YAML_NOUNS });
}

/** One line per problem, in the order zod found them; the same line twice is said once. */
export function describeIssues(issues: readonly Issue[], origins: EnvOrigins, known: KnownKeys): string[] {
  const lines = issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? describeIssue(issue, known, YAML_WORDING).map((problem) => `${problem.field}: ${problem.sentence}`)
      : [`${label(issue.path, origins)}: ${sentence(issue, known, origins)}`],
  );
  return [...new Set(lines)];
}

const keyOf = keyPath;

function label(path: readonly PropertyKey[], origins: EnvOrigins): string {
  const key = keyOf(path);
  const origin = origins.keys.get(key) ?? [...origins.keys].find(([prefix]) => key.startsWith(`${prefix}.`))?.[1];
  if (origin) return `${key} (from ${origin})`;
  return key || '(top level)';
}

function sentence(issue: Issue, known: KnownKeys, origins: EnvOrigins): string {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return required(issue.path, origins);
    if (issue.input === null && issue.expected === 'object') {
      const key = keyOf(issue.path);
      return `is empty (nothing under it but comments, which YAML reads as null); delete the line or write ${key.split('.').pop()}: {}`;
    }
  }
  return describeIssue(issue, known, YAML_WORDING)[0]?.sentence ?? issue.message;
}

/** A missing key; when a variable brought its section into being, say which, and how to set the key. */
function required(path: readonly PropertyKey[], origins: EnvOrigins): string {
  const section = keyOf(path.slice(0, -1));
  const creator = origins.sections.get(section) ?? [...origins.sections].find(([created]) => section.startsWith(`${created}.`))?.[1];
  if (!creator) return 'is required';
  const key = keyOf(path);
  const variable = Object.entries(ENV_OVERRIDES).find(([, { path }]) => path.join('.') === key)?.[0];
  return `is required, because ${creator} turns ${section} on; set ${key} in the file${variable ? ` or ${variable}` : ''}`;
}

/** What was given where another type belongs: `the string "16"`, `a list`, `.nan`. */
function typed(input: unknown, expected: string): string {
  if (input === null) return 'an empty value';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a map';
  if (typeof input === 'string') {
    const quoted = shownScalar(input);
    const numeric = (expected === 'number' || expected === 'int') && input.trim() !== '' && Number.isFinite(Number(input));
    const boolean = expected === 'boolean' && /^(true|false)$/i.test(input);
    return `the string ${quoted}${numeric ? '; write numbers without quotes' : boolean ? '; write true or false without quotes' : ''}`;
  }
  return scalar(input);
}

function shown(input: unknown): string {
  if (input === undefined || input === null || typeof input === 'object' || typeof input === 'function') return '';
  return ` (got ${scalar(input)})`;
}

/** A scalar as YAML would write it: .nan and .inf rather than JSON's null. */
function scalar(input: unknown): string {
  if (typeof input === 'number' && !Number.isFinite(input)) return Number.isNaN(input) ? '.nan' : input > 0 ? '.inf' : '-.inf';
  return shownScalar(input);
}
