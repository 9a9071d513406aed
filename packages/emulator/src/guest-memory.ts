/** The GuestMemory a DMA-capable device gets: bounds-checked, and every write marks pages dirty. */
import type { GuestMemory } from './device.ts';
import type { Cpu } from './cpu.ts';

export class CpuGuestMemory implements GuestMemory {
  constructor(private readonly cpu: Cpu) {}
  get size(): number { return this.cpu.ramBytes; }
  private check(addr: number, len: number): void {
    if (!(addr >= 0 && len >= 0 && addr + len <= this.cpu.ramBytes)) {
      throw new RangeError(`guest DMA [0x${addr.toString(16)}, +${len}) outside RAM`);
    }
  }
  read(addr: number, len: number): Uint8Array { this.check(addr, len); return this.cpu.ram.slice(addr, addr + len); }
  view(addr: number, len: number): Uint8Array { this.check(addr, len); return this.cpu.ram.subarray(addr, addr + len); }
  write(addr: number, data: Uint8Array): void { this.cpu.writePhysical(addr, data); }
  read32(addr: number): number { this.check(addr, 4); const r = this.cpu.ram; return (r[addr] | (r[addr + 1] << 8) | (r[addr + 2] << 16) | (r[addr + 3] << 24)) >>> 0; }
  read16(addr: number): number { this.check(addr, 2); const r = this.cpu.ram; return r[addr] | (r[addr + 1] << 8); }
  write32(addr: number, v: number): void {
    this.check(addr, 4);
    const r = this.cpu.ram;
    r[addr] = v; r[addr + 1] = v >>> 8; r[addr + 2] = v >>> 16; r[addr + 3] = v >>> 24;
    this.cpu.markDirty(addr, 4);
  }
  write16(addr: number, v: number): void {
    this.check(addr, 2);
    const r = this.cpu.ram;
    r[addr] = v; r[addr + 1] = v >>> 8;
    this.cpu.markDirty(addr, 2);
  }
}
