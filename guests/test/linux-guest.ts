/** What the Debian guest tests share: the build's versions file and known disk contents. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Reads out/versions.env (KEY=VALUE lines, values optionally in double quotes). */
export function readVersions(outDir: string): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const line of readFileSync(join(outDir, 'versions.env'), 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(?:"(.*)"|(.*))$/.exec(line);
    if (match) versions[match[1]] = match[2] ?? match[3];
  }
  return versions;
}

/** A disk whose every byte is known: a text header, then an xorshift32 stream from `seed`. */
export function diskPattern(size: number, seed: number): Buffer {
  const disk = Buffer.alloc(size);
  let state = seed;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    disk[i] = state & 0xff;
  }
  disk.write('ftx86 virtio-blk pattern\n', 0, 'latin1');
  return disk;
}
