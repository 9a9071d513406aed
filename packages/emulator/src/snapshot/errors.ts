/**
 * The one error a snapshot is refused with. A state arrives from a file, a migration
 * stream or an FT peer, so every way it can be wrong has its own code and a one-line
 * message that says where and what (DESIGN.md, Snapshot: "refused with a clear error,
 * never half-applied"). Decoding throws nothing else, whatever the input bytes.
 */

export type SnapshotErrorCode =
  | 'truncated'
  | 'trailing-bytes'
  | 'checksum'
  | 'bad-magic'
  | 'format-version'
  | 'flags'
  | 'unknown-section'
  | 'duplicate-section'
  | 'missing-section'
  | 'section-version'
  | 'section-layout'
  | 'value-encoding'
  | 'unencodable'
  | 'target-mismatch'
  /** A PC state's disk image is not the one it was saved against (vm-state.ts). */
  | 'disk-mismatch'
  | 'device-rejected';

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';

  constructor(readonly code: SnapshotErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function truncated(offset: number, needed: number, what: string): SnapshotError {
  return new SnapshotError('truncated', `snapshot truncated: expected ${needed} more bytes at offset ${offset} (${what})`);
}

/** Printable form of a name read from the file (it may hold any bytes). */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}...` : name);
}
