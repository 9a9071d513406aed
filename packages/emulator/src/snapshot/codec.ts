/**
 * The one binary format for VM state: save to file, restore, migration and FT checkpoints
 * (DESIGN.md, Snapshot). All integers little-endian.
 *
 *   header (24 bytes)
 *     0  magic "FTX86VM\0"
 *     8  u16 format version        (1; the magic and this field never move, so any later
 *                                   format is recognised and refused by version)
 *    10  u16 flags                 (bit 0 INCREMENTAL: RAM is a page list on an earlier state)
 *    12  u32 section count
 *    16  u64 total length          (the whole file, checksum included: truncation is named)
 *   sections, each
 *     0  u8  type                  (SectionType)
 *     1  u8  name length, 1..255   (name: [A-Za-z0-9._:@-]; a device's stateName, optionally
 *                                   ":instance" when a board has several of one chip)
 *     2  u16 reserved, 0
 *     4  u32 section version       (a device's stateVersion; 1 for the codec's own sections)
 *     8  u64 payload length
 *    16  name, then payload
 *   trailer
 *        u32 CRC-32C of every byte before it
 *
 * Payloads:
 *   META        tagged value (value.ts), an object
 *   CPU         u32 core layout id (see CpuState), then the CPU state byte range, raw
 *   DEVICE      tagged value: the device's saveState()
 *   RAM_FULL    u64 RAM bytes, u32 page size (4096), u32 flags (bit 0: zero pages elided);
 *               elided: a bitmap of stored pages (bit p%8 of byte p/8); then padding; then
 *               the stored pages in ascending order (elided) or the RAM, raw
 *   RAM_PAGES   u64 RAM bytes, u32 page size, u32 page count n, u32 page numbers[n] strictly
 *               ascending, then padding, then n pages
 *   padding     u32 length p < 4096, p zero bytes: places page data 64 bytes past a 4 KiB
 *               boundary of the file. A page copied between addresses equal modulo 4 KiB
 *               runs ~3x slower on x86 (store-to-load "4K aliasing", bench/snapshot.ts),
 *               and guest RAM pages are 4 KiB aligned.
 *   DISK_BLOCKS u64 disk bytes, u32 block size, u32 block count n, u64 block numbers[n]
 *               strictly ascending, then n blocks
 *
 * Decoding validates the whole file into a plain VmState before anything is applied
 * (apply.ts); every length is checked against the bytes that remain before it is used,
 * and nothing is allocated from a length that has not been checked.
 */
import { crc32c } from './crc32c.ts';
import { SnapshotError, quoteName, truncated } from './errors.ts';
import { decodeValue, encodeValue, type PlainValue } from './value.ts';

export const SNAPSHOT_MAGIC = Uint8Array.from([0x46, 0x54, 0x58, 0x38, 0x36, 0x56, 0x4d, 0x00]); // "FTX86VM\0"
export const SNAPSHOT_FORMAT_VERSION = 1;
export const PAGE_SIZE = 4096;

export enum SectionType {
  Meta = 1,
  Cpu = 2,
  Device = 3,
  RamFull = 4,
  RamPages = 5,
  DiskBlocks = 6,
}

/** The state applies on top of an earlier one: RAM is a list of the pages dirtied since. */
export const FLAG_INCREMENTAL = 0x1;
const KNOWN_FLAGS = FLAG_INCREMENTAL;
const RAM_FLAG_ZERO_PAGES_ELIDED = 0x1;
/** Page data starts this far past a 4 KiB boundary of the file (see "padding" above). */
const DATA_SKEW = 64;

/** Version of the codec-owned sections (META, CPU, RAM_*, DISK_BLOCKS) this build writes. */
export const CODEC_SECTION_VERSION = 1;

export const HEADER_SIZE = 24;
export const SECTION_HEADER_SIZE = 16;
export const TRAILER_SIZE = 4;
const RAM_HEADER_SIZE = 16;
const DISK_HEADER_SIZE = 16;
/** A 32-bit guest's physical address space bounds RAM (cpu.ts allows 3 GiB); more is malformed. */
export const MAX_RAM_BYTES = 4 * 1024 * 1024 * 1024 - PAGE_SIZE;
const MIN_BLOCK_SIZE = 512;
const MAX_BLOCK_SIZE = 1024 * 1024;
const NAME_PATTERN = /^[A-Za-z0-9._:@-]{1,255}$/;

const SECTION_NAMES: Record<SectionType, string> = {
  [SectionType.Meta]: 'META',
  [SectionType.Cpu]: 'CPU',
  [SectionType.Device]: 'DEVICE',
  [SectionType.RamFull]: 'RAM_FULL',
  [SectionType.RamPages]: 'RAM_PAGES',
  [SectionType.DiskBlocks]: 'DISK_BLOCKS',
};

/** Codec sections have fixed names; a device or disk section names its device or disk. */
const FIXED_NAMES: Partial<Record<SectionType, string>> = {
  [SectionType.Meta]: 'meta',
  [SectionType.Cpu]: 'cpu',
  [SectionType.RamFull]: 'ram',
  [SectionType.RamPages]: 'ram',
};

// ---- the decoded state -------------------------------------------------------------------

export interface DeviceState {
  /** Section name: the device's stateName, or "stateName:instance". */
  name: string;
  version: number;
  state: PlainValue;
}

/**
 * RAM as decoded. `data` is a view into the decoded file (no copy): keep the file's bytes
 * unchanged until the state is applied.
 */
export type RamState =
  | {
      kind: 'full';
      ramBytes: number;
      /** The pages held in `data`, ascending; the others are zero. null: `data` is all of RAM. */
      storedPages: Uint32Array | null;
      data: Uint8Array;
    }
  | {
      kind: 'pages';
      ramBytes: number;
      /** Strictly ascending physical page numbers; page i is data[i * 4096, (i + 1) * 4096). */
      pageNumbers: Uint32Array;
      data: Uint8Array;
    };

/** Written disk blocks: block i of the list is data[i * blockSize, (i + 1) * blockSize). */
export interface DiskState {
  name: string;
  diskBytes: number;
  blockSize: number;
  blockNumbers: readonly number[];
  data: Uint8Array;
}

/**
 * The CPU state byte range and the layout it is in. The core keeps registers at fixed
 * offsets that change as the core grows, so a state is only loaded into a core with the
 * same layout id (machine-state.ts cpuLayoutId); 0 means "not recorded" and is checked by
 * size alone.
 */
export interface CpuState {
  layoutId: number;
  bytes: Uint8Array;
}

export interface VmState {
  formatVersion: number;
  incremental: boolean;
  meta: { [key: string]: PlainValue } | undefined;
  /** The CPU state (`bytes` is a view into the file). */
  cpu: CpuState | undefined;
  devices: DeviceState[];
  ram: RamState | undefined;
  disks: DiskState[];
}

// ---- encoding ----------------------------------------------------------------------------

/** Where RAM comes from when encoding: the live RAM view, never a copy of it. */
export type RamSource =
  | {
      kind: 'full';
      ram: Uint8Array;
      /**
       * Store a bitmap and only the non-zero pages (default true). Detecting a zero page is
       * a native compare against a zero page, about as fast as copying it (bench/snapshot.ts),
       * and makes a mostly empty guest's file small.
       */
      elideZeroPages?: boolean;
    }
  | {
      kind: 'pages';
      ram: Uint8Array;
      /** Physical page numbers to store (e.g. cpu.state.dirtyPages()); only these are read. */
      pageNumbers: ArrayLike<number>;
    };

export interface SnapshotInput {
  meta?: Record<string, unknown>;
  cpu?: CpuState;
  devices?: readonly { name: string; version: number; state: unknown }[];
  ram?: RamSource;
  disks?: readonly DiskState[];
  /** Default: true exactly when `ram` is a page list. */
  incremental?: boolean;
}

export interface EncodeOptions {
  /**
   * Write into this buffer when it is large enough (the result is a view of it), so an FT
   * primary reuses one buffer per checkpoint instead of faulting in fresh pages.
   */
  buffer?: Uint8Array;
  /**
   * Compute the checksum now (default). false leaves the trailer zero for sealSnapshot()
   * later: an FT primary copies the dirty pages while the guest is paused and checksums
   * after it resumed.
   */
  seal?: boolean;
}

interface PlannedSection {
  type: SectionType;
  name: Uint8Array;
  version: number;
  /** Payload bytes; set by place() for sections whose padding depends on their position. */
  length: number;
  place?(payloadAt: number): void;
  write(out: Uint8Array, view: DataView, at: number): void;
}

const asciiEncoder = new TextEncoder();
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

function unencodable(message: string): SnapshotError {
  return new SnapshotError('unencodable', `cannot encode snapshot: ${message}`);
}

/** Section names checked and encoded, as FT checkpoints encode the same ones many times a second. */
const sectionNames = new Map<string, Uint8Array>();

function sectionName(name: string, what: string): Uint8Array {
  let bytes = sectionNames.get(name);
  if (bytes !== undefined) return bytes;
  if (!NAME_PATTERN.test(name)) {
    throw unencodable(`${what} name ${quoteName(name)} must be 1-255 characters of [A-Za-z0-9._:@-]`);
  }
  bytes = asciiEncoder.encode(name);
  if (sectionNames.size < 1024) sectionNames.set(name, bytes);
  return bytes;
}

function checkU32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw unencodable(`${what} ${v} is not a u32`);
  return v;
}

function checkRam(ram: Uint8Array): void {
  if (ram.length === 0 || ram.length % PAGE_SIZE !== 0 || ram.length > MAX_RAM_BYTES) {
    throw unencodable(`RAM of ${ram.length} bytes is not a whole number of 4 KiB pages up to 4 GiB`);
  }
}

function setU64(view: DataView, at: number, v: number): void {
  view.setUint32(at, v % 0x1_0000_0000, true);
  view.setUint32(at + 4, Math.floor(v / 0x1_0000_0000), true);
}

function valueSection(type: SectionType, name: string, version: number, value: unknown, what: string): PlannedSection {
  const payload = encodeValue(value, what);
  return {
    type,
    name: sectionName(name, what),
    version: checkU32(version, `${what} version`),
    length: payload.length,
    write: (out, _view, at) => out.set(payload, at),
  };
}

/** Whether RAM page `p` is all zero: a first-word test rejects most live pages cheaply. */
function isZeroPage(ram: Uint8Array, words: Uint32Array | undefined, p: number): boolean {
  if (words && (words[p * 1024] | words[p * 1024 + 1023]) !== 0) return false;
  return Buffer.compare(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), ZERO_PAGE) === 0;
}

/**
 * A RAM section: a prefix (header, bitmap or page table), the padding that skews the page
 * data off 4 KiB alignment, then the page data.
 */
function ramSection(
  type: SectionType,
  prefixLength: number,
  dataLength: number,
  writePrefix: (out: Uint8Array, view: DataView, at: number) => void,
  writeData: (out: Uint8Array, at: number) => void,
): PlannedSection {
  let pad = 0;
  const section: PlannedSection = {
    type, name: sectionName('ram', 'RAM'), version: CODEC_SECTION_VERSION, length: 0,
    place(payloadAt) {
      const dataAt = payloadAt + prefixLength + 4;
      pad = (((DATA_SKEW - dataAt) % PAGE_SIZE) + PAGE_SIZE) % PAGE_SIZE;
      section.length = prefixLength + 4 + pad + dataLength;
    },
    write(out, view, at) {
      writePrefix(out, view, at);
      view.setUint32(at + prefixLength, pad, true);
      out.fill(0, at + prefixLength + 4, at + prefixLength + 4 + pad); // a reused buffer holds old bytes
      writeData(out, at + prefixLength + 4 + pad);
    },
  };
  return section;
}

function ramFullSection(ram: Uint8Array, elide: boolean): PlannedSection {
  checkRam(ram);
  const pages = ram.length / PAGE_SIZE;
  const header = (view: DataView, at: number, flags: number) => {
    setU64(view, at, ram.length);
    view.setUint32(at + 8, PAGE_SIZE, true);
    view.setUint32(at + 12, flags, true);
  };
  if (!elide) {
    return ramSection(SectionType.RamFull, RAM_HEADER_SIZE, ram.length, (_out, view, at) => header(view, at, 0), (out, at) => out.set(ram, at));
  }
  const words = ram.byteOffset % 4 === 0 ? new Uint32Array(ram.buffer, ram.byteOffset, ram.length >>> 2) : undefined;
  const bitmap = new Uint8Array(Math.ceil(pages / 8));
  let stored = 0;
  for (let p = 0; p < pages; p++) {
    if (!isZeroPage(ram, words, p)) {
      bitmap[p >>> 3] |= 1 << (p & 7);
      stored++;
    }
  }
  return ramSection(
    SectionType.RamFull,
    RAM_HEADER_SIZE + bitmap.length,
    stored * PAGE_SIZE,
    (out, view, at) => {
      header(view, at, RAM_FLAG_ZERO_PAGES_ELIDED);
      out.set(bitmap, at + RAM_HEADER_SIZE);
    },
    (out, at) => {
      let dst = at;
      // One set() per run of stored pages: a dense guest copies in a few large blocks.
      for (let p = 0; p < pages; ) {
        if ((bitmap[p >>> 3] & (1 << (p & 7))) === 0) { p++; continue; }
        let end = p + 1;
        while (end < pages && (bitmap[end >>> 3] & (1 << (end & 7))) !== 0) end++;
        out.set(ram.subarray(p * PAGE_SIZE, end * PAGE_SIZE), dst);
        dst += (end - p) * PAGE_SIZE;
        p = end;
      }
    },
  );
}

function ramPagesSection(ram: Uint8Array, pageNumbers: ArrayLike<number>): PlannedSection {
  checkRam(ram);
  const pages = ram.length / PAGE_SIZE;
  for (let i = 0; i < pageNumbers.length; i++) {
    const p = pageNumbers[i];
    if (!Number.isInteger(p) || p < 0 || p >= pages) throw unencodable(`page ${p} at index ${i} is outside RAM of ${pages} pages`);
  }
  // Sorted so the file has one canonical order and the decoder can check uniqueness cheaply.
  const sorted = Uint32Array.from(pageNumbers).sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) throw unencodable(`page ${sorted[i]} is listed twice`);
  }
  const n = sorted.length;
  return ramSection(
    SectionType.RamPages,
    RAM_HEADER_SIZE + n * 4,
    n * PAGE_SIZE,
    (_out, view, at) => {
      setU64(view, at, ram.length);
      view.setUint32(at + 8, PAGE_SIZE, true);
      view.setUint32(at + 12, n, true);
      for (let i = 0, t = at + RAM_HEADER_SIZE; i < n; i++, t += 4) view.setUint32(t, sorted[i], true);
    },
    (out, at) => {
      // Page bytes go straight from the RAM view into the file: one set() per page, and a
      // page not in the list is never read.
      for (let i = 0, t = at; i < n; i++, t += PAGE_SIZE) {
        const src = sorted[i] * PAGE_SIZE;
        out.set(ram.subarray(src, src + PAGE_SIZE), t);
      }
    },
  );
}

function diskSection(d: DiskState): PlannedSection {
  const what = `disk ${quoteName(d.name)}`;
  const bs = d.blockSize;
  if (!Number.isInteger(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    throw unencodable(`${what}: block size ${bs} is not a power of two in [${MIN_BLOCK_SIZE}, ${MAX_BLOCK_SIZE}]`);
  }
  if (!Number.isSafeInteger(d.diskBytes) || d.diskBytes < 0 || d.diskBytes % bs !== 0) {
    throw unencodable(`${what}: size ${d.diskBytes} is not a whole number of ${bs}-byte blocks`);
  }
  const n = d.blockNumbers.length;
  if (d.data.length !== n * bs) throw unencodable(`${what}: ${n} blocks need ${n * bs} data bytes, got ${d.data.length}`);
  checkU32(n, `${what} block count`);
  const blocks = d.diskBytes / bs;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => d.blockNumbers[a] - d.blockNumbers[b]);
  for (let k = 0; k < n; k++) {
    const b = d.blockNumbers[order[k]];
    if (!Number.isSafeInteger(b) || b < 0 || b >= blocks) throw unencodable(`${what}: block ${b} is outside the disk of ${blocks} blocks`);
    if (k > 0 && b === d.blockNumbers[order[k - 1]]) throw unencodable(`${what}: block ${b} is listed twice`);
  }
  return {
    type: SectionType.DiskBlocks, name: sectionName(d.name, 'disk'), version: CODEC_SECTION_VERSION,
    length: DISK_HEADER_SIZE + n * 8 + n * bs,
    write(out, view, at) {
      setU64(view, at, d.diskBytes);
      view.setUint32(at + 8, bs, true);
      view.setUint32(at + 12, n, true);
      let t = at + DISK_HEADER_SIZE;
      for (let k = 0; k < n; k++, t += 8) setU64(view, t, d.blockNumbers[order[k]]);
      for (let k = 0; k < n; k++, t += bs) out.set(d.data.subarray(order[k] * bs, (order[k] + 1) * bs), t);
    },
  };
}

/** Encode a VM state into one snapshot file. Throws SnapshotError('unencodable') on bad input. */
export function encodeSnapshot(input: SnapshotInput, options: EncodeOptions = {}): Uint8Array {
  const incremental = input.incremental ?? input.ram?.kind === 'pages';
  if (input.ram?.kind === 'pages' && !incremental) throw unencodable('a RAM page list needs an incremental snapshot');
  if (input.ram?.kind === 'full' && incremental) throw unencodable('an incremental snapshot carries RAM as a page list');
  const sections: PlannedSection[] = [];
  if (input.meta !== undefined) sections.push(valueSection(SectionType.Meta, 'meta', CODEC_SECTION_VERSION, input.meta, 'meta'));
  if (input.cpu !== undefined) {
    const { layoutId, bytes } = input.cpu;
    checkU32(layoutId, 'CPU layout id');
    sections.push({
      type: SectionType.Cpu, name: sectionName('cpu', 'CPU'), version: CODEC_SECTION_VERSION, length: 4 + bytes.length,
      write(out, view, at) {
        view.setUint32(at, layoutId, true);
        out.set(bytes, at + 4);
      },
    });
  }
  const seen = new Set<string>();
  for (const d of input.devices ?? []) {
    if (seen.has(d.name)) throw unencodable(`device ${quoteName(d.name)} is listed twice (name instances "chip:instance")`);
    seen.add(d.name);
    sections.push(valueSection(SectionType.Device, d.name, d.version, d.state, d.name));
  }
  if (input.ram?.kind === 'full') sections.push(ramFullSection(input.ram.ram, input.ram.elideZeroPages ?? true));
  if (input.ram?.kind === 'pages') sections.push(ramPagesSection(input.ram.ram, input.ram.pageNumbers));
  const disks = new Set<string>();
  for (const d of input.disks ?? []) {
    if (disks.has(d.name)) throw unencodable(`disk ${quoteName(d.name)} is listed twice`);
    disks.add(d.name);
    sections.push(diskSection(d));
  }

  let total = HEADER_SIZE + TRAILER_SIZE;
  for (const s of sections) {
    s.place?.(total - TRAILER_SIZE + SECTION_HEADER_SIZE + s.name.length);
    total += SECTION_HEADER_SIZE + s.name.length + s.length;
  }
  const out = options.buffer && options.buffer.length >= total ? options.buffer.subarray(0, total) : new Uint8Array(total);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(SNAPSHOT_MAGIC, 0);
  view.setUint16(8, SNAPSHOT_FORMAT_VERSION, true);
  view.setUint16(10, incremental ? FLAG_INCREMENTAL : 0, true);
  view.setUint32(12, sections.length, true);
  setU64(view, 16, total);
  let at = HEADER_SIZE;
  for (const s of sections) {
    out[at] = s.type;
    out[at + 1] = s.name.length;
    view.setUint16(at + 2, 0, true);
    view.setUint32(at + 4, s.version, true);
    setU64(view, at + 8, s.length);
    out.set(s.name, at + SECTION_HEADER_SIZE);
    at += SECTION_HEADER_SIZE + s.name.length;
    s.write(out, view, at);
    at += s.length;
  }
  view.setUint32(at, 0, true);
  if (options.seal ?? true) sealSnapshot(out);
  return out;
}

/** Write the trailing checksum of an encoded snapshot (see EncodeOptions.seal). */
export function sealSnapshot(file: Uint8Array): void {
  const body = file.length - TRAILER_SIZE;
  new DataView(file.buffer, file.byteOffset, file.byteLength).setUint32(body, crc32c(file.subarray(0, body)), true);
}

// ---- decoding ----------------------------------------------------------------------------

/** Reads within [pos, end) of the file; every read is checked first. */
class SectionReader {
  readonly view: DataView;

  constructor(readonly bytes: Uint8Array, public pos: number, readonly end: number, private readonly what: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get left(): number {
    return this.end - this.pos;
  }

  fail(why: string, code: 'section-layout' | 'section-version' = 'section-layout'): never {
    throw new SnapshotError(code, `malformed ${this.what} at offset ${this.pos}: ${why}`);
  }

  need(n: number, what: string): void {
    if (n > this.left) this.fail(`${what} needs ${n} bytes, only ${this.left} left in the section`);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 as a number; values past 2^53 cannot be a length or position here. */
  u64(what: string): number {
    this.need(8, what);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    if (hi > 0x1fffff) this.fail(`${what} 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} exceeds 2^53`);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

function checkCodecVersion(type: SectionType, name: string, version: number, at: number): void {
  if (version !== CODEC_SECTION_VERSION) {
    throw new SnapshotError(
      'section-version',
      `${SECTION_NAMES[type]} section ${quoteName(name)} at offset ${at} has version ${version}; this build reads version ${CODEC_SECTION_VERSION}`,
    );
  }
}

/** The padding before page data: a length below 4 KiB, then that many zero bytes. */
function skipPadding(r: SectionReader): void {
  const pad = r.u32('padding length');
  if (pad >= PAGE_SIZE) r.fail(`padding of ${pad} bytes (at most ${PAGE_SIZE - 1})`);
  const bytes = r.take(pad, 'padding');
  for (let i = 0; i < pad; i++) if (bytes[i] !== 0) r.fail('padding holds non-zero bytes');
}

function decodeRamHeader(r: SectionReader): number {
  const ramBytes = r.u64('RAM size');
  if (ramBytes === 0 || ramBytes % PAGE_SIZE !== 0 || ramBytes > MAX_RAM_BYTES) {
    r.fail(`RAM size ${ramBytes} is not a whole number of 4 KiB pages up to 4 GiB`);
  }
  const pageSize = r.u32('page size');
  if (pageSize !== PAGE_SIZE) r.fail(`page size ${pageSize} is not ${PAGE_SIZE}`);
  return ramBytes;
}

function decodeRamFull(r: SectionReader): RamState {
  const ramBytes = decodeRamHeader(r);
  const flags = r.u32('RAM flags');
  if ((flags & ~RAM_FLAG_ZERO_PAGES_ELIDED) !== 0) r.fail(`unknown RAM flags 0x${flags.toString(16)}`);
  const pages = ramBytes / PAGE_SIZE;
  if (!(flags & RAM_FLAG_ZERO_PAGES_ELIDED)) {
    skipPadding(r);
    if (r.left !== ramBytes) r.fail(`RAM of ${ramBytes} bytes, but the section holds ${r.left}`);
    return { kind: 'full', ramBytes, storedPages: null, data: r.take(ramBytes, 'RAM') };
  }
  const bitmap = r.take(Math.ceil(pages / 8), 'zero-page bitmap');
  let stored = 0;
  for (let i = 0; i < bitmap.length; i++) stored += POPCOUNT[bitmap[i]];
  if (pages % 8 !== 0 && bitmap[bitmap.length - 1] >>> (pages % 8) !== 0) r.fail('bitmap marks pages past the end of RAM');
  // Checked before the page list is allocated: `stored` is bounded by the bitmap's bytes,
  // and the pages it claims must all be in the file.
  if (4 + stored * PAGE_SIZE > r.left) r.fail(`bitmap lists ${stored} pages (${stored * PAGE_SIZE} bytes), the section holds ${r.left}`);
  skipPadding(r);
  if (r.left !== stored * PAGE_SIZE) r.fail(`bitmap lists ${stored} pages (${stored * PAGE_SIZE} bytes), the section holds ${r.left}`);
  const storedPages = new Uint32Array(stored);
  let k = 0;
  for (let p = 0; p < pages; p++) if (bitmap[p >>> 3] & (1 << (p & 7))) storedPages[k++] = p;
  return { kind: 'full', ramBytes, storedPages, data: r.take(r.left, 'RAM pages') };
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let x = b; x; x &= x - 1) n++;
  return n;
});

function decodeRamPages(r: SectionReader): RamState {
  const ramBytes = decodeRamHeader(r);
  const n = r.u32('page count');
  // Checked before the page table is allocated: table, padding length and pages must fit.
  if (n * (4 + PAGE_SIZE) + 4 > r.left) r.fail(`${n} pages need ${n * (4 + PAGE_SIZE) + 4} bytes, the section holds ${r.left}`);
  const pages = ramBytes / PAGE_SIZE;
  const pageNumbers = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const p = r.view.getUint32(r.pos, true);
    if (p >= pages) r.fail(`page ${p} is outside RAM of ${pages} pages`);
    if (i > 0 && p <= pageNumbers[i - 1]) r.fail(`page ${p} follows page ${pageNumbers[i - 1]}: the list must be strictly ascending`);
    pageNumbers[i] = p;
    r.pos += 4;
  }
  skipPadding(r);
  if (r.left !== n * PAGE_SIZE) r.fail(`${n} pages need ${n * PAGE_SIZE} bytes, the section holds ${r.left}`);
  return { kind: 'pages', ramBytes, pageNumbers, data: r.take(n * PAGE_SIZE, 'pages') };
}

function decodeDisk(r: SectionReader, name: string): DiskState {
  const diskBytes = r.u64('disk size');
  const blockSize = r.u32('block size');
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    r.fail(`block size ${blockSize} is not a power of two in [${MIN_BLOCK_SIZE}, ${MAX_BLOCK_SIZE}]`);
  }
  if (diskBytes % blockSize !== 0) r.fail(`disk size ${diskBytes} is not a whole number of ${blockSize}-byte blocks`);
  const n = r.u32('block count');
  if (n * (8 + blockSize) !== r.left) r.fail(`${n} blocks need ${n * (8 + blockSize)} bytes, the section holds ${r.left}`);
  const blocks = diskBytes / blockSize;
  const blockNumbers: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = r.u64('block number');
    if (b >= blocks) r.fail(`block ${b} is outside the disk of ${blocks} blocks`);
    if (i > 0 && b <= blockNumbers[i - 1]) r.fail(`block ${b} follows block ${blockNumbers[i - 1]}: the list must be strictly ascending`);
    blockNumbers.push(b);
  }
  return { name, diskBytes, blockSize, blockNumbers, data: r.take(n * blockSize, 'blocks') };
}

const latin1 = new TextDecoder('latin1');

/**
 * Parse and validate a snapshot file into a VmState, touching no VM. Throws only
 * SnapshotError. The returned CPU, RAM and disk bytes are views into `file`.
 */
export function decodeSnapshot(file: Uint8Array): VmState {
  const len = file.length;
  // The magic and the version come first and never move: any later format is named.
  const magicSeen = Math.min(len, SNAPSHOT_MAGIC.length);
  for (let i = 0; i < magicSeen; i++) {
    if (file[i] !== SNAPSHOT_MAGIC[i]) {
      const got = Array.from(file.subarray(0, magicSeen), (b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new SnapshotError('bad-magic', `not an ftx86 snapshot: bad magic ${got} at offset 0 (expected "FTX86VM\\0")`);
    }
  }
  if (len < HEADER_SIZE + TRAILER_SIZE) throw truncated(len, HEADER_SIZE + TRAILER_SIZE - len, 'header');
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const formatVersion = view.getUint16(8, true);
  if (formatVersion > SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotError(
      'format-version',
      `snapshot format version ${formatVersion} is newer than this build reads (up to ${SNAPSHOT_FORMAT_VERSION}): upgrade ftx86 to restore it`,
    );
  }
  if (formatVersion === 0) throw new SnapshotError('format-version', 'snapshot format version 0 is not a valid version');
  const totalHi = view.getUint32(20, true);
  const total = totalHi * 0x1_0000_0000 + view.getUint32(16, true);
  if (total > len) throw truncated(len, total - len, `the header gives a length of ${total}`);
  if (total < len) {
    throw new SnapshotError('trailing-bytes', `snapshot has ${len - total} bytes after its end at offset ${total}`);
  }
  const body = len - TRAILER_SIZE;
  const stored = view.getUint32(body, true);
  const computed = crc32c(file.subarray(0, body));
  if (stored !== computed) {
    throw new SnapshotError(
      'checksum',
      `snapshot checksum mismatch: stored 0x${stored.toString(16).padStart(8, '0')}, computed 0x${computed.toString(16).padStart(8, '0')} over ${body} bytes (corrupted)`,
    );
  }
  // Past the checksum the bytes are what the writer wrote, but a crafted or buggy writer's
  // file must still be refused cleanly: everything below is checked all the same.
  const flags = view.getUint16(10, true);
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new SnapshotError('flags', `snapshot has unknown flags 0x${flags.toString(16)} (this build knows 0x${KNOWN_FLAGS.toString(16)})`);
  }
  const incremental = (flags & FLAG_INCREMENTAL) !== 0;
  const sectionCount = view.getUint32(12, true);

  const state: VmState = { formatVersion, incremental, meta: undefined, cpu: undefined, devices: [], ram: undefined, disks: [] };
  const names = new Set<string>();
  let pos = HEADER_SIZE;
  for (let s = 0; s < sectionCount; s++) {
    const at = pos;
    const left = body - pos;
    if (left < SECTION_HEADER_SIZE) {
      throw new SnapshotError('section-layout', `section ${s} of ${sectionCount} at offset ${at}: header needs ${SECTION_HEADER_SIZE} bytes, ${left} left`);
    }
    const type = file[pos];
    const nameLength = file[pos + 1];
    const reserved = view.getUint16(pos + 2, true);
    const version = view.getUint32(pos + 4, true);
    const lengthHi = view.getUint32(pos + 12, true);
    const length = lengthHi * 0x1_0000_0000 + view.getUint32(pos + 8, true);
    pos += SECTION_HEADER_SIZE;
    if (nameLength === 0 || nameLength > body - pos) {
      throw new SnapshotError('section-layout', `section ${s} at offset ${at}: name of ${nameLength} bytes, ${body - pos} left`);
    }
    const name = latin1.decode(file.subarray(pos, pos + nameLength));
    pos += nameLength;
    if (!NAME_PATTERN.test(name)) {
      throw new SnapshotError('section-layout', `section ${s} at offset ${at}: name ${quoteName(name)} is not [A-Za-z0-9._:@-]`);
    }
    if (!(type in SECTION_NAMES)) {
      throw new SnapshotError('unknown-section', `unknown section type ${type} named ${quoteName(name)} at offset ${at}`);
    }
    const kind = type as SectionType;
    const label = `${SECTION_NAMES[kind]} section ${quoteName(name)}`;
    if (reserved !== 0) throw new SnapshotError('section-layout', `${label} at offset ${at}: reserved field is 0x${reserved.toString(16)}, not 0`);
    // The length is checked against what is left before anything is read or allocated.
    if (length > body - pos) {
      throw new SnapshotError('section-layout', `${label} at offset ${at} claims ${length} payload bytes, only ${body - pos} left before the checksum`);
    }
    const fixed = FIXED_NAMES[kind];
    if (fixed !== undefined && name !== fixed) {
      throw new SnapshotError('unknown-section', `unknown ${SECTION_NAMES[kind]} section name ${quoteName(name)} at offset ${at} (expected "${fixed}")`);
    }
    const key = `${kind === SectionType.RamPages ? SectionType.RamFull : kind}/${name}`;
    if (names.has(key)) throw new SnapshotError('duplicate-section', `${label} at offset ${at} appears twice`);
    names.add(key);
    const r = new SectionReader(file, pos, pos + length, `${label} (offset ${at})`);
    switch (kind) {
      case SectionType.Meta: {
        checkCodecVersion(kind, name, version, at);
        const meta = decodeValue(r.take(length, 'meta'), pos, label);
        if (meta === null || typeof meta !== 'object' || Array.isArray(meta) || meta instanceof Uint8Array) {
          throw new SnapshotError('value-encoding', `malformed ${label} at offset ${pos}: meta must be an object`);
        }
        state.meta = meta;
        break;
      }
      case SectionType.Cpu:
        checkCodecVersion(kind, name, version, at);
        state.cpu = { layoutId: r.u32('CPU layout id'), bytes: r.take(r.left, 'CPU state') };
        break;
      case SectionType.Device:
        state.devices.push({ name, version, state: decodeValue(r.take(length, 'state'), pos, label) });
        break;
      case SectionType.RamFull:
        checkCodecVersion(kind, name, version, at);
        if (incremental) throw new SnapshotError('section-layout', `${label} at offset ${at} in an incremental snapshot (expected RAM_PAGES)`);
        state.ram = decodeRamFull(r);
        break;
      case SectionType.RamPages:
        checkCodecVersion(kind, name, version, at);
        if (!incremental) throw new SnapshotError('section-layout', `${label} at offset ${at} in a full snapshot (expected RAM_FULL)`);
        state.ram = decodeRamPages(r);
        break;
      case SectionType.DiskBlocks:
        checkCodecVersion(kind, name, version, at);
        state.disks.push(decodeDisk(r, name));
        break;
    }
    if (r.pos !== r.end) r.fail(`${r.end - r.pos} bytes left over`);
    pos += length;
  }
  if (pos !== body) {
    throw new SnapshotError('section-layout', `${body - pos} bytes after the last of ${sectionCount} sections at offset ${pos}`);
  }
  return state;
}
