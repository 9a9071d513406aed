/**
 * A small PC for the PCI and virtio tests: a real Cpu (its RAM and dirty map), the port and
 * MMIO buses, a real 8259 pair with the ELCR, and PCI bus 0 on 0xCF8/0xCFC. The guest side
 * (Linux's drivers) is played by the test through port I/O and plain stores into RAM.
 */
import { Cpu } from '../../src/cpu.ts';
import { MmioBus, PortBus } from '../../src/bus.ts';
import { CpuGuestMemory } from '../../src/guest-memory.ts';
import type { AccessSize } from '../../src/device.ts';
import { Pic8259 } from '../../src/devices/pic8259.ts';
import { PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT, PciBus } from '../../src/pci.ts';

export const RAM_BYTES = 16 << 20;
export const IO_WINDOW = { ioBase: 0xc000, ioLimit: 0xffff, mmioBase: 0xe0000000, mmioLimit: 0xfebfffff };

/** INTA# of slot n goes to PIRQ[(n + pin - 1) & 3], PIRQA-D on IRQ 10, 11, 10, 11 (two level IRQs). */
export function irqFor(slot: number, pin: number): number {
  return ((slot + pin - 1) & 1) === 0 ? 10 : 11;
}

export class TestPlatform {
  readonly ports = new PortBus();
  readonly mmio = new MmioBus();
  readonly pic = new Pic8259();
  readonly cpu: Cpu;
  readonly mem: CpuGuestMemory;
  readonly pci: PciBus;
  readonly ramView: DataView;

  constructor() {
    this.cpu = new Cpu({
      ramBytes: RAM_BYTES,
      bus: {
        ioRead: (port, size) => this.ports.read(port, size as AccessSize),
        ioWrite: (port, size, value) => this.ports.write(port, size as AccessSize, value),
        mmioRead: (addr, size) => this.mmio.read(addr, size as AccessSize),
        mmioWrite: (addr, size, value) => this.mmio.write(addr, size as AccessSize, value),
        interruptAcknowledge: () => this.pic.acknowledge(),
      },
    });
    this.mem = new CpuGuestMemory(this.cpu);
    this.ramView = new DataView(this.cpu.ram.buffer, this.cpu.ram.byteOffset, this.cpu.ram.byteLength);
    this.ports.register(0x20, 2, this.pic.master, 'pic.master');
    this.ports.register(0xa0, 2, this.pic.slave, 'pic.slave');
    this.ports.register(0x4d0, 2, this.pic.elcr, 'pic.elcr');
    this.pci = new PciBus({ ports: this.ports, mmio: this.mmio, irq: (n) => this.pic.irq(n) });
    this.ports.register(PCI_CONFIG_ADDRESS_PORT, 1, this.pci.configAddress, 'pci.config-address');
    this.ports.register(PCI_CONFIG_DATA_PORT, 4, this.pci.configData, 'pci.config-data');
    // The platform marks the PCI IRQs level triggered (ELCR2 bits 2 and 3 = IRQ 10, 11)
    // and unmasks them, as Linux would once it requested them.
    this.outb(0x4d1, 0x0c);
    this.linuxInitPic();
  }

  /** arch/x86/kernel/i8259.c init_8259A with IRQ2 (cascade), 10 and 11 unmasked. */
  private linuxInitPic(): void {
    this.outb(0x21, 0xff);
    this.outb(0x20, 0x11); this.outb(0x21, 0x30); this.outb(0x21, 0x04); this.outb(0x21, 0x01);
    this.outb(0xa0, 0x11); this.outb(0xa1, 0x38); this.outb(0xa1, 0x02); this.outb(0xa1, 0x01);
    this.outb(0x21, 0xfb);
    this.outb(0xa1, 0xf3);
  }

  /** The level the PIC sees on ISA IRQ n (IRR follows the pin in level mode). */
  irqLevel(n: number): boolean {
    return (this.pic.registers().irr & (1 << n)) !== 0;
  }

  inb(port: number): number { return this.ports.read(port, 1); }
  inw(port: number): number { return this.ports.read(port, 2); }
  inl(port: number): number { return this.ports.read(port, 4) >>> 0; }
  outb(port: number, v: number): void { this.ports.write(port, 1, v); }
  outw(port: number, v: number): void { this.ports.write(port, 2, v); }
  outl(port: number, v: number): void { this.ports.write(port, 4, v); }

  /** arch/x86/pci/direct.c pci_conf1_read. */
  confRead(slot: number, fn: number, reg: number, size: AccessSize): number {
    this.outl(0xcf8, (0x80000000 | (slot << 11) | (fn << 8) | (reg & 0xfc)) >>> 0);
    if (size === 1) return this.inb(0xcfc + (reg & 3));
    if (size === 2) return this.inw(0xcfc + (reg & 2));
    return this.inl(0xcfc);
  }

  /** arch/x86/pci/direct.c pci_conf1_write. */
  confWrite(slot: number, fn: number, reg: number, size: AccessSize, value: number): void {
    this.outl(0xcf8, (0x80000000 | (slot << 11) | (fn << 8) | (reg & 0xfc)) >>> 0);
    if (size === 1) this.outb(0xcfc + (reg & 3), value);
    else if (size === 2) this.outw(0xcfc + (reg & 2), value);
    else this.outl(0xcfc, value);
  }

  /** The I/O base of a function's BAR0, as Linux's pci_resource_start reads it. */
  ioBar0(slot: number): number {
    return this.confRead(slot, 0, 0x10, 4) & 0xfffffffc;
  }

  // Guest stores into RAM (no dirty marking needed: the tests check the device's DMA).
  w8(addr: number, v: number): void { this.cpu.ram[addr] = v; }
  w16(addr: number, v: number): void { this.ramView.setUint16(addr, v, true); }
  w32(addr: number, v: number): void { this.ramView.setUint32(addr, v, true); }
  r16(addr: number): number { return this.ramView.getUint16(addr, true); }
  r32(addr: number): number { return this.ramView.getUint32(addr, true); }
  bytes(addr: number, len: number): Uint8Array { return this.cpu.ram.slice(addr, addr + len); }
  fill(addr: number, data: Uint8Array): void { this.cpu.ram.set(data, addr); }
}

// Legacy virtio header (include/uapi/linux/virtio_pci.h).
export const VP = {
  HOST_FEATURES: 0x00, GUEST_FEATURES: 0x04, QUEUE_PFN: 0x08, QUEUE_NUM: 0x0c, QUEUE_SEL: 0x0e,
  QUEUE_NOTIFY: 0x10, STATUS: 0x12, ISR: 0x13, CONFIG: 0x14,
} as const;

export interface Buf { addr: number; len: number }

/**
 * The driver side of one split ring, as drivers/virtio/virtio_ring.c lays it out and fills
 * it (vring_init with VIRTIO_PCI_VRING_ALIGN, virtqueue_add_split, virtqueue_get_buf).
 */
export class DriverVring {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private freeHead = 0;
  private numFree: number;
  private lastUsed = 0;
  private readonly chainLength = new Map<number, number>();

  constructor(private readonly p: TestPlatform, readonly base: number, readonly num: number) {
    this.desc = base;
    this.avail = base + 16 * num;
    this.used = Math.ceil((this.avail + 2 * (3 + num)) / 4096) * 4096;
    this.numFree = num;
    p.cpu.ram.fill(0, base, this.used + 6 + 8 * num);
    for (let i = 0; i < num - 1; i++) p.w16(this.desc + 16 * i + 14, i + 1);
  }

  get availIdx(): number { return this.p.r16(this.avail + 2); }

  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const d = table + 16 * i;
    this.p.w32(d, addr);
    this.p.w32(d + 4, 0);
    this.p.w32(d + 8, len);
    this.p.w16(d + 12, flags);
    this.p.w16(d + 14, next);
  }

  /** Add a chain of device-readable then device-writable buffers; returns its head. */
  add(out: Buf[], inb: Buf[]): number {
    const all = [...out.map((b) => ({ ...b, write: false })), ...inb.map((b) => ({ ...b, write: true }))];
    if (all.length > this.numFree) throw new Error('ring full');
    const head = this.freeHead;
    let i = head;
    all.forEach((b, k) => {
      const last = k === all.length - 1;
      const next = this.p.r16(this.desc + 16 * i + 14);
      this.writeDesc(this.desc, i, b.addr, b.len, (last ? 0 : 1) | (b.write ? 2 : 0), next);
      if (!last) i = next;
      else this.freeHead = next;
    });
    this.numFree -= all.length;
    this.chainLength.set(head, all.length);
    this.publish(head);
    return head;
  }

  /** Add one descriptor pointing at an indirect table built at `table` (VRING_DESC_F_INDIRECT). */
  addIndirect(table: number, out: Buf[], inb: Buf[]): number {
    const all = [...out.map((b) => ({ ...b, write: false })), ...inb.map((b) => ({ ...b, write: true }))];
    all.forEach((b, k) => {
      const last = k === all.length - 1;
      this.writeDesc(table, k, b.addr, b.len, (last ? 0 : 1) | (b.write ? 2 : 0), last ? 0 : k + 1);
    });
    const head = this.freeHead;
    const next = this.p.r16(this.desc + 16 * head + 14);
    this.writeDesc(this.desc, head, table, 16 * all.length, 4, next);
    this.freeHead = next;
    this.numFree -= 1;
    this.chainLength.set(head, 1);
    this.publish(head);
    return head;
  }

  /** Put `head` in the avail ring and bump avail.idx (the device sees it at the kick). */
  publish(head: number): void {
    const idx = this.availIdx;
    this.p.w16(this.avail + 4 + 2 * (idx % this.num), head);
    this.p.w16(this.avail + 2, (idx + 1) & 0xffff);
  }

  /** New used entries since the last call (virtqueue_get_buf), freeing their descriptors. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const usedIdx = this.p.r16(this.used + 2);
    while (this.lastUsed !== usedIdx) {
      const e = this.used + 4 + 8 * (this.lastUsed % this.num);
      const id = this.p.r32(e);
      out.push({ id, len: this.p.r32(e + 4) });
      // Return the chain to the free list, as detach_buf_split does.
      const n = this.chainLength.get(id) ?? 1;
      let last = id;
      for (let k = 1; k < n; k++) last = this.p.r16(this.desc + 16 * last + 14);
      this.p.w16(this.desc + 16 * last + 14, this.freeHead);
      this.freeHead = id;
      this.numFree += n;
      this.chainLength.delete(id);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  setAvailFlags(flags: number): void { this.p.w16(this.avail, flags); }
  /** used_event, at the end of the avail ring (VIRTIO_RING_F_EVENT_IDX). */
  setUsedEvent(v: number): void { this.p.w16(this.avail + 4 + 2 * this.num, v); }
  /** avail_event, at the end of the used ring, as the device published it. */
  get availEvent(): number { return this.p.r16(this.used + 4 + 8 * this.num); }
}

/**
 * Linux's legacy probe and virtio core bring-up (virtio_pci_legacy.c, virtio.c
 * virtio_dev_probe): reset, ACKNOWLEDGE, DRIVER, read and write features, set up each
 * queue (select, read size, write PFN), DRIVER_OK. Returns the driver's rings.
 */
export function linuxVirtioBringUp(p: TestPlatform, io: number, ringBases: number[], wantFeatures: number): DriverVring[] {
  p.outb(io + VP.STATUS, 0);
  p.inb(io + VP.STATUS);
  p.outb(io + VP.STATUS, 1);
  p.outb(io + VP.STATUS, 1 | 2);
  const host = p.inl(io + VP.HOST_FEATURES);
  p.outl(io + VP.GUEST_FEATURES, (host & wantFeatures) >>> 0);
  const rings = ringBases.map((base, i) => {
    p.outw(io + VP.QUEUE_SEL, i);
    const num = p.inw(io + VP.QUEUE_NUM);
    if (num === 0 || p.inl(io + VP.QUEUE_PFN) !== 0) throw new Error(`queue ${i} unavailable`);
    const ring = new DriverVring(p, base, num);
    p.outl(io + VP.QUEUE_PFN, base >>> 12);
    return ring;
  });
  p.outb(io + VP.STATUS, 1 | 2 | 4);
  return rings;
}
