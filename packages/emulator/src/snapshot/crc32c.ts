/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of iSCSI, ext4 and
 * SCTP, over a snapshot file. Chosen over CRC-32 for its better Hamming distance at the
 * lengths we checksum, and over a cryptographic hash because the file is not a security
 * boundary (FT peers authenticate their link); it only has to catch truncation, torn writes
 * and bit rot.
 *
 * Slicing-by-16 over little-endian 32-bit words: four word loads and sixteen table lookups
 * per 16 bytes. On an idle core of this machine (Node 20) it ran at ~1.0 GB/s, against
 * ~0.9 GB/s for slicing-by-8 over words and ~0.55 GB/s over bytes; bench/snapshot.ts
 * prints its rate. A native SSE4.2 CRC (e.g. @node-rs/crc32) measured 3-4x faster in the
 * same conditions, if the checksum ever dominates a checkpoint.
 */

const POLY = 0x82f63b78;
const SLICES = 16;

/** TABLE[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLE = buildTable();

function buildTable(): Uint32Array {
  const t = new Uint32Array(SLICES * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < SLICES; k++) {
      const prev = t[(k - 1) * 256 + b];
      t[k * 256 + b] = (prev >>> 8) ^ t[prev & 0xff];
    }
  }
  return t;
}

/** Word loads assume the host's byte order is little-endian; otherwise bytes are used. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Continue a CRC-32C over `data` (pass the previous result as `crc` to checksum a file in
 * pieces; start with 0). Returns the unsigned 32-bit CRC.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const t = TABLE;
  let c = ~crc;
  let i = 0;
  const n = data.length;
  // Bytes up to the first 4-byte aligned address, so the bulk can go through a Uint32Array.
  while (i < n && ((data.byteOffset + i) & 3) !== 0) c = (c >>> 8) ^ t[(c ^ data[i++]) & 0xff];
  if (LITTLE_ENDIAN && n - i >= 16) {
    const words = new Uint32Array(data.buffer, data.byteOffset + i, (n - i) >>> 2);
    const blocks = words.length >>> 2;
    let w = 0;
    for (let k = 0; k < blocks; k++, w += 4) {
      const a = words[w] ^ c;
      const b = words[w + 1];
      const d = words[w + 2];
      const e = words[w + 3];
      c =
        t[0x0f00 + (a & 0xff)] ^ t[0x0e00 + ((a >>> 8) & 0xff)] ^ t[0x0d00 + ((a >>> 16) & 0xff)] ^ t[0x0c00 + (a >>> 24)] ^
        t[0x0b00 + (b & 0xff)] ^ t[0x0a00 + ((b >>> 8) & 0xff)] ^ t[0x0900 + ((b >>> 16) & 0xff)] ^ t[0x0800 + (b >>> 24)] ^
        t[0x0700 + (d & 0xff)] ^ t[0x0600 + ((d >>> 8) & 0xff)] ^ t[0x0500 + ((d >>> 16) & 0xff)] ^ t[0x0400 + (d >>> 24)] ^
        t[0x0300 + (e & 0xff)] ^ t[0x0200 + ((e >>> 8) & 0xff)] ^ t[0x0100 + ((e >>> 16) & 0xff)] ^ t[e >>> 24];
    }
    i += blocks << 4;
  }
  while (i < n) c = (c >>> 8) ^ t[(c ^ data[i++]) & 0xff];
  return ~c >>> 0;
}
