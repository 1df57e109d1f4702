// Zod's issues as the sentences a user reads: the field's dotted path, what
// is allowed (the type with its bounds, the values of an enum, the fields a
// map takes) and what was given. A message written in a schema stands; for
// every other issue `sentenceMap`, passed to zod as a parse's error map,
// writes the sentence, so no raw zod text ("Invalid option: expected one of
// ...", "received NaN") reaches a user. `describeIssue` then puts each
// issue's field in front and what was given behind. Requests, records and
// actor messages use it as it is; the config and price-file loaders in
// src/ with their own words for a file's keys and values.

import type { z } from 'zod';
import { isCleanText } from './text.js';

export type Issue = z.core.$ZodIssue;
type RawIssue = z.core.$ZodRawIssue;

/**
 * The keys each object that had an unknown key allows, kept by the error map:
 * a finished issue no longer carries its schema. One per parse.
 */
export type KnownKeys = WeakMap<object, readonly string[]>;

/** How a type is named in a sentence. */
export const TYPE_NOUNS: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  bigint: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map',
  record: 'a map',
  null: 'null',
};

/** The words of one kind of input: the protocol's fields, or a file's keys. */
export interface Wording {
  /** What one key of a map is called: `field` (protocol), `key` (a YAML file). */
  key: string;
  /** What introduces the keys allowed at the top: `the fields are`, `the sections are`. */
  topKeys: string;
  /** Type names, where the input's own syntax has better words (YAML: `a map (key: value lines)`). */
  nouns: Readonly<Record<string, string>>;
  /** Unknown keys of one map: one sentence each (a file's list of problems), or one sentence for all (a protocol error). */
  unknownKeysTogether: boolean;
  /** What was given, as it follows a sentence: ` (got "abc")`, or '' when it is better left out. */
  given(issue: Issue): string;
}

export const PROTOCOL_WORDING: Wording = {
  key: 'field',
  topKeys: 'the fields are',
  nouns: TYPE_NOUNS,
  unknownKeysTogether: true,
  given: givenValue,
};

/**
 * One problem: the dotted path of the field at fault ('' for the top), what
 * the line starts with when that is not the field (the map of several unknown
 * keys), and the sentence that follows.
 */
export interface Problem {
  field: string;
  label?: string;
  sentence: string;
}

export function keyPath(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

export function typeNoun(type: string, nouns: Readonly<Record<string, string>> = TYPE_NOUNS): string {
  return nouns[type] ?? TYPE_NOUNS[type] ?? type;
}

/** The error map of a parse: a sentence for each issue the schema left without a message. */
export function sentenceMap(known: KnownKeys, options: { nouns?: Readonly<Record<string, string>> } = {}): z.core.$ZodErrorMap {
  const nouns = options.nouns ?? TYPE_NOUNS;
  return (issue: RawIssue) => rawSentence(issue, known, nouns);
}

/**
 * A schema's own words for a value of the wrong type, and only for that:
 * `z.object(shape, { error: wrongType('must be a map of ...') })`. A plain
 * string would also stand for the object's unknown keys, which then could
 * not be listed nor matched to the key they were meant to be.
 */
export function wrongType(message: string): z.core.$ZodErrorMap {
  return (issue) => (issue.code === 'invalid_type' ? message : undefined);
}

function rawSentence(issue: RawIssue, known: KnownKeys, nouns: Readonly<Record<string, string>>): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${typeRule(issue.expected, issue.inst, nouns)}`;
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${String(issue.values[0])}` : `must be one of ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return bound(issue.origin, issue.minimum, issue.inclusive !== false, 'least');
    case 'too_big':
      return bound(issue.origin, issue.maximum, issue.inclusive !== false, 'most');
    case 'invalid_format':
      return formatRule(issue);
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    case 'unrecognized_keys': {
      const shape = (issue.inst as { shape?: unknown } | undefined)?.shape;
      if (issue.input !== null && typeof issue.input === 'object' && shape !== null && typeof shape === 'object') known.set(issue.input, Object.keys(shape));
      return `unknown ${issue.keys.length === 1 ? 'key' : 'keys'}`;
    }
    case 'invalid_union':
      return unionRule(issue, nouns);
    case 'invalid_key':
      return issue.issues[0]?.message ?? 'is not an allowed key';
    case 'invalid_element':
      return 'has an item that is not allowed';
    default:
      return 'is not allowed';
  }
}

/** "a whole number from 1 to 1000", "a list of user_id, model", from the schema the issue came from. */
function typeRule(expected: string, inst: unknown, nouns: Readonly<Record<string, string>>): string {
  if (expected === 'never') return 'left out';
  const def = (inst as { _zod?: { def?: Record<string, unknown> } } | undefined)?._zod?.def;
  if ((expected === 'number' || expected === 'int') && def !== undefined) return numberRule(def, expected === 'int');
  if (expected === 'array' && def !== undefined) {
    const values = enumValues((def.element as { _zod?: { def?: Record<string, unknown> } } | undefined)?._zod?.def);
    if (values !== undefined) return `a list of ${values.join(', ')}`;
  }
  return typeNoun(expected, nouns);
}

interface NumberCheckDef {
  check?: string;
  value?: number | bigint;
  inclusive?: boolean;
  format?: string;
}

function numberRule(def: Record<string, unknown>, intExpected: boolean): string {
  const checks = [def as NumberCheckDef, ...((def.checks as { _zod: { def: NumberCheckDef } }[] | undefined) ?? []).map((check) => check._zod.def)];
  let whole = intExpected;
  let lower: { value: string; inclusive: boolean } | undefined;
  let upper: { value: string; inclusive: boolean } | undefined;
  for (const check of checks) {
    if (check.check === 'number_format' && check.format?.includes('int')) whole = true;
    if (check.check === 'greater_than' && check.value !== undefined) lower = { value: String(check.value), inclusive: check.inclusive !== false };
    if (check.check === 'less_than' && check.value !== undefined) upper = { value: String(check.value), inclusive: check.inclusive !== false };
  }
  const noun = whole ? 'a whole number' : 'a number';
  if (lower?.inclusive && upper?.inclusive) return `${noun} from ${lower.value} to ${upper.value}`;
  const sides = [lower && (lower.inclusive ? `at least ${lower.value}` : `above ${lower.value}`), upper && (upper.inclusive ? `at most ${upper.value}` : `below ${upper.value}`)];
  const rule = sides.filter((side) => side !== undefined).join(' and ');
  return rule ? `${noun}, ${rule}` : noun;
}

function enumValues(def: Record<string, unknown> | undefined): string[] | undefined {
  if (def?.type !== 'enum' || def.entries === null || typeof def.entries !== 'object') return undefined;
  return Object.values(def.entries as Record<string, unknown>).map(String);
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

function formatRule(issue: z.core.$ZodRawIssue<z.core.$ZodIssueInvalidStringFormat>): string {
  const { format } = issue;
  if (format === 'regex' && issue.pattern) return `must match the pattern ${issue.pattern}`;
  const fixed = issue as { prefix?: string; suffix?: string; includes?: string };
  if (format === 'starts_with' && fixed.prefix !== undefined) return `must start with ${JSON.stringify(fixed.prefix)}`;
  if (format === 'ends_with' && fixed.suffix !== undefined) return `must end with ${JSON.stringify(fixed.suffix)}`;
  if (format === 'includes' && fixed.includes !== undefined) return `must contain ${JSON.stringify(fixed.includes)}`;
  return `must be a valid ${format}`;
}

/** "must be a number or a string", from what each alternative expected; a discriminator's allowed values. */
function unionRule(issue: z.core.$ZodRawIssue<z.core.$ZodIssueInvalidUnion>, nouns: Readonly<Record<string, string>>): string {
  const options = (issue as { options?: unknown }).options;
  if (Array.isArray(options) && options.length > 0) return options.length === 1 ? `must be ${String(options[0])}` : `must be one of ${options.map(String).join(', ')}`;
  const expected = issue.errors.map((issues) => issues.find((inner) => inner.code === 'invalid_type' && inner.path.length === 0));
  if (expected.length > 0 && expected.every((inner) => inner !== undefined)) {
    const types = [...new Set(expected.map((inner) => typeNoun((inner as z.core.$ZodIssueInvalidType).expected, nouns)))];
    return `must be ${types.slice(0, -1).join(', ')}${types.length > 1 ? ' or ' : ''}${types[types.length - 1]}`;
  }
  return 'matches none of the forms allowed here';
}

/**
 * The problems of one finished issue: one, or for unknown keys one per key
 * (or one for all of them, as the wording says), each with its field.
 * `subject` names the value parsed (`the body`) in a sentence about it as a
 * whole that does not name it yet (`must be a map`).
 */
export function describeIssue(issue: Issue, known: KnownKeys, wording: Wording = PROTOCOL_WORDING, subject?: string): Problem[] {
  if (issue.code === 'unrecognized_keys') return unknownKeys(issue, known, wording);
  const field = keyPath(issue.path);
  if (!field && subject !== undefined) {
    return describeIssue(issue, known, wording).map((problem) => (/^(must|is) /.test(problem.sentence) ? { ...problem, sentence: `${subject} ${problem.sentence}` } : problem));
  }
  // Parsed with reportInput, so only an absent value has no input; a schema's own message for a wrong type is not the word for a missing one.
  if (issue.code === 'invalid_type' && issue.input === undefined && field) return [{ field, sentence: 'is required' }];
  // A bad key of a map says what is wrong with the key, which the map's own message (about its type) does not.
  if (issue.code === 'invalid_key') return [{ field, sentence: issue.issues[0]?.message ?? issue.message }];
  return [{ field, sentence: `${issue.message}${wording.given(issue)}` }];
}

/** A problem as one line: `field: sentence`, or the sentence alone at the top. */
export function problemLine(problem: Problem): string {
  const label = problem.label ?? problem.field;
  return label ? `${label}: ${problem.sentence}` : problem.sentence;
}

/** The problem as seen from `at` (`patch`): its field and label under it. A sentence at the top already names its subject. */
export function problemAt(problem: Problem, at: string): Problem {
  const under = (path: string) => (path ? `${at}.${path}` : at);
  const moved: Problem = { field: under(problem.field), sentence: problem.sentence };
  if (problem.label !== undefined) moved.label = problem.label ? under(problem.label) : '';
  else if (!problem.field) moved.label = '';
  return moved;
}

function unknownKeys(issue: z.core.$ZodIssueUnrecognizedKeys, known: KnownKeys, wording: Wording): Problem[] {
  const section = keyPath(issue.path);
  const allowed = issue.input !== null && typeof issue.input === 'object' ? known.get(issue.input) : undefined;
  const at = (key: string) => (section ? `${section}.${key}` : key);
  const listed = allowed ? ` (${section ? `${section} takes` : wording.topKeys} ${allowed.length > 0 ? allowed.join(', ') : 'none'})` : '';
  const problems: Problem[] = [];
  const unmatched: string[] = [];
  for (const key of issue.keys) {
    const close = allowed ? closestKey(key, allowed) : undefined;
    if (close !== undefined) problems.push({ field: at(key), sentence: `unknown ${wording.key}; did you mean ${at(close)}?` });
    else if (wording.unknownKeysTogether) unmatched.push(key);
    else problems.push({ field: at(key), sentence: `unknown ${wording.key}${listed}` });
  }
  if (unmatched.length === 1) problems.push({ field: at(unmatched[0]!), sentence: `unknown ${wording.key}${listed}` });
  if (unmatched.length > 1) {
    problems.push({ field: at(unmatched[0]!), label: section, sentence: `unknown ${wording.key}s ${unmatched.join(', ')}${listed}` });
  }
  return problems;
}

/** The allowed key a typo most likely meant: the same letters ignoring case and '-'/'_', or at most two edits away. */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const plain = (text: string) => text.toLowerCase().replace(/-/g, '_');
  const same = allowed.find((candidate) => plain(candidate) === plain(key));
  if (same) return same;
  // A name without its unit or qualifier: cost for cost_usd, latency for latency_ms.
  const longer = allowed.filter((candidate) => plain(candidate).startsWith(`${plain(key)}_`));
  if (longer.length === 1) return longer[0];
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

/**
 * What was given, for the end of a sentence: a scalar always (quoted if a
 * string, clipped), a list or map only when its type is the problem. Text
 * that is not clean (control characters, bidirectional overrides) is never
 * echoed; a record key is not either, as the path already holds it.
 */
export function givenValue(issue: Issue): string {
  const { input } = issue as { input?: unknown };
  if (issue.code === 'custom' && issue.params?.[SAID_GIVEN] === true) return '';
  if (issue.code === 'invalid_key' || issue.code === 'unrecognized_keys' || input === undefined || typeof input === 'function') return '';
  if (input === null || typeof input === 'object') {
    if (issue.code !== 'invalid_type') return '';
    return ` (got ${input === null ? 'null' : Array.isArray(input) ? 'a list' : input instanceof Uint8Array ? 'binary data' : 'a map'})`;
  }
  if (typeof input === 'string' && !isCleanText(input)) return '';
  return ` (got ${shownScalar(input)})`;
}

/**
 * The `params` key of a custom issue whose message is a whole sentence from
 * another validator, with what was given already said: nothing is added.
 */
export const SAID_GIVEN = 'said_given';

/** A scalar as a sentence quotes it: strings in JSON quotes and clipped, NaN and Infinity as such. */
export function shownScalar(input: unknown): string {
  if (typeof input === 'string') return clip(JSON.stringify(input));
  if (typeof input === 'bigint') return `${input}`;
  return clip(String(input));
}

export function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
