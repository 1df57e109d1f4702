// A program that logs as the node does and exits: test/unit/log.test.ts runs
// it with stdout on a pipe and on a pseudo-terminal to see what `auto` picks.
// Usage: fixture-log.ts <format>

import { actorLogger, createLogger, type LogFormat } from '../../src/log.js';

const format = (process.argv[2] ?? 'auto') as LogFormat;
const root = createLogger({ level: 'info', format });
actorLogger(root, 'n1/shards/partition-0').info({ shard: 0 }, 'sealed 3 records');
root.fatal('last words before exit');
process.exit(0);
