// Verify mode, end to end: the primary sends its state digest with every k-th COMMIT and
// the secondary compares its own after applying the epoch. Over a workload with disk writes
// and network traffic both ways it must find no mismatch; with one RAM byte flipped on the
// secondary (the test hook FTX86_TEST_CORRUPT_SECONDARY) it must find one.
//
// The workload tests restore the post-boot state (128 MiB); one more boots the Debian guest
// from its kernel under FT with verify on (64 MiB, a digest every 10th checkpoint: about
// 30 s to the shell here, 105 s when the machine is loaded) and then runs the workload.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { OUT_DIR, POST_BOOT_GUEST_IP, arpResponder, freeUdpPort, readVersions } from './linux-guest.ts';
import { ConsoleObserver, FtProcess, FT_TEST_TIMING, makeKeyFile, startFtPair, startSecondary, protectedShell } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));

/** A digest of 128 MiB of RAM costs tens of ms: one every 5th checkpoint keeps the guest moving. */
const VERIFY_EVERY = '5';
const PEER_IP = [10, 0, 2, 2];
const PEER_MAC = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];

/** Disk writes (dd + sync), an ARP request answered from outside (a frame each way), a line. */
const WORKLOAD = 'for i in 1 2 3 4 5 6 7 8; do dd if=/dev/urandom of=/dev/vda bs=4096 seek=$((64+i)) count=1 conv=notrunc 2>/dev/null && sync && arping -c 1 -w 3 -I eth0 10.0.2.2 >/dev/null && echo "STEP $i ok"; done; echo WORKLOAD-DONE\n';

interface Stats { commits: number; verified: number; mismatches: number }

/** `untilMismatch`: the negative control runs no workload, only until the first mismatch (checkpoints go on while the guest idles). */
async function verifyRun(secondaryEnv: NodeJS.ProcessEnv = {}, untilMismatch = false) {
  const observer = new ConsoleObserver();
  const [guestPort, peerPort] = [await freeUdpPort(), await freeUdpPort()];
  let arpRequests = 0;
  const responder: Socket = arpResponder(peerPort, guestPort, PEER_IP, PEER_MAC);
  responder.on('message', () => { arpRequests++; });
  const pair = await startFtPair({
    observerPort: await observer.ready,
    common: ['--net', `udp:${guestPort}:127.0.0.1:${peerPort}`],
    primaryArgs: ['--ft-verify-every', VERIFY_EVERY],
    secondaryEnv,
  });
  try {
    await protectedShell(pair.primary, observer);
    if (untilMismatch) {
      await pair.secondary.waitEvent('ft-verify-mismatch', 60_000);
    } else {
      observer.type(WORKLOAD);
      await observer.waitFor('the workload', 90_000, () => (/^WORKLOAD-DONE\r?$/m.test(observer.all) ? true : undefined));
    }
    // The guest powers off: the primary commits its last epoch and parts; the secondary
    // logs its final statistics and exits without taking over.
    observer.type('poweroff -f\n');
    const [p, s] = await Promise.all([pair.primary.waitExit(60_000), pair.secondary.waitExit(60_000)]);
    const all = pair.secondary.events('ft-secondary-stats');
    const stats = all[all.length - 1] as unknown as Stats;
    return { observer, pair, stats, arpRequests, exits: [p, s] };
  } finally {
    pair.kill();
    observer.close();
    responder.close();
  }
}

describe.skipIf(!built)('FT verify mode on the Debian guest', () => {
  it('finds no mismatch over disk writes and network traffic both ways', async () => {
    const r = await verifyRun();
    const steps = [...r.observer.all.matchAll(/^STEP (\d) ok\r?$/gm)].length;
    expect(steps, r.observer.all.slice(-2000)).toBe(8);
    expect(r.arpRequests).toBeGreaterThanOrEqual(8);
    expect(r.exits.map((e) => e.code)).toEqual([0, 0]);
    expect(r.pair.secondary.events('ft-failover-start')).toEqual([]);
    expect(r.stats.verified, JSON.stringify(r.stats)).toBeGreaterThan(0);
    expect(r.stats.mismatches, r.pair.secondary.stderr.slice(-3000)).toBe(0);
    expect(r.pair.secondary.events('ft-verify-mismatch')).toEqual([]);
  }, 180_000);

  it('negative control: a RAM byte flipped on the secondary is reported as a mismatch', async () => {
    const r = await verifyRun({ FTX86_TEST_CORRUPT_SECONDARY: '3' }, true);
    expect(r.pair.secondary.events('ft-test-corrupt')).toHaveLength(1);
    expect(r.stats.mismatches, JSON.stringify(r.stats)).toBeGreaterThan(0);
    expect(r.pair.secondary.events('ft-verify-mismatch').length).toBeGreaterThan(0);
  }, 180_000);
});

describe.skipIf(!built)('FT verify mode over a boot', () => {
  it('a Debian guest booted from its kernel under FT, then the workload: no mismatch', async () => {
    const observer = new ConsoleObserver();
    const observerPort = await observer.ready;
    const [guestPort, peerPort] = [await freeUdpPort(), await freeUdpPort()];
    let arpRequests = 0;
    const responder = arpResponder(peerPort, guestPort, PEER_IP, PEER_MAC);
    responder.on('message', () => { arpRequests++; });
    const dir = mkdtempSync(join(tmpdir(), 'ftx86-ftboot-'));
    const key = makeKeyFile(dir);
    const [pdisk, sdisk] = [join(dir, 'p.img'), join(dir, 's.img')];
    writeFileSync(pdisk, Buffer.alloc(1 << 20, 0x5a));
    writeFileSync(sdisk, Buffer.alloc(1 << 20));
    const net = ['--net', `udp:${guestPort}:127.0.0.1:${peerPort}`];
    const { secondary, port } = await startSecondary({ key, disk: sdisk, observerPort, args: net });
    const versions = readVersions(OUT_DIR);
    const primary = new FtProcess('primary', [
      'run', '--kernel', join(OUT_DIR, 'bzImage'), '--initrd', join(OUT_DIR, 'initrd.cpio.gz'),
      '--append', `${versions.KERNEL_CMDLINE} ftx86.ip=${POST_BOOT_GUEST_IP}/24`, '--memory', '64M', '--disk', pdisk, ...net,
      '--ft', 'primary', '--peer', `127.0.0.1:${port}`, '--ft-key', key, '--ft-verify-every', '10',
      '--serial', `tcp:127.0.0.1:${observerPort}`, '--debugcon', 'none', ...FT_TEST_TIMING,
    ]);
    try {
      await observer.waitFor('the shell', 240_000, () => (/^FTX86-READY\r?$/m.test(observer.all) ? true : undefined));
      observer.type('\n');
      await observer.waitFor('shell prompt', 30_000, () => (/~ # /.test(observer.all) ? true : undefined));
      observer.type(WORKLOAD);
      await observer.waitFor('the workload', 120_000, () => (/^WORKLOAD-DONE\r?$/m.test(observer.all) ? true : undefined));
      observer.type('poweroff -f\n');
      const exits = await Promise.all([primary.waitExit(60_000), secondary.waitExit(60_000)]);
      expect(exits.map((e) => e.code)).toEqual([0, 0]);
      expect([...observer.all.matchAll(/^STEP (\d) ok\r?$/gm)].length).toBe(8);
      expect(arpRequests).toBeGreaterThanOrEqual(8);
      const stats = secondary.events('ft-secondary-stats').at(-1) as unknown as Stats;
      // A boot prints a lot: many epochs, each tenth verified, from the first kernel line on.
      expect(stats.verified, JSON.stringify(stats)).toBeGreaterThan(10);
      expect(stats.mismatches, secondary.stderr.slice(-3000)).toBe(0);
    } finally {
      primary.kill();
      secondary.kill();
      observer.close();
      responder.close();
    }
  }, 420_000);
});
