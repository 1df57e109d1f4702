// The environment a bench node runs with: its own data directory and subject
// prefix, the NATS transport, no logging.

import { join } from 'node:path';

export function benchEnv(dataDir: string, prefix: string, natsUrl: string): Record<string, string> {
  return {
    USAGE_TRACKER_DATA_DIR: dataDir,
    // Backups and the WAL archive (on by default) inside the bench's own directory, removed with it, never in the working directory.
    USAGE_TRACKER_BACKUP_DIR: join(dataDir, 'bench-backups'),
    USAGE_TRACKER_SUBJECT_PREFIX: prefix,
    USAGE_TRACKER_NODE_ID: 'bench',
    USAGE_TRACKER_TRANSPORT: 'nats',
    USAGE_TRACKER_NATS_URL: natsUrl,
    USAGE_TRACKER_LOG_LEVEL: 'silent',
  };
}
