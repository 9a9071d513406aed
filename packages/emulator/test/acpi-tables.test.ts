import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { amlPkgLength, buildAcpiTables, installAcpiTables, type AcpiTablesOptions } from '../src/acpi-tables.ts';
import { ACPI_PM_PORT, IRQ_ACPI_SCI, RESET_CONTROL_PORT } from '../src/layout.ts';
import { SLP_TYP_S5 } from '../src/devices/acpi-pm.ts';
import { E820_RESERVED, linuxE820Map } from '../src/loaders/linux.ts';

const RAM = 128 * 1024 * 1024;

/** Guest RAM below 1 MiB, written the way the machine writes it. */
function lowMemoryWith(opts: AcpiTablesOptions): Uint8Array {
  const ram = new Uint8Array(0x100000);
  installAcpiTables({ writePhysical: (addr, bytes) => ram.set(bytes, addr) }, opts);
  return ram;
}

const sum = (bytes: Uint8Array) => bytes.reduce((s, b) => (s + b) & 0xff, 0);
const text = (bytes: Uint8Array) => String.fromCharCode(...bytes);

/** A system description table as an OS reads it: header fields, checked checksum. */
function readTable(ram: Uint8Array, addr: number, signature: string) {
  const dv = new DataView(ram.buffer, ram.byteOffset);
  expect(text(ram.subarray(addr, addr + 4)), `signature at 0x${addr.toString(16)}`).toBe(signature);
  const length = dv.getUint32(addr + 4, true);
  const bytes = ram.subarray(addr, addr + length);
  expect(sum(bytes), `${signature} checksum`).toBe(0);
  return { bytes, dv: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), length, revision: bytes[8] };
}

/** Linux's search (acpi_find_root_pointer): 16-byte boundaries of 0xE0000-0xFFFFF, checksums valid. */
function findRsdp(ram: Uint8Array): number {
  for (let a = 0xe0000; a < 0x100000; a += 16) {
    if (text(ram.subarray(a, a + 8)) !== 'RSD PTR ') continue;
    if (sum(ram.subarray(a, a + 20)) !== 0) continue;
    if (ram[a + 15] >= 2 && sum(ram.subarray(a, a + 36)) !== 0) continue;
    return a;
  }
  return -1;
}

/** The whole chain from the RSDP, as ACPICA walks it (tbutils.c, tbfadt.c). */
function walk(ram: Uint8Array) {
  const rsdp = findRsdp(ram);
  expect(rsdp, 'RSDP found by a Linux-style scan').toBeGreaterThanOrEqual(0);
  const rdv = new DataView(ram.buffer, rsdp);
  const revision = ram[rsdp + 15];
  const rsdtAddr = rdv.getUint32(16, true);
  const xsdtAddr = Number(rdv.getBigUint64(24, true));
  const rsdt = readTable(ram, rsdtAddr, 'RSDT');
  const xsdt = readTable(ram, xsdtAddr, 'XSDT');
  const rsdtEntries = Array.from({ length: (rsdt.length - 36) / 4 }, (_, i) => rsdt.dv.getUint32(36 + i * 4, true));
  const xsdtEntries = Array.from({ length: (xsdt.length - 36) / 8 }, (_, i) => Number(xsdt.dv.getBigUint64(36 + i * 8, true)));
  const fadt = readTable(ram, rsdtEntries[0], 'FACP');
  const facsAddr = fadt.dv.getUint32(36, true);
  const dsdt = readTable(ram, fadt.dv.getUint32(40, true), 'DSDT');
  return { rsdp, revision, rsdtAddr, xsdtAddr, rsdtEntries, xsdtEntries, fadt, facsAddr, dsdt };
}

/** A Generic Address Structure (ACPI 5.2.3.2). */
function gas(dv: DataView, off: number) {
  return { space: dv.getUint8(off), bitWidth: dv.getUint8(off + 1), bitOffset: dv.getUint8(off + 2), access: dv.getUint8(off + 3), address: Number(dv.getBigUint64(off + 4, true)) };
}

describe('ACPI tables', () => {
  const ram = lowMemoryWith({ ramBytes: RAM });
  const t = walk(ram);

  it('puts a revision-2 RSDP where Linux scans, with both checksums right', () => {
    expect(t.rsdp).toBe(0xe0000);
    expect(t.revision).toBe(2);
    expect(new DataView(ram.buffer).getUint32(t.rsdp + 20, true)).toBe(36);
  });

  it('lists the FADT in both the RSDT and the XSDT', () => {
    expect(t.rsdtEntries).toHaveLength(1);
    expect(t.xsdtEntries).toEqual(t.rsdtEntries);
  });

  it('keeps every table inside the area the e820 map reserves', () => {
    const reserved = linuxE820Map(RAM).filter((e) => e.type === E820_RESERVED);
    const inside = (a: number, len: number) => reserved.some((e) => a >= e.addr && a + len <= e.addr + e.size);
    for (const [addr, len] of [[t.rsdp, 36], [t.rsdtAddr, 40], [t.xsdtAddr, 44], [t.rsdtEntries[0], t.fadt.length], [t.facsAddr, 64], [t.fadt.dv.getUint32(40, true), t.dsdt.length]]) {
      expect(inside(addr, len), `table at 0x${addr.toString(16)}`).toBe(true);
    }
  });

  it('describes the PM block, the SCI and ACPI-always-on in the FADT', () => {
    const f = t.fadt.dv;
    expect(t.fadt.revision).toBe(3);
    expect(t.fadt.length).toBe(244);
    expect(f.getUint16(46, true)).toBe(IRQ_ACPI_SCI);
    expect(f.getUint32(48, true)).toBe(0); // SMI_CMD: no mode switch, always ACPI
    expect(f.getUint32(56, true)).toBe(ACPI_PM_PORT); // PM1a_EVT_BLK
    expect(f.getUint32(64, true)).toBe(ACPI_PM_PORT + 4); // PM1a_CNT_BLK
    expect(f.getUint32(76, true)).toBe(ACPI_PM_PORT + 8); // PM_TMR_BLK
    expect([f.getUint8(88), f.getUint8(89), f.getUint8(91)]).toEqual([4, 2, 4]);
    expect(f.getUint32(60, true) | f.getUint32(68, true) | f.getUint32(80, true)).toBe(0); // no PM1b, no GPE0
    const flags = f.getUint32(112, true);
    expect(flags & 1).toBe(1); // WBINVD
    expect(flags & (1 << 8)).not.toBe(0); // TMR_VAL_EXT: 32-bit PM timer
    expect(flags & (1 << 10)).not.toBe(0); // RESET_REG_SUP
    expect(flags & (1 << 4)).toBe(0); // the power button is a fixed feature
    expect(f.getUint16(109, true) & 3).toBe(3); // IAPC_BOOT_ARCH: legacy devices and an 8042
  });

  it('points the reset register at the PIIX reset control port', () => {
    expect(gas(t.fadt.dv, 116)).toEqual({ space: 1, bitWidth: 8, bitOffset: 0, access: 1, address: RESET_CONTROL_PORT });
    expect(t.fadt.dv.getUint8(128)).toBe(0x06);
  });

  it('repeats the legacy blocks in the X_ fields, as ACPICA cross-checks', () => {
    const f = t.fadt.dv;
    expect(Number(f.getBigUint64(140, true))).toBe(f.getUint32(40, true)); // X_DSDT
    expect(gas(f, 148)).toEqual({ space: 1, bitWidth: 32, bitOffset: 0, access: 0, address: ACPI_PM_PORT });
    expect(gas(f, 172)).toEqual({ space: 1, bitWidth: 16, bitOffset: 0, access: 0, address: ACPI_PM_PORT + 4 });
    expect(gas(f, 208)).toEqual({ space: 1, bitWidth: 32, bitOffset: 0, access: 0, address: ACPI_PM_PORT + 8 });
  });

  it('has a 64-byte aligned FACS', () => {
    expect(t.facsAddr % 64).toBe(0);
    expect(text(ram.subarray(t.facsAddr, t.facsAddr + 4))).toBe('FACS');
    expect(new DataView(ram.buffer).getUint32(t.facsAddr + 4, true)).toBe(64);
  });

  it('names \\_S5 with the SLP_TYP the PM block powers off on', () => {
    // NameOp, \_S5_, PackageOp, PkgLength, 4 elements, BytePrefix 5, BytePrefix 5, Zero, Zero.
    const s5 = Uint8Array.of(0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, SLP_TYP_S5, 0x0a, SLP_TYP_S5, 0x00, 0x00);
    expect(Buffer.from(t.dsdt.bytes).indexOf(Buffer.from(s5))).toBeGreaterThan(36);
  });

  it('leaves out the reset register and the PCI bridge when told to, checksums still right', () => {
    const ram2 = lowMemoryWith({ ramBytes: RAM, resetRegister: null, pciHostBridge: false, pmTimerBits: 24 });
    const t2 = walk(ram2);
    const flags = t2.fadt.dv.getUint32(112, true);
    expect(flags & (1 << 10)).toBe(0);
    expect(flags & (1 << 8)).toBe(0);
    expect(Buffer.from(t2.dsdt.bytes).indexOf('PCI0')).toBe(-1);
    expect(t2.dsdt.length).toBeLessThan(t.dsdt.length);
  });

  it('refuses a base outside the BIOS area or off a 16-byte boundary', () => {
    expect(() => buildAcpiTables({ ramBytes: RAM, base: 0x9000 })).toThrow(/0xE0000-0xFFFFF/);
    expect(() => buildAcpiTables({ ramBytes: RAM, base: 0xe0008 })).toThrow(/16-byte/);
  });

  it('encodes AML PkgLength in one to four bytes (ACPI 20.2.4)', () => {
    expect([...amlPkgLength(0)]).toEqual([0x01]);
    expect([...amlPkgLength(62)]).toEqual([0x3f]);
    // 63 content bytes + 2 length bytes = 65 = 0x41: lead byte 0x41 (1 extra byte, low nibble 1), then 0x04.
    expect([...amlPkgLength(63)]).toEqual([0x41, 0x04]);
    expect([...amlPkgLength(0xffd)]).toEqual([0x4f, 0xff]);
    expect([...amlPkgLength(0xffe)]).toEqual([0x81, 0x00, 0x01]);
  });
});

// iasl (ACPICA's compiler/disassembler, Debian package acpica-tools) checks the AML against
// the reference implementation's own grammar. Without it these tests are skipped, and say so.
let iasl = '';
try {
  iasl = execFileSync('sh', ['-c', 'command -v iasl'], { encoding: 'utf8' }).trim();
} catch {
  iasl = '';
}
const IASL_MISSING = ' (SKIPPED: iasl not installed; apt-get install -y acpica-tools)';

describe.skipIf(!iasl)(`ACPI tables through iasl${iasl ? '' : IASL_MISSING}`, () => {
  const dir = iasl ? mkdtempSync(join(tmpdir(), 'ftx86-acpi-')) : '';
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });
  const tables = buildAcpiTables({ ramBytes: RAM });
  const table = (addr: number) => {
    const off = addr - tables.base;
    return tables.bytes.subarray(off, off + new DataView(tables.bytes.buffer).getUint32(off + 4, true));
  };
  const disassemble = (name: string, bytes: Uint8Array) => {
    writeFileSync(join(dir, `${name}.dat`), bytes);
    execFileSync(iasl, ['-d', `${name}.dat`], { cwd: dir, stdio: 'pipe' });
    return readFileSync(join(dir, `${name}.dsl`), 'utf8');
  };

  it('disassembles the DSDT and finds \\_S5 and the PCI host bridge', () => {
    const dsl = disassemble('dsdt', table(tables.dsdt));
    expect(dsl).toMatch(/Name \(\\_S5, Package \(0x04\)[^}]*0x05,\s*0x05,\s*Zero,\s*Zero/);
    expect(dsl).toMatch(/Device \(PCI0\)/);
    expect(dsl).toMatch(/EisaId \("PNP0A03"\)/);
    expect(dsl).toMatch(/WordBusNumber \(ResourceProducer/);
    expect(dsl).toMatch(/DWordMemory \(ResourceProducer[\s\S]*0x08000000,\s*\/\/ Range Minimum\s*0xFEBFFFFF,/);
  });

  it('recompiles the disassembly to the same AML byte for byte', () => {
    disassemble('dsdt', table(tables.dsdt));
    // -oa: no optimizations, so iasl keeps our encoding choices (e.g. the root prefix of \_SB).
    const out = execFileSync(iasl, ['-oa', '-p', 'recompiled', 'dsdt.dsl'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
    expect(out).toMatch(/0 Errors, 0 Warnings/);
    const recompiled = readFileSync(join(dir, 'recompiled.aml'));
    // The header differs (iasl writes its own creator ID); the AML after it must not.
    expect(Buffer.from(recompiled.subarray(36))).toEqual(Buffer.from(table(tables.dsdt).subarray(36)));
  });

  it('reads the FADT fields where ACPICA expects them', () => {
    const dsl = disassemble('facp', table(tables.fadt));
    expect(dsl).toMatch(/SCI Interrupt : 0009/);
    expect(dsl).toMatch(/PM1A Event Block Address : 00000600/);
    expect(dsl).toMatch(/PM1A Control Block Address : 00000604/);
    expect(dsl).toMatch(/PM Timer Block Address : 00000608/);
    expect(dsl).toMatch(/Reset Register Supported \(V2\) : 1/);
    expect(dsl).toMatch(/Address : 0000000000000CF9/);
    expect(dsl).toMatch(/Value to cause reset : 06/);
    expect(dsl).toMatch(/8042 Present on ports 60\/64 \(V2\) : 1/);
    expect(dsl).toMatch(/32-bit PM Timer \(V1\) : 1/);
  });

  it('disassembles the RSDT, XSDT and FACS without complaint', () => {
    expect(disassemble('rsdt', table(tables.rsdt))).toMatch(/ACPI Table Address\s+0 : 000E0100/);
    expect(disassemble('xsdt', table(tables.xsdt))).toMatch(/ACPI Table Address\s+0 : 00000000000E0100/);
    expect(disassemble('facs', tables.bytes.subarray(tables.facs - tables.base, tables.facs - tables.base + 64))).toMatch(/Length : 00000040/);
  });
});
