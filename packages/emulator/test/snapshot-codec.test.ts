import { describe, expect, it } from 'vitest';
import {
  applyState,
  captureState,
  cpuCacheFields,
  crc32c,
  decodeSnapshot,
  decodeValue,
  encodeSnapshot,
  encodeValue,
  machineTarget,
  MigrationRegistry,
  sealSnapshot,
  SectionType,
  SnapshotError,
  stateDigest,
  type PlainValue,
} from '../src/snapshot/index.ts';
import { Board, FILL_PROGRAM, crc32cRef, devicesOf, newCpu, pseudoRandom, startAt7c00 } from './snapshot-fixtures.ts';

const PAGE = 4096;

describe('snapshot value encoding', () => {
  it('round-trips every kind of plain value', () => {
    const v: PlainValue = {
      nothing: null, yes: true, no: false,
      ints: [0, 1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER, -1, -128, -(2 ** 40), Number.MIN_SAFE_INTEGER],
      floats: [0.5, -2.25, 1e300, Number.MAX_SAFE_INTEGER + 2, Infinity, -Infinity],
      text: 'ünïcødé ✓ \u{1f600}', empty: '',
      bytes: Uint8Array.from([0, 1, 254, 255]), noBytes: new Uint8Array(0),
      nested: { deeper: { list: [[1, 2], { a: 'b' }, []] } },
      big: [0n, 1n, -1n, 2n ** 64n + 3n, -(2n ** 100n)],
    };
    expect(decodeValue(encodeValue(v))).toEqual(v);
  });

  it('keeps -0 and NaN exactly', () => {
    const out = decodeValue(encodeValue([-0, NaN])) as number[];
    expect(Object.is(out[0], -0)).toBe(true);
    expect(Number.isNaN(out[1])).toBe(true);
  });

  it('copies byte fields as raw bytes, not one tag per byte', () => {
    const page = pseudoRandom(7)(4096);
    const enc = encodeValue({ page });
    expect(enc.length).toBeLessThan(4096 + 16);
    const dec = decodeValue(enc) as { page: Uint8Array };
    expect(Buffer.compare(dec.page, page)).toBe(0);
    expect(dec.page.buffer).not.toBe(enc.buffer);
  });

  it('is canonical: field order does not change the bytes', () => {
    expect(encodeValue({ b: 1, a: [2, { y: 1, x: 2 }] })).toEqual(encodeValue({ a: [2, { x: 2, y: 1 }], b: 1 }));
  });

  it('leaves out undefined fields and refuses what is not plain data, naming the path', () => {
    expect(decodeValue(encodeValue({ a: 1, b: undefined }))).toEqual({ a: 1 });
    expect(() => encodeValue({ regs: { t: new Map() } }, 'pit')).toThrow(/cannot encode pit\.regs\.t: Map is not plain data/);
    expect(() => encodeValue({ w: new Uint16Array(2) }, 'x')).toThrow(/Uint16Array is not plain data/);
    expect(() => encodeValue([undefined], 'x')).toThrow(/x\[0\]: undefined/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeValue(cyclic, 'x')).toThrow(SnapshotError);
    expect(() => encodeValue(cyclic, 'x')).toThrow(/cannot encode x(\.self){65}: nested deeper than 64 levels/);
  });

  it('names the path of a lone surrogate in a string or a field name, also after that name was encoded well-formed', () => {
    // The encoder walks without names first and caches encoded field names: neither may
    // let a malformed string through or lose the path in the message.
    expect(decodeValue(encodeValue({ dev: { regs: [1, { ok: 'a\u{1F600}b' }] } }))).toEqual({ dev: { regs: [1, { ok: 'a\u{1F600}b' }] } });
    expect(() => encodeValue({ dev: { regs: [1, { ok: 'a\uD800b' }] } }, 'uart')).toThrow(/cannot encode uart\.dev\.regs\[1\]\.ok: string holds a lone UTF-16 surrogate/);
    expect(() => encodeValue({ dev: { ['k\uDC00']: 1 } }, 'uart')).toThrow(/cannot encode uart\.dev field name: string holds a lone UTF-16 surrogate/);
    expect(() => encodeValue({ dev: { ['k\uDC00']: 1 } }, 'uart')).toThrow(/uart\.dev field name/);
    expect(() => encodeValue({ a: [0, [1, undefined]] }, 'pic')).toThrow(/cannot encode pic\.a\[1\]\[1\]: undefined in an array/);
    expect(() => encodeValue({ a: { b: 2n ** 9000n } }, 'clock')).toThrow(/cannot encode clock\.a\.b: bigint wider than 1024 bytes/);
  });

  it('decodes a "__proto__" field as a field, not as a prototype', () => {
    const enc = encodeValue(JSON.parse('{"__proto__": {"polluted": 1}}'));
    const dec = decodeValue(enc) as Record<string, unknown>;
    expect(Object.getPrototypeOf(dec)).toBe(Object.prototype);
    expect(Object.keys(dec)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('snapshot crc32c', () => {
  it('matches the RFC 3720 check values, whole or in pieces, at any alignment', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    const data = pseudoRandom(1)(10_000);
    const whole = crc32c(data);
    for (const cut of [1, 3, 17, 4096, 9999]) expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(whole);
    const shifted = new Uint8Array(10_003);
    shifted.set(data, 3);
    expect(crc32c(shifted.subarray(3))).toBe(whole);
    for (const n of [0, 1, 15, 16, 17, 63, 64, 65, 1000]) expect(crc32c(data.subarray(5, 5 + n))).toBe(crc32cRef(data.subarray(5, 5 + n)));
  });
});

describe('snapshot sections round trip', () => {
  it('device states of a driven PIC, PIT, two UARTs and an RTC load into fresh devices and save equal', () => {
    const a = new Board();
    a.drive();
    const saved = a.states();
    const file = encodeSnapshot({ devices: a.devices.map((d) => {
      const dev = 'device' in d ? d.device : d;
      return { name: 'device' in d ? d.name : d.stateName, version: dev.stateVersion, state: dev.saveState() };
    }), incremental: true });
    const state = decodeSnapshot(file);
    expect(Object.keys(devicesOf(state))).toEqual(['pit8254', 'uart16550:com1', 'uart16550:com2', 'rtc-mc146818', 'pic8259']);
    expect(state.devices.find((d) => d.name === 'rtc-mc146818')!.state).toMatchObject({ ram: expect.any(Uint8Array) });

    const b = new Board();
    b.clock.ns = a.clock.ns;
    applyState(state, { devices: b.devices });
    expect(b.states()).toEqual(saved);
    expect(b.intr).toBe(a.intr);
    // And the restored devices behave the same: the next PIT edge and UART bytes agree.
    for (const board of [a, b]) {
      board.clock.ns += 10_000_000;
      board.pit.tick(board.clock.ns);
    }
    expect(b.states()).toEqual(a.states());
    expect(b.com1.read(0, 1)).toBe(a.com1.read(0, 1));
  });

  it('CPU state, meta and every RAM page of a real Cpu restore byte-exact, zero pages elided', () => {
    const cpu = newCpu();
    const rnd = pseudoRandom(3);
    for (const p of [0, 1, 5, 6, 7, 100, 4095]) cpu.writePhysical(p * PAGE, rnd(PAGE));
    cpu.writePhysical(200 * PAGE + 17, Uint8Array.of(1)); // one byte makes a page non-zero
    startAt7c00(cpu, FILL_PROGRAM);
    expect(cpu.run(100_000)).toBe(1); // HLT
    const board = new Board();
    board.drive();
    const parts = { cpu, devices: board.devices };
    const file = encodeSnapshot(captureState(parts, 'full', { guest: 'fill', createdAtMs: 1_700_000_000_000 }));
    // 16 MiB of RAM, 17 pages non-zero: the file is the pages plus a 512-byte bitmap.
    expect(file.length).toBeLessThan(17 * PAGE + 4096 + 4096);

    const state = decodeSnapshot(file);
    expect(state.meta).toEqual({ guest: 'fill', createdAtMs: 1_700_000_000_000 });
    expect(state.ram).toMatchObject({ kind: 'full', ramBytes: 16 << 20 });

    const cpu2 = newCpu();
    cpu2.ram.fill(0xcc); // garbage that the restore must clear
    const board2 = new Board();
    applyState(state, machineTarget({ cpu: cpu2, devices: board2.devices }));
    expect(Buffer.compare(cpu2.ram, cpu.ram)).toBe(0);
    expect(cpu2.state.get('eip')).toBe(cpu.state.get('eip'));
    expect(cpu2.state.segment('es')).toEqual(cpu.state.segment('es'));
    expect(cpu2.instructionCount).toBe(cpu.instructionCount);
    expect(board2.states()).toEqual(board.states());
    const digest = (c: typeof cpu, b: Board) => stateDigest({
      ram: c.ram, cpu: c.state.bytes(), cpuCacheFields: cpuCacheFields(c),
      devices: b.devices.map((d) => ({ name: 'device' in d ? d.name : d.stateName, version: 1, state: ('device' in d ? d.device : d).saveState() })),
    });
    expect(digest(cpu2, board2)).toBe(digest(cpu, board));
  });

  it('RAM_FULL without elision stores RAM raw', () => {
    const ram = pseudoRandom(5)(64 * PAGE);
    ram.fill(0, 0, 8 * PAGE);
    const file = encodeSnapshot({ ram: { kind: 'full', ram, elideZeroPages: false } });
    // Header, section header, "ram", RAM header, padding length and padding, RAM, trailer;
    // the padding puts the RAM 64 bytes past a 4 KiB boundary (no 4K aliasing on copies).
    const dataAt = file.length - 4 - ram.length;
    expect(dataAt % 4096).toBe(64);
    expect(new DataView(file.buffer).getUint32(24 + 16 + 3 + 16, true)).toBe(dataAt - (24 + 16 + 3 + 16 + 4));
    const state = decodeSnapshot(file);
    const target = new Uint8Array(ram.length).fill(9);
    applyState(state, { ram: target, devices: [] });
    expect(Buffer.compare(target, ram)).toBe(0);
  });

  it('RAM_PAGES of the pages a running guest dirtied bring a second machine to the same state', () => {
    const primary = newCpu();
    const secondary = newCpu();
    const pBoard = new Board();
    const sBoard = new Board();
    startAt7c00(primary, FILL_PROGRAM);
    pBoard.drive();
    // Full sync, then one epoch of guest execution, then a checkpoint of the dirty pages.
    applyState(decodeSnapshot(encodeSnapshot(captureState({ cpu: primary, devices: pBoard.devices }, 'full'))),
      machineTarget({ cpu: secondary, devices: sBoard.devices }));
    primary.exports.dirty_reset();
    expect(primary.run(100_000)).toBe(1);
    primary.writePhysical(0x300000, pseudoRandom(9)(3 * PAGE)); // DMA into three pages
    const dirty = primary.state.dirtyPages();
    expect(Array.from(dirty).sort((x, y) => x - y)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 0x300, 0x301, 0x302]);

    const file = encodeSnapshot(captureState({ cpu: primary, devices: pBoard.devices }, 'dirty'));
    // The pages and their table, the CPU state, padding up to 4 KiB, a few KiB of devices.
    expect(file.length).toBeLessThan(11 * (PAGE + 4) + 3 * PAGE + 8192);
    const state = decodeSnapshot(file);
    expect(state.incremental).toBe(true);
    expect(state.ram).toMatchObject({ kind: 'pages', pageNumbers: Uint32Array.from([16, 17, 18, 19, 20, 21, 22, 23, 0x300, 0x301, 0x302]) });
    expect(Buffer.compare(secondary.ram, primary.ram)).not.toBe(0);
    applyState(state, machineTarget({ cpu: secondary, devices: sBoard.devices }));
    expect(Buffer.compare(secondary.ram, primary.ram)).toBe(0);
    const masked = (c: typeof primary) => {
      const b = c.state.bytes();
      for (const f of cpuCacheFields(c)) b.fill(0, f.offset, f.offset + f.length);
      return b;
    };
    expect(masked(secondary)).toEqual(masked(primary));
    expect(secondary.state.dirtyPages().length).toBe(0);
  });

  it('encoding a dirty-page list reads only the listed pages', () => {
    const reads: [number, number][] = [];
    class SpyRam extends Uint8Array {
      override subarray(begin?: number, end?: number) {
        if (reads) reads.push([begin ?? 0, end ?? this.length]);
        return super.subarray(begin, end);
      }
    }
    const ram = new SpyRam(256 * PAGE);
    reads.length = 0;
    encodeSnapshot({ ram: { kind: 'pages', ram, pageNumbers: [200, 3, 77] } });
    expect(reads).toEqual([[3 * PAGE, 4 * PAGE], [77 * PAGE, 78 * PAGE], [200 * PAGE, 201 * PAGE]]);
  });

  it('disk blocks round trip in block order and are written to the target disk', () => {
    const rnd = pseudoRandom(11);
    const data = rnd(3 * 512);
    const file = encodeSnapshot({ disks: [{ name: 'disk0', diskBytes: 1 << 20, blockSize: 512, blockNumbers: [9, 2, 2047], data }], incremental: true });
    const state = decodeSnapshot(file);
    expect(state.disks[0].blockNumbers).toEqual([2, 9, 2047]);
    expect(state.disks[0].data).toEqual(Uint8Array.from([...data.subarray(512, 1024), ...data.subarray(0, 512), ...data.subarray(1024)]));
    const image = new Uint8Array(1 << 20);
    applyState(state, { devices: [], disks: [{ name: 'disk0', diskBytes: image.length, blockSize: 512, writeBlocks(blocks, bytes) {
      blocks.forEach((b, i) => image.set(bytes.subarray(i * 512, (i + 1) * 512), b * 512));
    } }] });
    expect(image.subarray(9 * 512, 10 * 512)).toEqual(data.subarray(0, 512));
    expect(image.subarray(2047 * 512)).toEqual(data.subarray(1024));
  });

  it('lays out header, sections and trailer as documented', () => {
    const file = encodeSnapshot({ cpu: { layoutId: 7, bytes: Uint8Array.of(1, 2, 3) }, incremental: true }, { seal: false });
    const view = new DataView(file.buffer);
    expect(new TextDecoder().decode(file.subarray(0, 8))).toBe('FTX86VM\0');
    expect([view.getUint16(8, true), view.getUint16(10, true), view.getUint32(12, true), view.getUint32(16, true)]).toEqual([1, 1, 1, file.length]);
    expect([file[24], file[25], view.getUint32(28, true), view.getUint32(32, true)]).toEqual([SectionType.Cpu, 3, 1, 7]);
    expect(view.getUint32(file.length - 4, true)).toBe(0);
    expect(() => decodeSnapshot(file)).toThrow(/checksum mismatch/);
    sealSnapshot(file);
    expect(decodeSnapshot(file).cpu).toEqual({ layoutId: 7, bytes: Uint8Array.of(1, 2, 3) });
  });

  it('writes into a caller buffer when it is large enough', () => {
    const buffer = new Uint8Array(1 << 20);
    const ram = new Uint8Array(16 * PAGE).fill(1);
    const file = encodeSnapshot({ ram: { kind: 'pages', ram, pageNumbers: [1, 2] } }, { buffer });
    expect(file.buffer).toBe(buffer.buffer);
    expect(Buffer.compare(decodeSnapshot(file).ram!.data, new Uint8Array(2 * PAGE).fill(1))).toBe(0);
  });
});

describe('snapshot migrations', () => {
  const old = { version: 1, state: { count: 3 } };
  const device = (version: number) => {
    let loaded: unknown;
    return {
      stateName: 'widget', stateVersion: version,
      saveState: () => loaded ?? { count: 0, label: '' },
      loadState: (s: unknown) => { loaded = s; },
    };
  };
  const file = encodeSnapshot({ devices: [{ name: 'widget', ...old }], incremental: true });

  it('upgrades an old device state through the registered chain', () => {
    const migrations = new MigrationRegistry();
    migrations.register('widget', 1, (s) => ({ ...(s as object), label: 'none' }));
    migrations.register('widget', 2, (s) => ({ ...(s as Record<string, PlainValue>), count: ((s as { count: number }).count) * 10 }));
    const w = device(3);
    const state = decodeSnapshot(file);
    applyState(state, { devices: [w] }, { migrations });
    expect(w.saveState()).toEqual({ count: 30, label: 'none' });
    expect(state.devices[0].state).toEqual({ count: 3 }); // the decoded state is not changed
  });

  it('refuses a missing step, naming it, and a newer version, saying why', () => {
    const migrations = new MigrationRegistry();
    migrations.register('widget', 1, (s) => s);
    expect(() => applyState(decodeSnapshot(file), { devices: [device(3)] }, { migrations }))
      .toThrow(/widget" state version 1 cannot be loaded by this build \(version 3\): no migration from version 2 to 3/);
    const newer = encodeSnapshot({ devices: [{ name: 'widget', version: 4, state: {} }], incremental: true });
    expect(() => applyState(decodeSnapshot(newer), { devices: [device(3)] }, { migrations }))
      .toThrow(/version 4 is newer than this build's version 3/);
    expect(() => migrations.register('widget', 1, (s) => s)).toThrow(/already registered/);
  });
});

describe('snapshot state digest', () => {
  const base = () => ({
    ram: pseudoRandom(61)(16 * PAGE),
    cpu: pseudoRandom(62)(4096),
    cpuCacheFields: [{ offset: 0x168, length: 4 }],
    devices: [{ name: 'pit8254', version: 1, state: { a: 1, b: [1, 2] } }, { name: 'pic8259', version: 1, state: { c: Uint8Array.of(1, 2) } }],
    disks: [{ name: 'disk0', blockSize: 512, blockNumbers: [5, 1], data: pseudoRandom(63)(1024) }],
  });

  it('is recomputed from the bytes: any RAM, CPU, device or disk change shows', () => {
    const d0 = stateDigest(base());
    expect(d0).toMatch(/^[0-9a-f]{64}$/);
    expect(stateDigest(base())).toBe(d0);
    const ram = base(); ram.ram[16 * PAGE - 1] ^= 1;
    const cpu = base(); cpu.cpu[0x20] ^= 0x80;
    const dev = base(); (dev.devices[0].state as { b: number[] }).b[1] = 3;
    const ver = base(); ver.devices[1].version = 2;
    const disk = base(); disk.disks[0].data[700] ^= 1;
    for (const changed of [ram, cpu, dev, ver, disk]) expect(stateDigest(changed)).not.toBe(d0);
  });

  it('ignores the order of devices, disk blocks and state fields, and the CPU cache bookkeeping', () => {
    const d0 = stateDigest(base());
    const reordered = base();
    reordered.devices.reverse();
    reordered.devices[1].state = { b: [1, 2], a: 1 };
    reordered.disks[0] = { ...reordered.disks[0], blockNumbers: [1, 5], data: Uint8Array.from([...reordered.disks[0].data.subarray(512), ...reordered.disks[0].data.subarray(0, 512)]) };
    expect(stateDigest(reordered)).toBe(d0);
    const cached = base();
    cached.cpu[0x168] ^= 0xff;
    expect(stateDigest(cached)).toBe(d0);
  });
});
