import { beforeEach, describe, expect, it } from 'vitest';
import {
  applyState,
  decodeSnapshot,
  encodeSnapshot,
  encodeValue,
  machineTarget,
  SectionType,
  SnapshotError,
  captureState,
  type SnapshotErrorCode,
  type SnapshotInput,
  type SnapshotTarget,
  type VmState,
} from '../src/snapshot/index.ts';
import {
  Board,
  FakeCpu,
  forge,
  largestAllocation,
  newCpu,
  pseudoRandom,
  reseal,
  sectionOffsets,
} from './snapshot-fixtures.ts';

const PAGE = 4096;

/** Throws a SnapshotError with `code` whose message matches `message`. */
function refused(fn: () => unknown, code: SnapshotErrorCode, message?: RegExp): SnapshotError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    const err = e as SnapshotError;
    expect(err.code, err.message).toBe(code);
    if (message) expect(err.message).toMatch(message);
    expect(err.message).not.toMatch(/\n/);
    return err;
  }
  throw new Error(`expected a SnapshotError ${code}, nothing was thrown`);
}

function devicesInput(board: Board): SnapshotInput['devices'] {
  return board.devices.map((d) => {
    const device = 'device' in d ? d.device : d;
    return { name: 'device' in d ? d.name : d.stateName, version: device.stateVersion, state: device.saveState() };
  });
}

/** A machine that should stay exactly as it is when a state is refused. */
class Target {
  readonly cpu = new FakeCpu();
  readonly ram = new Uint8Array(64 * PAGE);
  readonly disk = new Uint8Array(64 * 512);
  readonly board = new Board();

  constructor() {
    this.cpu.bytes.set(pseudoRandom(21)(4096));
    this.ram.set(pseudoRandom(22)(this.ram.length));
    this.board.drive();
  }

  target(): SnapshotTarget {
    return {
      cpu: this.cpu.target(),
      ram: this.ram,
      devices: this.board.devices,
      disks: [{
        name: 'disk0', diskBytes: this.disk.length, blockSize: 512,
        writeBlocks: (blocks, data) => blocks.forEach((b, i) => this.disk.set(data.subarray(i * 512, (i + 1) * 512), b * 512)),
      }],
    };
  }

  fingerprint(): unknown {
    return { cpu: Buffer.from(this.cpu.bytes).toString('hex'), ram: Buffer.from(this.ram).toString('base64'),
      disk: Buffer.from(this.disk).toString('base64'), devices: this.board.states(), intr: this.board.intr };
  }
}

/** A full snapshot of another machine of the same shape, with every section type but RAM_PAGES. */
function fullFile(): Uint8Array {
  const board = new Board();
  board.drive();
  board.clock.ns += 5_000_000;
  board.rtc.tick(board.clock.ns);
  const ram = pseudoRandom(31)(64 * PAGE);
  ram.fill(0, 10 * PAGE, 40 * PAGE);
  return encodeSnapshot({
    meta: { origin: 'test' },
    cpu: { layoutId: 0x1234, bytes: pseudoRandom(32)(4096) },
    devices: devicesInput(board),
    ram: { kind: 'full', ram },
    disks: [{ name: 'disk0', diskBytes: 64 * 512, blockSize: 512, blockNumbers: [3, 4, 60], data: pseudoRandom(33)(3 * 512) }],
  });
}

function incrementalFile(): Uint8Array {
  const board = new Board();
  board.drive();
  return encodeSnapshot({
    cpu: { layoutId: 0x1234, bytes: pseudoRandom(34)(4096) },
    devices: devicesInput(board),
    ram: { kind: 'pages', ram: pseudoRandom(35)(64 * PAGE), pageNumbers: [1, 5, 63] },
  });
}

/** Decode and apply; on refusal the target must be untouched. */
function expectRefusedUntouched(file: Uint8Array, code: SnapshotErrorCode, message?: RegExp): void {
  const t = new Target();
  const before = t.fingerprint();
  refused(() => applyState(decodeSnapshot(file), t.target()), code, message);
  expect(t.fingerprint()).toEqual(before);
}

describe('snapshot refusals', () => {
  let full: Uint8Array;
  beforeEach(() => {
    full = fullFile();
  });

  it('applies the reference files cleanly (the refusals below are about the edits)', () => {
    const t = new Target();
    applyState(decodeSnapshot(full), t.target());
    applyState(decodeSnapshot(incrementalFile()), t.target());
  });

  it('refuses a file truncated at every section boundary, naming the missing bytes and offset', () => {
    const cuts = new Set<number>([0, 1, 7, 8, 10, 23, 24, 27, full.length - 4, full.length - 1]);
    for (const at of sectionOffsets(full)) {
      for (const d of [-1, 0, 1, 15, 16, 17]) cuts.add(at + d);
    }
    for (const cut of cuts) {
      // Short of a whole header the file's length is unknown: the header is what is missing.
      const missing = cut < 28 ? 28 - cut : full.length - cut;
      refused(() => decodeSnapshot(full.subarray(0, cut)), 'truncated', new RegExp(`expected ${missing} more bytes at offset ${cut} `));
    }
  });

  it('refuses a file truncated at random points', () => {
    const rnd = pseudoRandom(41);
    for (let i = 0; i < 200; i++) {
      const r = rnd(4);
      const cut = new DataView(r.buffer).getUint32(0, true) % full.length;
      refused(() => decodeSnapshot(full.slice(0, cut)), 'truncated', /snapshot truncated: expected \d+ more bytes at offset \d+/);
    }
  });

  it('refuses any flipped byte past the header with a checksum mismatch', () => {
    const rnd = pseudoRandom(42);
    const offsets = new Set<number>(sectionOffsets(full).flatMap((at) => Array.from({ length: 24 }, (_, k) => at + k)));
    for (let i = 0; i < 300; i++) offsets.add(24 + (new DataView(rnd(4).buffer).getUint32(0, true) % (full.length - 24)));
    for (const at of offsets) {
      const bad = full.slice();
      bad[at] ^= 1 << (at % 8);
      refused(() => decodeSnapshot(bad), 'checksum', /snapshot checksum mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}/);
    }
  });

  it('refuses flips in the header by what they break', () => {
    const flip = (at: number, v: number) => { const b = full.slice(); b[at] = v; return b; };
    refused(() => decodeSnapshot(flip(0, 0x47)), 'bad-magic');
    refused(() => decodeSnapshot(flip(8, 0)), 'format-version', /version 0/);
    refused(() => decodeSnapshot(flip(10, 1)), 'checksum');
    refused(() => decodeSnapshot(flip(12, 99)), 'checksum');
    refused(() => decodeSnapshot(flip(17, full[17] + 1)), 'truncated');
    const short = full.slice();
    new DataView(short.buffer).setUint32(16, full.length - 3, true);
    refused(() => decodeSnapshot(short), 'trailing-bytes', /3 bytes after its end/);
  });

  it('refuses a wrong magic, and other kinds of file', () => {
    refused(() => decodeSnapshot(new TextEncoder().encode('{"cpu": "not a snapshot"} padding padding')), 'bad-magic', /not an ftx86 snapshot: bad magic 7b 22 63 70 75 22 3a 20/);
    refused(() => decodeSnapshot(Uint8Array.from([0x89, 0x50, 0x4e, 0x47])), 'bad-magic');
    refused(() => decodeSnapshot(new Uint8Array(0)), 'truncated', /expected 28 more bytes at offset 0/);
  });

  it('refuses a newer format version, saying which', () => {
    const newer = full.slice();
    new DataView(newer.buffer).setUint16(8, 2, true);
    refused(() => decodeSnapshot(newer), 'format-version', /snapshot format version 2 is newer than this build reads \(up to 1\)/);
  });

  it('refuses unknown flags, section types and section names', () => {
    const flagged = full.slice();
    flagged[10] = 0x80;
    reseal(flagged);
    refused(() => decodeSnapshot(flagged), 'flags', /unknown flags 0x80/);

    const [, cpuAt] = sectionOffsets(full);
    const typed = full.slice();
    typed[cpuAt] = 42;
    reseal(typed);
    refused(() => decodeSnapshot(typed), 'unknown-section', new RegExp(`unknown section type 42 named "cpu" at offset ${cpuAt}`));

    const renamed = full.slice();
    renamed[cpuAt + 16 + 2] = 'x'.charCodeAt(0);
    reseal(renamed);
    refused(() => decodeSnapshot(renamed), 'unknown-section', /unknown CPU section name "cpx"/);

    const twice = forge([
      { type: SectionType.Cpu, name: 'cpu', payload: new Uint8Array(8) },
      { type: SectionType.Cpu, name: 'cpu', payload: new Uint8Array(8) },
    ]);
    refused(() => decodeSnapshot(twice), 'duplicate-section', /CPU section "cpu" at offset \d+ appears twice/);
  });

  it('refuses a device section this machine does not have, and a device state that is missing', () => {
    const board = new Board();
    const extra = encodeSnapshot({ devices: [...devicesInput(board)!, { name: 'ne2000', version: 1, state: {} }], incremental: true });
    expectRefusedUntouched(extra, 'unknown-section', /unknown device section "ne2000": this machine has pit8254, uart16550:com1/);
    const missing = encodeSnapshot({ devices: devicesInput(board)!.filter((d) => d.name !== 'uart16550:com2'), incremental: true });
    expectRefusedUntouched(missing, 'missing-section', /no state for device "uart16550:com2"/);
    // A PIT state under the RTC's name reaches the RTC, which refuses it.
    const swapped = encodeSnapshot({ devices: devicesInput(board)!.map((d) => (d.name === 'pit8254' ? { ...d, name: 'rtc-mc146818' } : d.name === 'rtc-mc146818' ? { ...d, name: 'pit8254' } : d)), incremental: true });
    expectRefusedUntouched(swapped, 'device-rejected', /device "pit8254" refused its state/);
    // A board that names its RTC "pit8254" is refused before any device is asked.
    const t = new Target();
    const before = t.fingerprint();
    const misnamed = t.board.devices.map((d) => (d === t.board.pit ? { name: 'rtc-mc146818', device: t.board.pit } : d === t.board.rtc ? { name: 'pit8254', device: t.board.rtc } : d));
    refused(() => applyState(decodeSnapshot(encodeSnapshot({ devices: devicesInput(board), incremental: true })), { devices: misnamed }),
      'target-mismatch', /device section "rtc-mc146818" is a rtc-mc146818, this machine's "rtc-mc146818" is a pit8254/);
    expect(t.fingerprint()).toEqual(before);
  });

  it('refuses device section versions it cannot load, with the migration story', () => {
    const board = new Board();
    const newer = encodeSnapshot({ devices: devicesInput(board)!.map((d) => (d.name === 'pit8254' ? { ...d, version: 2 } : d)), incremental: true });
    expectRefusedUntouched(newer, 'section-version', /device "pit8254" state version 2 is newer than this build's version 1: restore it with a build that knows version 2 \(no downgrades\)/);
    const older = encodeSnapshot({ devices: devicesInput(board)!.map((d) => (d.name === 'pit8254' ? { ...d, version: 0 } : d)), incremental: true });
    expectRefusedUntouched(older, 'section-version', /version 0 cannot be loaded by this build \(version 1\): no migration from version 0 to 1 is registered/);
    const cpuV2 = full.slice();
    const [, cpuAt] = sectionOffsets(full);
    cpuV2[cpuAt + 4] = 2;
    reseal(cpuV2);
    refused(() => decodeSnapshot(cpuV2), 'section-version', /CPU section "cpu" at offset \d+ has version 2; this build reads version 1/);
  });

  it('refuses length fields pointing past the end before allocating anything', () => {
    for (const at of sectionOffsets(full)) {
      for (const [lo, hi] of [[0xffffffff, 0], [0xffffffff, 0xffffffff], [full.length, 0]]) {
        const bad = full.slice();
        const view = new DataView(bad.buffer);
        view.setUint32(at + 8, lo, true);
        view.setUint32(at + 12, hi, true);
        reseal(bad);
        const largest = largestAllocation(() => {
          refused(() => decodeSnapshot(bad), 'section-layout', /claims \d+ payload bytes, only \d+ left before the checksum/);
        });
        expect(largest).toBeLessThanOrEqual(bad.length);
      }
    }
    const huge = full.slice();
    new DataView(huge.buffer).setUint32(16, 0xffffffff, true);
    refused(() => decodeSnapshot(huge), 'truncated', new RegExp(`expected ${0xffffffff - full.length} more bytes at offset ${full.length}`));
  });

  it('refuses counts inside payloads that the payload cannot hold', () => {
    const ram = (count: number) => {
      const p = new Uint8Array(16 + 4 + PAGE);
      const v = new DataView(p.buffer);
      v.setUint32(0, 64 * PAGE, true); v.setUint32(8, PAGE, true); v.setUint32(12, count, true);
      return p;
    };
    for (const count of [0xffffffff, 2, 0x10000]) {
      const file = forge([{ type: SectionType.RamPages, name: 'ram', payload: ram(count) }], { flags: 1 });
      expect(largestAllocation(() => refused(() => decodeSnapshot(file), 'section-layout', new RegExp(`${count} pages need`)))).toBeLessThanOrEqual(file.length);
    }
    const disk = new Uint8Array(16);
    new DataView(disk.buffer).setUint32(0, 1 << 20, true);
    new DataView(disk.buffer).setUint32(8, 512, true);
    new DataView(disk.buffer).setUint32(12, 0xffffffff, true);
    refused(() => decodeSnapshot(forge([{ type: SectionType.DiskBlocks, name: 'disk0', payload: disk }])), 'section-layout', /4294967295 blocks need/);
    const bitmap = new Uint8Array(16 + 8);
    new DataView(bitmap.buffer).setUint32(0, 64 * PAGE, true);
    new DataView(bitmap.buffer).setUint32(8, PAGE, true);
    new DataView(bitmap.buffer).setUint32(12, 1, true);
    bitmap.fill(0xff, 16);
    refused(() => decodeSnapshot(forge([{ type: SectionType.RamFull, name: 'ram', payload: bitmap }])), 'section-layout', /bitmap lists 64 pages/);
    const hugeRam = new Uint8Array(16);
    new DataView(hugeRam.buffer).setUint32(4, 0x10, true); // 64 GiB
    new DataView(hugeRam.buffer).setUint32(8, PAGE, true);
    refused(() => decodeSnapshot(forge([{ type: SectionType.RamFull, name: 'ram', payload: hugeRam }])), 'section-layout', /RAM size 68719476736 is not/);
  });

  it('refuses malformed value encodings with the offset', () => {
    const value = (payload: number[]) => forge([{ type: SectionType.Device, name: 'pit8254', payload: Uint8Array.from(payload) }], { flags: 1 });
    const cases: [number[], RegExp][] = [
      [[0x08, 0xff, 0xff, 0xff, 0xff, 0x0f], /array length of 4294967295 does not fit/],
      [[0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], /varint longer than 8 bytes/],
      [[0x06, 0x02, 0xc3], /string length of 2 does not fit/],
      [[0x06, 0x01, 0xff], /string is not valid UTF-8/],
      [[0x09, 0x02, 0x01, 0x62, 0x00, 0x01, 0x61, 0x00], /field "a" is duplicated or out of order/],
      [[0x03, 0x80, 0x00], /overlong varint/],
      [[0x04, 0x00], /negative integer zero/],
      [[0x20], /unknown value tag 0x20/],
      [[0x00, 0x00], /1 bytes left over after the value/],
      [[], /a tag needs 1 bytes/],
      [Array.from({ length: 70 }, () => [0x08, 0x01]).flat(), /nested deeper than 64 levels/],
    ];
    for (const [payload, message] of cases) {
      const err = refused(() => decodeSnapshot(value(payload)), 'value-encoding', message);
      expect(err.message).toMatch(/malformed DEVICE section "pit8254" at offset \d+/);
    }
  });

  it('refuses a state a device rejects, and puts back every device it had loaded', () => {
    const board = new Board();
    board.drive();
    // The RTC is loaded after the PIT and both UARTs: their states were applied by then.
    const devices = devicesInput(board)!.map((d) => (d.name === 'rtc-mc146818' ? { ...d, state: { ...(d.state as object), interruptFlags: 0x80 } } : d));
    const file = encodeSnapshot({ devices, incremental: true, cpu: { layoutId: 0x1234, bytes: new Uint8Array(4096) } });
    expectRefusedUntouched(file, 'device-rejected', /device "rtc-mc146818" refused its state: rtc-mc146818 state: interruptFlags must/);
  });

  it('refuses a state for another machine shape without touching this one', () => {
    const [ramSmall, cpuSmall, layout] = [
      encodeSnapshot({ ram: { kind: 'full', ram: new Uint8Array(32 * PAGE) }, devices: devicesInput(new Board()), cpu: { layoutId: 0x1234, bytes: new Uint8Array(4096) } }),
      encodeSnapshot({ cpu: { layoutId: 0x1234, bytes: new Uint8Array(100) }, devices: devicesInput(new Board()), incremental: true }),
      encodeSnapshot({ cpu: { layoutId: 0x9999, bytes: new Uint8Array(4096) }, devices: devicesInput(new Board()), incremental: true }),
    ];
    expectRefusedUntouched(ramSmall, 'target-mismatch', /snapshot RAM is 131072 bytes, the target's is 262144/);
    expectRefusedUntouched(cpuSmall, 'target-mismatch', /CPU state is 100 bytes, this CPU's is 4096/);
    expectRefusedUntouched(layout, 'target-mismatch', /CPU state is in core layout 00009999, this core's is 00001234/);
    const noRam = encodeSnapshot({ devices: devicesInput(new Board()), cpu: { layoutId: 0x1234, bytes: new Uint8Array(4096) } });
    expectRefusedUntouched(noRam, 'missing-section', /full snapshot has no RAM section/);
  });

  it('refuses a CPU state for a different RAM size on a real Cpu', () => {
    const small = newCpu(2 << 20);
    const big = newCpu(4 << 20);
    const state = decodeSnapshot(encodeSnapshot({ ...captureState({ cpu: small, devices: [] }, 'full'), ram: { kind: 'full', ram: big.ram } }));
    const before = big.state.bytes();
    refused(() => applyState(state, machineTarget({ cpu: big, devices: [] })), 'target-mismatch', /CPU state refused: it is for 2097152 bytes of RAM, this CPU has 4194304/);
    expect(big.state.bytes()).toEqual(before);
  });

  it('a refused encode names what is wrong', () => {
    const ram = new Uint8Array(8 * PAGE);
    refused(() => encodeSnapshot({ ram: { kind: 'pages', ram, pageNumbers: [1, 1] } }), 'unencodable', /page 1 is listed twice/);
    refused(() => encodeSnapshot({ ram: { kind: 'pages', ram, pageNumbers: [8] } }), 'unencodable', /page 8 at index 0 is outside RAM of 8 pages/);
    refused(() => encodeSnapshot({ devices: [{ name: 'bad name', version: 1, state: {} }] }), 'unencodable', /name "bad name" must be/);
    refused(() => encodeSnapshot({ devices: [{ name: 'a', version: 1, state: {} }, { name: 'a', version: 1, state: {} }] }), 'unencodable', /listed twice/);
    refused(() => encodeSnapshot({ devices: [{ name: 'a', version: 1, state: { f: () => 1 } }] }), 'unencodable', /cannot encode a\.f: function/);
  });

  it('a decoded state is plain data that survives a failed apply for a retry', () => {
    const state: VmState = decodeSnapshot(incrementalFile());
    const copy = structuredClone(state);
    const t = new Target();
    refused(() => applyState(state, { ...t.target(), devices: t.target().devices.slice(1) }), 'unknown-section');
    expect(state).toEqual(copy);
    applyState(state, t.target());
  });

  it('device value payloads are the encodeValue bytes', () => {
    const file = forge([{ type: SectionType.Device, name: 'w', payload: encodeValue({ a: 1 }) }], { flags: 1 });
    expect(decodeSnapshot(file).devices).toEqual([{ name: 'w', version: 1, state: { a: 1 } }]);
  });
});
