/**
 * Properties of the decoder under hostile input: valid state files mutated by bit flips,
 * truncations, insertions and corrupted length/count fields, with and without a repaired
 * checksum and total length (so the mutation also reaches the section parsers behind the
 * checksum). Whatever the bytes:
 *  - decodeSnapshot returns or throws a SnapshotError, nothing else;
 *  - it never allocates a buffer larger than its input;
 *  - a decoded state is applied whole or refused with a SnapshotError, target untouched.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyState,
  decodeSnapshot,
  decodeValue,
  encodeSnapshot,
  encodeValue,
  SnapshotError,
  type PlainValue,
  type SnapshotTarget,
  type VmState,
} from '../src/snapshot/index.ts';
import { Board, FakeCpu, largestAllocation, pseudoRandom, reseal, sectionOffsets } from './snapshot-fixtures.ts';

const PAGE = 4096;
const RAM_PAGES = 16;
const DISK_BYTES = 32 * 512;

function devicesOf(board: Board) {
  return board.devices.map((d) => {
    const device = 'device' in d ? d.device : d;
    return { name: 'device' in d ? d.name : d.stateName, version: device.stateVersion, state: device.saveState() };
  });
}

function validFiles(): Uint8Array[] {
  const board = new Board();
  board.drive();
  const ram = pseudoRandom(51)(RAM_PAGES * PAGE);
  ram.fill(0, 4 * PAGE, 12 * PAGE);
  const cpu = { layoutId: 0x1234, bytes: pseudoRandom(52)(4096) };
  const disks = [{ name: 'disk0', diskBytes: DISK_BYTES, blockSize: 512, blockNumbers: [0, 7, 31], data: pseudoRandom(53)(3 * 512) }];
  return [
    encodeSnapshot({ meta: { epoch: 12, note: 'full' }, cpu, devices: devicesOf(board), ram: { kind: 'full', ram }, disks }),
    encodeSnapshot({ cpu, devices: devicesOf(board), ram: { kind: 'pages', ram, pageNumbers: [0, 3, 15] }, disks }),
    encodeSnapshot({ cpu, devices: devicesOf(board), ram: { kind: 'full', ram, elideZeroPages: false } }),
  ];
}

class FuzzTarget {
  readonly cpu = new FakeCpu();
  readonly ram = new Uint8Array(RAM_PAGES * PAGE).fill(0x5a);
  readonly disk = new Uint8Array(DISK_BYTES).fill(0xa5);
  readonly board = new Board();

  target(): SnapshotTarget {
    return {
      cpu: this.cpu.target(),
      ram: this.ram,
      devices: this.board.devices,
      disks: [{
        name: 'disk0', diskBytes: DISK_BYTES, blockSize: 512,
        writeBlocks: (blocks, data) => blocks.forEach((b, i) => this.disk.set(data.subarray(i * 512, (i + 1) * 512), b * 512)),
      }],
    };
  }

  fingerprint(): unknown {
    const h = createHash('sha256').update(this.cpu.bytes).update(this.ram).update(this.disk).digest('hex');
    return [h, this.board.states(), this.board.intr];
  }
}

type Mutation =
  | { kind: 'flip'; bits: { pos: number; bit: number }[] }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'length'; section: number; lo: number; hi: number }
  | { kind: 'word'; at: number; value: number };

const interesting = fc.oneof(
  fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0xfff, 0x1000, 0x1001, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff),
  fc.nat({ max: 0xffffffff }),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), bits: fc.array(fc.record({ pos: fc.nat(), bit: fc.nat({ max: 7 }) }), { minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('length' as const), section: fc.nat(), lo: interesting, hi: fc.constantFrom(0, 0, 0, 1, 0x1fffff, 0xffffffff) }),
  fc.record({ kind: fc.constant('word' as const), at: fc.nat(), value: interesting }),
);

function mutate(file: Uint8Array, m: Mutation, repairLength: boolean, repairChecksum: boolean): Uint8Array {
  let out = file.slice();
  switch (m.kind) {
    case 'flip':
      for (const { pos, bit } of m.bits) out[pos % out.length] ^= 1 << bit;
      break;
    case 'truncate':
      out = out.slice(0, m.at % out.length);
      break;
    case 'insert': {
      const at = m.at % (out.length + 1);
      const grown = new Uint8Array(out.length + m.bytes.length);
      grown.set(out.subarray(0, at));
      grown.set(m.bytes, at);
      grown.set(out.subarray(at), at + m.bytes.length);
      out = grown;
      break;
    }
    case 'length': {
      const offsets = sectionOffsets(file);
      const at = offsets[m.section % offsets.length];
      const view = new DataView(out.buffer);
      view.setUint32(at + 8, m.lo, true);
      view.setUint32(at + 12, m.hi, true);
      break;
    }
    case 'word': {
      // Anywhere a u32 fits, aligned or not: payload counts, RAM sizes, varint bytes.
      const at = m.at % (out.length - 3);
      new DataView(out.buffer).setUint32(at, m.value, true);
      break;
    }
  }
  if (out.length >= 28) {
    if (repairLength) new DataView(out.buffer).setUint32(16, out.length, true);
    if (repairChecksum) reseal(out);
  }
  return out;
}

describe('snapshot decoder under mutated files (fast-check)', () => {
  const files = validFiles();

  it('throws only SnapshotError, allocates no more than its input, and never half-applies', () => {
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(fc.nat({ max: files.length - 1 }), mutation, fc.boolean(), fc.boolean(), (which, m, repairLength, repairChecksum) => {
        const bytes = mutate(files[which], m, repairLength, repairChecksum);
        let state: VmState | undefined;
        const largest = largestAllocation(() => {
          try {
            state = decodeSnapshot(bytes);
          } catch (e) {
            if (!(e instanceof SnapshotError)) throw e;
            outcomes.set(e.code, (outcomes.get(e.code) ?? 0) + 1);
          }
        });
        expect(largest).toBeLessThanOrEqual(bytes.length);
        if (!state) return;
        const t = new FuzzTarget();
        const before = t.fingerprint();
        try {
          applyState(state, t.target());
          outcomes.set('applied', (outcomes.get('applied') ?? 0) + 1);
        } catch (e) {
          if (!(e instanceof SnapshotError)) throw e;
          outcomes.set(`apply:${e.code}`, (outcomes.get(`apply:${e.code}`) ?? 0) + 1);
          expect(t.fingerprint()).toEqual(before);
        }
      }),
      { numRuns: 3000 },
    );
    if (process.env.SNAPSHOT_FUZZ_STATS) console.log(Object.fromEntries([...outcomes].sort()));
    // The mutations reached past the checksum into the section and value parsers.
    for (const code of ['checksum', 'truncated', 'section-layout', 'value-encoding']) expect(outcomes.get(code) ?? 0).toBeGreaterThan(0);
  });

  it('the value decoder takes any bytes and throws only SnapshotError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeValue(bytes);
        } catch (e) {
          if (!(e instanceof SnapshotError)) throw e;
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('any plain value round-trips through the value encoding, canonically', () => {
    const { value } = fc.letrec<{ value: PlainValue }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
        fc.double(),
        fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
        fc.string({ unit: 'grapheme' }),
        fc.uint8Array({ maxLength: 64 }),
        fc.array(tie('value'), { maxLength: 5 }),
        fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 8 }), tie('value'), { maxKeys: 5 }),
      ),
    }));
    fc.assert(
      fc.property(value, (v) => {
        const enc = encodeValue(v);
        const dec = decodeValue(enc);
        expect(dec).toEqual(v);
        expect(encodeValue(dec)).toEqual(enc);
      }),
      { numRuns: 1000 },
    );
  });
});
