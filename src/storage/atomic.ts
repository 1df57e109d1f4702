// Durable file replacement: write a temp file, fdatasync it, rename it over
// the target, fsync the directory. After a crash the target is either the
// old file or the new one, whole.

import { basename, dirname, join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeWhole } from './wal.js';

export async function writeFileAtomic(fs: FileSystem, path: string, data: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.tmp`);
  const handle = await fs.open(temp, 'write');
  try {
    await writeWhole(handle, data, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, path);
  await fs.syncDir(dir);
}
