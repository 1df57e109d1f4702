// Parses cluster.yml's text into plain data. A syntax error becomes a
// problem that points at the line and column it is on, as
// `<file>:<line>:<column>: YAML syntax error: ...`, followed by that line and
// a caret. An unclosed quote or bracket is reported where it opens (the
// parser notices it only where the text ends), and an error the parser
// derives from another at the same place is not repeated.

import { isCollection, isMap, isScalar, LineCounter, parseDocument, visit, type Document, type YAMLError } from 'yaml';
import { ConfigError } from './error.js';

interface Place {
  offset: number;
  message: string;
}

export function parseYaml(text: string, source: string): Record<string, unknown> {
  const lines = new LineCounter();
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter: lines });
  if (document.errors.length > 0) {
    const places = document.errors.map((error) => placeOf(error, document));
    const seen = new Set<number>();
    const unique = places.filter((place) => !seen.has(place.offset) && seen.add(place.offset));
    throw new ConfigError(
      source,
      unique.map((place) => pointAt(text, lines, source, place.offset, `YAML syntax error: ${place.message}`)),
    );
  }
  const value = toPlain(document, text, lines, source);
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(source, ['the top level must be a map of sections (node, cluster, transport, ...)']);
  return value as Record<string, unknown>;
}

/** Where an error is, and what it says; an unclosed quote or flow collection points at its opening. */
function placeOf(error: YAMLError, document: Document): Place {
  const offset = error.pos[0];
  const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  if (error.code === 'DUPLICATE_KEY') {
    let key: string | undefined;
    visit(document, (_key, node) => {
      if (isScalar(node) && node.range?.[0] === offset) key = String(node.value);
    });
    if (key !== undefined) return { offset, message: `the key ${key} appears twice in the same map` };
  }
  const unclosed = error.code === 'MISSING_CHAR' || error.code === 'BAD_INDENT';
  if (unclosed) {
    let opening: Place | undefined;
    visit(document, (_key, node) => {
      if (isScalar(node) && node.range?.[1] === offset && (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE')) {
        opening = { offset: node.range[0], message: `${message} (the quoted value that starts here is not closed)` };
      } else if (isCollection(node) && node.range?.[1] === offset && node.flow === true) {
        opening = { offset: node.range[0], message: `${message} (the ${isMap(node) ? '{' : '['} here is not closed)` };
      }
    });
    if (opening) return opening;
  }
  return { offset, message };
}

/** The document as plain data; an alias without its anchor is a problem at the alias. */
function toPlain(document: Document, text: string, lines: LineCounter, source: string): unknown {
  try {
    return document.toJS();
  } catch (error) {
    const problems: string[] = [];
    visit(document, {
      Alias(_key, node) {
        if (node.resolve(document) === undefined) {
          problems.push(pointAt(text, lines, source, node.range?.[0] ?? 0, `YAML error: the alias *${node.source} refers to no anchor &${node.source} set before it`));
        }
      },
    });
    if (problems.length === 0) problems.push(`${source}: YAML error: ${(error as Error).message}`);
    throw new ConfigError(source, problems);
  }
}

/** `file:line:col: message`, then the line itself and a caret under the column. */
function pointAt(text: string, lines: LineCounter, source: string, offset: number, message: string): string {
  const { line, col } = lines.linePos(offset);
  const lineText = (text.split(/\r?\n/)[line - 1] ?? '').slice(0, 200).replace(/\t/g, '→');
  const gutter = String(line);
  const pad = ' '.repeat(gutter.length);
  const excerpt = lineText.trim() === '' ? '' : `\n${gutter} | ${lineText}\n${pad} | ${' '.repeat(Math.max(0, col - 1))}^`;
  return `${source}:${line}:${col}: ${message}${excerpt}`;
}
