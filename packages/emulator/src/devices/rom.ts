/**
 * A firmware ROM on the memory bus: read-only, writes ignored (a PC's flash is write-protected
 * unless the chipset opens it, which we do not model).
 */
import type { AccessSize, MmioDevice } from '../device.ts';

export class Rom implements MmioDevice {
  constructor(private readonly image: Uint8Array) {}
  read(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= (this.image[offset + i] ?? 0xff) << (8 * i);
    return v >>> 0;
  }
  write(): void {}
}

/** A ROM image must be a whole number of 4 KiB pages, 64 KiB to 16 MiB. */
export function checkRomImage(image: Uint8Array): void {
  if (image.length % 4096 !== 0 || image.length < 0x10000 || image.length > 16 << 20) {
    throw new Error(`BIOS image must be a multiple of 4 KiB between 64 KiB and 16 MiB, got ${image.length} bytes`);
  }
}
