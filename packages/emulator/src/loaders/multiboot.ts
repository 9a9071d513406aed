/**
 * Multiboot v1 loader (the a.out kludge and ELF32 images) and a flat-binary loader, for
 * small test guests. Both enter the guest in 32-bit protected mode with flat segments,
 * paging off and interrupts disabled, as the Multiboot spec (section 3.2) describes.
 */
import type { Cpu } from '../cpu.ts';
import { FLAT_CODE32, FLAT_DATA32 } from '../cpu-state.ts';

export const MULTIBOOT_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;

export class ImageError extends Error {}

export interface LoadedImage { entry: number; loadStart: number; loadEnd: number }

/** Where the loader puts its own structures: below the 640 KiB line, above the IVT/BDA. */
const GDT_ADDR = 0x800;
const INFO_ADDR = 0x9000;
const CMDLINE_ADDR = 0x9800;
const MMAP_ADDR = 0x9400;

function findHeader(img: Uint8Array): number {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const end = Math.min(8192, img.length) - 12;
  for (let off = 0; off <= end; off += 4) {
    if (dv.getUint32(off, true) !== MULTIBOOT_MAGIC) continue;
    const flags = dv.getUint32(off + 4, true);
    const sum = dv.getUint32(off + 8, true);
    if (((MULTIBOOT_MAGIC + flags + sum) >>> 0) === 0) return off;
  }
  return -1;
}

export function isMultiboot(img: Uint8Array): boolean { return findHeader(img) >= 0; }

/** Load a Multiboot image into RAM and set up the CPU at its entry point. */
export function loadMultiboot(cpu: Cpu, img: Uint8Array, cmdline = ''): LoadedImage {
  const off = findHeader(img);
  if (off < 0) throw new ImageError('not a Multiboot image: no valid header in the first 8 KiB');
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const flags = dv.getUint32(off + 4, true);
  let loaded: LoadedImage;
  if (flags & (1 << 16)) {
    if (off + 32 > img.length) throw new ImageError('Multiboot header truncated (address fields missing)');
    const headerAddr = dv.getUint32(off + 12, true);
    const loadAddr = dv.getUint32(off + 16, true);
    const loadEndAddr = dv.getUint32(off + 20, true);
    const bssEndAddr = dv.getUint32(off + 24, true);
    const entry = dv.getUint32(off + 28, true);
    if (headerAddr < loadAddr || headerAddr - loadAddr > off) throw new ImageError('Multiboot header_addr/load_addr inconsistent with the file');
    const fileStart = off - (headerAddr - loadAddr);
    const size = loadEndAddr ? loadEndAddr - loadAddr : img.length - fileStart;
    if (size < 0 || fileStart + size > img.length) throw new ImageError('Multiboot load_end_addr beyond the end of the file');
    const end = bssEndAddr ? Math.max(bssEndAddr, loadAddr + size) : loadAddr + size;
    checkFits(cpu, loadAddr, end);
    cpu.writePhysical(loadAddr, img.subarray(fileStart, fileStart + size));
    if (end > loadAddr + size) cpu.writePhysical(loadAddr + size, new Uint8Array(end - loadAddr - size));
    loaded = { entry, loadStart: loadAddr, loadEnd: end };
  } else {
    loaded = loadElf32(cpu, img);
  }
  writeInfo(cpu, cmdline);
  enterFlat32(cpu, loaded.entry);
  cpu.state.set('eax', MULTIBOOT_BOOTLOADER_MAGIC);
  cpu.state.set('ebx', INFO_ADDR);
  return loaded;
}

/** Load a flat binary at `addr` and enter it in 32-bit flat protected mode at `entry`. */
export function loadFlat(cpu: Cpu, img: Uint8Array, addr: number, entry = addr): LoadedImage {
  checkFits(cpu, addr, addr + img.length);
  cpu.writePhysical(addr, img);
  enterFlat32(cpu, entry);
  return { entry, loadStart: addr, loadEnd: addr + img.length };
}

function checkFits(cpu: Cpu, start: number, end: number): void {
  if (start < 0x1000 || end > cpu.ramBytes) {
    throw new ImageError(`image needs RAM at [0x${start.toString(16)}, 0x${end.toString(16)}), machine has ${cpu.ramBytes >> 20} MiB`);
  }
}

function loadElf32(cpu: Cpu, img: Uint8Array): LoadedImage {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  if (img.length < 52 || dv.getUint32(0, false) !== 0x7f454c46) throw new ImageError('Multiboot image without the a.out kludge must be ELF');
  if (img[4] !== 1 || img[5] !== 1 || dv.getUint16(18, true) !== 3) throw new ImageError('ELF image is not 32-bit little-endian i386');
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  if (phoff + phnum * phentsize > img.length) throw new ImageError('ELF program headers beyond the end of the file');
  let lo = Infinity, hi = 0;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== 1) continue; // PT_LOAD
    const offset = dv.getUint32(p + 4, true);
    const paddr = dv.getUint32(p + 12, true);
    const filesz = dv.getUint32(p + 16, true);
    const memsz = dv.getUint32(p + 20, true);
    if (offset + filesz > img.length) throw new ImageError('ELF segment beyond the end of the file');
    checkFits(cpu, paddr, paddr + memsz);
    cpu.writePhysical(paddr, img.subarray(offset, offset + filesz));
    if (memsz > filesz) cpu.writePhysical(paddr + filesz, new Uint8Array(memsz - filesz));
    lo = Math.min(lo, paddr);
    hi = Math.max(hi, paddr + memsz);
  }
  if (hi === 0) throw new ImageError('ELF image has no loadable segment');
  return { entry, loadStart: lo, loadEnd: hi };
}

function writeInfo(cpu: Cpu, cmdline: string): void {
  const info = new DataView(new ArrayBuffer(88));
  const memUpperKb = Math.floor((cpu.ramBytes - 0x100000) / 1024);
  info.setUint32(0, (1 << 0) | (1 << 2) | (1 << 6), true); // mem_*, cmdline, mmap
  info.setUint32(4, 640, true);
  info.setUint32(8, memUpperKb, true);
  info.setUint32(16, CMDLINE_ADDR, true);
  const mmap = new DataView(new ArrayBuffer(48));
  // Two entries of 24 bytes (size field excluded from its own count): low RAM and high RAM.
  mmap.setUint32(0, 20, true); mmap.setUint32(4, 0, true); mmap.setUint32(12, 0x9f000, true); mmap.setUint32(20, 1, true);
  mmap.setUint32(24, 20, true); mmap.setUint32(28, 0x100000, true); mmap.setUint32(36, cpu.ramBytes - 0x100000, true); mmap.setUint32(44, 1, true);
  info.setUint32(44, 48, true);
  info.setUint32(48, MMAP_ADDR, true);
  cpu.writePhysical(INFO_ADDR, new Uint8Array(info.buffer));
  cpu.writePhysical(MMAP_ADDR, new Uint8Array(mmap.buffer));
  const cmd = new TextEncoder().encode(cmdline.slice(0, 1023) + '\0');
  cpu.writePhysical(CMDLINE_ADDR, cmd);
}

/** 32-bit flat protected mode with a small GDT (null, code 0x08, data 0x10) for the guest's convenience. */
export function enterFlat32(cpu: Cpu, entry: number): void {
  const gdt = new Uint8Array([
    0, 0, 0, 0, 0, 0, 0, 0,
    0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0,
    0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0,
  ]);
  cpu.writePhysical(GDT_ADDR, gdt);
  const st = cpu.state;
  st.set('cr0', (st.get('cr0') | 1 | 0x10) & ~0x80000000 & ~0x60000000);
  st.setDescriptorTable('gdtr', GDT_ADDR, gdt.length - 1);
  st.setSegment('cs', { selector: 0x08, base: 0, limit: 0xffffffff, attributes: FLAT_CODE32 });
  for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) {
    st.setSegment(s, { selector: 0x10, base: 0, limit: 0xffffffff, attributes: FLAT_DATA32 });
  }
  st.a20 = true;
  st.set('eflags', 0x2);
  st.set('eip', entry >>> 0);
}
