// Fixture for lock-zombie.test.ts: takes the data directory lock of argv[2],
// prints "locked", and holds it until killed.

import { lockDataDir } from '../../src/storage/data-dir-lock.js';

await lockDataDir(process.argv[2]!);
process.stdout.write('locked\n');
setInterval(() => undefined, 60_000);
