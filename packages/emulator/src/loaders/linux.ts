/**
 * The Linux/x86 boot protocol, 32-bit entry (Documentation/arch/x86/boot.rst, "32-bit Boot
 * Protocol"; zero-page.rst for struct boot_params). There is no BIOS and no real-mode setup
 * code runs: the loader does what setup would have done for the kernel. It
 *
 *   - checks the bzImage setup header and copies it into a zeroed boot_params ("zero page"),
 *   - loads the protected-mode kernel at pref_address (relocatable kernels, when it fits) or
 *     at 1 MiB,
 *   - places the initrd page-aligned at the top of RAM, below initrd_addr_max and above all
 *     the memory the kernel's decompressor will use (init_size from where it runs),
 *   - writes the command line, the e820 map and the loader fields of the header,
 *   - enters startup_32 with ESI = boot_params, flat __BOOT_CS (0x10) / __BOOT_DS (0x18),
 *     paging and interrupts off, EBP = EDI = EBX = 0, as boot.rst requires.
 */
import type { Cpu } from '../cpu.ts';
import { FLAT_CODE32, FLAT_DATA32 } from '../cpu-state.ts';
import { BIOS_AREA_ADDR, EBDA_ADDR, HIGH_MEMORY_ADDR } from '../layout.ts';
import { ImageError } from './multiboot.ts';

// Where the loader puts its own structures: usable low RAM that Linux reads before it
// allocates anything (head_32.S copies boot_params and the command line first thing), and
// that the decompressor, which works at and above 1 MiB, never touches.
const GDT_ADDR = 0x500;
const ZERO_PAGE_ADDR = 0x7000;
const CMDLINE_ADDR = 0x20000;
const BOOT_STACK_TOP = ZERO_PAGE_ADDR;

/** boot_params fields (zero-page.rst) and setup_header fields (boot.rst), as zero-page offsets. */
const BP = {
  acpiRsdpAddr: 0x070,
  altMemK: 0x1e0,
  e820Entries: 0x1e8,
  setupSects: 0x1f1,
  syssize: 0x1f4,
  bootFlag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  minAlignment: 0x235,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  hardwareSubarch: 0x23c,
  prefAddress: 0x258,
  initSize: 0x260,
  e820Table: 0x2d0,
} as const;
const ZERO_PAGE_SIZE = 0x1000;
const E820_MAX_ENTRIES = 128;
const HDRS_MAGIC = 0x53726448; // "HdrS"

// loadflags (boot.rst, "Details of header fields").
const LOADED_HIGH = 0x01;
const KEEP_SEGMENTS = 0x40;
const CAN_USE_HEAP = 0x80;
// xloadflags (protocol 2.12).
const XLF_KERNEL_64 = 0x01;

/** No assigned boot loader ID: boot.rst says "enter 0xFF here". */
const TYPE_OF_LOADER_UNDEFINED = 0xff;
/** The heap end a real-mode setup would get, relative to its segment, minus 0x200 (boot.rst). */
const HEAP_END_PTR = 0xde00;
/** Linux boot selectors (boot.rst, 32-bit boot protocol; arch/x86/include/asm/segment.h). */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;

export const MIN_PROTOCOL = 0x206;

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;

export interface E820Entry { addr: number; size: number; type: number }

/** The setup header fields the loader uses. */
export interface BzImageHeader {
  /** Boot protocol version, e.g. 0x20f for 2.15. */
  version: number;
  setupSects: number;
  /** Size of the protected-mode code in bytes (syssize * 16). */
  kernelSize: number;
  /** File offset of the protected-mode code: (setup_sects + 1) * 512. */
  kernelOffset: number;
  loadflags: number;
  code32Start: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatable: boolean;
  xloadflags: number;
  /** Longest command line in bytes, without the terminating NUL. */
  cmdlineSize: number;
  /** Where the decompressor puts the kernel by default (LOAD_PHYSICAL_ADDR). */
  prefAddress: number;
  /** Memory the kernel needs from where it runs, until it has set up its own allocator. */
  initSize: number;
  /** Bytes 0x1f1 .. end of the setup header, to copy into boot_params. */
  setupHeader: Uint8Array;
}

export interface LinuxBootOptions {
  cmdline?: string;
  initrd?: Uint8Array;
  /** Physical address of the ACPI RSDP, for boot_params.acpi_rsdp_addr (0: Linux scans for it). */
  acpiRsdpAddr?: number;
}

export interface LinuxBootInfo {
  header: BzImageHeader;
  /** Where the protected-mode kernel was loaded, and where the CPU enters it. */
  kernelAddr: number;
  /** End of the memory the kernel uses before its own allocator runs (decompression buffer). */
  kernelEnd: number;
  zeroPage: number;
  cmdlineAddr: number;
  initrdAddr: number;
  initrdSize: number;
  e820: E820Entry[];
}

export function isBzImage(img: Uint8Array): boolean {
  if (img.length < 0x264) return false;
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  return dv.getUint32(BP.header, true) === HDRS_MAGIC;
}

/** Parse and check the setup header of a bzImage. */
export function parseBzImage(img: Uint8Array): BzImageHeader {
  if (img.length < 0x264 || !isBzImage(img)) {
    throw new ImageError('not a Linux bzImage: no "HdrS" setup header at offset 0x202');
  }
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  if (dv.getUint16(BP.bootFlag, true) !== 0xaa55) throw new ImageError('not a Linux bzImage: boot_flag at 0x1fe is not 0xAA55');
  const version = dv.getUint16(BP.version, true);
  const v = `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
  if (version < MIN_PROTOCOL) {
    // 2.06 (Linux 2.6.22) is the first protocol that states cmdline_size and lets a loader
    // enter the 32-bit code directly with a boot_params it built itself.
    throw new ImageError(`Linux boot protocol ${v} is too old: the 32-bit entry needs 2.06 (Linux 2.6.22) or later`);
  }
  const loadflags = img[BP.loadflags];
  if (!(loadflags & LOADED_HIGH)) throw new ImageError('zImage (loaded at 0x10000) is not supported: LOADED_HIGH is clear');
  const xloadflags = version >= 0x20c ? dv.getUint16(BP.xloadflags, true) : 0;
  if (xloadflags & XLF_KERNEL_64) {
    throw new ImageError('this is a 64-bit (x86_64) kernel: the ftx86 CPU is i686 and has no long mode');
  }
  const setupSects = img[BP.setupSects] || 4; // 0 means 4 (boot.rst, setup_sects)
  const kernelOffset = (setupSects + 1) * 512;
  const kernelSize = dv.getUint32(BP.syssize, true) * 16;
  if (kernelSize === 0) throw new ImageError('bzImage syssize is 0');
  if (kernelOffset + kernelSize > img.length) {
    throw new ImageError(`bzImage truncated: the protected-mode kernel needs ${kernelOffset + kernelSize} bytes, the file has ${img.length}`);
  }
  const headerEnd = 0x202 + img[0x201]; // boot.rst: "0x0202 + byte value at offset 0x0201"
  const relocatable = img[BP.relocatableKernel] !== 0;
  const kernelAlignment = dv.getUint32(BP.kernelAlignment, true);
  let prefAddress = HIGH_MEMORY_ADDR;
  let initSize: number;
  if (version >= 0x20a) {
    prefAddress = Number(dv.getBigUint64(BP.prefAddress, true));
    initSize = dv.getUint32(BP.initSize, true);
  } else {
    // Before 2.10 the header does not say how much the decompressor needs. It runs where it
    // was loaded and decompresses above itself; bzImages compress about 3-4x, so assume 5x.
    initSize = kernelSize * 5;
  }
  return {
    version,
    setupSects,
    kernelSize,
    kernelOffset,
    loadflags,
    code32Start: dv.getUint32(BP.code32Start, true),
    initrdAddrMax: dv.getUint32(BP.initrdAddrMax, true),
    kernelAlignment,
    relocatable,
    xloadflags,
    cmdlineSize: dv.getUint32(BP.cmdlineSize, true),
    prefAddress,
    initSize,
    setupHeader: img.slice(BP.setupSects, Math.min(headerEnd, ZERO_PAGE_SIZE)),
  };
}

/**
 * The e820 map the platform presents: conventional RAM below the EBDA, the EBDA and the
 * 0xE0000-0xFFFFF BIOS area (which holds the ACPI tables) reserved, RAM from 1 MiB up. The
 * VGA hole 0xA0000-0xDFFFF is left out, as BIOSes do; Linux treats it as reserved anyway.
 */
export function linuxE820Map(ramBytes: number): E820Entry[] {
  const map: E820Entry[] = [
    { addr: 0, size: EBDA_ADDR, type: E820_RAM },
    { addr: EBDA_ADDR, size: 0xa0000 - EBDA_ADDR, type: E820_RESERVED },
    { addr: BIOS_AREA_ADDR, size: HIGH_MEMORY_ADDR - BIOS_AREA_ADDR, type: E820_RESERVED },
  ];
  if (ramBytes > HIGH_MEMORY_ADDR) map.push({ addr: HIGH_MEMORY_ADDR, size: ramBytes - HIGH_MEMORY_ADDR, type: E820_RAM });
  return map;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;
const hex = (v: number) => `0x${v.toString(16)}`;
const mib = (v: number) => `${(v / 0x100000).toFixed(1)} MiB`;

/** Load a bzImage (and initrd) into RAM and set the CPU up at its 32-bit entry point. */
export function loadLinux(cpu: Cpu, img: Uint8Array, opts: LinuxBootOptions = {}): LinuxBootInfo {
  const hdr = parseBzImage(img);
  const ram = cpu.ramBytes;

  // Command line: cmdline_size excludes the NUL (boot.rst, cmdline_size).
  const cmdline = new TextEncoder().encode(opts.cmdline ?? '');
  if (cmdline.includes(0)) throw new ImageError('the kernel command line contains a NUL byte');
  if (cmdline.length > hdr.cmdlineSize) {
    throw new ImageError(`kernel command line is ${cmdline.length} bytes, this kernel takes at most ${hdr.cmdlineSize}`);
  }

  // Where the kernel goes and what it occupies. A relocatable kernel decompresses in place at
  // its load address rounded up to kernel_alignment, but never below LOAD_PHYSICAL_ADDR
  // (= pref_address; arch/x86/boot/compressed/head_32.S); a fixed one always at pref_address.
  // Loading it right at pref_address saves the decompressor a copy of itself.
  const runAt = (load: number) => (hdr.relocatable ? Math.max(alignUp(load, hdr.kernelAlignment || 1), hdr.prefAddress) : hdr.prefAddress);
  const extent = (load: number) => Math.max(load + hdr.kernelSize, runAt(load) + hdr.initSize);
  let kernelAddr = HIGH_MEMORY_ADDR;
  if (hdr.relocatable && hdr.prefAddress >= HIGH_MEMORY_ADDR && extent(hdr.prefAddress) <= ram) kernelAddr = hdr.prefAddress;
  const kernelEnd = extent(kernelAddr);
  if (kernelEnd > ram) {
    throw new ImageError(`kernel needs RAM up to ${hex(kernelEnd)} (${mib(kernelEnd)}: ${mib(hdr.kernelSize)} image, ` +
      `${mib(hdr.initSize)} to decompress at ${hex(runAt(kernelAddr))}), machine has ${mib(ram)}`);
  }

  // The initrd: as high as possible, below initrd_addr_max, page aligned, clear of everything
  // the decompressor touches. (With KASLR the kernel may then move; it avoids the initrd,
  // the command line and boot_params itself: compressed/kaslr.c, mem_avoid.)
  let initrdAddr = 0;
  const initrdSize = opts.initrd?.length ?? 0;
  if (opts.initrd && initrdSize > 0) {
    const limit = Math.min(ram, hdr.initrdAddrMax + 1);
    initrdAddr = Math.floor((limit - initrdSize) / 4096) * 4096;
    if (initrdAddr < alignUp(kernelEnd, 4096)) {
      throw new ImageError(`initrd of ${mib(initrdSize)} does not fit between the kernel (up to ${hex(kernelEnd)}) ` +
        `and ${hex(limit)} (the top of RAM or initrd_addr_max): give the machine more memory`);
    }
  }

  // boot_params: zeroed, the header copied in, then the loader's fields.
  const zp = new Uint8Array(ZERO_PAGE_SIZE);
  const dv = new DataView(zp.buffer);
  zp.set(hdr.setupHeader, BP.setupSects);
  zp[BP.typeOfLoader] = TYPE_OF_LOADER_UNDEFINED;
  // KEEP_SEGMENTS is obsolete (boot.rst: "This flag is obsolete."): without it older kernels reload their
  // segments from __BOOT_DS, which ours already are. CAN_USE_HEAP says heap_end_ptr is valid.
  zp[BP.loadflags] = (hdr.loadflags & ~KEEP_SEGMENTS) | CAN_USE_HEAP;
  dv.setUint16(BP.heapEndPtr, HEAP_END_PTR, true);
  // A loader that places a relocatable kernel elsewhere must point code32_start at it (boot.rst).
  dv.setUint32(BP.code32Start, kernelAddr, true);
  dv.setUint32(BP.ramdiskImage, initrdAddr, true);
  dv.setUint32(BP.ramdiskSize, initrdSize, true);
  dv.setUint32(BP.cmdLinePtr, CMDLINE_ADDR, true);
  dv.setUint32(BP.hardwareSubarch, 0, true); // X86_SUBARCH_PC
  if (opts.acpiRsdpAddr) dv.setBigUint64(BP.acpiRsdpAddr, BigInt(opts.acpiRsdpAddr), true);
  dv.setUint32(BP.altMemK, Math.floor((ram - HIGH_MEMORY_ADDR) / 1024), true);
  const e820 = linuxE820Map(ram);
  if (e820.length > E820_MAX_ENTRIES) throw new Error('e820 map too long');
  zp[BP.e820Entries] = e820.length;
  e820.forEach((e, i) => {
    const off = BP.e820Table + i * 20;
    dv.setBigUint64(off, BigInt(e.addr), true);
    dv.setBigUint64(off + 8, BigInt(e.size), true);
    dv.setUint32(off + 16, e.type, true);
  });

  cpu.writePhysical(ZERO_PAGE_ADDR, zp);
  const cmd = new Uint8Array(cmdline.length + 1);
  cmd.set(cmdline);
  cpu.writePhysical(CMDLINE_ADDR, cmd);
  cpu.writePhysical(kernelAddr, img.subarray(hdr.kernelOffset, hdr.kernelOffset + hdr.kernelSize));
  if (opts.initrd && initrdSize > 0) cpu.writePhysical(initrdAddr, opts.initrd);
  writeBiosDataArea(cpu);
  enterBootProtocol32(cpu, kernelAddr, ZERO_PAGE_ADDR);

  return { header: hdr, kernelAddr, kernelEnd, zeroPage: ZERO_PAGE_ADDR, cmdlineAddr: CMDLINE_ADDR, initrdAddr, initrdSize, e820 };
}

/**
 * The two BIOS data area words Linux reads (arch/x86/kernel/ebda.c, reserve_bios_regions):
 * base memory in KiB (0x413) and the EBDA segment (0x40E), matching the e820 map.
 */
function writeBiosDataArea(cpu: Cpu): void {
  const word = (v: number) => Uint8Array.of(v & 0xff, v >>> 8);
  cpu.writePhysical(0x40e, word(EBDA_ADDR >> 4));
  cpu.writePhysical(0x413, word(EBDA_ADDR >> 10));
}

/**
 * The CPU state of boot.rst's 32-bit boot protocol: protected mode, paging off, a GDT with
 * flat 4 GiB __BOOT_CS (execute/read) and __BOOT_DS (read/write), CS = __BOOT_CS, the data
 * segments __BOOT_DS, interrupts off, ESI = boot_params, EBP = EDI = EBX = 0.
 */
function enterBootProtocol32(cpu: Cpu, entry: number, bootParams: number): void {
  const gdt = new Uint8Array([
    0, 0, 0, 0, 0, 0, 0, 0, // 0x00 null
    0, 0, 0, 0, 0, 0, 0, 0, // 0x08 unused (the kernel's own GDT_ENTRY_BOOT_CS is entry 2)
    0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0, // 0x10 __BOOT_CS: base 0, limit 4 GiB, code, execute/read, accessed
    0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0, // 0x18 __BOOT_DS: base 0, limit 4 GiB, data, read/write, accessed
  ]);
  cpu.writePhysical(GDT_ADDR, gdt);
  const st = cpu.state;
  st.set('cr0', 0x11); // PE and ET; paging, caching-disable and write-protect off
  st.set('cr3', 0);
  st.set('cr4', 0);
  st.setDescriptorTable('gdtr', GDT_ADDR, gdt.length - 1);
  st.setDescriptorTable('idtr', 0, 0); // interrupts are off until the kernel loads its own IDT
  st.setSegment('cs', { selector: BOOT_CS, base: 0, limit: 0xffffffff, attributes: FLAT_CODE32 });
  for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) {
    st.setSegment(s, { selector: BOOT_DS, base: 0, limit: 0xffffffff, attributes: FLAT_DATA32 });
  }
  for (const r of ['eax', 'ecx', 'edx', 'ebx', 'ebp', 'edi'] as const) st.set(r, 0);
  st.set('esi', bootParams);
  // No stack is promised (startup_32 points ESP into boot_params.scratch itself); a valid
  // one below the zero page costs nothing.
  st.set('esp', BOOT_STACK_TOP);
  st.a20 = true;
  st.halted = false;
  st.set('eflags', 0x2);
  st.set('eip', entry >>> 0);
}
