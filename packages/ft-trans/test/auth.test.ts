import { describe, it, expect, afterEach } from 'vitest';
import { randomBytes, createHmac } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  FrameDecoder,
  FrameEncoder,
  KeyFileError,
  MessageType,
  NONCE_SIZE,
  ProtocolError,
  Role,
  clientProof,
  connect,
  decodeError,
  decodeHello,
  decodeHelloAck,
  deriveSessionKeys,
  encodeHello,
  encodeHelloProof,
  handshakeTranscript,
  keyFromBytes,
  listen,
  loadKeyFile,
  sealFrame,
  CRC_SEALING,
  type FtChannel,
  type FtListener,
  type FtLogger,
  type Frame,
} from '../src/index.ts';
import { ChildSecondary, MitmProxy, closed, recordingLogger, testKey, waitFor } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ft-trans-key-'));
let fileNo = 0;

function keyFile(contents: Uint8Array | string, mode = 0o600): string {
  const p = join(dir, `key${fileNo++}`);
  writeFileSync(p, contents);
  chmodSync(p, mode);
  return p;
}

/** HMAC of a fixed message: equal keys give equal tags, without touching key bytes. */
const fingerprint = (k: ReturnType<typeof testKey>): string => createHmac('sha256', k).update('fp').digest('hex');

describe('loadKeyFile', () => {
  it('loads a private key file, ignoring an editor newline, and never prints the material', () => {
    const material = randomBytes(32).toString('hex');
    const a = loadKeyFile(keyFile(material, 0o600));
    const b = loadKeyFile(keyFile(`${material}\n`, 0o400));
    const c = loadKeyFile(keyFile(`${material}\r\n`, 0o600));
    expect(fingerprint(a)).toBe(fingerprint(b));
    expect(fingerprint(a)).toBe(fingerprint(c));
    expect(a.symmetricKeySize).toBe(64);
    const printed = inspect({ options: { key: a } }, { depth: 5 }) + JSON.stringify({ key: a });
    expect(printed).not.toContain(material.slice(0, 16));
  });

  it('refuses a key file that group or others can access, like ssh', () => {
    const material = randomBytes(32);
    for (const mode of [0o640, 0o604, 0o644, 0o660, 0o602, 0o620, 0o610, 0o601]) {
      const p = keyFile(material, mode);
      let err: unknown;
      try {
        loadKeyFile(p);
      } catch (e) {
        err = e;
      }
      expect(err, mode.toString(8)).toBeInstanceOf(KeyFileError);
      const msg = (err as Error).message;
      expect(msg).toContain(`mode 0${mode.toString(8)}`);
      expect(msg).toContain(`chmod 600 ${p}`);
      expect(msg).not.toContain(material.toString('hex').slice(0, 8));
    }
  });

  it('refuses empty, short, constant, oversized and non-regular key files', () => {
    const cases: [string, RegExp][] = [
      [keyFile(''), /empty/],
      [keyFile(randomBytes(15)), /15 bytes of key material; at least 16/],
      [keyFile(Buffer.concat([randomBytes(15), Buffer.from('\n')])), /15 bytes of key material/],
      [keyFile(Buffer.alloc(32, 0)), /constant byte string/],
      [keyFile(randomBytes(5000)), /larger than 4096 bytes/],
      [join(dir, 'missing'), /cannot open \(ENOENT\)/],
    ];
    const sub = join(dir, 'adir');
    mkdirSync(sub, { mode: 0o700 });
    cases.push([sub, /not a regular file/]);
    const fifo = join(dir, 'fifo');
    if (spawnSync('mkfifo', ['-m', '600', fifo]).status === 0) cases.push([fifo, /not a regular file/]);
    for (const [p, msg] of cases) {
      expect(() => loadKeyFile(p), p).toThrow(msg);
    }
    expect(() => keyFromBytes(Buffer.from('too short'))).toThrow(KeyFileError);
  });

  it.runIf(process.getuid?.() === 0)('refuses a key file owned by another user', () => {
    const p = keyFile(randomBytes(32));
    chownSync(p, 4242, 4242);
    expect(() => loadKeyFile(p)).toThrow(/owned by uid 4242/);
  });
});

// ---- handshake -------------------------------------------------------------------------

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface Secondary {
  listener: FtListener;
  channels: FtChannel[];
  log: ReturnType<typeof recordingLogger>;
}

async function secondary(key = testKey(), extra: Partial<Parameters<typeof listen>[0]> = {}): Promise<Secondary> {
  const channels: FtChannel[] = [];
  const log = recordingLogger();
  const listener = await listen({
    key,
    logger: log,
    local: { role: Role.SECONDARY, memorySize: 256 << 20, diskSize: 1 << 30, node: 'sec' },
    onChannel: (ch) => {
      channels.push(ch);
      ch.on('error', () => {});
      ch.on('frame', () => {}); // a consumer: a channel nobody reads does not read
      cleanup.push(() => ch.destroy());
    },
    ...extra,
  });
  cleanup.push(() => listener.close());
  return { listener, channels, log };
}

async function connectPrimary(port: number, key: ReturnType<typeof testKey>, extra: Partial<Parameters<typeof connect>[0]> = {}): Promise<FtChannel> {
  const ch = await connect({ port, key, logger: recordingLogger(), local: { role: Role.PRIMARY, memorySize: 256 << 20, node: 'pri' }, ...extra });
  ch.on('error', () => {});
  cleanup.push(() => ch.destroy());
  return ch;
}

async function rejection(p: Promise<unknown>): Promise<ProtocolError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a rejection');
}

/** A hand-driven peer on a raw socket: writes what the test says, decodes what comes back. */
class RawPeer {
  readonly decoder = new FrameDecoder();
  readonly encoder = new FrameEncoder();
  readonly received: Buffer[] = [];
  #wake: (() => void) | null = null;
  ended = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.received.push(c);
      this.decoder.push(c);
      this.#wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.#wake?.();
    });
    socket.on('error', () => {});
  }
  static async open(port: number): Promise<RawPeer> {
    const s = netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((r) => s.once('connect', () => r()));
    const p = new RawPeer(s);
    cleanup.push(() => void s.destroy());
    return p;
  }
  send(type: MessageType, parts: Uint8Array[]): void {
    for (const b of this.encoder.encode(type, 0n, parts)) this.socket.write(b);
  }
  async frame(): Promise<Frame | null> {
    for (;;) {
      const f = this.decoder.next();
      if (f) return f;
      if (this.ended) return null;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

describe('handshake', () => {
  it('authenticates both sides and tells each about the other', async () => {
    const key = testKey();
    const sec = await secondary(key);
    expect(sec.listener.host).toBe('127.0.0.1'); // loopback unless told otherwise
    const pri = await connectPrimary(sec.listener.port, key, { mac: 'hmac-sha256' });
    await waitFor(() => sec.channels.length === 1);
    expect(pri.peer).toEqual({ version: 1, mac: 'hmac-sha256', role: Role.SECONDARY, memorySize: 256 << 20, diskSize: 1 << 30, maxPayload: 64 << 20, node: 'sec' });
    expect(sec.channels[0].peer).toMatchObject({ role: Role.PRIMARY, memorySize: 256 << 20, node: 'pri', mac: 'hmac-sha256' });
    const got: Frame[] = [];
    sec.channels[0].on('frame', (f) => {
      got.push(f);
      sec.channels[0].send(MessageType.ACK, f.epoch);
    });
    const acks: Frame[] = [];
    pri.on('frame', (f) => acks.push(f));
    pri.send(MessageType.COMMIT, 9n, [Buffer.alloc(12)]);
    await waitFor(() => acks.length === 1);
    expect(got[0]).toMatchObject({ type: MessageType.COMMIT, epoch: 9n, seq: 2n });
    expect(acks[0]).toMatchObject({ type: MessageType.ACK, epoch: 9n, seq: 2n });
    expect(sec.log.lines.find((l) => l.obj.event === 'ft-authenticated')?.obj).toMatchObject({ peer: 'pri', role: Role.PRIMARY });
  });

  it('a primary with the wrong key refuses the secondary, and no channel opens', async () => {
    const sec = await secondary(testKey());
    const log = recordingLogger();
    const err = await rejection(connectPrimary(sec.listener.port, testKey(), { logger: log }));
    expect(err.code).toBe('AUTH');
    expect(err.message).toMatch(/^server failed authentication/);
    expect(log.lines.some((l) => l.level === 'warn' && l.obj.code === 'AUTH')).toBe(true);
    await waitFor(() => sec.log.lines.some((l) => l.obj.event === 'ft-handshake-refused'));
    expect(sec.channels).toHaveLength(0);
  });

  it('a secondary refuses a client with the wrong key that ignores the server proof and pushes on', async () => {
    const serverKey = testKey();
    const sec = await secondary(serverKey);
    for (const variant of ['wrong key', 'right key, bogus proof'] as const) {
      const key = variant === 'wrong key' ? testKey() : serverKey;
      const raw = await RawPeer.open(sec.listener.port);
      const nonceC = randomBytes(NONCE_SIZE);
      const hello = encodeHello({ version: 1, mac: 'poly1305', role: Role.PRIMARY, nonce: nonceC, memorySize: 0, diskSize: 0, maxPayload: 1 << 20, node: 'evil' });
      raw.send(MessageType.HELLO, [hello]);
      const ackFrame = (await raw.frame())!;
      const ack = decodeHelloAck(ackFrame.payload);
      const keys = deriveSessionKeys(key, nonceC, ack.nonce);
      raw.encoder.setMacKey(keys.c2s, 'poly1305');
      const t = handshakeTranscript(hello, ackFrame.payload.subarray(0, ackFrame.payload.length - 32));
      const proof = variant === 'wrong key' ? clientProof(key, nonceC, ack.nonce, 1, t) : randomBytes(32);
      raw.send(MessageType.HELLO_PROOF, [encodeHelloProof(proof)]);
      raw.send(MessageType.PAGES, [Buffer.alloc(4100)]); // state it hopes gets applied
      await closed(raw.socket);
      expect(await raw.frame()).toBeNull(); // no HELLO_DONE, nothing after the ACK
    }
    const refusals = sec.log.lines.filter((l) => l.obj.event === 'ft-handshake-refused');
    expect(refusals.map((l) => l.obj.code)).toEqual(['AUTH', 'AUTH']);
    expect(refusals[0].msg).toMatch(/HELLO_PROOF does not verify/);
    expect(refusals[1].msg).toMatch(/proof does not verify/);
    expect(sec.channels).toHaveLength(0);
  });

  it('refuses a protocol version mismatch in either direction', async () => {
    const key = testKey();
    for (const [clientVersion, serverVersion] of [
      [2, 1],
      [1, 2],
    ]) {
      const sec = await secondary(key, { version: serverVersion });
      const err = await rejection(connectPrimary(sec.listener.port, key, { version: clientVersion }));
      expect(err.code).toBe('BAD_VERSION');
      expect(err.message).toContain(`protocol version ${serverVersion}`);
      await waitFor(() => sec.log.lines.some((l) => l.obj.event === 'ft-handshake-refused'));
      const refusal = sec.log.lines.find((l) => l.obj.event === 'ft-handshake-refused')!;
      expect(refusal.obj.code).toBe('BAD_VERSION');
      expect(refusal.msg).toContain(`protocol version ${clientVersion}`);
      expect(sec.channels).toHaveLength(0);
    }
  });

  it('refuses a replayed HELLO: recorded from a real client, replayed to the same server', async () => {
    const key = testKey();
    const sec = await secondary(key);
    const proxy = await MitmProxy.start(sec.listener.port, { record: true });
    cleanup.push(() => proxy.close());
    const pri = await connectPrimary(proxy.port, key);
    pri.send(MessageType.EVENTS, 1n, [Buffer.from('net frame')]);
    await waitFor(() => sec.channels.length === 1);
    await pri.close();
    const recording = Buffer.concat(proxy.recorded);

    const replay = await RawPeer.open(sec.listener.port);
    replay.socket.write(recording);
    const reply = await replay.frame();
    expect(reply?.type).toBe(MessageType.ERROR); // pre-authentication, so CRC-only and terse
    expect(decodeError(reply!.payload).message).toBe('refused');
    await closed(replay.socket);
    const refusal = sec.log.lines.find((l) => l.obj.code === 'REPLAY');
    expect(refusal?.msg).toMatch(/^replayed HELLO/);
    expect(sec.channels).toHaveLength(1); // only the genuine one
  });

  it('a replayed handshake cannot complete on a fresh server process either: its nonce is new', async () => {
    const keyPath = keyFile(randomBytes(32));
    const key = loadKeyFile(keyPath);
    const first = await ChildSecondary.start({ FT_KEY_FILE: keyPath });
    cleanup.push(() => first.stop());
    const proxy = await MitmProxy.start(first.port, { record: true });
    cleanup.push(() => proxy.close());
    const pri = await connectPrimary(proxy.port, key);
    pri.send(MessageType.COMMIT, 1n, [Buffer.alloc(12)]);
    await waitFor(() => first.events('frame').length === 1);
    await pri.close();

    const fresh = await ChildSecondary.start({ FT_KEY_FILE: keyPath });
    cleanup.push(() => fresh.stop());
    const replay = await RawPeer.open(fresh.port);
    replay.socket.write(Buffer.concat(proxy.recorded));
    await closed(replay.socket);
    // The HELLO passes (this process never saw its nonce), the replayed proof does not.
    await waitFor(() => fresh.events('log').some((l) => l.event === 'log' && l.code === 'AUTH'), 3000).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(fresh.lines)}`);
    });
    expect(fresh.events('channel')).toHaveLength(0);
    expect(fresh.events('frame')).toHaveLength(0);
  });

  it('catches a man in the middle who rewrites handshake fields under a recomputed CRC', async () => {
    const key = testKey();
    const sec = await secondary(key);
    const rewrite = (frame: Buffer, edit: (payload: Buffer) => Buffer): Buffer => {
      const payload = frame.subarray(32, frame.length - 4);
      return Buffer.concat(sealFrame({ type: frame[5] as MessageType, epoch: 0n, seq: 0n }, [edit(Buffer.from(payload))], CRC_SEALING));
    };
    const attacks: [string, 'c2s' | 's2c', (p: Buffer) => Buffer][] = [
      ['HELLO memory size', 'c2s', (p) => encodeHello({ ...decodeHello(p), memorySize: 1 << 20 })],
      ['HELLO MAC downgrade', 'c2s', (p) => encodeHello({ ...decodeHello(p), mac: 'hmac-sha256-128' })],
      ['HELLO_ACK role', 's2c', (p) => (p.writeUInt8(Role.PRIMARY, 3), p)],
    ];
    for (const [what, dir, edit] of attacks) {
      const proxy = await MitmProxy.start(sec.listener.port, {
        onFrame: (d, index, frame) => (d === dir && index === 0 ? [rewrite(frame, edit)] : undefined),
      });
      cleanup.push(() => proxy.close());
      const err = await rejection(connectPrimary(proxy.port, key, { mac: 'hmac-sha256' }));
      expect(err.code, what).toBe('AUTH');
    }
    expect(sec.channels).toHaveLength(0);
  });

  it('drops a connection that never completes the handshake', async () => {
    const sec = await secondary(testKey(), { handshakeTimeoutMs: 200 });
    const raw = await RawPeer.open(sec.listener.port);
    const t0 = performance.now();
    await closed(raw.socket);
    expect(performance.now() - t0).toBeGreaterThan(150);
    expect(sec.log.lines.find((l) => l.obj.event === 'ft-handshake-refused')?.obj.code).toBe('TIMEOUT');
  });

  it('refuses garbage and oversized frames from an anonymous peer at once', async () => {
    const sec = await secondary(testKey());
    const garbage = await RawPeer.open(sec.listener.port);
    garbage.socket.write('GET / HTTP/1.1\r\nHost: ftx86\r\n\r\n');
    await closed(garbage.socket);

    // A valid header declaring 1 MiB: refused before a payload byte is sent.
    const big = await RawPeer.open(sec.listener.port);
    const header = Buffer.from(sealFrame({ type: MessageType.HELLO, epoch: 0n, seq: 0n }, [Buffer.alloc(1 << 20)], CRC_SEALING)[0]);
    big.socket.write(header);
    await closed(big.socket);
    await waitFor(() => sec.log.lines.filter((l) => l.obj.event === 'ft-handshake-refused').length === 2);
    const codes = sec.log.lines.filter((l) => l.obj.event === 'ft-handshake-refused').map((l) => l.obj.code);
    expect(codes).toEqual(['BAD_MAGIC', 'TOO_LARGE']);
  });

  it('caps handshakes in progress', async () => {
    const sec = await secondary(testKey(), { maxPendingHandshakes: 2 });
    const peers = [await RawPeer.open(sec.listener.port), await RawPeer.open(sec.listener.port)];
    await new Promise((r) => setTimeout(r, 100)); // let the server accept both
    const third = await RawPeer.open(sec.listener.port);
    await closed(third.socket);
    expect(peers.every((p) => !p.ended)).toBe(true);
    expect(sec.log.lines.find((l) => l.obj.code === 'BUSY')).toBeDefined();
  });

  it('logs refusals through a real pino logger, never the key', async () => {
    const material = randomBytes(32);
    const key = keyFromBytes(material);
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const logger: FtLogger = pino({ level: 'info' }, sink); // type-checks: pino fits the seam
    const sec = await secondary(key, { logger });
    await rejection(connectPrimary(sec.listener.port, testKey(), { logger }));
    const ok = await connectPrimary(sec.listener.port, key, { logger });
    await ok.close();
    await waitFor(() => lines.some((l) => l.includes('ft-link-closed')));
    const records = lines.map((l) => JSON.parse(l) as { level: number; msg: string; event?: string; code?: string });
    expect(records.some((r) => r.level === 40 && r.event === 'ft-handshake-failed' && r.code === 'AUTH')).toBe(true);
    expect(records.some((r) => r.level === 30 && r.event === 'ft-authenticated')).toBe(true);
    const all = lines.join('\n');
    for (const enc of ['hex', 'base64', 'base64url', 'latin1'] as const) {
      expect(all).not.toContain(material.toString(enc).slice(0, 12));
    }
  });
});
