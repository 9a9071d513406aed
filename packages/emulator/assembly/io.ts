// Port I/O: permission checks against IOPL and the TSS I/O bitmap, then out to the host bus.

import { seg_base, seg_limit, seg_attr, cpl, iopl, protected_mode, v86_mode, TR } from './state';
import { gp, read16_sys, read8_sys } from './memory';

@external("host", "io_read")
declare function host_io_read(port: u32, size: u32): u32;
@external("host", "io_write")
declare function host_io_write(port: u32, size: u32, value: u32): void;

export function io_read(port: u32, size: u32): u32 {
  const v = host_io_read(port & 0xffff, size);
  return size == 4 ? v : v & ((1 << (size * 8)) - 1);
}
export function io_write(port: u32, size: u32, value: u32): void {
  host_io_write(port & 0xffff, size, size == 4 ? value : value & ((1 << (size * 8)) - 1));
}

/**
 * I/O permission (SDM Vol. 1, 18.5): in protected mode with CPL > IOPL, and always in V86
 * mode, every bit of the TSS bitmap covering the ports must be clear, else #GP(0).
 */
export function io_check(port: u32, size: u32): void {
  if (!protected_mode()) return;
  if (!v86_mode() && cpl() <= iopl()) return;
  // Only a 32-bit TSS has a bitmap.
  if ((seg_attr(TR) & 0xf) != 0x9 && (seg_attr(TR) & 0xf) != 0xb) gp(0);
  const limit = seg_limit(TR);
  if (limit < 0x67) gp(0);
  const base = seg_base(TR);
  const mapOff = read16_sys(base + 0x66);
  const byteOff = mapOff + (port >>> 3);
  const span: u32 = ((port & 7) + size > 8) ? 2 : 1;
  if (byteOff + span - 1 > limit) gp(0);
  let bits = read8_sys(base + byteOff);
  if (span == 2) bits |= read8_sys(base + byteOff + 1) << 8;
  const mask: u32 = ((1 << size) - 1) << (port & 7);
  if (bits & mask) gp(0);
}
