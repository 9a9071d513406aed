// The block compiler (packages/emulator/src/jit) on a real kernel. The Debian guest, restored
// from its post-boot state with FTX86_JIT set low, so that most of what runs is compiled
// code (the kernel, busybox, fork and exec, page faults in compiled blocks), runs /bench.sh
// (whose gzip round trip compares real bytes) and a checksum the host computes too, then
// powers off; ftx86 reports how much ran compiled.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SerialSession } from './serial-session.ts';
import { FTX86, arpResponder, freeUdpPort, postBootState } from './linux-guest.ts';

const PEER_MAC = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const PEER_IP = [10, 0, 2, 2];

describe('the Debian guest under the block compiler', { timeout: 20 * 60_000 }, () => {
  const workDir = mkdtempSync(join(tmpdir(), 'ftx86-jit-'));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  it('runs /bench.sh and a checksum as the host computes it, most of it compiled', async () => {
    const state = await postBootState();
    const [guestPort, peerPort] = [await freeUdpPort(), await freeUdpPort()];
    const arp = arpResponder(peerPort, guestPort, PEER_IP, PEER_MAC);
    const guest = SerialSession.spawn(FTX86, [...state.restoreArgs, '--net', `udp:${guestPort}:127.0.0.1:${peerPort}`, '--serial', 'stdio'], {
      name: 'ftx86 with the block compiler',
      env: { ...process.env, FTX86_JIT: '500' },
      transcriptPath: join(workDir, 'console.log'),
    });
    try {
      const bench = await guest.run('/bench.sh', 15 * 60_000);
      expect(bench.output).toMatch(/FTX86-BENCH total=\S+ scale=1 status=ok/);
      const sum = await guest.run('seq 1 50000 | md5sum', 5 * 60_000);
      let seq = '';
      for (let i = 1; i <= 50000; i++) seq += `${i}\n`;
      expect(sum.output.split(/\s+/)[0]).toBe(createHash('md5').update(seq).digest('hex'));
      guest.sendLine('poweroff -f');
      await guest.waitForExit(120_000);
      const m = /(\d+) of (\d+) instructions ran compiled/.exec(guest.stderr);
      expect(m, guest.stderr).not.toBeNull();
      const ran = Number(m![2]) - Number(state.instructions);
      expect(Number(m![1])).toBeGreaterThan(0.5 * ran);
    } finally {
      await guest.close();
      arp.close();
    }
  });
});
