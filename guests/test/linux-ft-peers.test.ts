// Bad peers against a real `ftx86 run --ft secondary` process: a wrong key, a wrong protocol
// version, a replayed HELLO, garbage, a truncated frame, and after an authenticated
// handshake an injected frame, a frame that does not fit the protocol and a truncated one.
// Each is refused and logged by the secondary; nothing it sent is applied (no full sync
// starts, the secondary's disk image is untouched, nothing is taken over); and a
// legitimate primary (the Debian guest, restored from the post-boot state) can still
// connect and be protected afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CRC_SEALING, FrameDecoder, FrameEncoder, MessageType, NONCE_SIZE, Role, clientProof, connect, decodeHelloAck, deriveSessionKeys,
  encodeFullSyncBegin, encodeHello, encodeHelloProof, encodePages, handshakeTranscript, keyFromBytes, loadKeyFile, sealFrame,
  type FtChannel, type FtLogger,
} from '../../packages/ft-trans/src/index.ts';
import { OUT_DIR, postBootState } from './linux-guest.ts';
import { ConsoleObserver, makeKeyFile, secondaryDiskFor, startPrimary, startSecondary, type FtProcess } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));
const quiet: FtLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** A raw TCP peer: writes what the test says, collects what comes back. */
class RawPeer {
  readonly decoder = new FrameDecoder();
  readonly encoder = new FrameEncoder();
  closed: Promise<void>;
  private wake: (() => void) | undefined;
  private ended = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => { this.decoder.push(c); this.wake?.(); });
    this.closed = new Promise((resolve) => socket.on('close', () => { this.ended = true; this.wake?.(); resolve(); }));
    socket.on('error', () => {});
  }

  static async open(port: number): Promise<RawPeer> {
    const s = netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((r) => s.once('connect', () => r()));
    return new RawPeer(s);
  }

  send(type: MessageType, parts: Uint8Array[]): void {
    for (const b of this.encoder.encode(type, 0n, parts)) this.socket.write(b);
  }

  async frame() {
    for (;;) {
      const f = this.decoder.next();
      if (f) return f;
      if (this.ended) return null;
      await new Promise<void>((r) => { this.wake = r; });
    }
  }
}

/**
 * A TCP relay in front of the secondary that keeps what the client sent and can slip bytes
 * into the client's stream: a man in the middle on an authenticated link.
 */
class Relay {
  readonly sent: Buffer[] = [];
  toServer: Socket | undefined;
  port = 0;
  private server: Server;

  constructor(target: number) {
    this.server = createServer((client) => {
      const server = netConnect({ host: '127.0.0.1', port: target });
      this.toServer = server;
      client.on('data', (d: Buffer) => { this.sent.push(Buffer.from(d)); server.write(d); });
      server.on('data', (d: Buffer) => client.write(d));
      for (const [a, b] of [[client, server], [server, client]] as const) {
        a.on('close', () => b.destroy());
        a.on('error', () => {});
      }
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  close(): void { this.toServer?.destroy(); this.server.close(); }
}

/** The next `ft-handshake-refused` / `ft-link-refused` / `ft-frame-refused` line after `from`. */
async function refusalAfter(secondary: FtProcess, from: number): Promise<Record<string, unknown>> {
  const kinds = new Set(['ft-handshake-refused', 'ft-link-refused', 'ft-frame-refused']);
  return secondary.waitFor('a refusal', 15_000, () => secondary.logs().filter((l) => kinds.has(l.event as string))[from]);
}

function refusals(secondary: FtProcess): number {
  const kinds = new Set(['ft-handshake-refused', 'ft-link-refused', 'ft-frame-refused']);
  return secondary.logs().filter((l) => kinds.has(l.event as string)).length;
}

/** An authenticated channel to the secondary, through a relay that records and can inject. */
async function authenticated(port: number, keyFile: string): Promise<{ ch: FtChannel; relay: Relay }> {
  const relay = await new Relay(port).start();
  const ch = await connect({ port: relay.port, key: loadKeyFile(keyFile), logger: quiet, local: { role: Role.PRIMARY, node: 'test-primary' } });
  ch.on('error', () => {});
  return { ch, relay };
}

describe.skipIf(!built)('FT: bad peers against a real secondary process', () => {
  let dir: string;
  let observer: ConsoleObserver;
  let secondary: FtProcess;
  let port: number;
  let key: string;
  let disk: string;

  beforeAll(async () => {
    const state = await postBootState();
    dir = mkdtempSync(join(tmpdir(), 'ftx86-ft-peers-'));
    key = makeKeyFile(dir);
    disk = secondaryDiskFor(state, join(dir, 'secondary.img'));
    observer = new ConsoleObserver();
    ({ secondary, port } = await startSecondary({ key, disk, observerPort: await observer.ready }));
  }, 20 * 60_000);

  afterAll(() => {
    secondary?.kill();
    observer?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a primary with the wrong key that ignores the secondary\'s proof and pushes on', async () => {
    const n = refusals(secondary);
    const raw = await RawPeer.open(port);
    const wrongKey = keyFromBytes(randomBytes(32));
    const nonceC = randomBytes(NONCE_SIZE);
    const hello = encodeHello({ version: 1, mac: 'poly1305', role: Role.PRIMARY, nonce: nonceC, memorySize: 0, diskSize: 0, maxPayload: 1 << 20, node: 'wrong-key' });
    raw.send(MessageType.HELLO, [hello]);
    const ackFrame = (await raw.frame())!;
    expect(ackFrame.type).toBe(MessageType.HELLO_ACK);
    const ack = decodeHelloAck(ackFrame.payload);
    raw.encoder.setMacKey(deriveSessionKeys(wrongKey, nonceC, ack.nonce).c2s, 'poly1305');
    const t = handshakeTranscript(hello, ackFrame.payload.subarray(0, ackFrame.payload.length - 32));
    raw.send(MessageType.HELLO_PROOF, [encodeHelloProof(clientProof(wrongKey, nonceC, ack.nonce, 1, t))]);
    raw.send(MessageType.FULL_SYNC_BEGIN, [encodeFullSyncBegin({ ramBytes: 128 << 20, deviceBytes: 100, diskBytes: 4 << 20 })]);
    await raw.closed;
    expect(await raw.frame()).toBeNull(); // no HELLO_DONE
    expect((await refusalAfter(secondary, n)).code).toBe('AUTH');
  });

  it('refuses a primary that speaks another protocol version', async () => {
    const n = refusals(secondary);
    await expect(connect({ port, key: loadKeyFile(key), logger: quiet, version: 2 })).rejects.toMatchObject({ code: 'BAD_VERSION' });
    expect((await refusalAfter(secondary, n)).code).toBe('BAD_VERSION');
  });

  it('refuses a replayed HELLO, and a frame injected into an authenticated link', async () => {
    // A genuine handshake through a relay that records the primary's bytes.
    const { ch, relay } = await authenticated(port, key);
    try {
      const n = refusals(secondary);
      // Injected: a FULL_SYNC_BEGIN at the next sequence number (2: HELLO and HELLO_PROOF
      // came first), sealed under a key the injector guessed.
      const forged = sealFrame({ type: MessageType.FULL_SYNC_BEGIN, epoch: 0n, seq: 2n },
        [encodeFullSyncBegin({ ramBytes: 128 << 20, deviceBytes: 100, diskBytes: 4 << 20 })],
        { kind: 'mac', key: keyFromBytes(randomBytes(32)), mac: 'poly1305' });
      for (const b of forged) relay.toServer!.write(b);
      const refusal = await refusalAfter(secondary, n);
      expect(refusal.event).toBe('ft-link-refused');
      expect(refusal.code).toBe('MAC');
      await new Promise<void>((r) => (ch.closed ? r() : ch.once('close', () => r())));
    } finally {
      ch.destroy();
      relay.close();
    }
    // Replayed: the recorded HELLO, sent again to the same secondary.
    const n = refusals(secondary);
    const recorded = Buffer.concat(relay.sent);
    const helloLength = 32 + recorded.readUInt32BE(8) + 4;
    const replay = await RawPeer.open(port);
    replay.socket.write(recorded.subarray(0, helloLength));
    await replay.closed;
    expect((await refusalAfter(secondary, n)).code).toBe('REPLAY');
  });

  it('refuses a frame that does not fit the protocol from an authenticated primary (PAGES before a full sync)', async () => {
    const { ch, relay } = await authenticated(port, key);
    try {
      const n = refusals(secondary);
      ch.send(MessageType.PAGES, 1n, encodePages([1], [Buffer.alloc(4096, 0xee)]));
      const refusal = await refusalAfter(secondary, n);
      expect(refusal.event).toBe('ft-frame-refused');
      await new Promise<void>((r) => (ch.closed ? r() : ch.once('close', () => r())));
    } finally {
      ch.destroy();
      relay.close();
    }
  });

  it('refuses garbage, and frames cut short before and after the handshake', async () => {
    let n = refusals(secondary);
    const garbage = await RawPeer.open(port);
    garbage.socket.write(randomBytes(200));
    await garbage.closed;
    expect((await refusalAfter(secondary, n)).code).toBe('BAD_MAGIC');

    n = refusals(secondary);
    const cut = await RawPeer.open(port);
    const hello = Buffer.concat(sealFrame({ type: MessageType.HELLO, epoch: 0n, seq: 0n },
      [encodeHello({ version: 1, mac: 'poly1305', role: Role.PRIMARY, nonce: randomBytes(NONCE_SIZE), memorySize: 0, diskSize: 0, maxPayload: 1 << 20, node: 'cut' })], CRC_SEALING));
    cut.socket.end(hello.subarray(0, hello.length - 10));
    await cut.closed;
    expect((await refusalAfter(secondary, n)).code).toBe('CLOSED');

    // After the handshake: the first 40 bytes of a FULL_SYNC_BEGIN frame, then the stream ends.
    const { ch, relay } = await authenticated(port, key);
    try {
      n = refusals(secondary);
      ch.testSendPartial(MessageType.FULL_SYNC_BEGIN, 0n, [encodeFullSyncBegin({ ramBytes: 128 << 20, deviceBytes: 100, diskBytes: 4 << 20 })], 40);
      await new Promise((r) => setTimeout(r, 200));
      relay.toServer!.end();
      const refusal = await refusalAfter(secondary, n);
      expect(refusal.event).toBe('ft-link-refused');
      expect(refusal.code).toBe('TRUNCATED');
    } finally {
      ch.destroy();
      relay.close();
    }
  });

  it('applied nothing from any of them, and still protects a legitimate primary', async () => {
    // Let the secondary go through whatever it received.
    await new Promise((r) => setTimeout(r, 500));
    for (const e of ['ft-sync-start', 'ft-sync-done', 'ft-failover-start']) expect(secondary.events(e), e).toEqual([]);
    expect(secondary.exit).toBeUndefined();
    expect(readFileSync(disk).subarray(0, 14).toString('latin1')).toBe('not synced yet');
    expect(observer.all).toBe('');

    const state = await postBootState();
    const primary = startPrimary({ state, key, peer: `127.0.0.1:${port}`, observerPort: await observer.ready });
    try {
      await primary.waitEvent('ft-protected', 60_000);
      expect(secondary.events('ft-sync-done')).toHaveLength(1);
      expect(readFileSync(disk).subarray(0, 25).toString('latin1')).toBe('ftx86 virtio-blk pattern\n');
      // The guest runs protected: a command's output reaches the console once committed.
      await observer.waitFor('console connection', 10_000, () => observer.connections[0]);
      observer.type('echo protected-$((6*7))\n');
      await observer.waitFor('the command\'s output', 30_000, () => (/^protected-42\r?$/m.test(observer.all) ? true : undefined));

      // While it protects a primary: garbage, a wrong version, and a second primary with the
      // right key are all turned away, and the protected link does not notice.
      const n = refusals(secondary);
      const garbage = await RawPeer.open(port);
      garbage.socket.write(randomBytes(100));
      await garbage.closed;
      await expect(connect({ port, key: loadKeyFile(key), logger: quiet, version: 2 })).rejects.toMatchObject({ code: 'BAD_VERSION' });
      await secondary.waitFor('two refusals', 15_000, () => (refusals(secondary) >= n + 2 ? true : undefined));
      const intruder = await connect({ port, key: loadKeyFile(key), logger: quiet, local: { role: Role.PRIMARY, node: 'second-primary' } });
      intruder.on('error', () => {});
      await new Promise<void>((r) => (intruder.closed ? r() : intruder.once('close', () => r())));
      expect(secondary.events('ft-second-primary')).toHaveLength(1);
      observer.type('echo still-$((6*7))\n');
      await observer.waitFor('output after the intruders', 30_000, () => (/^still-42\r?$/m.test(observer.all) ? true : undefined));
      expect(primary.events('ft-peer-lost')).toEqual([]);
      expect(secondary.events('ft-failover-start')).toEqual([]);
      expect(secondary.events('ft-sync-done')).toHaveLength(1);
    } finally {
      primary.kill();
    }
  }, 120_000);
});
