/**
 * Test-guest ports in QEMU's conventions: the 0xE9 debug console (isa-debugcon) and the
 * 0xF4 exit port (isa-debug-exit: writing v exits with status (v << 1) | 1).
 */
import type { AccessSize, PortDevice } from '../device.ts';

export type ByteSink = (byte: number) => void;

export class DebugConsole implements PortDevice {
  constructor(private readonly out: ByteSink) {}
  // Reading 0xE9 returns 0xE9: how guests detect the Bochs/QEMU debug port.
  read(): number { return 0xe9; }
  write(_offset: number, value: number): void { this.out(value & 0xff); }
}

export class DebugExit implements PortDevice {
  constructor(private readonly exit: (status: number) => void) {}
  read(_offset: number, size: AccessSize): number { return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff; }
  write(_offset: number, value: number, size: AccessSize): void {
    const v = size === 1 ? value & 0xff : size === 2 ? value & 0xffff : value >>> 0;
    this.exit(((v << 1) | 1) >>> 0);
  }
}
