// `npm run bench`: every benchmark of DESIGN §9 that exists so far, each
// beside a baseline measured in the same run, printed as one table.
// BENCH_SECONDS sets the measured time per row (default 3).

import { arch, cpus, totalmem } from 'node:os';
import { kernelBench } from './kernel.js';
import { renderRows, type Row } from './measure.js';

const natsUrl = process.env.USAGE_TRACKER_NATS_URL ?? 'nats://127.0.0.1:4222';
const durationMs = Math.round(Number(process.env.BENCH_SECONDS ?? 3) * 1000);

const rows: Row[] = [];
process.stderr.write(`bench: NATS ${natsUrl}, ${durationMs / 1000} s a row, ${cpus().length} cores ${arch()}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}\n`);
rows.push(...(await kernelBench({ natsUrl, warmupMs: 1000, durationMs, concurrencies: [1, 64] })));
process.stdout.write(`${renderRows(rows)}\n`);
