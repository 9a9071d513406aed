// Property-based: whatever happens to the bytes, the decoder throws nothing but a
// ProtocolError, and after authentication it never delivers a frame that was touched.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { FrameDecoder, FrameEncoder, MessageType, ProtocolError, type Frame, type MacKind } from '../src/index.ts';
import { testKey } from './helpers.ts';

const APP_TYPES = [
  MessageType.FULL_SYNC_BEGIN,
  MessageType.FULL_SYNC_CHUNK,
  MessageType.FULL_SYNC_END,
  MessageType.PAGES,
  MessageType.DEVICE_STATE,
  MessageType.DISK,
  MessageType.EVENTS,
  MessageType.COMMIT,
  MessageType.ACK,
  MessageType.CANCEL,
  MessageType.HEARTBEAT,
  MessageType.ERROR,
  MessageType.BYE,
];

const frameSpec = fc.record({
  type: fc.constantFrom(...APP_TYPES),
  epoch: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  payload: fc.uint8Array({ maxLength: 3000 }),
});

interface Stream {
  wire: Buffer;
  frames: { type: number; epoch: bigint; seq: bigint; payload: Buffer }[];
  ends: number[]; // byte offset where each frame ends
}

function buildStream(specs: { type: MessageType; epoch: bigint; payload: Uint8Array }[], mac: MacKind | 0, key = testKey()): Stream {
  const enc = new FrameEncoder();
  if (mac) enc.setMacKey(key, mac);
  const bufs: Buffer[] = [];
  const ends: number[] = [];
  let off = 0;
  const frames = specs.map((s, i) => {
    const b = Buffer.concat(enc.encode(s.type, s.epoch, [s.payload]));
    bufs.push(b);
    off += b.length;
    ends.push(off);
    return { type: s.type, epoch: s.epoch, seq: BigInt(i), payload: Buffer.from(s.payload) };
  });
  return { wire: Buffer.concat(bufs), frames, ends };
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicateFrame'; i: number; to: number }
  | { kind: 'dropFrame'; i: number }
  | { kind: 'swapFrames'; i: number; j: number }
  | { kind: 'foreignFrame'; at: number }; // a frame of another session spliced in at a boundary

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 200 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicateFrame' as const), i: fc.nat(), to: fc.nat() }),
  fc.record({ kind: fc.constant('dropFrame' as const), i: fc.nat() }),
  fc.record({ kind: fc.constant('swapFrames' as const), i: fc.nat(), j: fc.nat() }),
  fc.record({ kind: fc.constant('foreignFrame' as const), at: fc.nat() }),
);

function frameBytes(s: Stream): Buffer[] {
  return s.ends.map((end, i) => s.wire.subarray(i === 0 ? 0 : s.ends[i - 1], end));
}

function applyMutation(s: Stream, m: Mutation, mac: MacKind | 0): Buffer {
  const w = s.wire;
  const n = s.frames.length;
  const at = (x: number): number => x % (w.length + 1);
  switch (m.kind) {
    case 'flip': {
      const b = Buffer.from(w);
      b[m.at % w.length] ^= 1 << m.bit;
      return b;
    }
    case 'set': {
      const b = Buffer.from(w);
      b[m.at % w.length] = m.value;
      return b;
    }
    case 'insert':
      return Buffer.concat([w.subarray(0, at(m.at)), m.bytes, w.subarray(at(m.at))]);
    case 'delete':
      return Buffer.concat([w.subarray(0, at(m.at)), w.subarray(at(m.at) + m.len)]);
    case 'truncate':
      return w.subarray(0, at(m.at));
    case 'duplicateFrame': {
      const f = frameBytes(s);
      f.splice(m.to % (n + 1), 0, f[m.i % n]);
      return Buffer.concat(f);
    }
    case 'dropFrame': {
      const f = frameBytes(s);
      f.splice(m.i % n, 1);
      return Buffer.concat(f);
    }
    case 'swapFrames': {
      const f = frameBytes(s);
      const i = m.i % n;
      const j = m.j % n;
      [f[i], f[j]] = [f[j], f[i]];
      return Buffer.concat(f);
    }
    case 'foreignFrame': {
      // Same sequence number as the frame it replaces, same type and payload, but sealed
      // under another session's key (or, without MAC, with different content).
      const f = frameBytes(s);
      const k = m.at % n;
      const specs = s.frames.map((fr) => ({ type: fr.type as MessageType, epoch: fr.epoch, payload: mac ? fr.payload : randomBytes(fr.payload.length + 1) }));
      const other = frameBytes(buildStream(specs, mac));
      f[k] = other[k];
      return Buffer.concat(f);
    }
  }
}

/** Feed `wire` in the given chunk sizes; collect frames until the first error. */
function decodeAll(wire: Buffer, chunkSizes: number[], mac: MacKind | 0, key: ReturnType<typeof testKey> | undefined): { frames: Frame[]; error: unknown } {
  const dec = new FrameDecoder();
  if (mac && key) dec.setMacKey(key, mac);
  const frames: Frame[] = [];
  try {
    let off = 0;
    for (let i = 0; off < wire.length; i++) {
      const n = chunkSizes.length ? chunkSizes[i % chunkSizes.length] : wire.length;
      dec.push(wire.subarray(off, off + n));
      off += n;
      for (const f of dec.frames()) frames.push(f);
    }
    dec.end();
    return { frames, error: undefined };
  } catch (e) {
    return { frames, error: e };
  }
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

const chunking = fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 8 });

describe('decoder under random input (fast-check)', () => {
  it('throws only ProtocolError on arbitrary bytes, whatever the chunking', () => {
    const key = testKey();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), chunking, fc.constantFrom(0 as const, 'poly1305' as const, 'hmac-sha256-128' as const, 'hmac-sha256' as const), (bytes, chunks, mac) => {
        const { error } = decodeAll(Buffer.from(bytes), chunks, mac, key);
        if (error !== undefined) expect(error).toBeInstanceOf(ProtocolError);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a valid stream identically under any chunking', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), chunking, (specs, chunks) => {
        const key = testKey();
        const s = buildStream(specs, 'poly1305', key);
        const { frames, error } = decodeAll(s.wire, chunks, 'poly1305', key);
        expect(error).toBeUndefined();
        expect(frames.map((f) => ({ type: f.type, epoch: f.epoch, seq: f.seq, payload: Buffer.from(f.payload) }))).toEqual(s.frames);
      }),
      { numRuns: 200 },
    );
  });

  for (const mac of ['poly1305', 'hmac-sha256-128', 'hmac-sha256'] as const) {
    it(`never delivers a frame from a mutated stream after authentication (${mac})`, () => {
      fc.assert(
        fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), mutation, chunking, (specs, m, chunks) => {
          const key = testKey();
          const s = buildStream(specs, mac, key);
          const mutated = applyMutation(s, m, mac);
          fc.pre(!mutated.equals(s.wire));
          const { frames, error } = decodeAll(mutated, chunks, mac, key);
          if (error !== undefined) expect(error).toBeInstanceOf(ProtocolError);
          // Only frames lying wholly in the untouched prefix may come out, unchanged.
          const untouched = commonPrefix(s.wire, mutated);
          const allowed = s.ends.filter((end) => end <= untouched).length;
          expect(frames.length).toBeLessThanOrEqual(allowed);
          frames.forEach((f, i) => {
            expect({ type: f.type, epoch: f.epoch, seq: f.seq, payload: Buffer.from(f.payload) }).toEqual(s.frames[i]);
          });
          // Anything but a cut at a frame boundary must end in a refusal.
          const cleanCut = untouched === mutated.length && (untouched === 0 || s.ends.includes(untouched));
          if (!cleanCut) expect(error).toBeInstanceOf(ProtocolError);
        }),
        { numRuns: 400 },
      );
    });
  }

  it('throws only ProtocolError on a mutated pre-authentication (CRC) stream', () => {
    fc.assert(
      fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), mutation, chunking, (specs, m, chunks) => {
        const s = buildStream(specs, 0);
        const mutated = applyMutation(s, m, 0);
        const { frames, error } = decodeAll(mutated, chunks, 0, undefined);
        if (error !== undefined) expect(error).toBeInstanceOf(ProtocolError);
        // A CRC is not a MAC: anyone can seal a new frame (foreignFrame does), but it still
        // catches every accidental corruption fast-check makes here.
        if (m.kind !== 'foreignFrame') {
          const untouched = commonPrefix(s.wire, mutated);
          expect(frames.length).toBeLessThanOrEqual(s.ends.filter((end) => end <= untouched).length);
        }
      }),
      { numRuns: 400 },
    );
  });
});
