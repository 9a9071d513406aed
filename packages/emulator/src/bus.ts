/**
 * The port I/O and MMIO buses: the address maps live here, devices see offsets
 * (Firecracker's and crosvm's BusDevice). Unclaimed ports read as all ones and swallow
 * writes, as on a PC's ISA bus.
 */
import type { AccessSize, MmioDevice, PortDevice } from './device.ts';

const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffffffff];

export class PortBus {
  private readonly owner = new Int16Array(0x10000).fill(-1);
  private readonly devices: { base: number; dev: PortDevice; name: string }[] = [];
  /** Called for every port write before dispatch (the `ioport write` hook). */
  onWrite: ((port: number, size: AccessSize, value: number) => void) | undefined;

  register(base: number, length: number, dev: PortDevice, name: string): void {
    if (base < 0 || length <= 0 || base + length > 0x10000) throw new RangeError(`${name}: port range ${base}+${length} is invalid`);
    for (let p = base; p < base + length; p++) {
      if (this.owner[p] >= 0) throw new Error(`${name}: port 0x${p.toString(16)} already belongs to ${this.devices[this.owner[p]].name}`);
    }
    const idx = this.devices.push({ base, dev, name }) - 1;
    this.owner.fill(idx, base, base + length);
  }

  read(port: number, size: AccessSize): number {
    const i = this.owner[port];
    if (i < 0) return ALL_ONES[size];
    const d = this.devices[i];
    return d.dev.read(port - d.base, size);
  }

  write(port: number, size: AccessSize, value: number): void {
    this.onWrite?.(port, size, value);
    const i = this.owner[port];
    if (i < 0) return;
    const d = this.devices[i];
    d.dev.write(port - d.base, value, size);
  }

  /** The name of the device owning a port (for --trace-io and diagnostics). */
  ownerName(port: number): string | undefined {
    const i = this.owner[port];
    return i < 0 ? undefined : this.devices[i].name;
  }
}

export class MmioBus {
  private readonly ranges: { base: number; length: number; dev: MmioDevice; name: string }[] = [];
  onWrite: ((addr: number, size: AccessSize, value: number) => void) | undefined;

  register(base: number, length: number, dev: MmioDevice, name: string): void {
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length) throw new Error(`${name}: MMIO range overlaps ${r.name}`);
    }
    this.ranges.push({ base, length, dev, name });
  }

  private find(addr: number) {
    for (const r of this.ranges) if (addr >= r.base && addr < r.base + r.length) return r;
    return undefined;
  }

  read(addr: number, size: AccessSize): number {
    const r = this.find(addr);
    return r ? r.dev.read(addr - r.base, size) : ALL_ONES[size];
  }

  write(addr: number, size: AccessSize, value: number): void {
    this.onWrite?.(addr, size, value);
    const r = this.find(addr);
    if (r) r.dev.write(addr - r.base, value, size);
  }
}
