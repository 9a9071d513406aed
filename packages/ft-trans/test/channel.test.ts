import { describe, it, expect, afterEach } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import {
  CRC_SEALING,
  FrameDecoder,
  FrameEncoder,
  MIB,
  MessageType,
  PAGE_SIZE,
  ProtocolError,
  Role,
  SyncSection,
  connect,
  crc32c,
  decodePages,
  encodeCommit,
  encodeError,
  encodeFullSyncBegin,
  encodeFullSyncChunk,
  encodeFullSyncEnd,
  encodePages,
  FtChannel,
  listen,
  loadKeyFile,
  sealFrame,
  type ConnectOptions,
  type Frame,
  type FtListener,
} from '../src/index.ts';
import { ChildSecondary, MitmProxy, prng, recordingLogger, testKey, waitFor, type Dir, type ProxyConn } from './helpers.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Everything one end of a channel saw, for assertions. */
interface Observed {
  channel: FtChannel;
  frames: Frame[];
  errors: Error[];
  closeErr: Error | null | undefined; // undefined: still open
}

function observe(channel: FtChannel, consume = true): Observed {
  const o: Observed = { channel, frames: [], errors: [], closeErr: undefined };
  channel.on('error', (e) => o.errors.push(e));
  channel.on('close', (e) => (o.closeErr = e));
  if (consume) channel.on('frame', (f) => o.frames.push(f));
  cleanup.push(() => channel.destroy());
  return o;
}

interface Pair {
  primary: Observed;
  secondary: Observed;
  secLog: ReturnType<typeof recordingLogger>;
  listener: FtListener;
}

/** A secondary in this process and a primary connected to it (through `via` if given). */
async function pair(opts: { key?: ReturnType<typeof testKey>; via?: (port: number) => Promise<number>; consume?: boolean; channel?: Partial<Omit<ConnectOptions, 'port' | 'host' | 'key'>> } = {}): Promise<Pair> {
  const key = opts.key ?? testKey();
  const secLog = recordingLogger();
  let secondary: Observed | undefined;
  const listener = await listen({
    key,
    logger: secLog,
    local: { role: Role.SECONDARY, node: 'sec' },
    onChannel: (ch) => (secondary = observe(ch, opts.consume ?? true)),
    ...opts.channel,
  });
  cleanup.push(() => listener.close());
  const port = opts.via ? await opts.via(listener.port) : listener.port;
  const ch = await connect({ port, key, logger: recordingLogger(), local: { role: Role.PRIMARY, node: 'pri' }, ...opts.channel });
  const primary = observe(ch);
  await waitFor(() => secondary !== undefined);
  return { primary, secondary: secondary!, secLog, listener };
}

const events = (i: number): Buffer => Buffer.from(`held net frame #${i}`);

describe('FtChannel between processes', () => {
  it('carries a full sync, a checkpoint and its ACK to a secondary in another process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ft-trans-chan-'));
    const keyPath = join(dir, 'key');
    writeFileSync(keyPath, randomBytes(32));
    chmodSync(keyPath, 0o600);
    const child = await ChildSecondary.start({ FT_KEY_FILE: keyPath });
    cleanup.push(() => child.stop());
    const primary = observe(await connect({ port: child.port, key: loadKeyFile(keyPath), logger: recordingLogger(), local: { role: Role.PRIMARY, memorySize: 64 * MIB, node: 'pri' } }));
    expect(primary.channel.peer).toMatchObject({ role: Role.SECONDARY, memorySize: 128 << 20, node: 'child-secondary' });

    const ram = randomBytes(4 * MIB);
    const sent: [string, Buffer][] = [];
    const send = (type: MessageType, epoch: bigint, parts: Uint8Array[]): void => {
      primary.channel.send(type, epoch, parts);
      sent.push([Object.entries(MessageType).find(([, v]) => v === type)![0], Buffer.concat(parts)]);
    };
    send(MessageType.FULL_SYNC_BEGIN, 0n, [encodeFullSyncBegin({ ramBytes: ram.length, deviceBytes: 0, diskBytes: 0 })]);
    for (let off = 0; off < ram.length; off += MIB) {
      send(MessageType.FULL_SYNC_CHUNK, 0n, encodeFullSyncChunk({ section: SyncSection.RAM, offset: off, doneBytes: off + MIB, totalBytes: ram.length }, [ram.subarray(off, off + MIB)]));
    }
    send(MessageType.FULL_SYNC_END, 0n, [encodeFullSyncEnd({ totalBytes: ram.length, chunks: 4 })]);
    send(MessageType.PAGES, 1n, encodePages([3, 9], [ram.subarray(0, 2 * PAGE_SIZE)]));
    send(MessageType.DEVICE_STATE, 1n, [Buffer.from('pic pit uart')]);
    send(MessageType.EVENTS, 1n, [events(1)]);
    send(MessageType.COMMIT, 1n, [encodeCommit({ frames: 3, releasedUpTo: 0n })]);

    await waitFor(() => primary.frames.length === 1);
    expect(primary.frames[0]).toMatchObject({ type: MessageType.ACK, epoch: 1n });
    const seen = child.events('frame');
    expect(seen.map((f) => f.type)).toEqual(sent.map(([t]) => t));
    seen.forEach((f, i) => expect(f.sha256).toBe(createHash('sha256').update(sent[i][1]).digest('hex')));

    await primary.channel.close('test done');
    expect(primary.closeErr).toBeNull();
    await waitFor(() => child.events('close').length === 1);
    expect(child.events('close')[0].code).toBeNull(); // orderly on both sides
  });

  it('reports a lost link when the secondary process dies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ft-trans-chan-'));
    const keyPath = join(dir, 'key');
    writeFileSync(keyPath, randomBytes(32));
    chmodSync(keyPath, 0o600);
    const child = await ChildSecondary.start({ FT_KEY_FILE: keyPath });
    cleanup.push(() => child.stop());
    const primary = observe(await connect({ port: child.port, key: loadKeyFile(keyPath), logger: recordingLogger() }));
    child.proc.kill('SIGKILL');
    await waitFor(() => primary.closeErr !== undefined);
    expect(primary.closeErr).toBeInstanceOf(Error);
    expect(() => primary.channel.send(MessageType.EVENTS, 1n)).toThrow(/closed/);
  });
});

describe('FtChannel under a man in the middle', () => {
  // c2s frame indices: 0 HELLO, 1 HELLO_PROOF, then application frames from 2 (seq 2..).
  type Attack = (dir: Dir, index: number, frame: Buffer, conn: ProxyConn) => Buffer[] | void;
  const forged = (seq: bigint, sealing: Parameters<typeof sealFrame>[2]): Buffer =>
    Buffer.concat(sealFrame({ type: MessageType.EVENTS, epoch: 3n, seq }, [events(99)], sealing));

  const attacks: { name: string; attack: Attack; code: string; delivered: number }[] = [
    {
      name: 'a frame forged under a guessed key is refused (MAC)',
      attack: (d, i, f) => (d === 'c2s' && i === 4 ? [forged(4n, { kind: 'mac', key: testKey(), mac: 'poly1305' }), f] : undefined),
      code: 'MAC',
      delivered: 2,
    },
    {
      name: 'an unauthenticated CRC frame is refused (WRONG_TRAILER)',
      attack: (d, i, f) => (d === 'c2s' && i === 4 ? [forged(4n, CRC_SEALING), f] : undefined),
      code: 'WRONG_TRAILER',
      delivered: 2,
    },
    {
      name: 'an altered payload byte is refused (MAC)',
      attack: (d, i, f) => {
        if (d !== 'c2s' || i !== 4) return;
        const bad = Buffer.from(f);
        bad[40] ^= 0x20;
        return [bad];
      },
      code: 'MAC',
      delivered: 2,
    },
    {
      name: 'a dropped frame is noticed at the next one (SEQUENCE)',
      attack: (d, i) => (d === 'c2s' && i === 4 ? [] : undefined),
      code: 'SEQUENCE',
      delivered: 2,
    },
    {
      name: 'two frames swapped are refused (SEQUENCE)',
      attack: (() => {
        let held: Buffer | undefined;
        return (d: Dir, i: number, f: Buffer) => {
          if (d !== 'c2s') return;
          if (i === 4) {
            held = f;
            return [];
          }
          if (i === 5) return [f, held!];
        };
      })(),
      code: 'SEQUENCE',
      delivered: 2,
    },
    {
      name: 'a replayed frame is refused (SEQUENCE)',
      attack: (() => {
        let first: Buffer | undefined;
        return (d: Dir, i: number, f: Buffer) => {
          if (d !== 'c2s') return;
          if (i === 2) first = f;
          if (i === 4) return [first!, f];
        };
      })(),
      code: 'SEQUENCE',
      delivered: 2,
    },
  ];

  for (const { name, attack, code, delivered } of attacks) {
    it(name, async () => {
      let proxy: MitmProxy | undefined;
      const p = await pair({
        via: async (port) => {
          proxy = await MitmProxy.start(port, { onFrame: attack });
          cleanup.push(() => proxy!.close());
          return proxy.port;
        },
      });
      for (let i = 0; i < 5; i++) p.primary.channel.send(MessageType.EVENTS, BigInt(i), [events(i)]);
      await waitFor(() => p.secondary.closeErr !== undefined && p.primary.closeErr !== undefined);
      // Frames before the attack arrive intact; nothing at or after it does.
      expect(p.secondary.frames.map((f) => f.epoch)).toEqual([...Array(delivered).keys()].map(BigInt));
      p.secondary.frames.forEach((f, i) => expect(f.payload.equals(events(i))).toBe(true));
      expect(p.secondary.errors).toHaveLength(1);
      expect(p.secondary.errors[0]).toBeInstanceOf(ProtocolError);
      expect((p.secondary.errors[0] as ProtocolError).code).toBe(code);
      expect(p.secondary.closeErr).toBe(p.secondary.errors[0]);
      const refusal = p.secLog.lines.find((l) => l.obj.event === 'ft-link-refused');
      expect(refusal?.obj.code).toBe(code);
      expect(refusal?.msg).not.toContain('\n');
    });
  }

  it('a frame reflected back to its sender with a matching sequence number is refused (per-direction keys)', async () => {
    const p = await pair({
      via: async (port) => {
        const proxy = await MitmProxy.start(port, {
          onFrame: (d, i, f, conn) => {
            if (d === 's2c' && i === 2) conn.inject('c2s', f); // the server's seq 2, where the server expects c2s seq 2
          },
        });
        cleanup.push(() => proxy.close());
        return proxy.port;
      },
    });
    p.secondary.channel.send(MessageType.EVENTS, 7n, [events(7)]);
    await waitFor(() => p.secondary.closeErr !== undefined);
    expect((p.secondary.errors[0] as ProtocolError).code).toBe('MAC');
    expect(p.secondary.frames).toHaveLength(0);
    expect(p.primary.frames).toHaveLength(1); // the genuine frame still reached the primary
  });

  it('a frame from another session, at the right sequence number, is refused', async () => {
    const key = testKey();
    const captured: Buffer[] = [];
    const first = await pair({
      key,
      via: async (port) => {
        const proxy = await MitmProxy.start(port, { onFrame: (d, i, f) => void (d === 'c2s' && i === 2 && captured.push(Buffer.from(f))) });
        cleanup.push(() => proxy.close());
        return proxy.port;
      },
    });
    first.primary.channel.send(MessageType.EVENTS, 0n, [events(0)]);
    await waitFor(() => captured.length === 1);
    await first.primary.channel.close();

    const second = await pair({
      key,
      via: async (port) => {
        const proxy = await MitmProxy.start(port, { onFrame: (d, i) => (d === 'c2s' && i === 2 ? [captured[0]] : undefined) });
        cleanup.push(() => proxy.close());
        return proxy.port;
      },
    });
    second.primary.channel.send(MessageType.EVENTS, 0n, [events(0)]);
    await waitFor(() => second.secondary.closeErr !== undefined);
    expect((second.secondary.errors[0] as ProtocolError).code).toBe('MAC');
    expect(second.secondary.frames).toHaveLength(0);
  });

  it('an altered ACK on its way to the primary is refused there', async () => {
    const p = await pair({
      via: async (port) => {
        const proxy = await MitmProxy.start(port, {
          onFrame: (d, i, f) => {
            if (d !== 's2c' || i !== 2) return;
            // Claim a later epoch was committed, with a header CRC fixed up to match: only
            // the MAC can tell.
            const bad = Buffer.from(f);
            bad.writeBigUInt64BE(99n, 16);
            bad.writeUInt32BE(crc32c(bad.subarray(16, 32), crc32c(bad.subarray(0, 12))), 12);
            return [bad];
          },
        });
        cleanup.push(() => proxy.close());
        return proxy.port;
      },
    });
    p.secondary.channel.send(MessageType.ACK, 1n);
    await waitFor(() => p.primary.closeErr !== undefined);
    expect((p.primary.errors[0] as ProtocolError).code).toBe('MAC');
    expect(p.primary.frames).toHaveLength(0);
  });
});

describe('FtChannel flow', () => {
  it('pushes back on a sender whose receiver does not read, and delivers everything in order once it does', async () => {
    const p = await pair({ consume: false });
    const frameBytes = MIB;
    const total = 64; // well past loopback socket buffers (tcp_rmem max here: 32 MiB)
    const payload = (i: number): Buffer => Buffer.alloc(frameBytes, i);
    let sent = 0;
    let waitedForDrain = 0;
    const sender = (async () => {
      for (; sent < total; ) {
        const ok = p.primary.channel.send(MessageType.PAGES, BigInt(sent), [payload(sent)]);
        sent++;
        if (!ok) {
          waitedForDrain++;
          await p.primary.channel.whenWritable();
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    expect(sent).toBeLessThan(total); // stuck in whenWritable(): the peer is not reading
    expect(waitedForDrain).toBeGreaterThan(0);

    const got: bigint[] = [];
    for await (const f of p.secondary.channel) {
      expect(f.payload.equals(payload(Number(f.epoch)))).toBe(true);
      got.push(f.epoch);
      if (got.length === total) break;
    }
    await sender;
    expect(got).toEqual([...Array(total).keys()].map(BigInt));
  });

  it('moves a 64 MiB PAGES frame over TCP forwarded in random-sized writes', async () => {
    const rnd = prng(7);
    const p = await pair({
      channel: { maxPayload: 65 * MIB, mac: 'hmac-sha256' },
      via: async (port) => {
        const proxy = await MitmProxy.start(port, { chunkSize: () => 1 + Math.floor(rnd() * 65536) });
        cleanup.push(() => proxy.close());
        return proxy.port;
      },
    });
    const ram = randomBytes(64 * MIB);
    const count = ram.length / PAGE_SIZE;
    const pfns = Array.from({ length: count }, (_, i) => count - 1 - i);
    const pages = Array.from({ length: count }, (_, i) => ram.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    p.primary.channel.send(MessageType.PAGES, 5n, encodePages(pfns, pages));
    await waitFor(() => p.secondary.frames.length === 1, 60_000);
    const got = decodePages(p.secondary.frames[0].payload);
    expect(got.pageNumbers[0]).toBe(count - 1);
    expect(got.pageNumbers[count - 1]).toBe(0);
    expect(got.data.equals(ram)).toBe(true);
  });

  it('never sends a frame larger than the peer announced it accepts', async () => {
    const key = testKey();
    let sec: Observed | undefined;
    const listener = await listen({ key, logger: recordingLogger(), maxPayload: MIB, onChannel: (ch) => (sec = observe(ch)) });
    cleanup.push(() => listener.close());
    const pri = observe(await connect({ port: listener.port, key, logger: recordingLogger() })); // accepts 64 MiB itself
    expect(pri.channel.peer.maxPayload).toBe(MIB);
    expect(() => pri.channel.send(MessageType.PAGES, 1n, [Buffer.alloc(MIB + 1)])).toThrow(RangeError);
    pri.channel.send(MessageType.PAGES, 1n, [Buffer.alloc(MIB)]);
    await waitFor(() => sec?.frames.length === 1);
    expect(pri.closeErr).toBeUndefined(); // the link survived the refused send
  });

  it('delivers frames that arrive right behind the handshake, before anyone listens', async () => {
    const key = testKey();
    const listener = await listen({
      key,
      logger: recordingLogger(),
      onChannel: (ch) => {
        ch.send(MessageType.EVENTS, 1n, [events(1)]);
        ch.send(MessageType.EVENTS, 2n, [events(2)]);
        cleanup.push(() => ch.destroy());
      },
    });
    cleanup.push(() => listener.close());
    const ch = await connect({ port: listener.port, key, logger: recordingLogger() });
    cleanup.push(() => ch.destroy());
    await new Promise((r) => setTimeout(r, 100)); // both frames are surely here by now
    const got: bigint[] = [];
    for await (const f of ch) {
      got.push(f.epoch);
      if (got.length === 2) break;
    }
    expect(got).toEqual([1n, 2n]);
  });

  it('closes in order with BYE on both sides', async () => {
    const p = await pair();
    let reason = '';
    p.secondary.channel.on('bye', (r) => (reason = r));
    p.primary.channel.send(MessageType.EVENTS, 1n, [events(1)]);
    await p.primary.channel.close('operator stop');
    await waitFor(() => p.secondary.closeErr !== undefined);
    expect(reason).toBe('operator stop');
    expect(p.primary.closeErr).toBeNull();
    expect(p.secondary.closeErr).toBeNull();
    expect(p.secondary.frames).toHaveLength(1);
  });

  it('surfaces a peer ERROR and a peer that vanishes without BYE', async () => {
    const a = await pair();
    a.primary.channel.send(MessageType.ERROR, 0n, [encodeError({ code: 4, message: 'disk full\nFAKE LOG LINE' })]);
    await waitFor(() => a.secondary.closeErr !== undefined);
    const e = a.secondary.errors[0] as ProtocolError;
    expect(e.code).toBe('PEER_ERROR');
    expect(e.message).toBe('peer reported an error: code 4: disk full?FAKE LOG LINE'); // one line

    const b = await pair();
    b.primary.channel.destroy();
    await waitFor(() => b.secondary.closeErr !== undefined);
    expect((b.secondary.closeErr as ProtocolError).code).toBe('CLOSED');
  });

  it('keeps an idle link alive with heartbeats and fails a silent one after the timeout', async () => {
    // Generous margins: a loaded 2-core CI machine can stall timers for a while.
    const live = await pair({ channel: { heartbeatIntervalMs: 50, peerTimeoutMs: 1000 } });
    let beats = 0;
    live.secondary.channel.on('heartbeat', () => beats++);
    await new Promise((r) => setTimeout(r, 1500));
    expect(live.secondary.closeErr).toBeUndefined();
    expect(live.primary.closeErr).toBeUndefined();
    expect(beats).toBeGreaterThan(5);

    // The secondary expects liveness but the primary sends no heartbeats.
    const key = testKey();
    let sec: Observed | undefined;
    const listener = await listen({ key, logger: recordingLogger(), peerTimeoutMs: 300, onChannel: (ch) => (sec = observe(ch)) });
    cleanup.push(() => listener.close());
    const silent = observe(await connect({ port: listener.port, key, logger: recordingLogger() }));
    await waitFor(() => sec?.closeErr !== undefined, 5000);
    expect((sec!.closeErr as ProtocolError).code).toBe('TIMEOUT');
    await waitFor(() => silent.closeErr !== undefined);
  });

  it('refuses a handshake message inside an established session', async () => {
    // A channel over a real socket pair with known session keys, so the test can seal a
    // HELLO that passes the MAC: only the channel's own rule can stop it.
    const key = testKey();
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => void server.close());
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const port = (server.address() as { port: number }).port;
    const client = netConnect({ host: '127.0.0.1', port });
    cleanup.push(() => void client.destroy());
    const sock = await accepted;
    const decoder = new FrameDecoder();
    decoder.setMacKey(key, 'poly1305');
    const chan = observe(new FtChannel(sock, { decoder, encoder: new FrameEncoder(), peer: { version: 1, mac: 'poly1305', role: 0, memorySize: 0, diskSize: 0, maxPayload: MIB, node: 'x' } }, { logger: recordingLogger() }));
    const enc = new FrameEncoder();
    enc.setMacKey(key, 'poly1305');
    for (const b of enc.encode(MessageType.EVENTS, 1n, [events(1)])) client.write(b);
    for (const b of enc.encode(MessageType.HELLO, 0n, [Buffer.alloc(10)])) client.write(b);
    for (const b of enc.encode(MessageType.EVENTS, 2n, [events(2)])) client.write(b);
    await waitFor(() => chan.closeErr !== undefined);
    expect((chan.closeErr as ProtocolError).code).toBe('UNEXPECTED');
    expect(chan.frames.map((f) => f.epoch)).toEqual([1n]);
  });
});
