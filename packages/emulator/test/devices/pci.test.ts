import { beforeEach, describe, expect, it } from 'vitest';
import type { AccessSize, IrqLine, MmioDevice } from '../../src/device.ts';
import { PciConfigSpace, type PciBar, type PciFunction } from '../../src/pci.ts';
import { VirtioBlk } from '../../src/devices/virtio-blk.ts';
import { VirtioNet } from '../../src/devices/virtio-net.ts';
import { MemoryBlockBackend } from '../../src/block-backend.ts';
import { IO_WINDOW, TestPlatform, VP, irqFor } from './pci-platform.ts';
import { expectRejected, expectRoundTrip } from './helpers.ts';

/** A function with a 4 KiB memory BAR holding 1024 scratch dwords and an INTA# pin. */
class ScratchFunction implements PciFunction {
  readonly name = 'scratch';
  readonly regs = new Uint32Array(1024);
  readonly bars: PciBar[];
  readonly config: PciConfigSpace;
  constructor(readonly intx?: IrqLine) {
    const dev: MmioDevice = {
      read: (offset: number, _size: AccessSize) => this.regs[offset >> 2],
      write: (offset: number, value: number) => { this.regs[offset >> 2] = value; },
    };
    this.bars = [{ kind: 'memory', size: 4096, device: dev }];
    this.config = new PciConfigSpace({ vendorId: 0x1234, deviceId: 0x5678, revisionId: 1, classCode: 0xff0000, interruptPin: 1 }, this.bars);
  }
}

interface Found { slot: number; fn: number; vendor: number; device: number; classCode: number; headerType: number }

/** drivers/pci/probe.c pci_scan_slot over bus 0: function 0, then 1-7 if multi-function. */
function scanBus0(p: TestPlatform): Found[] {
  const found: Found[] = [];
  for (let slot = 0; slot < 32; slot++) {
    for (let fn = 0; fn < 8; fn++) {
      const id = p.confRead(slot, fn, 0, 4);
      if ((id & 0xffff) === 0xffff) { if (fn === 0) break; continue; }
      const headerType = p.confRead(slot, fn, 0x0e, 1);
      found.push({ slot, fn, vendor: id & 0xffff, device: id >>> 16, classCode: p.confRead(slot, fn, 0x08, 4) >>> 8, headerType });
      if (fn === 0 && !(headerType & 0x80)) break;
    }
  }
  return found;
}

describe('pci', () => {
  let p: TestPlatform;
  let net: VirtioNet;
  let blk: VirtioBlk;

  beforeEach(() => {
    p = new TestPlatform();
    net = new VirtioNet({ mem: p.mem, irq: p.pci.intxLine(2, 0), mac: '52:54:00:12:34:56', send: () => {} });
    blk = new VirtioBlk({ mem: p.mem, irq: p.pci.intxLine(3, 0), backend: new MemoryBlockBackend(1 << 20) });
    p.pci.plug(2, 0, net);
    p.pci.plug(3, 0, blk);
  });

  it('passes Linux pci_check_type1: CONFIG_ADDRESS reads back 0x80000000 after a byte write to 0xCFB', () => {
    p.outb(0xcfb, 0x01);
    const saved = p.inl(0xcf8);
    p.outl(0xcf8, 0x80000000);
    expect(p.inl(0xcf8)).toBe(0x80000000);
    p.outl(0xcf8, saved);
    // pci_sanity_check: a host bridge on bus 0.
    expect(p.confRead(0, 0, 0x0a, 2)).toBe(0x0600);
  });

  it('enumerates the i440FX, the PIIX3 and the virtio functions, and nothing else', () => {
    expect(scanBus0(p)).toEqual([
      { slot: 0, fn: 0, vendor: 0x8086, device: 0x1237, classCode: 0x060000, headerType: 0x00 },
      { slot: 1, fn: 0, vendor: 0x8086, device: 0x7000, classCode: 0x060100, headerType: 0x80 },
      { slot: 2, fn: 0, vendor: 0x1af4, device: 0x1000, classCode: 0x020000, headerType: 0x00 },
      { slot: 3, fn: 0, vendor: 0x1af4, device: 0x1001, classCode: 0x010000, headerType: 0x00 },
    ]);
    // The virtio legacy driver's checks: revision 0, subsystem = virtio device type.
    expect(p.confRead(2, 0, 0x08, 1)).toBe(0);
    expect(p.confRead(2, 0, 0x2e, 2)).toBe(1);
    expect(p.confRead(3, 0, 0x2e, 2)).toBe(2);
    expect(p.confRead(3, 0, 0x2c, 2)).toBe(0x1af4);
    // No capability list, so virtio_pci_modern_probe leaves it to the legacy driver.
    expect(p.confRead(3, 0, 0x06, 2) & 0x10).toBe(0);
  });

  it('answers byte, word and dword accesses at every offset of the data window', () => {
    const dword = p.confRead(0, 0, 0, 4);
    expect(dword).toBe(0x12378086);
    p.outl(0xcf8, 0x80000000);
    expect([0, 1, 2, 3].map((o) => p.inb(0xcfc + o))).toEqual([0x86, 0x80, 0x37, 0x12]);
    expect([0, 1, 2].map((o) => p.inw(0xcfc + o))).toEqual([0x8086, 0x3780, 0x1237]);
    // Enable bit clear: nothing answers.
    p.outl(0xcf8, 0x00000000);
    expect(p.inl(0xcfc)).toBe(0xffffffff);
    // A bus that does not exist.
    expect(p.confRead(0, 0, 0, 4)).toBe(0x12378086);
    p.outl(0xcf8, 0x80010000);
    expect(p.inl(0xcfc)).toBe(0xffffffff);
  });

  it('keeps read-only registers, takes RW ones and clears status error bits by writing ones', () => {
    p.confWrite(3, 0, 0x00, 4, 0xdeadbeef);
    expect(p.confRead(3, 0, 0x00, 4)).toBe(0x10011af4);
    p.confWrite(3, 0, 0x3d, 1, 4);
    expect(p.confRead(3, 0, 0x3d, 1)).toBe(1);
    p.confWrite(3, 0, 0x3c, 1, 0x0b);
    expect(p.confRead(3, 0, 0x3c, 1)).toBe(0x0b);
    p.confWrite(3, 0, 0x0d, 1, 0x40);
    expect(p.confRead(3, 0, 0x0d, 1)).toBe(0x40);
    blk.config.bytes[0x07] |= 0x20; // received master abort
    p.confWrite(3, 0, 0x06, 2, 0x0000);
    expect(p.confRead(3, 0, 0x06, 2) & 0x2000).toBe(0x2000);
    p.confWrite(3, 0, 0x06, 2, 0xffff);
    expect(p.confRead(3, 0, 0x06, 2) & 0x2000).toBe(0);
    // A word write through 0xCFE reaches the status register alone.
    p.confWrite(3, 0, 0x04, 2, 0x0005);
    expect(p.confRead(3, 0, 0x04, 2)).toBe(0x0005);
  });

  it('sizes BARs the way __pci_read_base does: all ones in, the size mask out', () => {
    const cmd = p.confRead(3, 0, 0x04, 2);
    p.confWrite(3, 0, 0x04, 2, cmd & ~3);
    const orig = p.confRead(3, 0, 0x10, 4);
    p.confWrite(3, 0, 0x10, 4, 0xffffffff);
    const sz = p.confRead(3, 0, 0x10, 4);
    p.confWrite(3, 0, 0x10, 4, orig);
    p.confWrite(3, 0, 0x04, 2, cmd);
    expect(sz & 1).toBe(1); // I/O space
    expect((~(sz & 0xfffffffc) >>> 0) + 1).toBe(64); // virtio-blk's legacy BAR0
    // BAR1-5 and the ROM BAR are not implemented: they read back 0.
    for (const reg of [0x14, 0x18, 0x1c, 0x20, 0x24, 0x30]) {
      p.confWrite(3, 0, reg, 4, 0xffffffff);
      expect(p.confRead(3, 0, reg, 4)).toBe(0);
    }
  });

  it('assigns aligned BARs in the windows, enables decoding and bus mastering, and routes INTA#', () => {
    const scratch = new ScratchFunction(p.pci.intxLine(4, 0));
    p.pci.plug(4, 0, scratch);
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    for (const slot of [2, 3]) {
      const io = p.ioBar0(slot);
      expect(io).toBeGreaterThanOrEqual(IO_WINDOW.ioBase);
      expect(io % (slot === 2 ? 32 : 64)).toBe(0);
      expect(p.confRead(slot, 0, 0x04, 2) & 0x7).toBe(0x5); // I/O + bus master
      expect(p.confRead(slot, 0, 0x3c, 1)).toBe(irqFor(slot, 1));
    }
    expect(p.ioBar0(2)).not.toBe(p.ioBar0(3));
    const mem = p.confRead(4, 0, 0x10, 4);
    expect(mem).toBe(IO_WINDOW.mmioBase);
    expect(p.confRead(4, 0, 0x04, 2) & 0x7).toBe(0x6); // memory + bus master
    // The bridges have no BARs and no pin.
    expect(p.confRead(0, 0, 0x3d, 1)).toBe(0);
    // The BARs reach the devices: virtio-net's host features through its I/O BAR, the
    // scratch registers through MMIO.
    expect(p.inl(p.ioBar0(2) + VP.HOST_FEATURES) & (1 << 5)).toBe(1 << 5);
    p.mmio.write(mem + 8, 4, 0xcafef00d);
    expect(scratch.regs[2]).toBe(0xcafef00d);
    expect(p.mmio.read(mem + 8, 4)).toBe(0xcafef00d);
  });

  it('follows the guest when it moves a BAR or turns decoding off', () => {
    const scratch = new ScratchFunction();
    p.pci.plug(4, 0, scratch);
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    const oldIo = p.ioBar0(3);
    const newIo = 0x8000;
    p.confWrite(3, 0, 0x10, 4, newIo);
    expect(p.ioBar0(3)).toBe(newIo);
    expect(p.inw(oldIo + VP.QUEUE_NUM)).toBe(0xffff);
    p.outw(newIo + VP.QUEUE_SEL, 0);
    expect(p.inw(newIo + VP.QUEUE_NUM)).toBe(256);
    // I/O decode off: the device is gone from the port bus.
    p.confWrite(3, 0, 0x04, 2, 0x0004);
    expect(p.inw(newIo + VP.QUEUE_NUM)).toBe(0xffff);
    p.confWrite(3, 0, 0x04, 2, 0x0005);
    expect(p.inw(newIo + VP.QUEUE_NUM)).toBe(256);
    // Moving back to a range claimed earlier works as well.
    p.confWrite(3, 0, 0x10, 4, oldIo);
    expect(p.inw(oldIo + VP.QUEUE_NUM)).toBe(256);
    expect(p.inw(newIo + VP.QUEUE_NUM)).toBe(0xffff);

    const oldMem = p.confRead(4, 0, 0x10, 4);
    p.confWrite(4, 0, 0x10, 4, 0xd0000000);
    p.mmio.write(0xd0000004, 4, 7);
    expect(scratch.regs[1]).toBe(7);
    expect(p.mmio.read(oldMem + 4, 4)).toBe(0xffffffff);
    // A sizing write with decode on leaves the BAR at the top of 4 GiB, which is not decoded.
    p.confWrite(4, 0, 0x10, 4, 0xffffffff);
    expect(p.confRead(4, 0, 0x10, 4)).toBe(0xfffff000);
    expect(p.mmio.read(0xfffff004, 4)).toBe(0xffffffff);
  });

  it('does not take ports another device owns when a BAR lands on them', () => {
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    p.confWrite(3, 0, 0x10, 4, 0x0000); // unassigned again: not decoded at 0
    expect(p.ports.ownerName(0)).toBeUndefined();
    p.confWrite(3, 0, 0x10, 4, 0x0cc0); // 0xCC0-0xCFF: the config ports stay the bridge's
    expect(p.ports.ownerName(0xcc0)).toBe('pci');
    expect(p.ports.ownerName(0xcfc)).toBe('pci.config-data');
    expect(p.confRead(0, 0, 0, 4)).toBe(0x12378086);
    p.confWrite(2, 0, 0x10, 4, 0x0020); // over the master PIC
    expect(p.ports.ownerName(0x20)).toBe('pic.master');
  });

  it('ORs shared INTx lines into the routed IRQ, honours Interrupt Disable and mirrors status bit 3', () => {
    const a = new ScratchFunction(p.pci.intxLine(4, 0));
    const b = new ScratchFunction(p.pci.intxLine(6, 0));
    p.pci.plug(4, 0, a);
    p.pci.plug(6, 0, b);
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    expect(irqFor(4, 1)).toBe(irqFor(6, 1));
    const irq = irqFor(4, 1);
    a.intx!.set(true);
    b.intx!.set(true);
    expect(p.irqLevel(irq)).toBe(true);
    expect(p.confRead(4, 0, 0x06, 2) & 0x08).toBe(0x08);
    a.intx!.set(false);
    expect(p.irqLevel(irq)).toBe(true);
    b.intx!.set(false);
    expect(p.irqLevel(irq)).toBe(false);
    a.intx!.set(true);
    p.confWrite(4, 0, 0x04, 2, p.confRead(4, 0, 0x04, 2) | 0x400);
    expect(p.irqLevel(irq)).toBe(false);
    expect(p.confRead(4, 0, 0x06, 2) & 0x08).toBe(0x08);
    p.confWrite(4, 0, 0x04, 2, p.confRead(4, 0, 0x04, 2) & ~0x400);
    expect(p.irqLevel(irq)).toBe(true);
  });

  it('refuses resources that do not fit the windows, assigning nothing', () => {
    const before = p.pci.saveState();
    expect(() => p.pci.assignResources({ ...IO_WINDOW, ioBase: 0xffc0, irqFor })).toThrow(/virtio-net BAR0 \(32 bytes\) does not fit the I\/O window/);
    expect(() => p.pci.assignResources({ ...IO_WINDOW, irqFor: () => 2 })).toThrow(/not an ISA IRQ/);
    expect(p.pci.saveState()).toEqual(before);
  });

  it('refuses a second function in a taken slot and a BAR that is not a power of two', () => {
    expect(() => p.pci.plug(3, 0, new ScratchFunction())).toThrow(/already holds virtio-blk/);
    expect(() => new PciConfigSpace({ vendorId: 1, deviceId: 2, revisionId: 0, classCode: 0 }, [
      { kind: 'io', size: 48, device: { read: () => 0, write: () => {} } },
    ])).toThrow(/power of two/);
  });

  it('round-trips its state, and a restore re-creates the decoding', () => {
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    expectRoundTrip(p.pci, () => {
      p.confWrite(3, 0, 0x10, 4, 0x9000);
      p.confWrite(2, 0, 0x3c, 1, 5);
    });
    const io = p.ioBar0(3);
    expect(io).not.toBe(0x9000);
    p.outw(io + VP.QUEUE_SEL, 0);
    expect(p.inw(io + VP.QUEUE_NUM)).toBe(256);
    expect(p.inw(0x9000 + VP.QUEUE_NUM)).toBe(0xffff);
  });

  it('refuses a malformed or foreign state and applies nothing', () => {
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    const good = p.pci.saveState();
    expectRejected(p.pci, { ...good, configAddress: -1 }, /configAddress/);
    expectRejected(p.pci, { ...good, functions: good.functions.slice(1) }, /functions/);
    const foreign = structuredClone(good);
    foreign.functions[3].config[2] = 0x02; // a different device ID in 00:03.0
    expectRejected(p.pci, foreign, /00:03\.0 config byte 0x2 differs/);
    const moved = structuredClone(good);
    moved.functions[3].slot = 9;
    expectRejected(p.pci, moved, /00:09\.0 is not plugged/);
    const short = structuredClone(good);
    short.functions[0].config = new Uint8Array(255);
    expectRejected(p.pci, short, /config must be a Uint8Array of 256 bytes/);
  });
});
