import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtioBlk, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE } from '../../src/devices/virtio-blk.ts';
import { MemoryBlockBackend, RawFileBlockBackend, type BlockBackend } from '../../src/block-backend.ts';
import { DriverVring, IO_WINDOW, TestPlatform, VP, irqFor, linuxVirtioBringUp } from './pci-platform.ts';
import { expectRejected, expectRoundTrip } from './helpers.ts';

const SLOT = 3;
const IRQ = irqFor(SLOT, 1);
const RING = 0x10000;
const HDR = 0x40000;
const STATUS = 0x41000;
const DATA = 0x50000;
const INDIRECT = 0x42000;

const INDIRECT_DESC = 1 << 28;
const EVENT_IDX = 1 << 29;
const ALL_FEATURES = 0xffffffff;

/** A disk whose sector n is filled with byte (n + 1) & 0xff, and sector 0 starts with a marker. */
function patternDisk(sectors: number): Uint8Array {
  const d = new Uint8Array(sectors * 512);
  for (let s = 0; s < sectors; s++) d.fill((s + 1) & 0xff, s * 512, (s + 1) * 512);
  d.set(new TextEncoder().encode('FTX86 DISK'), 0);
  d[510] = 0x55;
  d[511] = 0xaa;
  return d;
}

describe('virtio-blk', () => {
  let p: TestPlatform;
  let backend: BlockBackend;
  let blk: VirtioBlk;
  let io: number;
  let vq: DriverVring;
  let writes: { offset: number; data: Uint8Array }[];
  let flushes: number;

  function plug(b: BlockBackend, serial = 'ftx86-disk0'): void {
    p = new TestPlatform();
    backend = b;
    writes = [];
    flushes = 0;
    blk = new VirtioBlk({
      mem: p.mem,
      irq: p.pci.intxLine(SLOT, 0),
      backend: b,
      serial,
      blockWrite: (offset, data) => writes.push({ offset, data: data.slice() }),
      blockFlush: () => { flushes++; },
    });
    p.pci.plug(SLOT, 0, blk);
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    io = p.ioBar0(SLOT);
  }

  function bringUp(features = ALL_FEATURES): void {
    [vq] = linuxVirtioBringUp(p, io, [RING], features);
  }

  /**
   * One request as virtblk_add_req builds it: header out, data out (OUT) or in (IN), status
   * in. Kicks the queue and returns the status byte the device wrote.
   */
  function request(type: number, sector: number, data: { addr: number; len: number } | undefined, opts: { indirect?: boolean; kick?: boolean } = {}): number {
    p.w32(HDR, type);
    p.w32(HDR + 4, 0);
    p.w32(HDR + 8, sector);
    p.w32(HDR + 12, 0);
    p.w8(STATUS, 0xff);
    const out = [{ addr: HDR, len: 16 }];
    const inb = [{ addr: STATUS, len: 1 }];
    if (data && type === 1) out.push(data);
    if (data && type !== 1) inb.unshift(data);
    if (opts.indirect) vq.addIndirect(INDIRECT, out, inb);
    else vq.add(out, inb);
    if (opts.kick ?? true) p.outw(io + VP.QUEUE_NOTIFY, 0);
    return p.cpu.ram[STATUS];
  }

  describe('on a memory disk', () => {
    beforeEach(() => plug(new MemoryBlockBackend(patternDisk(64))));

    it('offers SEG_MAX, BLK_SIZE and FLUSH and reports capacity, seg_max and blk_size in its config', () => {
      const host = p.inl(io + VP.HOST_FEATURES);
      for (const bit of [VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH]) expect((host >>> bit) & 1).toBe(1);
      expect((host >>> VIRTIO_BLK_F_RO) & 1).toBe(0);
      // Legacy vp_get reads the config byte by byte.
      const cfg = Array.from({ length: 0x18 }, (_, i) => p.inb(io + VP.CONFIG + i));
      const dv = new DataView(Uint8Array.from(cfg).buffer);
      expect(dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32).toBe(64);
      expect(dv.getUint32(0x0c, true)).toBe(254);
      expect(dv.getUint32(0x14, true)).toBe(512);
      expect(p.inl(io + VP.CONFIG)).toBe(64);
    });

    it('reads sector 0 into guest RAM, completes it in the used ring and raises INTx until ISR is read', () => {
      bringUp();
      expect(p.irqLevel(IRQ)).toBe(false);
      const status = request(0, 0, { addr: DATA, len: 512 });
      expect(status).toBe(0);
      expect(new TextDecoder().decode(p.bytes(DATA, 10))).toBe('FTX86 DISK');
      expect(p.bytes(DATA + 510, 2)).toEqual(Uint8Array.of(0x55, 0xaa));
      expect(vq.takeUsed()).toEqual([{ id: 0, len: 513 }]);
      expect(p.irqLevel(IRQ)).toBe(true);
      expect(p.confRead(SLOT, 0, 0x06, 2) & 0x08).toBe(0x08);
      // vp_interrupt: reading ISR returns the queue bit and deasserts the line.
      expect(p.inb(io + VP.ISR)).toBe(1);
      expect(p.irqLevel(IRQ)).toBe(false);
      expect(p.inb(io + VP.ISR)).toBe(0);
    });

    it('reads several sectors into a chain of buffers and through an indirect table', () => {
      bringUp();
      p.w32(HDR, 0); p.w32(HDR + 8, 2); p.w32(HDR + 12, 0);
      vq.add([{ addr: HDR, len: 16 }], [{ addr: DATA, len: 512 }, { addr: DATA + 0x1000, len: 1024 }, { addr: STATUS, len: 1 }]);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expect(p.cpu.ram[STATUS]).toBe(0);
      expect(p.cpu.ram[DATA]).toBe(3);
      expect(p.cpu.ram[DATA + 0x1000]).toBe(4);
      expect(p.cpu.ram[DATA + 0x1000 + 1023]).toBe(5);
      expect(vq.takeUsed()).toEqual([{ id: 0, len: 1537 }]);

      expect(request(0, 7, { addr: DATA, len: 512 }, { indirect: true })).toBe(0);
      expect(p.cpu.ram[DATA]).toBe(8);
      // The freed chain's descriptors are reused LIFO, as in detach_buf_split.
      expect(vq.takeUsed()).toEqual([{ id: 0, len: 513 }]);
    });

    it('writes sectors to the backend and emits blockWrite with the byte offset and data before completing', () => {
      bringUp();
      const data = new Uint8Array(1024).map((_, i) => (i * 7) & 0xff);
      p.fill(DATA, data);
      const before = writes.length;
      expect(request(1, 5, { addr: DATA, len: 1024 })).toBe(0);
      expect((backend as MemoryBlockBackend).bytes.subarray(5 * 512, 7 * 512)).toEqual(data);
      expect(writes.length).toBe(before + 1);
      expect(writes[0].offset).toBe(5 * 512);
      expect(writes[0].data).toEqual(data);
      expect(vq.takeUsed()).toEqual([{ id: 0, len: 1 }]);
    });

    it('completes the guest request only after the hooks ran', () => {
      const seen: number[] = [];
      blk = new VirtioBlk({
        mem: p.mem,
        irq: p.pci.intxLine(4, 0),
        backend,
        blockWrite: () => seen.push(p.r16(vq.used + 2)),
        blockFlush: () => seen.push(p.r16(vq.used + 2)),
      });
      p.pci.plug(4, 0, blk);
      p.pci.assignResources({ ...IO_WINDOW, irqFor });
      io = p.ioBar0(4);
      bringUp();
      p.fill(DATA, new Uint8Array(512).fill(9));
      request(1, 1, { addr: DATA, len: 512 });
      request(4, 0, undefined);
      expect(seen).toEqual([0, 1]);
      expect(p.r16(vq.used + 2)).toBe(2);
    });

    it('flushes the backend and emits blockFlush', () => {
      bringUp();
      expect(request(4, 0, undefined)).toBe(0);
      expect(flushes).toBe(1);
      expect((backend as MemoryBlockBackend).flushes).toBe(1);
      expect(vq.takeUsed()).toEqual([{ id: 0, len: 1 }]);
    });

    it('answers GET_ID with the NUL-padded serial and UNSUPP for unknown request types', () => {
      bringUp();
      p.cpu.ram.fill(0xee, DATA, DATA + 20);
      expect(request(8, 0, { addr: DATA, len: 20 })).toBe(0);
      expect(new TextDecoder().decode(p.bytes(DATA, 11))).toBe('ftx86-disk0');
      expect(p.bytes(DATA + 11, 9)).toEqual(new Uint8Array(9));
      expect(request(11, 0, undefined)).toBe(2); // DISCARD, not offered
    });

    it('fails requests past the end of the disk or of partial sectors with IOERR, writing nothing', () => {
      bringUp();
      expect(request(0, 63, { addr: DATA, len: 1024 })).toBe(1);
      expect(request(1, 64, { addr: DATA, len: 512 })).toBe(1);
      expect(request(1, 0, { addr: DATA, len: 100 })).toBe(1);
      expect(writes).toEqual([]);
      expect(blk.lastError).toBeUndefined();
      expect(request(0, 63, { addr: DATA, len: 512 })).toBe(0);
    });

    it('suppresses the interrupt when the driver sets VRING_AVAIL_F_NO_INTERRUPT', () => {
      bringUp(ALL_FEATURES & ~EVENT_IDX);
      vq.setAvailFlags(1);
      request(0, 0, { addr: DATA, len: 512 });
      expect(vq.takeUsed().length).toBe(1);
      expect(p.irqLevel(IRQ)).toBe(false);
      vq.setAvailFlags(0);
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.irqLevel(IRQ)).toBe(true);
    });

    it('with EVENT_IDX interrupts only when used.idx passes used_event, and publishes avail_event', () => {
      bringUp(ALL_FEATURES);
      // The first completion always interrupts.
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.inb(io + VP.ISR)).toBe(1);
      expect(vq.availEvent).toBe(1);
      // used_event = 2: interrupt when the entry with index 2 is used, not before.
      vq.setUsedEvent(2);
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.inb(io + VP.ISR)).toBe(0);
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.inb(io + VP.ISR)).toBe(1);
      expect(vq.availEvent).toBe(3);
      // Two requests in one kick crossing used_event: one interrupt.
      vq.setUsedEvent(3);
      request(0, 0, { addr: DATA, len: 512 }, { kick: false });
      request(0, 0, { addr: DATA, len: 512 });
      expect(vq.takeUsed().length).toBe(5);
      expect(p.inb(io + VP.ISR)).toBe(1);
    });

    it('marks every page its DMA writes dirty: the data buffers, the status byte and the used ring', () => {
      bringUp();
      p.cpu.exports.dirty_reset();
      p.w32(HDR, 0); p.w32(HDR + 8, 0); p.w32(HDR + 12, 0);
      vq.add([{ addr: HDR, len: 16 }], [{ addr: DATA + 0x0800, len: 0x1000 }, { addr: STATUS, len: 1 }]);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expect(p.cpu.ram[STATUS]).toBe(0);
      const dirty = Array.from(p.cpu.state.dirtyPages()).sort((a, b) => a - b);
      // The buffer straddles two pages; the header page (read only) is not dirtied.
      expect(dirty).toEqual([vq.used >>> 12, STATUS >>> 12, DATA >>> 12, (DATA >>> 12) + 1].sort((a, b) => a - b));
      expect(dirty).not.toContain(HDR >>> 12);
    });

    it('reset by writing 0 to status: queues torn down, ISR and INTx cleared', () => {
      bringUp();
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.irqLevel(IRQ)).toBe(true);
      p.outb(io + VP.STATUS, 0);
      expect(p.irqLevel(IRQ)).toBe(false);
      expect(p.inb(io + VP.STATUS)).toBe(0);
      expect(p.inl(io + VP.QUEUE_PFN)).toBe(0);
      expect(p.inl(io + VP.GUEST_FEATURES)).toBe(0);
      // Linux then probes again from scratch.
      bringUp();
      expect(request(0, 1, { addr: DATA, len: 512 })).toBe(0);
      expect(p.cpu.ram[DATA]).toBe(2);
    });

    it('reports only one queue and drops features it did not offer', () => {
      bringUp();
      p.outw(io + VP.QUEUE_SEL, 1);
      expect(p.inw(io + VP.QUEUE_NUM)).toBe(0);
      expect(p.inl(io + VP.GUEST_FEATURES) & ~p.inl(io + VP.HOST_FEATURES)).toBe(0);
      expect(p.inl(io + VP.GUEST_FEATURES) & INDIRECT_DESC).toBe(INDIRECT_DESC);
    });

    it('does not DMA while bus mastering is off', () => {
      bringUp();
      p.confWrite(SLOT, 0, 0x04, 2, 0x0001);
      request(0, 0, { addr: DATA, len: 512 });
      expect(p.cpu.ram[STATUS]).toBe(0xff);
      p.confWrite(SLOT, 0, 0x04, 2, 0x0005);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expect(p.cpu.ram[STATUS]).toBe(0);
    });

    it('round-trips its state, and the restored ISR drives INTx again', () => {
      bringUp();
      expectRoundTrip(blk, () => {
        request(0, 0, { addr: DATA, len: 512 });
      });
      expect(p.irqLevel(IRQ)).toBe(false);
      request(0, 0, { addr: DATA, len: 512 });
      const saved = blk.saveState();
      expect(p.inb(io + VP.ISR)).toBe(1);
      expect(p.irqLevel(IRQ)).toBe(false);
      blk.loadState(saved);
      expect(p.irqLevel(IRQ)).toBe(true);
    });

    it('refuses a malformed state and applies nothing', () => {
      bringUp();
      request(0, 0, { addr: DATA, len: 512 });
      const good = blk.saveState();
      expectRejected(blk, {}, /transport must be an object/);
      expectRejected(blk, { transport: { ...good.transport, queues: [] } }, /queues/);
      expectRejected(blk, { transport: { ...good.transport, isr: 4 } }, /isr/);
      expectRejected(blk, { transport: { ...good.transport, guestFeatures: 1 << 15 } }, /does not offer/);
      const badQueue = structuredClone(good);
      badQueue.transport.queues[0].lastAvailIdx = 0x10000;
      expectRejected(blk, badQueue, /queues\[0\]\.lastAvailIdx/);
    });
  });

  describe('with a malicious driver', () => {
    beforeEach(() => {
      plug(new MemoryBlockBackend(patternDisk(8)));
      bringUp();
    });

    function expectBroken(message: RegExp): void {
      expect(p.inb(io + VP.STATUS) & 0x40).toBe(0x40);
      expect(blk.lastError).toMatch(message);
      // The configuration-change interrupt tells the driver.
      expect(p.inb(io + VP.ISR) & 2).toBe(2);
    }

    it('stops at a descriptor loop instead of hanging', () => {
      vq.writeDesc(vq.desc, 0, HDR, 16, 1, 1);
      vq.writeDesc(vq.desc, 1, DATA, 512, 1, 0);
      vq.publish(0);
      expect(() => p.outw(io + VP.QUEUE_NOTIFY, 0)).not.toThrow();
      expectBroken(/loops/);
    });

    it('stops at a loop inside an indirect table', () => {
      vq.writeDesc(INDIRECT, 0, HDR, 16, 1, 1);
      vq.writeDesc(INDIRECT, 1, STATUS, 1, 1 | 2, 0);
      vq.writeDesc(vq.desc, 0, INDIRECT, 32, 4, 0);
      vq.publish(0);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expectBroken(/loops/);
    });

    it('refuses buffers outside RAM, above 4 GiB, and heads or next indices out of range', () => {
      vq.writeDesc(vq.desc, 0, 0xfff000, 0x2000, 0, 0);
      vq.publish(0);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expectBroken(/outside RAM/);

      for (const [setup, message] of [
        [() => { vq.writeDesc(vq.desc, 0, HDR, 16, 0, 0); p.w32(vq.desc + 4, 1); vq.publish(0); }, /above 4 GiB/],
        [() => { vq.publish(300); }, /head 300 out of range/],
        [() => { vq.writeDesc(vq.desc, 0, HDR, 16, 1, 999); vq.publish(0); }, /next 999 out of range/],
        [() => { vq.writeDesc(vq.desc, 0, INDIRECT, 17, 4, 0); vq.publish(0); }, /indirect table of 17 bytes/],
        [() => { vq.writeDesc(vq.desc, 0, STATUS, 1, 2 | 1, 1); vq.writeDesc(vq.desc, 1, HDR, 16, 0, 0); vq.publish(0); }, /readable buffer after a writable/],
        [() => { p.w16(vq.avail + 2, 1000); }, /ahead of the device/],
        [() => { vq.writeDesc(vq.desc, 0, STATUS, 1, 2, 0); vq.publish(0); }, /without header or status/],
      ] as const) {
        p.outb(io + VP.STATUS, 0);
        bringUp();
        setup();
        expect(() => p.outw(io + VP.QUEUE_NOTIFY, 0)).not.toThrow();
        expectBroken(message);
      }
    });

    it('refuses a ring placed past the end of RAM', () => {
      p.outb(io + VP.STATUS, 0);
      p.outb(io + VP.STATUS, 3);
      p.outw(io + VP.QUEUE_SEL, 0);
      p.outl(io + VP.QUEUE_PFN, 0xfffff);
      p.outb(io + VP.STATUS, 7);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expectBroken(/outside RAM/);
    });

    it('ignores its queue once broken, and works again after a reset', () => {
      vq.writeDesc(vq.desc, 0, HDR, 16, 1, 0);
      vq.publish(0);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expect(p.inb(io + VP.STATUS) & 0x40).toBe(0x40);
      const used = p.r16(vq.used + 2);
      p.outw(io + VP.QUEUE_NOTIFY, 0);
      expect(p.r16(vq.used + 2)).toBe(used);
      p.outb(io + VP.STATUS, 0);
      expect(p.inb(io + VP.STATUS)).toBe(0);
      expect(blk.lastError).toBeUndefined();
      bringUp();
      expect(request(0, 0, { addr: DATA, len: 512 })).toBe(0);
    });
  });

  describe('on a raw image file', () => {
    let dir: string;
    beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'ftx86-blk-')); });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('reads sector 0 and writes sectors through to the file', () => {
      const path = join(dir, 'disk.img');
      writeFileSync(path, patternDisk(32));
      const file = new RawFileBlockBackend(path);
      plug(file);
      bringUp();
      expect(request(0, 0, { addr: DATA, len: 512 })).toBe(0);
      expect(new TextDecoder().decode(p.bytes(DATA, 10))).toBe('FTX86 DISK');
      const data = new Uint8Array(512).fill(0x5a);
      p.fill(DATA, data);
      expect(request(1, 3, { addr: DATA, len: 512 })).toBe(0);
      expect(request(4, 0, undefined)).toBe(0);
      expect(writes.map((w) => w.offset)).toEqual([3 * 512]);
      expect(flushes).toBe(1);
      file.close();
      const onDisk = readFileSync(path);
      expect(onDisk.subarray(3 * 512, 4 * 512)).toEqual(Buffer.from(data));
      expect(onDisk[4 * 512]).toBe(5);
    });

    it('opened read-only, offers VIRTIO_BLK_F_RO and fails writes with IOERR', () => {
      const path = join(dir, 'ro.img');
      writeFileSync(path, patternDisk(4));
      plug(new RawFileBlockBackend(path, { readOnly: true }));
      expect((p.inl(io + VP.HOST_FEATURES) >>> VIRTIO_BLK_F_RO) & 1).toBe(1);
      bringUp();
      expect(request(1, 0, { addr: DATA, len: 512 })).toBe(1);
      expect(request(0, 1, { addr: DATA, len: 512 })).toBe(0);
      expect(readFileSync(path)).toEqual(Buffer.from(patternDisk(4)));
    });

    it('reports a missing, unreadable or non-regular image clearly', () => {
      expect(() => new RawFileBlockBackend(join(dir, 'nope.img'))).toThrow(/disk image .*nope\.img does not exist/);
      mkdirSync(join(dir, 'sub'));
      expect(() => new RawFileBlockBackend(join(dir, 'sub'), { readOnly: true })).toThrow(/is not a regular file/);
      const locked = join(dir, 'locked.img');
      writeFileSync(locked, new Uint8Array(512));
      chmodSync(locked, 0o000);
      let opened = false;
      try {
        new RawFileBlockBackend(locked).close();
        opened = true; // root ignores file modes
      } catch (e) {
        expect((e as Error).message).toMatch(/locked\.img: permission denied/);
      }
      if (opened) expect(process.getuid?.()).toBe(0);
    });
  });
});
