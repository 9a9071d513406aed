// Re-protect: after a failover the survivor protects the guest again. A pair runs the
// Debian guest (restored from the post-boot state) printing numbered records; the secondary
// was started with --ft-reprotect pointing at a third process, a new secondary. The primary
// dies; the survivor takes over and syncs to the third; then the survivor dies too and the
// third takes over. Across all three console connections the records must never contradict
// each other and have no gap.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { OUT_DIR } from './linux-guest.ts';
import { ConsoleObserver, RECORD_LOOP, checkRecords, records, secondaryDiskFor, startFtPair, startSecondary, type FtProcess } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));

async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe.skipIf(!built)('FT on the Debian guest: re-protect after a failover', () => {
  it('the survivor syncs to a new secondary, which takes over in turn: no record contradicted or missing', async () => {
    const observer = new ConsoleObserver();
    const observerPort = await observer.ready;
    const thirdPort = await freeTcpPort();
    const pair = await startFtPair({ observerPort, secondaryArgs: ['--ft-reprotect', `127.0.0.1:${thirdPort}`] });
    let third: FtProcess | undefined;
    try {
      ({ secondary: third } = await startSecondary({
        name: 'third', key: pair.key, disk: secondaryDiskFor(pair.state, join(pair.dir, 'third.img')), observerPort, listenPort: thirdPort,
      }));
      await pair.primary.waitEvent('ft-protected', 60_000);
      await observer.waitFor('console connection', 10_000, () => observer.connections[0]);
      observer.type('\n');
      await observer.waitFor('shell prompt', 30_000, () => (/~ # /.test(observer.all) ? true : undefined));
      observer.type(RECORD_LOOP);
      const most = () => Math.max(0, ...records(observer.all).map((r) => r.n));
      await observer.waitFor('records', 60_000, () => (most() >= 10 ? true : undefined));
      pair.primary.kill('SIGKILL');
      await pair.secondary.waitEvent('ft-failover', 30_000);
      // The survivor protects the guest again: a full sync to the third process.
      await pair.secondary.waitEvent('ft-protected', 60_000);
      await third.waitEvent('ft-sync-done', 10_000).catch((e: Error) => {
        throw new Error(`${e.message}\nthe survivor's log:\n${pair.secondary.stderr.slice(-6000)}`);
      });
      const before = most();
      await observer.waitFor('records under the new protection', 60_000, () => {
        const c = observer.connections[1];
        return c && records(c.text).some((r) => r.n > before + 10) ? true : undefined;
      });
      pair.secondary.kill('SIGKILL');
      await third.waitEvent('ft-failover', 30_000);
      const beforeThird = most();
      await observer.waitFor('records from the third', 60_000, () => {
        const c = observer.connections[2];
        return c && records(c.text).some((r) => r.n > beforeThird + 5) ? true : undefined;
      });
      expect(observer.connections.length).toBe(3);
      expect(checkRecords(observer.connections.map((c) => c.text))).toEqual([]);
      expect(Math.min(...records(observer.all).map((r) => r.n))).toBe(1);
      // The survivor checkpointed to the third and the third committed them.
      const stats = third.events('ft-secondary-stats');
      expect((stats[stats.length - 1]?.commits as number) ?? 0).toBeGreaterThan(0);
    } finally {
      pair.kill();
      third?.kill();
      observer.close();
    }
  }, 180_000);
});
