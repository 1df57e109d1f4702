// Turns zod's issues about a configuration into the sentences a user reads:
// the key path (and the variable, when the value came from one), what is
// allowed, and what was given. The messages written in the schema stand;
// for every other issue `issueMessage`, passed to zod as the parse's error
// map, writes the sentence, so no raw zod text ("Invalid option: expected
// one of ...", "received NaN") reaches a user. docs/configuration.md, Errors.

import type { z } from 'zod';
import { ENV_OVERRIDES, type EnvOrigins } from './env.js';

type RawIssue = z.core.$ZodRawIssue;
type Issue = z.core.$ZodIssue;

/** What an object schema allows, kept by the error map for the unknown keys it reports. */
export type KnownKeys = WeakMap<object, string[]>;

const TYPE_NOUNS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map (key: value lines)',
  null: 'empty',
};

const noun = (type: string) => TYPE_NOUNS[type] ?? type;

/** The error map of a configuration parse: a sentence for each issue the schema left without a message. */
export function issueMessage(known: KnownKeys): z.core.$ZodErrorMap {
  return (issue: RawIssue) => {
    switch (issue.code) {
      case 'invalid_type':
        return issue.input === undefined ? 'is required' : `must be ${noun(issue.expected)}`;
      case 'invalid_value':
        return issue.values.length === 1 ? `must be ${String(issue.values[0])}` : `must be one of ${issue.values.map(String).join(', ')}`;
      case 'too_small':
        return bound(issue.origin, issue.minimum, issue.inclusive !== false, 'least');
      case 'too_big':
        return bound(issue.origin, issue.maximum, issue.inclusive !== false, 'most');
      case 'invalid_format':
        return issue.format === 'regex' && issue.pattern ? `must match the pattern ${issue.pattern}` : `must be a valid ${issue.format}`;
      case 'not_multiple_of':
        return `must be a multiple of ${String(issue.divisor)}`;
      case 'unrecognized_keys': {
        const shape = (issue.inst as { shape?: unknown } | undefined)?.shape;
        if (issue.input !== null && typeof issue.input === 'object' && shape !== null && typeof shape === 'object') known.set(issue.input, Object.keys(shape));
        return 'unknown key';
      }
      case 'invalid_union':
        return unionMessage(issue.errors);
      case 'invalid_key':
        return 'has a key that is not allowed';
      case 'invalid_element':
        return 'has an item that is not allowed';
      default:
        return 'is not allowed';
    }
  };
}

function bound(origin: string, limit: number | bigint, inclusive: boolean, side: 'least' | 'most'): string {
  const value = String(limit);
  if (origin === 'string') {
    if (side === 'least' && value === '1') return 'must not be empty';
    return `must be at ${side} ${value} characters long`;
  }
  if (origin === 'array' || origin === 'set') return `must list at ${side} ${value} ${value === '1' ? 'item' : 'items'}`;
  if (!inclusive) return `must be ${side === 'least' ? 'more' : 'less'} than ${value}`;
  return `must be at ${side} ${value}`;
}

/** "must be a number or a string", from what each alternative expected. */
function unionMessage(alternatives: Issue[][]): string {
  const expected = alternatives.map((issues) => issues.find((issue) => issue.code === 'invalid_type' && issue.path.length === 0));
  if (expected.every((issue) => issue !== undefined)) {
    const nouns = [...new Set(expected.map((issue) => noun((issue as z.core.$ZodIssueInvalidType).expected)))];
    return `must be ${nouns.slice(0, -1).join(', ')}${nouns.length > 1 ? ' or ' : ''}${nouns[nouns.length - 1]}`;
  }
  return 'matches none of the forms allowed here';
}

/** One line per problem, in the order zod found them; the same line twice is said once. */
export function describeIssues(issues: readonly Issue[], origins: EnvOrigins, known: KnownKeys): string[] {
  const lines = issues.flatMap((issue) => (issue.code === 'unrecognized_keys' ? unknownKeys(issue, known) : [`${label(issue.path, origins)}: ${sentence(issue, origins)}`]));
  return [...new Set(lines)];
}

function keyOf(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

function label(path: readonly PropertyKey[], origins: EnvOrigins): string {
  const key = keyOf(path);
  const origin = origins.keys.get(key) ?? [...origins.keys].find(([prefix]) => key.startsWith(`${prefix}.`))?.[1];
  if (origin) return `${key} (from ${origin})`;
  return key || '(top level)';
}

function sentence(issue: Issue, origins: EnvOrigins): string {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return required(issue.path, origins);
    if (issue.input === null && issue.expected === 'object') {
      const key = keyOf(issue.path);
      return `is empty (nothing under it but comments, which YAML reads as null); delete the line or write ${key.split('.').pop()}: {}`;
    }
    return `${issue.message} (got ${typed(issue.input, issue.expected)})`;
  }
  return `${issue.message}${shown(issue.input)}`;
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

function unknownKeys(issue: z.core.$ZodIssueUnrecognizedKeys, known: KnownKeys): string[] {
  const section = keyOf(issue.path);
  const allowed = issue.input !== null && typeof issue.input === 'object' ? known.get(issue.input) : undefined;
  return issue.keys.map((key) => {
    const name = section ? `${section}.${key}` : key;
    if (!allowed) return `${name}: unknown key`;
    const close = closest(key, allowed);
    if (close) return `${name}: unknown key; did you mean ${section ? `${section}.${close}` : close}?`;
    return `${name}: unknown key (${section ? `${section} takes` : 'the sections are'} ${allowed.join(', ')})`;
  });
}

/** The allowed key a typo most likely meant: same letters ignoring case and '-'/'_', or at most two edits away. */
function closest(key: string, allowed: string[]): string | undefined {
  const plain = (text: string) => text.toLowerCase().replace(/-/g, '_');
  const same = allowed.find((candidate) => plain(candidate) === plain(key));
  if (same) return same;
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance = editDistance(plain(key), plain(candidate));
    if (distance <= Math.min(2, Math.floor(candidate.length / 3)) && (!best || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

/** What was given where another type belongs: `the string "16"`, `a list`, `.nan`. */
function typed(input: unknown, expected: string): string {
  if (input === null) return 'an empty value';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a map';
  if (typeof input === 'string') {
    const quoted = clip(JSON.stringify(input));
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
  if (typeof input === 'string') return clip(JSON.stringify(input));
  return String(input);
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
