#!/usr/bin/env node
// Entry point. Each shard's write-ahead log waits on fdatasync in libuv's
// thread pool; its default of 4 threads makes 16 shards queue behind each
// other. The size must be set before the pool starts, so the program itself
// is loaded only after.

process.env.UV_THREADPOOL_SIZE ??= '16';
await import('./cli.js');
