/**
 * A digest of a whole VM state, to show two machines hold the same state (primary and
 * secondary after a checkpoint, a restore against the saved machine, two deterministic
 * runs). It is recomputed from the bytes every time, never from dirty tracking: the digest
 * exists to catch exactly the page that dirty tracking missed.
 *
 * SHA-256 (node:crypto) over a framed stream, so no two different states share an input:
 *   "ftx86-state-digest/1\0"
 *   "cpu\0" u64 length, the CPU bytes with cache bookkeeping fields zeroed
 *   "ram\0" u64 length, all of RAM
 *   per device, sorted by name: "dev\0" u64 name length, name, u32 version,
 *                                u64 length, the state's canonical tagged encoding
 *   per disk, sorted by name:   "disk\0" u64 name length, name, u32 block size,
 *                                u32 block count, then per block, ascending: u64 number,
 *                                the block's bytes
 *
 * Sorting makes the digest independent of the order a board lists its devices and a disk
 * overlay its blocks; the value encoding (value.ts) is canonical already.
 */
import { createHash, type Hash } from 'node:crypto';
import { encodeValue } from './value.ts';

export interface DigestInput {
  ram: Uint8Array;
  cpu: Uint8Array;
  /**
   * Byte ranges of `cpu` that are caches of other state or its bookkeeping, hashed as
   * zeros (machine-state.ts cpuCacheFields: the TLB fill count and the dirty count).
   */
  cpuCacheFields?: readonly { offset: number; length: number }[];
  devices: readonly { name: string; version: number; state: unknown }[];
  /** Written disk blocks (block i of the list is data[i * blockSize, ...)). */
  disks?: readonly { name: string; blockSize: number; blockNumbers: readonly number[]; data: Uint8Array }[];
}

/** RAM is fed to the hash in slices, so no one call holds a multi-hundred-MiB argument. */
const RAM_CHUNK = 4 * 1024 * 1024;

const utf8 = new TextEncoder();

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  const view = new DataView(b.buffer);
  view.setUint32(0, v % 0x1_0000_0000, true);
  view.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
  return b;
}

function tag(h: Hash, t: string, length: number): void {
  h.update(utf8.encode(`${t}\0`));
  h.update(u64(length));
}

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** SHA-256 of the state as lowercase hex. */
export function stateDigest(input: DigestInput): string {
  const h = createHash('sha256');
  h.update(utf8.encode('ftx86-state-digest/1\0'));

  let cpu = input.cpu;
  if (input.cpuCacheFields?.length) {
    cpu = new Uint8Array(input.cpu);
    for (const f of input.cpuCacheFields) cpu.fill(0, f.offset, f.offset + f.length);
  }
  tag(h, 'cpu', cpu.length);
  h.update(cpu);

  tag(h, 'ram', input.ram.length);
  for (let off = 0; off < input.ram.length; off += RAM_CHUNK) {
    h.update(input.ram.subarray(off, Math.min(off + RAM_CHUNK, input.ram.length)));
  }

  for (const d of byName(input.devices)) {
    const name = utf8.encode(d.name);
    tag(h, 'dev', name.length);
    h.update(name);
    h.update(u32(d.version));
    const state = encodeValue(d.state, d.name);
    h.update(u64(state.length));
    h.update(state);
  }

  for (const d of byName(input.disks ?? [])) {
    const name = utf8.encode(d.name);
    tag(h, 'disk', name.length);
    h.update(name);
    h.update(u32(d.blockSize));
    h.update(u32(d.blockNumbers.length));
    const order = d.blockNumbers.map((_, i) => i).sort((a, b) => d.blockNumbers[a] - d.blockNumbers[b]);
    for (const i of order) {
      h.update(u64(d.blockNumbers[i]));
      h.update(d.data.subarray(i * d.blockSize, (i + 1) * d.blockSize));
    }
  }
  return h.digest('hex');
}
