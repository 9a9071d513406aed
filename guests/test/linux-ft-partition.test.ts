// A network partition between a live primary and a live secondary: the FT link goes
// through a TCP proxy the test controls, which at some moment stops carrying bytes either
// way without closing anything (a black hole, as a cut cable or a dead switch looks). The
// secondary takes over after its timeout; the primary, which cannot tell a dead secondary
// from a partition, holds its output. At most one of them releases output from then on:
// the observer sees nothing more on the primary's console connection, the records on both
// never contradict each other, and the secondary's guest carries on.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { OUT_DIR } from './linux-guest.ts';
import { ConsoleObserver, RECORD_LOOP, checkRecords, records, startFtPair, protectedShell } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));

/** A TCP relay whose traffic can be black-holed: bytes are read and dropped, sockets stay open. */
class PartitionProxy {
  cut = false;
  port = 0;
  private readonly sockets: Socket[] = [];
  private readonly server: Server;

  constructor(target: number) {
    this.server = createServer((client) => {
      const server = netConnect({ host: '127.0.0.1', port: target });
      this.sockets.push(client, server);
      client.on('data', (d: Buffer) => { if (!this.cut) server.write(d); });
      server.on('data', (d: Buffer) => { if (!this.cut) client.write(d); });
      for (const [a, b] of [[client, server], [server, client]] as const) {
        a.on('error', () => {});
        // An end the peers make themselves passes on only while the link is up.
        a.on('close', () => { if (!this.cut) b.destroy(); });
      }
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

/**
 * Records flow, the link is cut, both sides go on. Returns what the observer saw that breaks
 * "at most one VM releases output": empty when the run was correct.
 */
async function partition(primaryArgs: string[] = []): Promise<{ problems: string[]; secondaryRecords: number; wentAlone: number }> {
  const observer = new ConsoleObserver();
  let proxy: PartitionProxy | undefined;
  const pair = await startFtPair({
    observerPort: await observer.ready,
    primaryArgs,
    peerFor: async (port) => `127.0.0.1:${(proxy = await new PartitionProxy(port).start()).port}`,
  });
  try {
    await protectedShell(pair.primary, observer);
    observer.type(RECORD_LOOP);
    const cutAfter = 5 + Math.floor(Math.random() * 10);
    await observer.waitFor(`record ${cutAfter}`, 60_000, () => (records(observer.all).length >= cutAfter ? true : undefined));
    proxy!.cut = true;

    await pair.secondary.waitEvent('ft-failover', 30_000);
    await pair.primary.waitEvent('ft-peer-lost', 30_000);
    const primaryConsole = observer.connections[0];
    // Bytes the primary released on ACKs that came before the cut may still be on their way.
    await new Promise((r) => setTimeout(r, 500));
    const frozen = primaryConsole.text.length;
    const seenOnPrimary = Math.max(0, ...records(primaryConsole.text).map((r) => r.n));
    // The secondary's guest carries on, on its own console connection.
    await observer.waitFor('records from the secondary', 60_000, () => {
      const c = observer.connections[1];
      return c && records(c.text).some((r) => r.n > seenOnPrimary + 20) ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 1000));

    // Both VMs still run: nothing told either one the other is dead.
    expect(pair.primary.exit).toBeUndefined();
    expect(pair.secondary.exit).toBeUndefined();
    expect(observer.connections.length).toBe(2);
    const problems = checkRecords(observer.connections.map((c) => c.text));
    if (primaryConsole.text.length !== frozen) problems.push(`the primary released ${primaryConsole.text.length - frozen} more bytes after it lost its peer`);
    const first = Math.min(...records(observer.all).map((r) => r.n));
    if (first !== 1) problems.push(`the first record seen is ${first}`);
    return { problems, secondaryRecords: records(observer.connections[1].text).length, wentAlone: pair.primary.events('ft-alone').length };
  } finally {
    pair.kill();
    proxy?.close();
    observer.close();
  }
}

describe.skipIf(!built)('FT on the Debian guest: a partition between live primary and secondary', () => {
  it('the secondary takes over, the primary holds its output, and only one of them releases from then on', async () => {
    const r = await partition();
    expect(r.problems).toEqual([]);
    expect(r.secondaryRecords).toBeGreaterThan(20);
    expect(r.wentAlone).toBe(0);
  }, 180_000);

  it('negative control: a primary that goes on alone at once (--ft-peer-loss continue) is caught releasing too', async () => {
    const r = await partition(['--ft-peer-loss', 'continue']);
    expect(r.problems.length).toBeGreaterThan(0);
  }, 180_000);
});
