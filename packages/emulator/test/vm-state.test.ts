/**
 * Whole-PC save and restore (src/vm-state.ts) on real guests: guests/vmstate/ticks.bin
 * (PIT interrupts, HLT, virtio-blk writes and reads) and guests/hello/hello.bin.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pc } from '../src/pc.ts';
import { loadMultiboot } from '../src/loaders/multiboot.ts';
import { MemoryBlockBackend } from '../src/block-backend.ts';
import { CowBlockBackend } from '../src/disk-overlay.ts';
import type { NetBackend } from '../src/net/backend.ts';
import { decodeSnapshot, encodeSnapshot, sealSnapshot, SnapshotError, encodeValue, registerMigration, type PlainValue, type SnapshotErrorCode } from '../src/snapshot/index.ts';
import { decodeVm, digestVm, pcDeviceEntries, pcOptionsFor, restoreVm, saveVm, type PcStateConfig } from '../src/vm-state.ts';
import { deviceEntryName } from '../src/snapshot/apply.ts';
import fc from 'fast-check';
import { largestAllocation } from './snapshot-fixtures.ts';

const guest = (path: string) => new Uint8Array(readFileSync(fileURLToPath(new URL(`../../../guests/${path}`, import.meta.url))));
const TICKS = guest('vmstate/ticks.bin');
const HELLO = guest('hello/hello.bin');
const RTC_BASE = Date.UTC(2024, 0, 1);
const MEMORY = 16 << 20;

/** 1 MiB of deterministic noise: the base image every test disk starts from. */
function baseImage(): Uint8Array {
  const d = new Uint8Array(1 << 20);
  let x = 0x12345678;
  for (let i = 0; i < d.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    d[i] = x & 0xff;
  }
  return d;
}

const nullNet = (): NetBackend => ({ send() {}, onFrame() {}, close() {} });

interface Board {
  pc: Pc;
  image: MemoryBlockBackend;
  serial: string[];
}

function board(opts: { disk?: boolean; net?: boolean; image?: MemoryBlockBackend } = {}): Board {
  const image = opts.image ?? new MemoryBlockBackend(baseImage());
  const serial: string[] = [];
  const pc = new Pc({
    memoryBytes: MEMORY,
    clock: 'virtual',
    rtcBaseMs: RTC_BASE,
    disk: opts.disk === false ? undefined : new CowBlockBackend(image),
    net: opts.net ? { backend: nullNet(), mac: '52:54:00:aa:bb:cc' } : undefined,
    serialOut: [(b) => serial.push(new TextDecoder().decode(b))],
  });
  return { pc, image, serial };
}

/** Fresh board of the same configuration as `config`, sharing the disk image. */
function boardFor(config: PcStateConfig, image: MemoryBlockBackend): Board {
  const serial: string[] = [];
  const pc = new Pc({
    ...pcOptionsFor(config),
    disk: config.disk ? new CowBlockBackend(image) : undefined,
    net: config.net ? { backend: nullNet(), mac: config.net.mac } : undefined,
    serialOut: [(b) => serial.push(new TextDecoder().decode(b))],
  });
  return { pc, image, serial };
}

/** Touch the devices the guest leaves alone, through their ports, as a driver would. */
function driveIdleDevices(pc: Pc): void {
  const out = (port: number, v: number, size: 1 | 2 | 4 = 1) => pc.machine.ports.write(port, size, v);
  const cmos = (i: number, v: number) => { out(0x70, i); out(0x71, v); };
  cmos(0x0b, 0x06); cmos(0x01, 42); for (let i = 0x40; i < 0x50; i++) cmos(i, i * 3);
  out(0x64, 0x60); out(0x60, 0x47);                 // i8042: write the command byte
  out(0x92, 0x02);                                  // fast A20 on
  out(0xcf9, 0x02);                                 // PIIX reset control: SYS_RST, no reset
  out(0x602, 0x0120, 2);                            // ACPI PM1 enable: PWRBTN, GBL
  // COM2: 9600 8E1, interrupts on, more bytes typed than its receiver holds (a backlog).
  out(0x2fb, 0x80); out(0x2f8, 12); out(0x2f9, 0); out(0x2fb, 0x1b); out(0x2f9, 0x01); out(0x2fc, 0x0b);
  pc.serialIn(1, new TextEncoder().encode('typed ahead of the guest'));
  // virtio-net: a queue set up, then a frame that has no receive buffer to go to.
  out(0xcf8, 0x80001010, 4);
  const io = pc.machine.ports.read(0xcfc, 4) & 0xfffc;
  out(io + 0x12, 1); out(io + 0x12, 3); out(io + 0x0e, 0, 2); out(io + 0x08, 0x800, 4); out(io + 0x12, 7);
  pc.virtioNet!.receive(Uint8Array.from({ length: 64 }, (_, i) => i));
}

function sections(bytes: Uint8Array): Map<string, Uint8Array> {
  const s = decodeSnapshot(bytes);
  return new Map(s.devices.map((d) => [d.name, encodeValue(d.state)]));
}

describe('PC state', () => {
  it('every device of the PC survives save, run on, restore into a fresh PC, and saves the same', () => {
    const a = board({ net: true });
    loadMultiboot(a.pc.machine.cpu, TICKS);
    expect(a.pc.machine.runSync(60_000).kind).toBe('limit');
    driveIdleDevices(a.pc);
    const saved = saveVm(a.pc);
    const digest = digestVm(a.pc);
    const names = pcDeviceEntries(a.pc).map(deviceEntryName);
    expect(names).toEqual([
      'clock', 'pc-board', 'pit8254', 'port61', 'rtc-mc146818',
      'uart16550:com1', 'uart16550:com2', 'uart16550:com3', 'uart16550:com4',
      'i8042', 'port92', 'piix-reset-control', 'acpi-pm', 'pci', 'virtio-blk', 'virtio-net', 'pic8259',
    ]);
    const before = sections(saved);
    expect([...before.keys()].sort()).toEqual([...names].sort());
    expect(decodeSnapshot(saved).disks[0].blockNumbers.length).toBeGreaterThan(0);

    // The guest runs on: every part of the state moves (time, devices, RAM, disk).
    expect(a.pc.machine.runSync(60_000).kind).toBe('limit');
    const moved = sections(saveVm(a.pc));
    expect(moved.get('clock')).not.toEqual(before.get('clock'));
    expect(moved.get('pit8254')).not.toEqual(before.get('pit8254'));

    const b = boardFor(decodeVm(saved).config, a.image);
    restoreVm(b.pc, saved);
    const again = saveVm(b.pc);
    const after = sections(again);
    for (const name of names) expect(after.get(name), name).toEqual(before.get(name));
    expect(decodeSnapshot(again).disks).toEqual(decodeSnapshot(saved).disks);
    expect(digestVm(b.pc)).toBe(digest);

    // Restoring over the machine that ran on takes it back too.
    restoreVm(a.pc, saved);
    expect(digestVm(a.pc)).toBe(digest);
  });

  it('a restored PC continues exactly: same digests, same output, the same disk', () => {
    const a = board();
    loadMultiboot(a.pc.machine.cpu, TICKS);
    a.pc.machine.runSync(70_000);
    const saved = saveVm(a.pc);
    const printedBefore = a.serial.length;
    const b = boardFor(decodeVm(saved).config, a.image);
    restoreVm(b.pc, saved);
    for (const n of [30_000, 50_000]) {
      a.pc.machine.runSync(n);
      b.pc.machine.runSync(n);
      expect(digestVm(b.pc)).toBe(digestVm(a.pc));
    }
    const endA = a.pc.machine.runSync(1_000_000);
    const endB = b.pc.machine.runSync(1_000_000);
    expect(endA).toEqual({ kind: 'exit', status: 1 });
    expect(endB).toEqual(endA);
    expect(b.serial.join('')).toBe(a.serial.slice(printedBefore).join(''));
    expect(a.serial.join('')).toMatch(/tick 1000\r\nchecksum [0-9a-f]{8}\r\n$/);
    // The base image was only read.
    expect(Buffer.compare(a.image.bytes, baseImage())).toBe(0);
  });

  it('the virtual clock skips a halted CPU to its next timer: a second of guest time in few instructions', () => {
    const { pc } = board({ disk: false });
    loadMultiboot(pc.machine.cpu, TICKS);
    expect(pc.machine.runSync(10_000_000)).toEqual({ kind: 'exit', status: 1 });
    const instructions = Number(pc.machine.cpu.instructionCount);
    const ns = pc.machine.clock.nowNs();
    // 1000 PIT periods of 1193 ticks at 1.193182 MHz: the guest saw ~1 s pass.
    expect(ns).toBeGreaterThan(0.99e9);
    expect(ns).toBeLessThan(1.01e9);
    expect(instructions).toBeLessThan(100_000);
  });

  it('an async run on the virtual clock still yields to the host while the guest idles on a timer', async () => {
    const { pc } = board({ disk: false });
    loadMultiboot(pc.machine.cpu, TICKS);
    const run = pc.machine.run();
    setImmediate(() => pc.machine.stop());
    expect(await run).toEqual({ kind: 'stopped' });
    expect(pc.machine.clock.nowNs()).toBeLessThan(0.5e9);
  });

  it('hello.bin restored mid-count prints the rest and powers off at the same instruction', () => {
    const mk = () => {
      const serial: string[] = [];
      const pc = new Pc({ memoryBytes: MEMORY, clock: 'virtual', rtcBaseMs: RTC_BASE, serialOut: [(b) => serial.push(String.fromCharCode(...b))] });
      return { pc, serial };
    };
    const a = mk();
    loadMultiboot(a.pc.machine.cpu, HELLO);
    a.pc.machine.runSync(4_000_000);
    const saved = saveVm(a.pc);
    const b = mk();
    restoreVm(b.pc, saved);
    expect(b.pc.machine.runSync(20_000_000)).toEqual({ kind: 'poweroff' });
    expect(a.pc.machine.runSync(20_000_000)).toEqual({ kind: 'poweroff' });
    expect(b.pc.machine.cpu.instructionCount).toBe(a.pc.machine.cpu.instructionCount);
    expect(b.serial.join('')).toBe('Primes below 50000: 5133\r\nPowering off.\r\n');
    expect(digestVm(b.pc)).toBe(digestVm(a.pc));
  });
});

describe('PC state refusals', () => {
  // One saved state and one target machine for all the bad inputs.
  const a = board();
  loadMultiboot(a.pc.machine.cpu, TICKS);
  a.pc.machine.runSync(50_000);
  const good = saveVm(a.pc);
  const config = decodeVm(good).config;

  function reseal(bytes: Uint8Array): Uint8Array {
    sealSnapshot(bytes);
    return bytes;
  }
  /** The state re-encoded with `edit` applied to its parts. */
  function edited(edit: (s: ReturnType<typeof decodeSnapshot>) => void): Uint8Array {
    const s = decodeSnapshot(good);
    edit(s);
    return encodeSnapshot({
      meta: s.meta,
      cpu: s.cpu,
      devices: s.devices,
      ram: { kind: 'full', ram: wholeRam(s) },
      disks: s.disks,
    });
  }

  function wholeRam(s: ReturnType<typeof decodeSnapshot>): Uint8Array {
    const r = s.ram!;
    const ram = new Uint8Array(r.ramBytes);
    if (r.kind !== 'full') throw new Error('a full state was expected');
    if (r.storedPages === null) ram.set(r.data);
    else r.storedPages.forEach((p, i) => ram.set(r.data.subarray(i * 4096, (i + 1) * 4096), p * 4096));
    return ram;
  }

  const cases: [string, () => Uint8Array, SnapshotErrorCode, RegExp][] = [
    ['a truncated file', () => good.slice(0, good.length - 1000), 'truncated', /^snapshot truncated: expected 1000 more bytes/],
    ['a flipped byte', () => { const b = good.slice(); b[b.length >> 1] ^= 0x20; return b; }, 'checksum', /^snapshot checksum mismatch/],
    ['a wrong magic', () => { const b = good.slice(); b[0] = 0x7f; return b; }, 'bad-magic', /^not an ftx86 snapshot: bad magic/],
    ['a newer format version', () => { const b = good.slice(); b[8] = 2; return b; }, 'format-version', /^snapshot format version 2 is newer/],
    ['an unknown section type', () => {
      // A section of type 99 in front of the first, the header's count raised to match.
      const extra = Uint8Array.from([99, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x66, 0x6f, 0x6f]);
      const b = new Uint8Array(good.length + extra.length);
      b.set(good.subarray(0, 24)); b.set(extra, 24); b.set(good.subarray(24), 24 + extra.length);
      const v = new DataView(b.buffer);
      v.setUint32(12, v.getUint32(12, true) + 1, true);
      v.setUint32(16, b.length, true);
      return reseal(b);
    }, 'unknown-section', /^unknown section type 99 named "foo"/],
    ['an unknown device section', () => edited((s) => s.devices.push({ name: 'floppy', version: 1, state: {} })), 'unknown-section', /^unknown device section "floppy"/],
    ['a device state newer than this build', () => edited((s) => { s.devices.find((d) => d.name === 'pit8254')!.version = 9; }), 'section-version', /pit8254.* version 9 is newer/],
    ['a device state its device refuses', () => edited((s) => { (s.devices.find((d) => d.name === 'port92')!.state as { value: number }).value = 0x1ff; }), 'device-rejected', /^device "port92" refused its state/],
    ['a PC state version from the future', () => edited((s) => { s.meta!.version = 7; }), 'section-version', /^PC state version 7 is newer/],
  ];

  for (const [what, bytes, code, message] of cases) {
    it(`refuses ${what} with a one-line ${code} error and changes nothing`, () => {
      const b = boardFor(config, a.image);
      loadMultiboot(b.pc.machine.cpu, HELLO);
      b.pc.machine.runSync(1000);
      const before = digestVm(b.pc);
      let err: unknown;
      try { restoreVm(b.pc, bytes()); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SnapshotError);
      expect((err as SnapshotError).code).toBe(code);
      expect((err as SnapshotError).message).toMatch(message);
      expect((err as SnapshotError).message).not.toContain('\n');
      expect(digestVm(b.pc)).toBe(before);
    });
  }

  it('every device section: a newer version is refused, an older one loads only through a registered migration', () => {
    const b = boardFor(config, a.image);
    loadMultiboot(b.pc.machine.cpu, HELLO);
    b.pc.machine.runSync(1000);
    const before = digestVm(b.pc);
    const chipOf = new Map(pcDeviceEntries(b.pc).map((d) => [deviceEntryName(d), ('device' in d ? d.device : d).stateName]));
    const saved = decodeSnapshot(good).devices.map((d) => ({ name: d.name, version: d.version }));
    expect(saved.map((d) => d.name).sort()).toEqual([...chipOf.keys()].sort());
    const refusal = (bytes: Uint8Array): SnapshotError => {
      try { restoreVm(b.pc, bytes); } catch (e) { return e as SnapshotError; }
      throw new Error('restored');
    };
    /** The state with every device section (or one) as its previous version wrote it: wrapped in { formerly }. */
    const older = (only?: string) => edited((s) => {
      for (const d of s.devices) {
        if (only !== undefined && d.name !== only) continue;
        d.version -= 1;
        d.state = { formerly: d.state };
      }
    });
    for (const { name, version } of saved) {
      expect(version, name).toBeGreaterThanOrEqual(1);
      const newer = refusal(edited((s) => { s.devices.find((d) => d.name === name)!.version = version + 1; }));
      expect(newer.code, name).toBe('section-version');
      expect(newer.message).toBe(`device "${name}" state version ${version + 1} is newer than this build's version ${version}: restore it with a build that knows version ${version + 1} (no downgrades)`);
      const old = refusal(older(name));
      expect(old.code, name).toBe('section-version');
      expect(old.message).toBe(`device "${name}" state version ${version - 1} cannot be loaded by this build (version ${version}): no migration from version ${version - 1} to ${version} is registered`);
    }
    expect(digestVm(b.pc)).toBe(before);
    // The upgrade each chip would register on its next state change (migrations.ts): here,
    // unwrapping. Loaded through it, every section saves again as the current version did.
    for (const chip of new Set(chipOf.values())) {
      const version = saved.find((d) => chipOf.get(d.name) === chip)!.version;
      registerMigration(chip, version - 1, (state) => (state as { formerly: PlainValue }).formerly);
    }
    restoreVm(b.pc, older());
    expect(sections(saveVm(b.pc))).toEqual(sections(good));
    const c = boardFor(config, a.image);
    restoreVm(c.pc, good);
    expect(digestVm(b.pc)).toBe(digestVm(c.pc));
  });

  it('refuses a disk image that is not the one the state was saved against, naming both hashes', () => {
    const other = baseImage();
    other[4096] ^= 1;
    const b = boardFor(config, new MemoryBlockBackend(other));
    const before = digestVm(b.pc);
    expect(() => restoreVm(b.pc, good)).toThrow(/^disk image has sha256 [0-9a-f]{64}, the state was saved against [0-9a-f]{64}$/);
    try { restoreVm(b.pc, good); } catch (e) { expect((e as SnapshotError).code).toBe('disk-mismatch'); }
    expect(digestVm(b.pc)).toBe(before);
  });

  it('refuses a machine built otherwise: RAM size, clock, NIC, a disk written in place', () => {
    const variants: [string, Pc, RegExp][] = [
      ['RAM', new Pc({ ...pcOptionsFor(config), memoryBytes: 32 << 20, disk: new CowBlockBackend(a.image) }), /saved with RAM of 16777216 bytes, this machine has 33554432 bytes/],
      ['clock', new Pc({ ...pcOptionsFor(config), clock: 'realtime', disk: new CowBlockBackend(a.image) }), /saved with the virtual clock/],
      ['NIC', new Pc({ ...pcOptionsFor(config), disk: new CowBlockBackend(a.image), net: { backend: nullNet() } }), /no NIC/],
      ['in place', new Pc({ ...pcOptionsFor(config), disk: a.image }), /writes its disk image in place/],
      ['firmware', new Pc({ ...pcOptionsFor(config), disk: new CowBlockBackend(a.image), bios: guest('rom/rom.bin') }), /saved with no firmware ROM, this machine has one/],
    ];
    for (const [what, pc, message] of variants) expect(() => restoreVm(pc, good), what).toThrow(message);
    expect(() => saveVm(new Pc({ ...pcOptionsFor(config), disk: a.image }))).toThrow(/the image is written in place/);
  });
});

describe('PC state files under mutation (fast-check)', () => {
  const a = board({ net: true });
  loadMultiboot(a.pc.machine.cpu, TICKS);
  a.pc.machine.runSync(60_000);
  driveIdleDevices(a.pc);
  const good = saveVm(a.pc);
  const config = decodeVm(good).config;
  const target = boardFor(config, a.image);
  loadMultiboot(target.pc.machine.cpu, HELLO);
  target.pc.machine.runSync(5000);
  const before = digestVm(target.pc);
  const original = saveVm(target.pc);
  const devicesEnd = (() => {
    // Everything before the RAM section: header, META, CPU and the device sections.
    const s = decodeSnapshot(good);
    return good.length - (s.ram!.data.length + s.disks.reduce((n, d) => n + d.data.length, 0));
  })();

  const leaf = fc.oneof(
    fc.integer(), fc.double(), fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), fc.string({ maxLength: 8 }), fc.boolean(),
    fc.constant(null), fc.uint8Array({ maxLength: 40 }), fc.constant<PlainValue>([]), fc.constant<PlainValue>({}),
  ) as fc.Arbitrary<PlainValue>;
  /** Replace the value at a path picked by `path` (indices taken modulo each level's size). */
  function replaceAt(v: PlainValue, path: number[], by: PlainValue): PlainValue {
    if (path.length === 0 || v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return by;
    const [i, ...rest] = path;
    if (Array.isArray(v)) {
      if (v.length === 0) return by;
      const copy = v.slice();
      copy[i % v.length] = replaceAt(copy[i % v.length], rest, by);
      return copy;
    }
    const keys = Object.keys(v).sort();
    if (keys.length === 0) return by;
    const k = keys[i % keys.length];
    return { ...v, [k]: replaceAt((v as Record<string, PlainValue>)[k], rest, by) };
  }
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('value' as const), section: fc.nat(), path: fc.array(fc.nat(), { maxLength: 5 }), by: leaf }),
    fc.record({ kind: fc.constant('bytes' as const), at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), xor: fc.integer({ min: 1, max: 255 }) }),
  );

  it('decodeVm and restoreVm throw only SnapshotError, with one line, allocate no more than the file, and never half-apply', () => {
    const outcomes = new Map<string, number>();
    const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
    fc.assert(
      fc.property(mutation, (m) => {
        let bytes: Uint8Array;
        if (m.kind === 'value') {
          const s = decodeSnapshot(good);
          const i = m.section % (s.devices.length + 1);
          if (i === s.devices.length) s.meta = replaceAt(s.meta as PlainValue, m.path, m.by) as Record<string, PlainValue>;
          else s.devices[i] = { ...s.devices[i], state: replaceAt(s.devices[i].state, m.path, m.by) };
          bytes = encodeSnapshot({ meta: s.meta, cpu: s.cpu, devices: s.devices, ram: { kind: 'full', ram: a.pc.machine.cpu.ram }, disks: s.disks });
        } else {
          // Flips in the header, META, CPU and device sections, the checksum made good again
          // so they reach the parsers behind it.
          bytes = good.slice();
          for (const at of m.at) bytes[at % devicesEnd] ^= m.xor;
          sealSnapshot(bytes);
        }
        let decoded: ReturnType<typeof decodeVm> | undefined;
        let error: unknown;
        const largest = largestAllocation(() => {
          try { decoded = decodeVm(bytes); } catch (e) { error = e; }
        });
        expect(largest).toBeLessThanOrEqual(bytes.length);
        if (decoded) {
          try {
            restoreVm(target.pc, decoded);
            count('applied');
            restoreVm(target.pc, original);
            expect(digestVm(target.pc)).toBe(before);
            return;
          } catch (e) { error = e; }
        }
        expect(error).toBeInstanceOf(SnapshotError);
        expect((error as SnapshotError).message).not.toContain('\n');
        count((error as SnapshotError).code);
        expect(digestVm(target.pc)).toBe(before);
      }),
      { numRuns: 200 },
    );
    if (process.env.SNAPSHOT_FUZZ_STATS) console.log(Object.fromEntries([...outcomes].sort()));
    for (const code of ['device-rejected', 'section-layout']) expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(0);
  });
});

describe('copy-on-write disk', () => {
  it('reads the base until a block is written, then the written bytes; never writes the base', () => {
    const image = new MemoryBlockBackend(baseImage());
    const disk = new CowBlockBackend(image);
    expect(disk.blockSize).toBe(4096);
    const probe = (off: number, len: number) => { const b = new Uint8Array(len); disk.read(off, b); return b; };
    expect(probe(1000, 9000)).toEqual(image.bytes.slice(1000, 10000));
    disk.write(5000, new Uint8Array(100).fill(0xee)); // inside block 1, partial
    const expected = image.bytes.slice(0, 12288);
    expected.fill(0xee, 5000, 5100);
    expect(probe(0, 12288)).toEqual(expected);
    expect(Buffer.compare(image.bytes, baseImage())).toBe(0);
    const { blockNumbers, data } = disk.writtenBlocks();
    expect(blockNumbers).toEqual([1]);
    expect(data).toEqual(expected.slice(4096, 8192));
    const fresh = new CowBlockBackend(image, disk.base.sha256);
    fresh.replaceBlocks(blockNumbers, data);
    const again = new Uint8Array(12288);
    fresh.read(0, again);
    expect(again).toEqual(expected);
  });

  it('uses smaller blocks for an image that is not a whole number of 4 KiB', () => {
    const disk = new CowBlockBackend(new MemoryBlockBackend(4096 * 3 + 1024 + 100));
    expect(disk.blockSize).toBe(1024);
    expect(disk.diskBytes).toBe(4096 * 3 + 1024);
    expect(() => disk.write(4096 * 3 + 1024, new Uint8Array(1))).toThrow(RangeError);
  });
});
