import { describe, it, expect } from 'vitest';
import { createDecipheriv, randomBytes } from 'node:crypto';
import {
  CRC_SEALING,
  DEFAULT_MAX_PAYLOAD,
  FrameDecoder,
  FrameEncoder,
  HEADER_SIZE,
  MIB,
  MessageType,
  PAGE_SIZE,
  ProtocolError,
  Role,
  SyncSection,
  crc32c,
  decodeBye,
  decodeCancel,
  decodeCommit,
  decodeDisk,
  decodeEvents,
  decodeError,
  decodeFullSyncBegin,
  decodeFullSyncChunk,
  decodeFullSyncEnd,
  decodeHeartbeat,
  decodeHello,
  decodeHelloAck,
  decodeHelloProof,
  decodePages,
  encodeBye,
  encodeCancel,
  encodeCommit,
  encodeDisk,
  encodeEvents,
  EventKind,
  encodeError,
  encodeFullSyncBegin,
  encodeFullSyncChunk,
  encodeFullSyncEnd,
  encodeHeartbeat,
  encodeHello,
  encodeHelloAck,
  encodeHelloProof,
  encodePages,
  messageTypeName,
  sealFrame,
  type Frame,
  type MacKind,
  type MessageTypeName,
  type Sealing,
} from '../src/index.ts';
import { prng, testKey } from './helpers.ts';

const concat = (parts: readonly Uint8Array[]): Buffer => Buffer.concat(parts);

function expectProtocolError(fn: () => unknown, code: string): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    const pe = e as ProtocolError;
    expect(pe.code, pe.message).toBe(code);
    expect(pe.message).not.toContain('\n');
    return pe;
  }
  throw new Error(`expected ProtocolError ${code}, nothing was thrown`);
}

/** An encoder/decoder pair sharing one sealing, as after a handshake. */
function pair(mac: MacKind | 0, decoderOpts: { maxPayload?: number } = {}): { enc: FrameEncoder; dec: FrameDecoder } {
  const enc = new FrameEncoder({ maxPayload: decoderOpts.maxPayload });
  const dec = new FrameDecoder(decoderOpts);
  if (mac) {
    const key = testKey();
    enc.setMacKey(key, mac);
    dec.setMacKey(key, mac);
  }
  return { enc, dec };
}

/** One sample payload per message type, with a check that its codec reads it back. */
const samples: Record<MessageTypeName, { parts: Uint8Array[]; check: (payload: Buffer) => void }> = (() => {
  const nonce = randomBytes(32);
  const proof = randomBytes(32);
  const hello = { version: 1, mac: 'poly1305' as const, role: Role.PRIMARY, nonce, memorySize: 512 * MIB, diskSize: 8 * 1024 * MIB, maxPayload: 64 * MIB, node: 'primary-ä' };
  const pageData = randomBytes(3 * PAGE_SIZE);
  const disk = [
    { offset: 0, data: randomBytes(512) },
    { offset: 1 << 30, data: randomBytes(4096) },
  ];
  const chunk = randomBytes(1000);
  const events = [
    { kind: EventKind.SERIAL, port: 0, data: Buffer.from('login: ') },
    { kind: EventKind.NET, port: 0, data: randomBytes(1514) },
    { kind: EventKind.SERIAL, port: 3, data: Buffer.alloc(0) },
  ];
  return {
    HELLO: { parts: [encodeHello(hello)], check: (p) => expect(decodeHello(p)).toEqual(hello) },
    HELLO_ACK: { parts: [encodeHelloAck({ ...hello, proof })], check: (p) => expect(decodeHelloAck(p)).toEqual({ ...hello, proof }) },
    HELLO_PROOF: { parts: [encodeHelloProof(proof)], check: (p) => expect(decodeHelloProof(p)).toEqual(proof) },
    HELLO_DONE: { parts: [], check: (p) => expect(p.length).toBe(0) },
    FULL_SYNC_BEGIN: {
      parts: [encodeFullSyncBegin({ ramBytes: 512 * MIB, deviceBytes: 12345, diskBytes: 0 })],
      check: (p) => expect(decodeFullSyncBegin(p)).toEqual({ ramBytes: 512 * MIB, deviceBytes: 12345, diskBytes: 0 }),
    },
    FULL_SYNC_CHUNK: {
      parts: encodeFullSyncChunk({ section: SyncSection.RAM, offset: 4096, doneBytes: 5096, totalBytes: 10_000 }, [chunk]),
      check: (p) => expect(decodeFullSyncChunk(p)).toEqual({ section: SyncSection.RAM, offset: 4096, doneBytes: 5096, totalBytes: 10_000, data: chunk }),
    },
    FULL_SYNC_END: { parts: [encodeFullSyncEnd({ totalBytes: 10_000, chunks: 2 })], check: (p) => expect(decodeFullSyncEnd(p)).toEqual({ totalBytes: 10_000, chunks: 2 }) },
    PAGES: {
      parts: encodePages([7, 0, 0xfffff], [pageData.subarray(0, PAGE_SIZE), pageData.subarray(PAGE_SIZE)]),
      check: (p) => {
        const pages = decodePages(p);
        expect([...pages.pageNumbers]).toEqual([7, 0, 0xfffff]);
        expect(pages.data.equals(pageData)).toBe(true);
      },
    },
    DEVICE_STATE: { parts: [Buffer.from('opaque device sections')], check: (p) => expect(p.toString()).toBe('opaque device sections') },
    DISK: { parts: encodeDisk(disk), check: (p) => expect(decodeDisk(p)).toEqual(disk.map((d) => ({ offset: d.offset, data: Buffer.from(d.data) }))) },
    EVENTS: {
      parts: encodeEvents(events),
      check: (p) => expect(decodeEvents(p)).toEqual(events.map((e) => ({ ...e, data: Buffer.from(e.data) }))),
    },
    COMMIT: {
      parts: [encodeCommit({ frames: 42, releasedUpTo: 2n ** 63n, digest: Buffer.alloc(32, 7) })],
      check: (p) => expect(decodeCommit(p)).toEqual({ frames: 42, releasedUpTo: 2n ** 63n, digest: Buffer.alloc(32, 7) }),
    },
    ACK: { parts: [], check: (p) => expect(p.length).toBe(0) },
    CANCEL: { parts: [encodeCancel('guest paused')], check: (p) => expect(decodeCancel(p)).toBe('guest paused') },
    HEARTBEAT: { parts: [encodeHeartbeat(123456789n)], check: (p) => expect(decodeHeartbeat(p)).toBe(123456789n) },
    ERROR: { parts: [encodeError({ code: 3, message: 'refused' })], check: (p) => expect(decodeError(p)).toEqual({ code: 3, message: 'refused' }) },
    BYE: { parts: [encodeBye('shutdown')], check: (p) => expect(decodeBye(p)).toBe('shutdown') },
  };
})();

describe('frame encoding and decoding', () => {
  for (const mac of [0, 'poly1305', 'hmac-sha256-128', 'hmac-sha256'] as const) {
    it(`round-trips every message type under ${mac || 'CRC-32C'}`, () => {
      const { enc, dec } = pair(mac);
      const names = Object.keys(MessageType) as MessageTypeName[];
      const epochs = names.map((_, i) => (i === 3 ? 2n ** 64n - 1n : BigInt(i) * 1_000_003n));
      const wire = concat(names.flatMap((n, i) => enc.encode(MessageType[n], epochs[i], samples[n].parts)));
      dec.push(wire);
      const got = [...dec.frames()];
      expect(got.map((f) => messageTypeName(f.type))).toEqual(names);
      got.forEach((f, i) => {
        expect(f.epoch).toBe(epochs[i]);
        expect(f.seq).toBe(BigInt(i));
        expect(f.payload.equals(concat(samples[names[i]].parts))).toBe(true);
        samples[names[i]].check(f.payload);
      });
      expect(dec.atFrameBoundary).toBe(true);
      dec.end();
    });
  }

  it('decodes a 64 MiB PAGES frame split into random chunk sizes, MAC verified incrementally', () => {
    const ram = randomBytes(64 * MIB); // "guest RAM"
    const count = ram.length / PAGE_SIZE;
    const rnd = prng(1);
    const pfns = Array.from({ length: count }, (_, i) => (i * 7919 + Math.floor(rnd() * 3)) >>> 0);
    const views = Array.from({ length: count }, (_, i) => ram.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    const parts = encodePages(pfns, views);
    // Zero copy: the frame's parts are the RAM views themselves.
    expect(parts[1]).toBe(views[0]);
    expect(parts[1].buffer).toBe(ram.buffer);

    const { enc, dec } = pair('poly1305', { maxPayload: 65 * MIB });
    const frame = enc.encode(MessageType.PAGES, 77n, parts);
    expect(frame.length).toBe(count + 3); // header, index, pages, MAC: ready for one writev
    const wire = concat(frame);

    let delivered: Frame | undefined;
    let chunks = 0;
    for (let off = 0; off < wire.length; chunks++) {
      // Mostly TCP-sized reads, some tiny ones so header and trailer straddle chunks.
      const r = rnd();
      const n = r < 0.1 ? 1 + Math.floor(rnd() * 40) : 1 + Math.floor(rnd() * 256 * 1024);
      dec.push(wire.subarray(off, off + n));
      off += n;
      const f = dec.next();
      if (f) {
        expect(delivered).toBeUndefined();
        expect(off).toBeGreaterThanOrEqual(wire.length);
        delivered = f;
      }
    }
    expect(chunks).toBeGreaterThan(400);
    expect(delivered).toBeDefined();
    const pages = decodePages(delivered!.payload);
    expect(pages.pageNumbers.length).toBe(count);
    expect(Array.from(pages.pageNumbers.subarray(0, 5))).toEqual(pfns.slice(0, 5));
    expect(pages.pageNumbers[count - 1]).toBe(pfns[count - 1]);
    expect(pages.data.equals(ram)).toBe(true);

    // The default 64 MiB payload limit refuses the same frame from its header alone.
    const strict = new FrameDecoder();
    strict.setMacKey(testKey(), 'poly1305');
    strict.push(wire.subarray(0, HEADER_SIZE));
    expectProtocolError(() => strict.next(), 'TOO_LARGE');
  });

  it('seals with Poly1305 as documented: the ChaCha20-Poly1305 tag of header + payload, nonce = the sequence number', () => {
    // Checked the other way round, through Node's decipher, so the wire format a peer in
    // another language would implement is pinned down here.
    const key = testKey();
    const payload = randomBytes(5000);
    const verifies = (wire: Buffer, seq: bigint): boolean => {
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(seq, 4);
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAAD(wire.subarray(0, wire.length - 16), { plaintextLength: 0 });
      d.setAuthTag(wire.subarray(wire.length - 16));
      try {
        d.final();
        return true;
      } catch {
        return false;
      }
    };
    const enc = new FrameEncoder();
    enc.setMacKey(key, 'poly1305');
    const first = concat(enc.encode(MessageType.PAGES, 9n, [payload]));
    const second = concat(enc.encode(MessageType.PAGES, 9n, [payload]));
    expect(first.length).toBe(HEADER_SIZE + payload.length + 16);
    expect(verifies(first, 0n)).toBe(true);
    expect(verifies(second, 1n)).toBe(true);
    // The same bytes under another sequence number's nonce do not verify.
    expect(verifies(first, 1n)).toBe(false);
    expect(first.subarray(-16).equals(second.subarray(-16))).toBe(false);
  });

  it('hands out payload parts as frame pieces without copying them', () => {
    const page = randomBytes(PAGE_SIZE);
    const out = new FrameEncoder().encode(MessageType.PAGES, 1n, encodePages([1], [page]));
    expect(out[2]).toBe(page);
  });

  it('switches from CRC to MAC exactly between two frames that arrive in one chunk', () => {
    const key = testKey();
    const enc = new FrameEncoder();
    const first = enc.encode(MessageType.HELLO, 0n, [Buffer.from('x')]);
    enc.setMacKey(key, 'poly1305');
    const second = enc.encode(MessageType.HELLO_PROOF, 0n, [randomBytes(32)]);
    const dec = new FrameDecoder();
    dec.push(concat([...first, ...second]));
    expect(dec.next()?.type).toBe(MessageType.HELLO);
    dec.setMacKey(key, 'poly1305');
    expect(dec.next()?.type).toBe(MessageType.HELLO_PROOF);
  });
});

describe('decoder robustness', () => {
  it('refuses garbage and other protocols by their magic', () => {
    for (const junk of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('SSH-2.0-OpenSSH_9.6\r\n\r\n\r\n\r\n\r\n'), randomBytes(100)]) {
      const dec = new FrameDecoder();
      dec.push(junk);
      const e = expectProtocolError(() => dec.next(), 'BAD_MAGIC');
      expect(e.message).toMatch(/^bad magic 0x[0-9a-f]{8} at stream offset 0 /);
    }
    // Without waiting for a whole header: the first byte that cannot start a frame fails.
    const dec = new FrameDecoder();
    dec.push(Buffer.from('G'));
    expect(expectProtocolError(() => dec.next(), 'BAD_MAGIC').message).toMatch(/^bad magic 0x47\.{6} /);
  });

  it('waits on a truncated frame and refuses a stream that ends inside one', () => {
    const wire = concat(new FrameEncoder().encode(MessageType.EVENTS, 1n, [randomBytes(1000)]));
    for (const cut of [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 500, wire.length - 1]) {
      const dec = new FrameDecoder();
      dec.push(wire.subarray(0, cut));
      expect(dec.next()).toBeUndefined();
      expect(dec.bufferedBytes).toBeGreaterThan(0);
      expectProtocolError(() => dec.end(), 'TRUNCATED');
    }
  });

  it('refuses a huge length field from the 32-byte header alone, before allocating', () => {
    for (const length of [0xffff_ffff, DEFAULT_MAX_PAYLOAD + 1]) {
      const header = Buffer.from(sealFrame({ type: MessageType.PAGES, epoch: 1n, seq: 0n }, [], CRC_SEALING)[0]);
      header.writeUInt32BE(length, 8);
      header.writeUInt32BE(crc32c(header.subarray(16), crc32c(header.subarray(0, 12))), 12); // a consistent header
      const before = process.memoryUsage().arrayBuffers;
      const dec = new FrameDecoder();
      dec.push(header);
      const t0 = performance.now();
      const e = expectProtocolError(() => dec.next(), 'TOO_LARGE');
      expect(performance.now() - t0).toBeLessThan(50);
      expect(e.message).toContain(`${length}-byte payload`);
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(MIB);
    }
  });

  it('refuses every single-bit flip of a MAC frame, and of a CRC frame', () => {
    for (const mac of ['poly1305', 'hmac-sha256-128', 0] as const) {
      const key = testKey();
      const enc = new FrameEncoder();
      if (mac) enc.setMacKey(key, mac);
      const wire = concat(enc.encode(MessageType.COMMIT, 5n, [encodeCommit({ frames: 3, releasedUpTo: 4n })]));
      const codes = new Set<string>();
      for (let bit = 0; bit < wire.length * 8; bit++) {
        const bad = Buffer.from(wire);
        bad[bit >> 3] ^= 1 << (bit & 7);
        const dec = new FrameDecoder();
        if (mac) dec.setMacKey(key, mac);
        dec.push(bad);
        let frame: Frame | undefined;
        let err: unknown;
        try {
          frame = dec.next();
          if (!frame) dec.end();
        } catch (e) {
          err = e;
        }
        expect(frame, `bit ${bit}`).toBeUndefined();
        expect(err, `bit ${bit}`).toBeInstanceOf(ProtocolError);
        codes.add((err as ProtocolError).code);
      }
      // Magic and header fields by the header CRC, payload and trailer by MAC or CRC.
      expect([...codes].sort()).toEqual(['BAD_MAGIC', 'HEADER_CHECKSUM', mac ? 'MAC' : 'CHECKSUM'].sort());
    }
  });

  it('refuses an unknown type, another version and reserved flags, even with a valid header CRC', () => {
    const forge = (fields: Partial<{ type: number; version: number; extraFlags: number }>): Buffer =>
      concat(sealFrame({ type: (fields.type ?? MessageType.ACK) as MessageType, epoch: 0n, seq: 0n, version: fields.version, extraFlags: fields.extraFlags }, [], CRC_SEALING));
    const cases: [Buffer, string, RegExp][] = [
      [forge({ type: 0x7f }), 'BAD_TYPE', /unknown message type 0x7f/],
      [forge({ version: 2 }), 'BAD_VERSION', /protocol version 2 .*this build speaks version 1/],
      [forge({ extraFlags: 0x100 }), 'BAD_FLAGS', /reserved flag bits/],
    ];
    for (const [wire, code, msg] of cases) {
      const dec = new FrameDecoder();
      dec.push(wire);
      expect(expectProtocolError(() => dec.next(), code).message).toMatch(msg);
    }
  });

  it('refuses a trailer kind other than the one the session uses', () => {
    const key = testKey();
    const sealings: [Sealing, Sealing, RegExp][] = [
      [CRC_SEALING, { kind: 'mac', key, mac: 'poly1305' }, /CRC-32C trailer after authentication/],
      [{ kind: 'mac', key, mac: 'hmac-sha256-128' }, CRC_SEALING, /HMAC-SHA256-128 trailer before the handshake/],
      [{ kind: 'mac', key, mac: 'poly1305' }, CRC_SEALING, /Poly1305 trailer before the handshake/],
      [{ kind: 'mac', key, mac: 'hmac-sha256' }, { kind: 'mac', key, mac: 'hmac-sha256-128' }, /HMAC-SHA256 trailer instead of the negotiated MAC/],
      [{ kind: 'mac', key, mac: 'hmac-sha256-128' }, { kind: 'mac', key, mac: 'poly1305' }, /HMAC-SHA256-128 trailer instead of the negotiated MAC/],
      [{ kind: 'mac', key, mac: 'poly1305' }, { kind: 'mac', key, mac: 'hmac-sha256-128' }, /Poly1305 trailer instead of the negotiated MAC/],
    ];
    for (const [sent, expected, msg] of sealings) {
      const dec = new FrameDecoder();
      if (expected.kind === 'mac') dec.setMacKey(expected.key, expected.mac);
      dec.push(concat(sealFrame({ type: MessageType.PAGES, epoch: 1n, seq: 0n }, [Buffer.alloc(8)], sent)));
      expect(expectProtocolError(() => dec.next(), 'WRONG_TRAILER').message).toMatch(msg);
    }
  });

  it('refuses a replayed, a reordered and a skipped frame, each with a valid MAC', () => {
    const key = testKey();
    const enc = new FrameEncoder();
    enc.setMacKey(key, 'poly1305');
    const f = [0, 1, 2, 3].map((i) => concat(enc.encode(MessageType.EVENTS, BigInt(i), [Buffer.from([i])])));
    const streams: [Buffer[], number, RegExp][] = [
      [[f[0], f[1], f[1]], 2, /expected frame 2, got EVENTS frame \(seq 1\).*replayed or reordered/],
      [[f[0], f[2], f[1]], 1, /expected frame 1, got EVENTS frame \(seq 2\).*dropped or reordered/],
      [[f[0], f[1], f[3]], 2, /expected frame 2, got EVENTS frame \(seq 3\)/],
    ];
    for (const [stream, deliveredBefore, msg] of streams) {
      const dec = new FrameDecoder();
      dec.setMacKey(key, 'poly1305');
      dec.push(concat(stream));
      for (let i = 0; i < deliveredBefore; i++) expect(dec.next()?.seq).toBe(BigInt(i));
      expect(expectProtocolError(() => dec.next(), 'SEQUENCE').message).toMatch(msg);
    }
  });

  it('stays failed after an error: later bytes are never parsed', () => {
    const dec = new FrameDecoder();
    dec.push(Buffer.from('garbage garbage garbage garbage!'));
    const first = expectProtocolError(() => dec.next(), 'BAD_MAGIC');
    const good = concat(new FrameEncoder().encode(MessageType.ACK, 1n));
    expect(() => dec.push(good)).toThrow(first);
    expect(() => dec.next()).toThrow(first);
  });

  it('refuses payloads that do not parse as their message type', () => {
    const pages = concat(encodePages([1, 2], [randomBytes(2 * PAGE_SIZE)]));
    expectProtocolError(() => decodePages(pages.subarray(0, pages.length - 1)), 'MALFORMED');
    const lying = Buffer.from(pages);
    lying.writeUInt32BE(0xffff_ffff, 0);
    expectProtocolError(() => decodePages(lying), 'MALFORMED');
    expectProtocolError(() => decodeHello(samples.HELLO.parts[0].subarray(0, 20) as Buffer), 'MALFORMED');
    expectProtocolError(() => decodeCommit(Buffer.concat([concat(samples.COMMIT.parts), Buffer.from([0])])), 'MALFORMED');
    expectProtocolError(() => decodeCommit(concat(samples.COMMIT.parts).subarray(0, 20)), 'MALFORMED');
    const events = concat(samples.EVENTS.parts);
    expectProtocolError(() => decodeEvents(events.subarray(0, events.length - 1)), 'MALFORMED');
    const many = Buffer.from(events);
    many.writeUInt32BE(0x1000_0000, 0); // a count the payload cannot hold: refused before allocating
    expectProtocolError(() => decodeEvents(many), 'MALFORMED');
    const badKind = Buffer.from(events);
    badKind[4] = 9;
    expectProtocolError(() => decodeEvents(badKind), 'MALFORMED');
    const badPort = Buffer.from(events);
    badPort[5] = 4; // serial ports are 0..3
    expectProtocolError(() => decodeEvents(badPort), 'MALFORMED');
    const disk = concat(encodeDisk([{ offset: 0, data: randomBytes(10) }]));
    disk.writeUInt32BE(0x1000_0000, 0); // extent count far beyond the bytes present
    expectProtocolError(() => decodeDisk(disk), 'MALFORMED');
  });

  it('computes CRC-32C, not the IEEE CRC', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283); // the Castagnoli check value
    const data = randomBytes(1000);
    expect(crc32c(data.subarray(300), crc32c(data.subarray(0, 300)))).toBe(crc32c(data));
    expect(crc32c(data.subarray(3, 999))).toBe(crc32c(Buffer.from(data.subarray(3, 999)))); // unaligned views
  });
});
