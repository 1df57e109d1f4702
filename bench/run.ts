// `npm run bench` entry: the thread pool is sized as the CLI sizes it (see
// bin/usage-tracker.ts) before anything starts it.

process.env.UV_THREADPOOL_SIZE ??= '16';
await import('./report.js');
