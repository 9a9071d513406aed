/**
 * A copy-on-write disk: a base image that is only ever read, and the blocks the guest wrote,
 * kept in memory. This is how a VM state holds its disk exactly (vm-state.ts).
 *
 * Why an overlay from the start rather than a log of writes into the image: a state names
 * the disk it was saved against by size and SHA-256, and holds every block written since.
 * If the guest wrote the image itself, the image would stop matching its own hash as soon
 * as the guest wrote once more after the save (a run that continues after --save-at), and
 * the saved state could no longer be restored from it; an image changed under a state is
 * worse than no state. With the base read-only, a state restores from the same image as
 * many times as wanted, runs that restore it cannot disturb one another, and a determinism
 * check can start two runs from the same disk. The price: the guest's writes live in host
 * memory and in the saved state, not in the image (like `qemu -snapshot`).
 *
 * Writes are kept at block granularity (4 KiB when the disk size allows): a partial block
 * write reads the rest of the block from the base first.
 */
import { createHash } from 'node:crypto';
import type { BlockBackend } from './block-backend.ts';

/** What a saved state records of the base image: enough to refuse any other image. */
export interface DiskBaseIdentity {
  /** Bytes of the image. */
  bytes: number;
  /** SHA-256 of the whole image, lowercase hex. */
  sha256: string;
}

const HASH_CHUNK = 1024 * 1024;
const MAX_BLOCK = 4096;
const MIN_BLOCK = 512;

/** SHA-256 of everything a backend holds, read in 1 MiB pieces. */
export function hashBlockBackend(backend: BlockBackend): string {
  const h = createHash('sha256');
  const buf = new Uint8Array(HASH_CHUNK);
  for (let off = 0; off < backend.size; off += HASH_CHUNK) {
    const piece = buf.subarray(0, Math.min(HASH_CHUNK, backend.size - off));
    backend.read(off, piece);
    h.update(piece);
  }
  return h.digest('hex');
}

export class CowBlockBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly = false;
  /** The overlay's block size: the largest power of two up to 4 KiB that divides the disk. */
  readonly blockSize: number;
  /**
   * The disk as a state describes it: whole blocks. An image whose size is not a whole
   * number of 512-byte sectors has a tail the guest cannot address (virtio-blk reports
   * whole sectors), which is never written and so never part of a state.
   */
  readonly diskBytes: number;
  readonly base: DiskBaseIdentity;
  private readonly blocks = new Map<number, Uint8Array>();

  /**
   * @param baseImage read only, never written
   * @param sha256 the image's hash if already known (else it is computed now, reading all of it)
   */
  constructor(private readonly baseImage: BlockBackend, sha256?: string) {
    this.size = baseImage.size;
    const sectors = Math.floor(baseImage.size / MIN_BLOCK);
    let bs = MAX_BLOCK;
    while (bs > MIN_BLOCK && (sectors * MIN_BLOCK) % bs !== 0) bs >>= 1;
    this.blockSize = bs;
    this.diskBytes = sectors * MIN_BLOCK;
    this.base = { bytes: baseImage.size, sha256: sha256 ?? hashBlockBackend(baseImage) };
  }

  read(offset: number, into: Uint8Array): void {
    checkRange(this.size, offset, into.length);
    const bs = this.blockSize;
    let done = 0;
    while (done < into.length) {
      const at = offset + done;
      const block = Math.floor(at / bs);
      const inBlock = at - block * bs;
      const n = Math.min(bs - inBlock, into.length - done);
      const own = this.blocks.get(block);
      if (own) {
        into.set(own.subarray(inBlock, inBlock + n), done);
      } else {
        // Runs of blocks the guest never wrote are read from the base in one call.
        let end = block + 1;
        while (end * bs < offset + into.length && !this.blocks.has(end)) end++;
        const len = Math.min(end * bs, offset + into.length) - at;
        this.baseImage.read(at, into.subarray(done, done + len));
        done += len;
        continue;
      }
      done += n;
    }
  }

  write(offset: number, data: Uint8Array): void {
    checkRange(this.diskBytes, offset, data.length);
    const bs = this.blockSize;
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const block = Math.floor(at / bs);
      const inBlock = at - block * bs;
      const n = Math.min(bs - inBlock, data.length - done);
      let own = this.blocks.get(block);
      if (!own) {
        own = new Uint8Array(bs);
        if (n < bs) this.baseImage.read(block * bs, own);
        this.blocks.set(block, own);
      }
      own.set(data.subarray(done, done + n), inBlock);
      done += n;
    }
  }

  /** The overlay is memory: there is nothing to make durable (see the file comment). */
  flush(): void {}

  /** Blocks written since the base, ascending, and their bytes (copied). */
  writtenBlocks(): { blockNumbers: number[]; data: Uint8Array } {
    const blockNumbers = [...this.blocks.keys()].sort((a, b) => a - b);
    const data = new Uint8Array(blockNumbers.length * this.blockSize);
    blockNumbers.forEach((b, i) => data.set(this.blocks.get(b)!, i * this.blockSize));
    return { blockNumbers, data };
  }

  /** Make the overlay exactly these blocks (a restore): block i is data[i * blockSize, ...). */
  replaceBlocks(blockNumbers: readonly number[], data: Uint8Array): void {
    const bs = this.blockSize;
    if (data.length !== blockNumbers.length * bs) throw new RangeError(`${blockNumbers.length} blocks need ${blockNumbers.length * bs} bytes, got ${data.length}`);
    for (const b of blockNumbers) {
      if (!Number.isSafeInteger(b) || b < 0 || (b + 1) * bs > this.diskBytes) throw new RangeError(`block ${b} is outside the disk of ${this.diskBytes / bs} blocks`);
    }
    this.blocks.clear();
    blockNumbers.forEach((b, i) => this.blocks.set(b, data.slice(i * bs, (i + 1) * bs)));
  }

  get writtenBlockCount(): number {
    return this.blocks.size;
  }
}

function checkRange(size: number, offset: number, len: number): void {
  if (!(Number.isInteger(offset) && offset >= 0 && offset + len <= size)) {
    throw new RangeError(`block access [${offset}, +${len}) outside the disk of ${size} bytes`);
  }
}
