// `usage-tracker ingest FILE`: sends a JSON-lines file to a running node in
// batches, with a progress bar, and sums up stored, duplicate and rejected.
// A batch ends at --batch records or where one more record would take the
// request over the payload limit; a record too large to travel even alone
// is rejected by itself. A rejected record is reported with its line number
// and reason; any rejection makes the command exit 1 so that scripts notice.

import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SingleBar } from 'cli-progress';
import { encode } from '../../protocols/codec.js';
import { CliError, withClient, type ConnectionOptions, type NodeClient } from '../client.js';
import { InFlight } from '../in-flight.js';

export interface IngestOptions extends ConnectionOptions {
  batch: string;
  concurrency: string;
  timeout: string;
  quiet?: boolean;
}

export interface IngestSummary {
  lines: number;
  stored: number;
  duplicate: number;
  rejected: number;
  /** Records the node answered for (stored, duplicate or rejected by it). */
  acknowledged: number;
  problems: string[];
  /** Set when the node stopped answering: the run ended there, and what was sent last got no answer. */
  stopped?: { reason: string; unanswered: number };
}

const PROBLEMS_SHOWN = 20;
/** What `{ records: [...] }` adds around the records themselves in msgpack (map, key, array header), with room to spare. */
const ENVELOPE_BYTES = 64;

interface Line {
  line: number;
  record: unknown;
}

function positive(name: string, text: string, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new CliError(`${name} must be a whole number from 1 to ${max}, got ${text}`);
  return value;
}

export async function ingestFile(file: string, options: IngestOptions): Promise<IngestSummary> {
  let bytesTotal: number;
  try {
    bytesTotal = statSync(file).size;
  } catch {
    throw new CliError(`cannot read ${file}`);
  }
  const batchSize = positive('--batch', options.batch, 1000);
  const concurrency = positive('--concurrency', options.concurrency, 64);
  const timeoutMs = positive('--timeout', options.timeout, 600_000);
  return withClient(options, timeoutMs, async (client) => {
    const summary: IngestSummary = { lines: 0, stored: 0, duplicate: 0, rejected: 0, acknowledged: 0, problems: [] };
    const bar = options.quiet || !process.stderr.isTTY ? undefined : new SingleBar({ format: 'ingest [{bar}] {percentage}% | {value}/{total} bytes | stored {stored} duplicate {duplicate} rejected {rejected}' });
    bar?.start(bytesTotal, 0, { stored: 0, duplicate: 0, rejected: 0 });
    const input = createReadStream(file);
    const lines = createInterface({ input, crlfDelay: Infinity });
    const inFlight = new InFlight(concurrency);
    const bodyBytesMax = client.payloadBytesMax - ENVELOPE_BYTES;
    let batch: Line[] = [];
    let batchBytes = 0;
    let unanswered = 0;
    const problem = (text: string) => {
      summary.rejected++;
      if (summary.problems.length < PROBLEMS_SHOWN) summary.problems.push(text);
    };
    const flush = async (items: Line[]) => {
      unanswered += items.length;
      await inFlight.add(
        send(client, items, summary, problem, timeoutMs).then(() => {
          unanswered -= items.length;
          bar?.update(input.bytesRead, { stored: summary.stored, duplicate: summary.duplicate, rejected: summary.rejected });
        }),
      );
    };
    for await (const text of lines) {
      summary.lines++;
      if (text.trim() === '') continue;
      let record: unknown;
      try {
        record = JSON.parse(text);
      } catch {
        problem(`line ${summary.lines}: not valid JSON`);
        continue;
      }
      const recordBytes = encode(record).byteLength;
      if (recordBytes > bodyBytesMax) {
        problem(`line ${summary.lines}: E_TOO_LARGE: the record is ${recordBytes} bytes encoded; one request carries at most ${client.payloadBytesMax}`);
        continue;
      }
      if (batch.length >= batchSize || batchBytes + recordBytes > bodyBytesMax) {
        const items = batch;
        batch = [];
        batchBytes = 0;
        await flush(items);
        if (inFlight.failed) break;
      }
      batch.push({ line: summary.lines, record });
      batchBytes += recordBytes;
    }
    if (!inFlight.failed && batch.length > 0) await flush(batch);
    await inFlight.settle();
    const failed = inFlight.failed;
    if (failed) {
      // The node is gone (no responders, a closed connection) or not answering: what is still in flight would only wait out its timeout.
      input.destroy();
      await client.abandon();
      summary.stopped = { reason: failed.error instanceof Error ? failed.error.message : String(failed.error), unanswered };
    }
    bar?.update(failed ? input.bytesRead : bytesTotal, { stored: summary.stored, duplicate: summary.duplicate, rejected: summary.rejected });
    bar?.stop();
    return summary;
  });
}

async function send(
  client: NodeClient,
  items: Line[],
  summary: IngestSummary,
  problem: (text: string) => void,
  timeoutMs: number,
): Promise<void> {
  const reply = await client.call<{ results?: { index: number; status: string; error?: { code: string; message: string } }[] }>(
    'ingest',
    { records: items.map((item) => item.record) },
    timeoutMs,
  );
  if (!reply.ok || !reply.results) {
    for (const item of items) problem(`line ${item.line}: ${reply.error?.code ?? 'error'}: ${reply.error?.message ?? 'refused'}`);
    summary.acknowledged += items.length;
    return;
  }
  for (const result of reply.results) {
    if (result.status === 'stored') summary.stored++;
    else if (result.status === 'duplicate') summary.duplicate++;
    else problem(`line ${items[result.index]?.line ?? '?'}: ${result.error?.code ?? 'rejected'}: ${result.error?.message ?? ''}`);
  }
  summary.acknowledged += reply.results.length;
}

export function printSummary(summary: IngestSummary): void {
  const read = summary.stopped ? `${summary.lines} lines read before the node stopped answering` : `${summary.lines} lines`;
  process.stdout.write(`${summary.stored} stored, ${summary.duplicate} duplicate, ${summary.rejected} rejected (${read})\n`);
  for (const text of summary.problems) process.stdout.write(`  ${text}\n`);
  if (summary.rejected > summary.problems.length) process.stdout.write(`  ... and ${summary.rejected - summary.problems.length} more\n`);
}

/** The one line a run that lost its node ends with, or undefined. */
export function stoppedLine(summary: IngestSummary): string | undefined {
  const stopped = summary.stopped;
  if (!stopped) return undefined;
  const unanswered = stopped.unanswered > 0 ? `; ${stopped.unanswered} records sent got no answer (they may be stored: sending the file again is safe, duplicates are recognised by id)` : '';
  return `the node stopped answering after ${summary.acknowledged} records were acknowledged: ${stopped.reason}${unanswered}`;
}
