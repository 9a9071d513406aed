// Port I/O: permission checks against IOPL and the TSS I/O bitmap, then out to the host bus.

import { seg_base, seg_limit, seg_attr, cpl, iopl, protected_mode, v86_mode, TR } from './state';
import { gp, read16_sys } from './memory';

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
 * mode, every bit of the TSS bitmap covering the ports must be clear, else #GP(0). The
 * processor always reads two bitmap bytes (18.5.2: the map ends with an 0xFF byte for
 * this), so both must lie within the TSS limit, whatever the access size.
 */
export function io_check(port: u32, size: u32): void {
  if (!protected_mode()) return;
  if (!v86_mode() && cpl() <= iopl()) return;
  // Only a 32-bit TSS (type 9 or 11) has a bitmap.
  const type = seg_attr(TR) & 0x1f;
  if (type != 0x09 && type != 0x0b) gp(0);
  const limit = seg_limit(TR);
  if (limit < 0x67) gp(0);
  const base = seg_base(TR);
  const byteOff = read16_sys(base + 0x66) + ((port & 0xffff) >>> 3);
  if (byteOff + 1 > limit) gp(0);
  const bits = read16_sys(base + byteOff);
  const mask: u32 = ((1 << size) - 1) << (port & 7);
  if (bits & mask) gp(0);
}
