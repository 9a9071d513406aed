/**
 * Block backends: where a disk controller's sectors live on the host. Synchronous by
 * design: a request completes inside the guest's queue notify, so a checkpoint never has
 * to capture an I/O in flight.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

export interface BlockBackend {
  /** Capacity in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** Fill `into` with the bytes at [offset, offset + into.length). Throws on a host I/O error. */
  read(offset: number, into: Uint8Array): void;
  /** Store `data` at `offset`. The backend must not keep a reference to `data`. */
  write(offset: number, data: Uint8Array): void;
  /** Make every completed write durable. */
  flush(): void;
}

function checkRange(size: number, offset: number, len: number): void {
  if (!(Number.isInteger(offset) && offset >= 0 && offset + len <= size)) {
    throw new RangeError(`block access [${offset}, +${len}) outside the disk of ${size} bytes`);
  }
}

/** A raw disk image file: byte n of the file is byte n of the disk. */
export class RawFileBlockBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private fd: number | undefined;

  constructor(readonly path: string, options: { readOnly?: boolean } = {}) {
    this.readOnly = options.readOnly ?? false;
    let fd: number;
    try {
      fd = openSync(path, this.readOnly ? 'r' : 'r+');
    } catch (e) {
      throw new Error(describeOpenError(path, e, this.readOnly));
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error(`disk image ${path} is not a regular file`);
      this.size = st.size;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.fd = fd;
  }

  read(offset: number, into: Uint8Array): void {
    checkRange(this.size, offset, into.length);
    const fd = this.open();
    let done = 0;
    while (done < into.length) {
      const n = readSync(fd, into, done, into.length - done, offset + done);
      if (n === 0) {
        // The file shrank under us: what is gone reads as zeros, like a sparse hole.
        into.fill(0, done);
        return;
      }
      done += n;
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw new Error(`disk image ${this.path} is read-only`);
    checkRange(this.size, offset, data.length);
    const fd = this.open();
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
  }

  flush(): void {
    if (!this.readOnly) fsyncSync(this.open());
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private open(): number {
    if (this.fd === undefined) throw new Error(`disk image ${this.path} is closed`);
    return this.fd;
  }
}

function describeOpenError(path: string, e: unknown, readOnly: boolean): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return `disk image ${path} does not exist`;
    case 'EACCES':
    case 'EPERM':
      return `disk image ${path}: permission denied${readOnly ? '' : ' (open it read-only if it is not meant to be written)'}`;
    case 'EROFS':
      return `disk image ${path} is on a read-only file system (open it read-only)`;
    case 'EISDIR':
      return `disk image ${path} is a directory`;
    default:
      return `disk image ${path} cannot be opened: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** A disk in host memory (tests, scratch disks). */
export class MemoryBlockBackend implements BlockBackend {
  readonly bytes: Uint8Array;
  readonly readOnly: boolean;
  flushes = 0;

  /** @param contents the disk size in bytes (zero-filled), or the initial contents (copied). */
  constructor(contents: number | Uint8Array, options: { readOnly?: boolean } = {}) {
    this.bytes = typeof contents === 'number' ? new Uint8Array(contents) : new Uint8Array(contents);
    this.readOnly = options.readOnly ?? false;
  }

  get size(): number { return this.bytes.length; }

  read(offset: number, into: Uint8Array): void {
    checkRange(this.size, offset, into.length);
    into.set(this.bytes.subarray(offset, offset + into.length));
  }

  write(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw new Error('memory disk is read-only');
    checkRange(this.size, offset, data.length);
    this.bytes.set(data, offset);
  }

  flush(): void {
    this.flushes++;
  }
}
