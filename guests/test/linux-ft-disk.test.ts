// Fault tolerance and the disk, end to end: real primary and secondary ftx86 processes on
// the Debian guest (restored from the post-boot state), a real TCP console, SIGKILL.
//
// Disk writes are replicated state: the guest writes numbered 4 KiB blocks to /dev/vda with
// dd and sync and prints each one once it is written; the primary dies; every block the
// observer saw reported must be on the secondary's own image file, with its content.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT_DIR, POST_BOOT_DISK } from './linux-guest.ts';
import { ConsoleObserver, startFtPair, protectedShell } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));

const BLOCK = 4096;
/** Block i goes to 4 KiB block FIRST_BLOCK + i of /dev/vda. */
const FIRST_BLOCK = 16;

/**
 * Block i holds "blk i\n" over and over (busybox yes | head -c), written with dd and
 * flushed with sync; "WROTE i" follows only once both returned.
 */
const BLOCK_LOOP = `i=0; while [ $i -lt 500 ]; do i=$((i+1)); yes "blk $i" | head -c ${BLOCK} | dd of=/dev/vda bs=${BLOCK} seek=$((${FIRST_BLOCK}+i)) conv=notrunc 2>/dev/null && sync && echo "WROTE $i"; done\n`;

function blockContent(i: number): Buffer {
  const line = `blk ${i}\n`;
  return Buffer.from(line.repeat(Math.ceil(BLOCK / line.length)).slice(0, BLOCK), 'latin1');
}

function wrote(text: string): number[] {
  return [...text.matchAll(/^WROTE (\d+)\r?$/gm)].map((m) => Number(m[1]));
}

describe.skipIf(!built)('FT on the Debian guest: disk writes across failover', () => {
  it('every block the guest reported written before the primary died is on the secondary\'s image, with its content', async () => {
    const observer = new ConsoleObserver();
    const pair = await startFtPair({ observerPort: await observer.ready });
    try {
      await protectedShell(pair.primary, observer);
      observer.type(BLOCK_LOOP);
      const killAfter = 5 + Math.floor(Math.random() * 10);
      await observer.waitFor(`block ${killAfter}`, 60_000, () => (wrote(observer.all).length >= killAfter ? true : undefined));
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
      pair.primary.kill('SIGKILL');
      await pair.primary.waitExit(10_000);
      const seenBeforeKill = wrote(observer.connections[0].text);
      await pair.secondary.waitEvent('ft-failover', 30_000);
      // The secondary's guest carries on writing blocks, reported on its own connection.
      const last = Math.max(...seenBeforeKill);
      await observer.waitFor('blocks written after failover', 60_000, () => {
        const c = observer.connections[1];
        return c && wrote(c.text).some((n) => n > last + 3) ? true : undefined;
      });
      const seenAfter = wrote(observer.connections[1].text);
      pair.secondary.kill('SIGKILL');
      await pair.secondary.waitExit(10_000);

      const image = readFileSync(pair.secondaryDisk);
      expect(image.length).toBe(POST_BOOT_DISK.bytes);
      // The full sync replaced the image's stand-in header with the primary's disk.
      expect(image.subarray(0, 25).toString('latin1')).toBe('ftx86 virtio-blk pattern\n');
      expect(seenBeforeKill.length).toBeGreaterThanOrEqual(killAfter);
      const wrong: number[] = [];
      for (const i of [...seenBeforeKill, ...seenAfter]) {
        const at = (FIRST_BLOCK + i) * BLOCK;
        if (!image.subarray(at, at + BLOCK).equals(blockContent(i))) wrong.push(i);
      }
      expect(wrong, `blocks missing or wrong on the secondary's image (seen before the kill: ${seenBeforeKill.join(',')})`).toEqual([]);
      // Numbering on the secondary continues where the committed state was: no block the
      // observer saw is missing from the sequence.
      const all = [...new Set([...seenBeforeKill, ...seenAfter])].sort((a, b) => a - b);
      expect(all).toEqual(all.map((_, k) => k + 1));
    } finally {
      pair.kill();
      observer.close();
    }
  }, 180_000);
});
