/**
 * The ACPI tables the platform presents in place of a BIOS (ACPI 6.4, chapter 5), placed in
 * the reserved 0xE0000-0xFFFFF area where Linux looks for the RSDP (drivers/acpi/acpica/
 * tbxfroot.c, acpi_find_root_pointer scans 0xE0000-0xFFFFF on 16-byte boundaries; the Linux
 * loader also passes the address in boot_params.acpi_rsdp_addr).
 *
 *   RSDP (revision 2) -> RSDT and XSDT -> FADT (revision 3, ACPI 2.0, legacy and X_ fields
 *   both filled) -> FACS, DSDT.
 *
 * No MADT: there is no local APIC or IOAPIC, and without a MADT Linux stays in PIC mode
 * ("ACPI: Using PIC for interrupt routing"), routing the SCI to IRQ 9 of the 8259s.
 *
 * The DSDT is hand-assembled AML (ACPI 6.4, chapter 20) and holds:
 *   - \_S0 and \_S5, with SLP_TYP values devices/acpi-pm.ts maps to working and soft-off;
 *   - \_SB.PCI0, a PCI host bridge (PNP0A03) with a _CRS. It is needed: with ACPI on, Linux
 *     finds PCI root buses only through the namespace (arch/x86/pci/init.c pci_subsys_init
 *     skips pci_legacy_init once pci_acpi_init succeeds), so without it no PCI device would
 *     be found. There is no _PRT: acpi_pci_irq_enable then keeps the IRQ the platform put in
 *     each function's Interrupt Line register ("PCI INT A: no GSI") and makes it level
 *     triggered in the ELCR.
 */
import { ACPI_PM_PORT, ACPI_TABLES_ADDR, BIOS_AREA_ADDR, HIGH_MEMORY_ADDR, IRQ_ACPI_SCI, PCI_MMIO_END, RESET_CONTROL_PORT } from './layout.ts';
import {
  PM1_CNT_LEN,
  PM1_CNT_OFFSET,
  PM1_EVT_LEN,
  PM1_STS_OFFSET,
  PM_TMR_LEN,
  PM_TMR_OFFSET,
  SLP_TYP_S5,
} from './devices/acpi-pm.ts';

export interface AcpiTablesOptions {
  /** Guest RAM: the PCI MMIO window in PCI0's _CRS starts above it. */
  ramBytes: number;
  /** Physical address of the tables (16-byte aligned, inside 0xE0000-0xFFFFF). Default ACPI_TABLES_ADDR. */
  base?: number;
  /** Base port of the PM block (devices/acpi-pm.ts). Default ACPI_PM_PORT. */
  pmPort?: number;
  /** FADT SCI_INT. Default IRQ_ACPI_SCI (9). */
  sciIrq?: number;
  /** The PM timer's width: 32 sets TMR_VAL_EXT. Must match AcpiPm's timerBits. Default 32. */
  pmTimerBits?: 24 | 32;
  /** The FADT RESET_REG (an I/O port) and RESET_VALUE, or null for none. Default 0xCF9 / 0x06. */
  resetRegister?: { port: number; value: number } | null;
  /** The PCI host bridge in the DSDT, or false to leave it out. Default: a window from the top of RAM to PCI_MMIO_END. */
  pciHostBridge?: { mmioBase: number; mmioEnd: number } | false;
}

/** The tables as one blob, and where each landed. */
export interface AcpiTables {
  base: number;
  bytes: Uint8Array;
  rsdp: number;
  rsdt: number;
  xsdt: number;
  fadt: number;
  facs: number;
  dsdt: number;
}

/** Identification in every header (ACPI 5.2.6): OEM ID, OEM table ID, creator ID. */
const OEM_ID = 'FTX86 ';
const OEM_TABLE_ID = 'FTX86PC ';
const CREATOR_ID = 'FTX8';

// Offsets of the tables inside the blob: RSDP on a 16-byte boundary (5.2.5.1), FACS on a
// 64-byte boundary (5.2.10), the rest 16-byte aligned for readability in a memory dump.
const RSDP_OFF = 0x000;
const RSDT_OFF = 0x040;
const XSDT_OFF = 0x080;
const FACS_OFF = 0x0c0;
const FADT_OFF = 0x100;
const DSDT_OFF = 0x200;

const RSDP_LENGTH = 36;
const FADT_REVISION = 3;
const FADT_LENGTH = 244;
const FACS_LENGTH = 64;
const HEADER_LENGTH = 36;

// FADT Flags (5.2.9, table 5.10).
const FADT_WBINVD = 1 << 0;
const FADT_PROC_C1 = 1 << 2;
const FADT_SLP_BUTTON = 1 << 5; // no fixed-feature sleep button
const FADT_FIX_RTC = 1 << 6; // RTC wake status is not in PM1_STS
const FADT_TMR_VAL_EXT = 1 << 8;
const FADT_RESET_REG_SUP = 1 << 10;
// IA-PC boot architecture flags (5.2.9.3, table 5.11).
const BOOT_LEGACY_DEVICES = 1 << 0;
const BOOT_8042 = 1 << 1;
const BOOT_VGA_NOT_PRESENT = 1 << 2;
const BOOT_MSI_NOT_SUPPORTED = 1 << 3; // no APIC, so nowhere for an MSI to go
/** The RTC's century byte: rtc-mc146818.ts keeps it at CMOS 0x32, and Linux reads it through the FADT. */
const CMOS_CENTURY = 0x32;

const SYSTEM_IO = 1; // Generic Address Structure address space ID (5.2.3.2)

/** Build the tables for a machine; place them with installAcpiTables. */
export function buildAcpiTables(opts: AcpiTablesOptions): AcpiTables {
  const base = opts.base ?? ACPI_TABLES_ADDR;
  if (base % 16 !== 0 || base < BIOS_AREA_ADDR || base >= HIGH_MEMORY_ADDR) {
    throw new RangeError(`ACPI tables at 0x${base.toString(16)}: the RSDP must sit on a 16-byte boundary in 0xE0000-0xFFFFF`);
  }
  const dsdt = buildDsdt(opts);
  const size = DSDT_OFF + dsdt.length;
  if (base + size > HIGH_MEMORY_ADDR) throw new RangeError(`ACPI tables (${size} bytes) do not fit below 1 MiB at 0x${base.toString(16)}`);
  const bytes = new Uint8Array(size);
  const at = (off: number) => base + off;

  bytes.set(buildFacs(), FACS_OFF);
  bytes.set(dsdt, DSDT_OFF);
  bytes.set(buildFadt(opts, at(FACS_OFF), at(DSDT_OFF)), FADT_OFF);
  bytes.set(buildRsdt([at(FADT_OFF)]), RSDT_OFF);
  bytes.set(buildXsdt([at(FADT_OFF)]), XSDT_OFF);
  bytes.set(buildRsdp(at(RSDT_OFF), at(XSDT_OFF)), RSDP_OFF);
  return {
    base,
    bytes,
    rsdp: at(RSDP_OFF),
    rsdt: at(RSDT_OFF),
    xsdt: at(XSDT_OFF),
    fadt: at(FADT_OFF),
    facs: at(FACS_OFF),
    dsdt: at(DSDT_OFF),
  };
}

/** Build the tables and write them into guest RAM (pages marked dirty). */
export function installAcpiTables(mem: { writePhysical(addr: number, bytes: Uint8Array): void }, opts: AcpiTablesOptions): AcpiTables {
  const tables = buildAcpiTables(opts);
  mem.writePhysical(tables.base, tables.bytes);
  return tables;
}

/** The byte that makes the bytes of `table` sum to 0 mod 256, given its checksum byte is 0. */
function checksum(table: Uint8Array): number {
  let sum = 0;
  for (const b of table) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A system description table: the 36-byte header (5.2.6), the body, the checksum. */
function sdt(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const t = new Uint8Array(HEADER_LENGTH + body.length);
  const dv = new DataView(t.buffer);
  t.set(ascii(signature), 0);
  dv.setUint32(4, t.length, true);
  t[8] = revision;
  t.set(ascii(OEM_ID), 10);
  t.set(ascii(OEM_TABLE_ID), 16);
  dv.setUint32(24, 1, true); // OEM revision
  t.set(ascii(CREATOR_ID), 28);
  dv.setUint32(32, 1, true); // creator revision
  t.set(body, HEADER_LENGTH);
  t[9] = checksum(t);
  return t;
}

function buildRsdp(rsdt: number, xsdt: number): Uint8Array {
  // 5.2.5.3: the first 20 bytes are the ACPI 1.0 structure with its own checksum; revision 2
  // adds the length, the XSDT address and an extended checksum over all 36 bytes.
  const r = new Uint8Array(RSDP_LENGTH);
  const dv = new DataView(r.buffer);
  r.set(ascii('RSD PTR '), 0);
  r.set(ascii(OEM_ID), 9);
  r[15] = 2;
  dv.setUint32(16, rsdt, true);
  dv.setUint32(20, RSDP_LENGTH, true);
  dv.setBigUint64(24, BigInt(xsdt), true);
  r[8] = checksum(r.subarray(0, 20));
  r[32] = checksum(r);
  return r;
}

function buildRsdt(entries: number[]): Uint8Array {
  const body = new Uint8Array(entries.length * 4);
  const dv = new DataView(body.buffer);
  entries.forEach((e, i) => dv.setUint32(i * 4, e, true));
  return sdt('RSDT', 1, body);
}

function buildXsdt(entries: number[]): Uint8Array {
  const body = new Uint8Array(entries.length * 8);
  const dv = new DataView(body.buffer);
  entries.forEach((e, i) => dv.setBigUint64(i * 8, BigInt(e), true));
  return sdt('XSDT', 1, body);
}

function buildFacs(): Uint8Array {
  // 5.2.10: no checksum; waking vectors 0 (no S3), no global lock.
  const f = new Uint8Array(FACS_LENGTH);
  const dv = new DataView(f.buffer);
  f.set(ascii('FACS'), 0);
  dv.setUint32(4, FACS_LENGTH, true);
  f[32] = 1; // version 1: the ACPI 2.0 layout, as the FADT's revision
  return f;
}

/** A Generic Address Structure (5.2.3.2) for an I/O port register. */
function ioGas(dv: DataView, off: number, port: number, bitWidth: number, accessSize: number): void {
  dv.setUint8(off, SYSTEM_IO);
  dv.setUint8(off + 1, bitWidth);
  dv.setUint8(off + 2, 0);
  dv.setUint8(off + 3, accessSize);
  dv.setBigUint64(off + 4, BigInt(port), true);
}

function buildFadt(opts: AcpiTablesOptions, facs: number, dsdt: number): Uint8Array {
  const pm = opts.pmPort ?? ACPI_PM_PORT;
  const timerBits = opts.pmTimerBits ?? 32;
  const reset = opts.resetRegister === undefined ? { port: RESET_CONTROL_PORT, value: 0x06 } : opts.resetRegister;
  const t = new Uint8Array(FADT_LENGTH);
  const dv = new DataView(t.buffer);
  // Field offsets are ACPI 6.4 table 5.9's; sdt() fills in the header.
  dv.setUint32(36, facs, true); // FIRMWARE_CTRL (X_FIRMWARE_CTRL stays 0: 5.2.9 allows one of the two)
  dv.setUint32(40, dsdt, true); // DSDT
  dv.setUint8(45, 0); // Preferred_PM_Profile: unspecified
  dv.setUint16(46, opts.sciIrq ?? IRQ_ACPI_SCI, true); // SCI_INT
  // SMI_CMD = 0 and ACPI_ENABLE = ACPI_DISABLE = 0: the hardware is always in ACPI mode, so
  // the OS never asks firmware to switch (there is none to ask).
  dv.setUint32(48, 0, true);
  dv.setUint32(56, pm + PM1_STS_OFFSET, true); // PM1a_EVT_BLK
  dv.setUint32(64, pm + PM1_CNT_OFFSET, true); // PM1a_CNT_BLK
  dv.setUint32(76, pm + PM_TMR_OFFSET, true); // PM_TMR_BLK
  dv.setUint8(88, PM1_EVT_LEN);
  dv.setUint8(89, PM1_CNT_LEN);
  dv.setUint8(91, PM_TMR_LEN);
  // No GPE blocks (GPE0_BLK = 0, GPE0_BLK_LEN = 0).
  // C2/C3 latencies above 100/1000 us say "not supported": the guest idles with HLT (C1).
  dv.setUint16(96, 101, true);
  dv.setUint16(98, 1001, true);
  dv.setUint8(108, CMOS_CENTURY);
  dv.setUint16(109, BOOT_LEGACY_DEVICES | BOOT_8042 | BOOT_VGA_NOT_PRESENT | BOOT_MSI_NOT_SUPPORTED, true);
  let flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC;
  if (timerBits === 32) flags |= FADT_TMR_VAL_EXT;
  if (reset) {
    flags |= FADT_RESET_REG_SUP;
    ioGas(dv, 116, reset.port, 8, 1); // RESET_REG: one byte
    dv.setUint8(128, reset.value); // RESET_VALUE
  }
  dv.setUint32(112, flags, true);
  // The X_ blocks repeat the legacy addresses (ACPICA tbfadt.c checks they agree). Access
  // size 0 (undefined) is what ACPICA itself fills in when it converts legacy fields.
  dv.setBigUint64(140, BigInt(dsdt), true); // X_DSDT
  ioGas(dv, 148, pm + PM1_STS_OFFSET, PM1_EVT_LEN * 8, 0); // X_PM1a_EVT_BLK
  ioGas(dv, 172, pm + PM1_CNT_OFFSET, PM1_CNT_LEN * 8, 0); // X_PM1a_CNT_BLK
  ioGas(dv, 208, pm + PM_TMR_OFFSET, PM_TMR_LEN * 8, 0); // X_PM_TMR_BLK
  return sdt('FACP', FADT_REVISION, t.subarray(HEADER_LENGTH));
}

// ---------------------------------------------------------------------------------------
// AML (ACPI 6.4, chapter 20 "ACPI Machine Language Specification").

const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const ROOT_CHAR = 0x5c;

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

/** PkgLength (20.2.4) for `contentLength` bytes following it: the count includes its own bytes. */
export function amlPkgLength(contentLength: number): Uint8Array {
  if (contentLength + 1 <= 0x3f) return Uint8Array.of(contentLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = contentLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML package of ${contentLength} bytes is too long`);
}

/** A NameString (20.2.2): an optional root prefix, then one 4-character NameSeg. */
function nameString(name: string): Uint8Array {
  const rooted = name.startsWith('\\');
  const seg = (rooted ? name.slice(1) : name).padEnd(4, '_');
  if (!/^[A-Z_][A-Z0-9_]{3}$/.test(seg)) throw new Error(`AML name "${name}" is not a single NameSeg`);
  return rooted ? concat([Uint8Array.of(ROOT_CHAR), ascii(seg)]) : ascii(seg);
}

/** The shortest integer encoding (20.2.3 ComputationalData). */
function integer(v: number): Uint8Array {
  if (v === 0) return Uint8Array.of(ZERO_OP);
  if (v === 1) return Uint8Array.of(ONE_OP);
  if (v <= 0xff) return Uint8Array.of(BYTE_PREFIX, v);
  if (v <= 0xffff) return Uint8Array.of(WORD_PREFIX, v & 0xff, v >>> 8);
  return Uint8Array.of(DWORD_PREFIX, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
}

function name(n: string, data: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(NAME_OP), nameString(n), data]);
}

function pkg(elements: Uint8Array[]): Uint8Array {
  const body = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(PACKAGE_OP), amlPkgLength(body.length), body]);
}

function buffer(data: Uint8Array): Uint8Array {
  const body = concat([integer(data.length), data]);
  return concat([Uint8Array.of(BUFFER_OP), amlPkgLength(body.length), body]);
}

function scope(n: string, terms: Uint8Array[]): Uint8Array {
  const body = concat([nameString(n), ...terms]);
  return concat([Uint8Array.of(SCOPE_OP), amlPkgLength(body.length), body]);
}

function device(n: string, terms: Uint8Array[]): Uint8Array {
  const body = concat([nameString(n), ...terms]);
  return concat([Uint8Array.of(EXT_OP_PREFIX, DEVICE_OP), amlPkgLength(body.length), body]);
}

/** ASL's EISAID("PNP0A03"): three 5-bit letters and four hex digits, stored big-endian. */
function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new Error(`"${id}" is not an EISA ID`);
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  return Uint8Array.of(DWORD_PREFIX, vendor >>> 8, vendor & 0xff, product >>> 8, product & 0xff);
}

// Resource descriptors (6.4 "Resource Data Types for ACPI").
const RES_PRODUCER_FIXED = 0x0c; // general flags: producer, positive decode, _MIF and _MAF fixed

function le(v: number, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push((v >>> (8 * i)) & 0xff);
  return out;
}

/** Word Address Space Descriptor (6.4.3.5.3): resource type 1 = I/O, 2 = bus numbers. */
function wordAddress(type: number, typeFlags: number, min: number, max: number): number[] {
  return [0x88, 13, 0, type, RES_PRODUCER_FIXED, typeFlags, ...le(0, 2), ...le(min, 2), ...le(max, 2), ...le(0, 2), ...le(max - min + 1, 2)];
}

/** DWord Address Space Descriptor (6.4.3.5.2), memory: type flag bit 0 = read/write, bits 1-2 = caching. */
function dwordMemory(min: number, max: number): number[] {
  const nonCacheableReadWrite = 0x01;
  return [0x87, 23, 0, 0, RES_PRODUCER_FIXED, nonCacheableReadWrite, ...le(0, 4), ...le(min, 4), ...le(max, 4), ...le(0, 4), ...le(max - min + 1, 4)];
}

/** I/O Port Descriptor (6.4.2.5), 16-bit decode. */
function ioPort(min: number, length: number): number[] {
  return [0x47, 0x01, ...le(min, 2), ...le(min, 2), 0x01, length];
}

const END_TAG = [0x79, 0x00]; // 6.4.2.9: checksum 0 means "treat as valid"

function pciHostBridgeCrs(mmioBase: number, mmioEnd: number): Uint8Array {
  const entireRange = 0x03; // _RNG: ISA and non-ISA ranges
  return Uint8Array.from([
    ...wordAddress(2, 0, 0x00, 0xff), // buses 0-255
    ...ioPort(0xcf8, 8), // the configuration mechanism #1 ports, consumed by the bridge
    ...wordAddress(1, entireRange, 0x0000, 0x0cf7),
    ...wordAddress(1, entireRange, 0x0d00, 0xffff),
    ...dwordMemory(mmioBase, mmioEnd - 1),
    ...END_TAG,
  ]);
}

function defaultPciWindow(ramBytes: number): { mmioBase: number; mmioEnd: number } {
  // Above RAM, on a 1 MiB boundary, so no BAR Linux assigns from it can shadow RAM.
  const mmioBase = Math.ceil(ramBytes / 0x100000) * 0x100000;
  if (mmioBase >= PCI_MMIO_END) throw new RangeError(`RAM of ${ramBytes} bytes leaves no room for a PCI MMIO window below 0x${PCI_MMIO_END.toString(16)}`);
  return { mmioBase, mmioEnd: PCI_MMIO_END };
}

function buildDsdt(opts: AcpiTablesOptions): Uint8Array {
  const terms: Uint8Array[] = [];
  const bridge = opts.pciHostBridge === undefined ? defaultPciWindow(opts.ramBytes) : opts.pciHostBridge;
  if (bridge) {
    if (!(bridge.mmioBase < bridge.mmioEnd && bridge.mmioEnd <= 0x100000000)) {
      throw new RangeError('PCI MMIO window must be a non-empty range below 4 GiB');
    }
    terms.push(scope('\\_SB', [
      device('PCI0', [
        name('_HID', eisaId('PNP0A03')),
        name('_UID', integer(0)),
        name('_CRS', buffer(pciHostBridgeCrs(bridge.mmioBase, bridge.mmioEnd))),
      ]),
    ]));
  }
  // \_Sx packages (7.4.2): SLP_TYPa, SLP_TYPb, two reserved. No PM1b block, so b repeats a.
  terms.push(name('\\_S0', pkg([integer(0), integer(0), integer(0), integer(0)])));
  terms.push(name('\\_S5', pkg([integer(SLP_TYP_S5), integer(SLP_TYP_S5), integer(0), integer(0)])));
  // Revision 2: integers are 64 bits wide (19.6.29 DefinitionBlock, ComplianceRevision).
  return sdt('DSDT', 2, concat(terms));
}
