// The filesystem port: the operations storage needs, with the durability
// calls (fdatasync, directory fsync) explicit. `faultyFileSystem` wraps any
// implementation and injects errors (EIO on fsync, ENOSPC on write, ...) so
// tests can check that nothing is acknowledged that was not synced.

import { constants, promises as fsp } from 'node:fs';

export interface FileHandlePort {
  write(data: Uint8Array, position?: number): Promise<number>;
  read(buffer: Uint8Array, position: number): Promise<number>;
  datasync(): Promise<void>;
  size(): Promise<number>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * `append-dsync` opens with O_DSYNC: each write returns only once its data is
 * on stable storage, as if followed by fdatasync, in one system call instead
 * of two (PostgreSQL's wal_sync_method open_datasync).
 */
export type OpenMode = 'append' | 'append-dsync' | 'read' | 'write';

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandlePort>;
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  /** fsync a directory so that a rename or create inside it survives a crash. */
  syncDir(path: string): Promise<void>;
  /** A second name for an existing file (a hard link; same filesystem). Fails with EEXIST if `to` exists. */
  link(from: string, to: string): Promise<void>;
  /** Removes an empty directory. */
  rmdir(path: string): Promise<void>;
}

const flagsOf: Record<OpenMode, number> = {
  append: constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND,
  'append-dsync': constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC,
  read: constants.O_RDONLY,
  write: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC,
};

export const nodeFileSystem: FileSystem = {
  async open(path, mode) {
    const handle = await fsp.open(path, flagsOf[mode], 0o644);
    return {
      write: async (data, position) => (await handle.write(data, 0, data.byteLength, position ?? null)).bytesWritten,
      read: async (buffer, position) => (await handle.read(buffer, 0, buffer.byteLength, position)).bytesRead,
      datasync: () => handle.datasync(),
      size: async () => (await handle.stat()).size,
      truncate: (length) => handle.truncate(length),
      close: () => handle.close(),
    };
  },
  readFile: async (path) => new Uint8Array(await fsp.readFile(path)),
  writeFile: (path, data) => fsp.writeFile(path, data),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  mkdir: async (path) => {
    await fsp.mkdir(path, { recursive: true });
  },
  readdir: (path) => fsp.readdir(path),
  link: (from, to) => fsp.link(from, to),
  rmdir: (path) => fsp.rmdir(path),
  exists: async (path) => {
    try {
      await fsp.access(path);
      return true;
    } catch {
      return false;
    }
  },
  async syncDir(path) {
    const handle = await fsp.open(path, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

export type FaultOperation = 'open' | 'write' | 'datasync' | 'rename' | 'writeFile' | 'syncDir' | 'unlink' | 'readFile' | 'link';

/** Decides, per call, whether an operation fails and with which errno code. */
export type FaultPlan = (operation: FaultOperation, path: string) => string | undefined;

export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
  readonly code: string;
  constructor(code: string, operation: FaultOperation, path: string) {
    super(`${code}: injected fault on ${operation} ${path}`);
    this.code = code;
  }
}

export function faultyFileSystem(inner: FileSystem, plan: FaultPlan): FileSystem {
  const check = (operation: FaultOperation, path: string) => {
    const code = plan(operation, path);
    if (code !== undefined) throw new InjectedFault(code, operation, path);
  };
  return {
    ...inner,
    async open(path, mode) {
      check('open', path);
      const handle = await inner.open(path, mode);
      return {
        ...handle,
        write: async (data, position) => {
          check('write', path);
          // An O_DSYNC write is a write and a sync: a planned sync failure fails it.
          if (mode === 'append-dsync') check('datasync', path);
          return handle.write(data, position);
        },
        datasync: async () => {
          check('datasync', path);
          return handle.datasync();
        },
      };
    },
    readFile: async (path) => (check('readFile', path), inner.readFile(path)),
    writeFile: async (path, data) => (check('writeFile', path), inner.writeFile(path, data)),
    rename: async (from, to) => (check('rename', to), inner.rename(from, to)),
    unlink: async (path) => (check('unlink', path), inner.unlink(path)),
    link: async (from, to) => (check('link', to), inner.link(from, to)),
    syncDir: async (path) => (check('syncDir', path), inner.syncDir(path)),
  };
}
