import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Machine } from '../src/machine.ts';
import { DebugExit } from '../src/devices/debug-ports.ts';
import { DEBUG_EXIT_PORT, EBDA_ADDR } from '../src/layout.ts';
import { ImageError } from '../src/loaders/multiboot.ts';
import { BOOT_CS, BOOT_DS, E820_RAM, E820_RESERVED, loadLinux, parseBzImage, type LinuxBootInfo } from '../src/loaders/linux.ts';
import { Pc } from '../src/pc.ts';

const MIB = 1024 * 1024;
const GUEST_DIR = fileURLToPath(new URL('../../../guests/linux/out/', import.meta.url));
const REAL_BZIMAGE = `${GUEST_DIR}bzImage`;
const REAL_INITRD = `${GUEST_DIR}initrd.cpio.gz`;
const haveRealKernel = existsSync(REAL_BZIMAGE);

interface SyntheticOptions {
  version?: number;
  setupSects?: number;
  code?: Uint8Array;
  kernelBytes?: number;
  loadflags?: number;
  relocatable?: boolean;
  kernelAlignment?: number;
  prefAddress?: number;
  initSize?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  xloadflags?: number;
  truncateBy?: number;
}

/**
 * A bzImage as arch/x86/boot/tools/build.c lays one out: setup sectors with the setup header
 * at 0x1f1 (boot.rst, "The Real-Mode Kernel Header"), then the protected-mode kernel.
 */
function syntheticBzImage(o: SyntheticOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const setupBytes = ((setupSects || 4) + 1) * 512;
  const code = o.code ?? new Uint8Array(0);
  const kernelBytes = Math.max(o.kernelBytes ?? 64 * 1024, code.length);
  const img = new Uint8Array(setupBytes + kernelBytes - (o.truncateBy ?? 0));
  const dv = new DataView(img.buffer);
  img[0x1f1] = setupSects;
  dv.setUint32(0x1f4, Math.ceil(kernelBytes / 16), true);
  dv.setUint16(0x1fe, 0xaa55, true);
  img[0x200] = 0xeb; // jmp short over the header
  img[0x201] = 0x26c - 0x202;
  img.set([0x48, 0x64, 0x72, 0x53], 0x202); // "HdrS"
  dv.setUint16(0x206, o.version ?? 0x20f, true);
  img[0x211] = o.loadflags ?? 0x01; // LOADED_HIGH
  dv.setUint32(0x214, 0x100000, true);
  dv.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true);
  dv.setUint32(0x230, o.kernelAlignment ?? 0x200000, true);
  img[0x234] = o.relocatable ? 1 : 0;
  dv.setUint16(0x236, o.xloadflags ?? 0, true);
  dv.setUint32(0x238, o.cmdlineSize ?? 0x7ff, true);
  dv.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x100000), true);
  dv.setUint32(0x260, o.initSize ?? 4 * MIB, true);
  img.set(code.subarray(0, img.length - setupBytes), setupBytes);
  for (let i = code.length; setupBytes + i < img.length; i++) img[setupBytes + i] = (i * 13 + 7) & 0xff;
  return img;
}

/** A newc cpio's first bytes are enough for the loader, which treats the initrd as opaque. */
function fakeInitrd(bytes: number): Uint8Array {
  const initrd = new Uint8Array(bytes);
  initrd.set(new TextEncoder().encode('070701'));
  initrd[bytes - 1] = 0x5a;
  return initrd;
}

function machine(memoryBytes: number): Machine {
  return new Machine({ memoryBytes, clock: 'virtual', rtcBaseMs: 0, noReboot: true });
}

const dword = (m: Machine, addr: number) => new DataView(m.cpu.ram.buffer, m.cpu.ram.byteOffset).getUint32(addr, true);
const byte = (m: Machine, addr: number) => m.cpu.ram[addr];

function e820Table(m: Machine, zeroPage: number) {
  const dv = new DataView(m.cpu.ram.buffer, m.cpu.ram.byteOffset);
  const n = byte(m, zeroPage + 0x1e8);
  return Array.from({ length: n }, (_, i) => {
    const off = zeroPage + 0x2d0 + i * 20;
    return { addr: Number(dv.getBigUint64(off, true)), size: Number(dv.getBigUint64(off + 8, true)), type: dv.getUint32(off + 16, true) };
  });
}

/** What every loaded kernel must see, whatever the image: boot.rst's 32-bit entry contract. */
function expectBootProtocolEntry(m: Machine, info: LinuxBootInfo, cmdline: string, memoryBytes: number): void {
  const st = m.cpu.state;
  const zp = info.zeroPage;
  // CPU: protected mode, paging off, interrupts off, flat __BOOT_CS/__BOOT_DS, ESI = boot_params.
  expect(st.get('cr0') & 0x80000001).toBe(1);
  expect(st.get('eflags') & 0x200).toBe(0);
  expect(st.get('eip')).toBe(info.kernelAddr);
  expect(st.get('esi')).toBe(zp);
  expect([st.get('ebp'), st.get('edi'), st.get('ebx')]).toEqual([0, 0, 0]);
  expect(st.segment('cs')).toMatchObject({ selector: BOOT_CS, base: 0, limit: 0xffffffff });
  for (const s of ['ds', 'es', 'ss'] as const) expect(st.segment(s)).toMatchObject({ selector: BOOT_DS, base: 0, limit: 0xffffffff });
  expect(st.a20).toBe(true);
  // The zero page: header copied, loader fields filled.
  expect(dword(m, zp + 0x202)).toBe(0x53726448);
  expect(byte(m, zp + 0x210)).toBe(0xff); // type_of_loader: undefined
  expect(byte(m, zp + 0x211) & 0x81).toBe(0x81); // LOADED_HIGH from the kernel, CAN_USE_HEAP from us
  expect(dword(m, zp + 0x214)).toBe(info.kernelAddr); // code32_start
  expect(dword(m, zp + 0x218)).toBe(info.initrdAddr);
  expect(dword(m, zp + 0x21c)).toBe(info.initrdSize);
  expect(byte(m, zp + 0x1ef)).toBe(0); // sentinel: a loader that zeroes boot_params leaves it 0
  const cmdPtr = dword(m, zp + 0x228);
  expect(Buffer.from(m.cpu.readPhysical(cmdPtr, cmdline.length + 1))).toEqual(Buffer.from(`${cmdline}\0`, 'latin1'));
  // The e820 map: low RAM, EBDA and BIOS area reserved, RAM from 1 MiB to the top.
  expect(e820Table(m, zp)).toEqual([
    { addr: 0, size: EBDA_ADDR, type: E820_RAM },
    { addr: EBDA_ADDR, size: 0xa0000 - EBDA_ADDR, type: E820_RESERVED },
    { addr: 0xe0000, size: 0x20000, type: E820_RESERVED },
    { addr: 0x100000, size: memoryBytes - 0x100000, type: E820_RAM },
  ]);
}

describe('Linux loader: synthetic bzImage', () => {
  it('loads a non-relocatable kernel at 1 MiB and the initrd page-aligned at the top of RAM', () => {
    const m = machine(64 * MIB);
    const initrd = fakeInitrd(3 * MIB + 123);
    const cmdline = 'console=ttyS0 root=/dev/ram0';
    const info = loadLinux(m.cpu, syntheticBzImage(), { cmdline, initrd, acpiRsdpAddr: 0xe0000 });
    expect(info.kernelAddr).toBe(0x100000);
    expect(info.initrdAddr % 4096).toBe(0);
    expect(info.initrdAddr + initrd.length).toBeLessThanOrEqual(64 * MIB);
    expect(info.initrdAddr + initrd.length + 4096).toBeGreaterThan(64 * MIB);
    expect(Buffer.from(m.cpu.readPhysical(info.initrdAddr, initrd.length)).equals(initrd), 'initrd bytes in RAM').toBe(true);
    expect(Number(new DataView(m.cpu.ram.buffer, m.cpu.ram.byteOffset).getBigUint64(info.zeroPage + 0x70, true))).toBe(0xe0000);
    expectBootProtocolEntry(m, info, cmdline, 64 * MIB);
  });

  it('loads a relocatable kernel at pref_address when it fits, and at 1 MiB when it does not', () => {
    const img = syntheticBzImage({ relocatable: true, prefAddress: 16 * MIB, kernelAlignment: 16 * MIB, initSize: 8 * MIB });
    const big = machine(64 * MIB);
    expect(loadLinux(big.cpu, img).kernelAddr).toBe(16 * MIB);
    // 20 MiB: 16 MiB + init_size does not fit, so load low; the decompressor still runs at
    // LOAD_PHYSICAL_ADDR (pref_address), which does not fit either.
    expect(() => loadLinux(machine(20 * MIB).cpu, img)).toThrow(/kernel needs RAM up to 0x1800000/);
    const low = syntheticBzImage({ relocatable: true, prefAddress: 0x100000, kernelAlignment: 0x200000, initSize: 8 * MIB });
    const m = machine(24 * MIB);
    const info = loadLinux(m.cpu, low);
    expect(info.kernelAddr).toBe(0x100000);
    expect(info.kernelEnd).toBe(0x200000 + 8 * MIB); // runs at 1 MiB rounded up to kernel_alignment
  });

  it('places the initrd below initrd_addr_max and above the kernel decompression buffer', () => {
    const m = machine(128 * MIB);
    const info = loadLinux(m.cpu, syntheticBzImage({ initrdAddrMax: 0x37ffffff, initSize: 16 * MIB }), { initrd: fakeInitrd(MIB) });
    expect(info.initrdAddr).toBe(127 * MIB);
    const capped = machine(128 * MIB);
    const info2 = loadLinux(capped.cpu, syntheticBzImage({ initrdAddrMax: 64 * MIB - 1 }), { initrd: fakeInitrd(MIB) });
    expect(info2.initrdAddr).toBe(63 * MIB);
    expect(info2.initrdAddr).toBeGreaterThanOrEqual(info2.kernelEnd);
  });

  it('enters the kernel in the state boot.rst promises, as seen from guest code', () => {
    // Guest code checks its own entry state, one check per exit code, through the loader's
    // GDT (a far jump and a data segment reload), boot_params and the initrd in high memory.
    const checks: number[][] = [
      [0x66, 0x8c, 0xc8, 0x66, 0x3d, BOOT_CS, 0x00], // mov ax, cs; cmp ax, __BOOT_CS
      [0x66, 0x8c, 0xd8, 0x66, 0x3d, BOOT_DS, 0x00], // mov ax, ds; cmp ax, __BOOT_DS
      [0x66, 0x8c, 0xd0, 0x66, 0x3d, BOOT_DS, 0x00], // mov ax, ss; cmp ax, __BOOT_DS
      [0x81, 0xbe, 0x02, 0x02, 0x00, 0x00, 0x48, 0x64, 0x72, 0x53], // cmp dword [esi+0x202], "HdrS"
      [0x80, 0xbe, 0x10, 0x02, 0x00, 0x00, 0xff], // cmp byte [esi+0x210], 0xff (type_of_loader)
      [0x85, 0xdb], // test ebx, ebx
      [0x85, 0xed], // test ebp, ebp
      [0x85, 0xff], // test edi, edi
      [0x9c, 0x58, 0xa9, 0x00, 0x02, 0x00, 0x00], // pushfd; pop eax; test eax, IF
      [0x0f, 0x20, 0xc0, 0x25, 0x01, 0x00, 0x00, 0x80, 0x3d, 0x01, 0x00, 0x00, 0x00], // cr0 & (PG|PE) == PE
      [0x8b, 0xbe, 0x28, 0x02, 0x00, 0x00, 0x81, 0x3f, 0x63, 0x6f, 0x6e, 0x73], // cmp dword [cmd_line_ptr], "cons"
      [0x8b, 0xbe, 0x18, 0x02, 0x00, 0x00, 0x81, 0x3f, 0x30, 0x37, 0x30, 0x37], // cmp dword [ramdisk_image], "0707"
    ];
    const load = 0x100000;
    const code: number[] = [];
    checks.forEach((check, i) => {
      code.push(...check, 0x74, 0x05, 0xb0, i + 1, 0xe6, DEBUG_EXIT_PORT, 0xf4); // je ok; mov al, i+1; out; hlt
    });
    // jmp far __BOOT_CS:next, then reload DS from __BOOT_DS and read boot_params through it.
    const next = load + code.length + 7;
    code.push(0xea, next & 0xff, (next >> 8) & 0xff, (next >> 16) & 0xff, next >>> 24, BOOT_CS, 0x00);
    code.push(0xb8, BOOT_DS, 0, 0, 0, 0x8e, 0xd8, 0x8e, 0xc0); // mov eax, __BOOT_DS; mov ds, eax; mov es, eax
    code.push(0x81, 0xbe, 0x02, 0x02, 0x00, 0x00, 0x48, 0x64, 0x72, 0x53, 0x74, 0x05, 0xb0, 0x7f, 0xe6, DEBUG_EXIT_PORT, 0xf4);
    code.push(0xb0, 0x00, 0xe6, DEBUG_EXIT_PORT, 0xf4); // all good: exit status (0 << 1) | 1
    const m = machine(64 * MIB);
    let status = -1;
    m.ports.register(DEBUG_EXIT_PORT, 4, new DebugExit((s) => { status = s; m.requestStop({ kind: 'exit', status: s }); }), 'debug-exit');
    loadLinux(m.cpu, syntheticBzImage({ code: Uint8Array.from(code) }), { cmdline: 'console=ttyS0', initrd: fakeInitrd(64 * 1024) });
    const outcome = m.runSync(10_000);
    expect(outcome.kind).toBe('exit');
    expect(status >> 1, 'number of the failed entry-state check (0 = all passed)').toBe(0);
  });

  it('refuses a file that is not a bzImage', () => {
    const m = machine(32 * MIB);
    expect(() => loadLinux(m.cpu, new Uint8Array(4096))).toThrow(ImageError);
    expect(() => loadLinux(m.cpu, new Uint8Array(4096))).toThrow(/not a Linux bzImage: no "HdrS"/);
    expect(() => loadLinux(m.cpu, new Uint8Array(100))).toThrow(/not a Linux bzImage/);
    const noBootFlag = syntheticBzImage();
    noBootFlag[0x1fe] = 0;
    expect(() => parseBzImage(noBootFlag)).toThrow(/boot_flag/);
  });

  it('refuses a boot protocol older than 2.06, saying why', () => {
    expect(() => parseBzImage(syntheticBzImage({ version: 0x205 }))).toThrow(/protocol 2\.05 is too old: the 32-bit entry needs 2\.06/);
    expect(parseBzImage(syntheticBzImage({ version: 0x206 })).version).toBe(0x206);
  });

  it('refuses a zImage, a 64-bit kernel and a truncated file', () => {
    expect(() => parseBzImage(syntheticBzImage({ loadflags: 0 }))).toThrow(/zImage/);
    expect(() => parseBzImage(syntheticBzImage({ xloadflags: 1 }))).toThrow(/64-bit/);
    expect(() => parseBzImage(syntheticBzImage({ truncateBy: 100 }))).toThrow(/truncated/);
  });

  it('refuses a kernel or an initrd that does not fit in RAM', () => {
    expect(() => loadLinux(machine(4 * MIB).cpu, syntheticBzImage({ initSize: 8 * MIB }))).toThrow(/kernel needs RAM .* machine has 4\.0 MiB/);
    const m = machine(16 * MIB);
    expect(() => loadLinux(m.cpu, syntheticBzImage({ initSize: 8 * MIB }), { initrd: fakeInitrd(8 * MIB) })).toThrow(/initrd of 8\.0 MiB does not fit/);
    // A small initrd_addr_max squeezes it against the kernel too.
    expect(() => loadLinux(machine(64 * MIB).cpu, syntheticBzImage({ initSize: 8 * MIB, initrdAddrMax: 10 * MIB - 1 }), { initrd: fakeInitrd(2 * MIB) })).toThrow(ImageError);
  });

  it('refuses a command line longer than cmdline_size', () => {
    const img = syntheticBzImage({ cmdlineSize: 16 });
    expect(() => loadLinux(machine(32 * MIB).cpu, img, { cmdline: 'x'.repeat(16) })).not.toThrow();
    expect(() => loadLinux(machine(32 * MIB).cpu, img, { cmdline: 'x'.repeat(17) })).toThrow(/command line is 17 bytes, this kernel takes at most 16/);
  });

  it('marks the pages it writes dirty, for the first FT checkpoint', () => {
    const m = machine(64 * MIB);
    m.cpu.exports.dirty_reset();
    const info = loadLinux(m.cpu, syntheticBzImage(), { initrd: fakeInitrd(8192), cmdline: 'quiet' });
    const dirty = new Set(m.cpu.state.dirtyPages());
    for (const addr of [info.zeroPage, info.cmdlineAddr, info.kernelAddr, info.initrdAddr, info.initrdAddr + 4096]) {
      expect(dirty.has(addr >>> 12), `page of 0x${addr.toString(16)}`).toBe(true);
    }
  });
});

describe.skipIf(!haveRealKernel)(`Linux loader: the Debian i386 kernel${haveRealKernel ? '' : ' (SKIPPED: run guests/linux/build.sh)'}`, () => {
  const kernel = haveRealKernel ? readFileSync(REAL_BZIMAGE) : new Uint8Array(0);
  const initrd = haveRealKernel && existsSync(REAL_INITRD) ? readFileSync(REAL_INITRD) : fakeInitrd(MIB);
  const cmdline = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr panic=-1';

  it('parses its setup header', () => {
    const hdr = parseBzImage(kernel);
    expect(hdr.version).toBeGreaterThanOrEqual(0x20a);
    expect(hdr.loadflags & 1).toBe(1);
    expect(hdr.relocatable).toBe(true);
    expect(hdr.kernelOffset + hdr.kernelSize).toBeLessThanOrEqual(kernel.length);
    expect(hdr.cmdlineSize).toBeGreaterThanOrEqual(255);
    expect(hdr.initSize).toBeGreaterThan(hdr.kernelSize);
  });

  it('loads it at pref_address with the initrd above its decompression buffer', () => {
    const mem = 128 * MIB;
    const m = machine(mem);
    const info = loadLinux(m.cpu, kernel, { cmdline, initrd });
    const hdr = info.header;
    expect(info.kernelAddr).toBe(hdr.prefAddress);
    expect(info.kernelEnd).toBe(hdr.prefAddress + hdr.initSize);
    expect(info.initrdAddr).toBeGreaterThanOrEqual(info.kernelEnd);
    expect(info.initrdAddr + initrd.length).toBeLessThanOrEqual(mem);
    expect(Buffer.from(m.cpu.readPhysical(info.kernelAddr, 4096))).toEqual(Buffer.from(kernel.subarray(hdr.kernelOffset, hdr.kernelOffset + 4096)));
    // The copied header matches the file byte for byte except the fields a loader writes.
    const written = new Set([0x210, 0x211, 0x214, 0x215, 0x216, 0x217, 0x218, 0x219, 0x21a, 0x21b, 0x21c, 0x21d, 0x21e, 0x21f, 0x224, 0x225, 0x228, 0x229, 0x22a, 0x22b]);
    const headerEnd = 0x202 + kernel[0x201];
    for (let off = 0x1f1; off < headerEnd; off++) {
      if (!written.has(off)) expect(byte(m, info.zeroPage + off), `boot_params byte 0x${off.toString(16)}`).toBe(kernel[off]);
    }
    expectBootProtocolEntry(m, info, cmdline, mem);
  });

  it('does not fit in 32 MiB, and says how much it needs', () => {
    expect(() => loadLinux(machine(32 * MIB).cpu, kernel, { cmdline })).toThrow(/kernel needs RAM up to 0x[0-9a-f]+ \(32\.\d MiB/);
  });

  it('runs its decompressor, which finds our command line through boot_params', () => {
    // The 6.1 decompressor prints this warning through its early serial console (set up from
    // earlyprintk= in the command line) before it decompresses: about 60 M instructions in.
    const out: number[] = [];
    const pc = new Pc({ memoryBytes: 128 * MIB, clock: 'virtual', rtcBaseMs: 0, noReboot: true, serialOut: [(b) => out.push(...b)] });
    loadLinux(pc.machine.cpu, kernel, { cmdline, initrd });
    const text = () => Buffer.from(out).toString('latin1');
    for (let slice = 0; slice < 40 && !text().includes('KASLR disabled'); slice++) {
      const outcome = pc.machine.runSync(5_000_000);
      expect(outcome.kind, `stopped after ${pc.machine.cpu.instructionCount} instructions at eip 0x${pc.machine.cpu.state.get('eip').toString(16)}`).toBe('limit');
    }
    expect(text()).toContain("KASLR disabled: 'nokaslr' on cmdline.");
  });
});
