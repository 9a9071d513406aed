// Payload layouts of protocol version 1 (all integers big-endian). The frame header
// already carries type, epoch and sequence, so payloads hold only the message's own
// fields. DEVICE_STATE is opaque here: its bytes belong to the snapshot codec. A payload that does not parse exactly (short, trailing bytes,
// out-of-range field) is a ProtocolError('MALFORMED'), never a RangeError.
//
//   HELLO            u16 version, u8 mac, u8 role, nonce[32], u64 memorySize,
//                    u64 diskSize, u32 maxPayload, str8 node
//                    (mac: 16 HMAC-SHA256 truncated to 16 bytes, 32 HMAC-SHA256, 0x50
//                    Poly1305; the first two are the HMAC's length, as the byte began)
//   HELLO_ACK        the same fields for the server, then proof[32]
//   HELLO_PROOF      proof[32]
//   HELLO_DONE       (empty)
//   FULL_SYNC_BEGIN  u64 ramBytes, u64 deviceBytes (of the first device state), u64 diskBytes
//   FULL_SYNC_CHUNK  u8 section, u64 offset, u64 doneBytes, u64 totalBytes, data... (a
//                    DEVICE_STATE chunk is a whole state; a later one replaces an earlier)
//   FULL_SYNC_END    u64 totalBytes, u32 chunks
//   PAGES            u32 count, u32 pageNumber[count], count x 4096 bytes of page data
//   DISK             u32 count, (u64 offset, u32 length)[count], data of all extents
//   EVENTS           u32 count, (u8 kind, u8 port, u32 length, data)[count]: held outputs
//   COMMIT           u32 frames (state frames of this epoch before COMMIT), u64 releasedUpTo,
//                    optional digest[32] (verify mode)
//   ACK              (empty: the header's epoch is the epoch committed)
//   CANCEL           str16 reason
//   HEARTBEAT        u64 sentAtNs (sender's monotonic clock); the header's epoch carries the
//                    sender's output watermark (ChannelOptions.heartbeatEpoch)
//   ERROR            u16 code, str16 message
//   BYE              str16 reason

import { ProtocolError } from './errors.ts';
import type { MacKind } from './frame.ts';

/** The HELLO byte of each session MAC. */
const MAC_CODE: Record<MacKind, number> = { 'hmac-sha256-128': 16, 'hmac-sha256': 32, poly1305: 0x50 };
const MAC_OF_CODE = new Map<number, MacKind>(Object.entries(MAC_CODE).map(([k, v]) => [v, k as MacKind]));

export const NONCE_SIZE = 32;
export const PROOF_SIZE = 32;
export const PAGE_SIZE = 4096;
const MAX_NODE_NAME = 255;
const MAX_TEXT = 1024;

export const Role = { UNSPECIFIED: 0, PRIMARY: 1, SECONDARY: 2 } as const;
export type Role = (typeof Role)[keyof typeof Role];

export const SyncSection = { RAM: 1, DEVICE_STATE: 2, DISK: 3 } as const;
export type SyncSection = (typeof SyncSection)[keyof typeof SyncSection];

/** Bounds-checked reader: every overrun is a MALFORMED protocol error. */
export class PayloadReader {
  #off = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  #need(n: number): number {
    if (this.#off + n > this.buf.length) {
      throw new ProtocolError('MALFORMED', `${this.what} payload is truncated (needs ${this.#off + n} bytes, has ${this.buf.length})`);
    }
    const at = this.#off;
    this.#off += n;
    return at;
  }
  u8(): number {
    return this.buf.readUInt8(this.#need(1));
  }
  u16(): number {
    return this.buf.readUInt16BE(this.#need(2));
  }
  u32(): number {
    return this.buf.readUInt32BE(this.#need(4));
  }
  /** u64 as a number: sizes and offsets here stay far below 2^53. */
  u64(): number {
    const v = this.buf.readBigUInt64BE(this.#need(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError('MALFORMED', `${this.what} field ${v} is out of range`);
    return Number(v);
  }
  u64n(): bigint {
    return this.buf.readBigUInt64BE(this.#need(8));
  }
  bytes(n: number): Buffer {
    const at = this.#need(n);
    return this.buf.subarray(at, at + n);
  }
  str8(): string {
    return this.bytes(this.u8()).toString('utf8');
  }
  str16(): string {
    const n = this.u16();
    if (n > MAX_TEXT) throw new ProtocolError('MALFORMED', `${this.what} text of ${n} bytes is over ${MAX_TEXT}`);
    return this.bytes(n).toString('utf8');
  }
  rest(): Buffer {
    return this.bytes(this.buf.length - this.#off);
  }
  get remaining(): number {
    return this.buf.length - this.#off;
  }
  /** A payload with trailing bytes is refused: within one version the layout is exact. */
  end(): void {
    if (this.#off !== this.buf.length) {
      throw new ProtocolError('MALFORMED', `${this.what} payload has ${this.buf.length - this.#off} trailing bytes`);
    }
  }
}

/** Fixed-size writer; sizes are computed up front so each message is one allocation. */
class PayloadWriter {
  readonly buf: Buffer;
  #off = 0;
  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }
  u8(v: number): this {
    this.#off = this.buf.writeUInt8(v, this.#off);
    return this;
  }
  u16(v: number): this {
    this.#off = this.buf.writeUInt16BE(v, this.#off);
    return this;
  }
  u32(v: number): this {
    this.#off = this.buf.writeUInt32BE(v, this.#off);
    return this;
  }
  u64(v: number | bigint): this {
    if (typeof v === 'number' && !(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`${v} is not a u64`);
    this.#off = this.buf.writeBigUInt64BE(BigInt(v), this.#off);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.buf.set(b, this.#off);
    this.#off += b.length;
    return this;
  }
  done(): Buffer {
    if (this.#off !== this.buf.length) throw new Error(`internal: wrote ${this.#off} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

function utf8(text: string, max: number, what: string): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length > max) throw new RangeError(`${what} is ${b.length} bytes, over ${max}`);
  return b;
}

// ---- handshake -------------------------------------------------------------------------

export interface PeerInfo {
  readonly version: number;
  /** The session MAC: the client asks, the server follows. */
  readonly mac: MacKind;
  readonly role: Role;
  readonly memorySize: number;
  readonly diskSize: number;
  /** Largest payload this side accepts; the other side never sends more. */
  readonly maxPayload: number;
  /** Free-form node name for logs (host, instance id). */
  readonly node: string;
}

export interface Hello extends PeerInfo {
  readonly nonce: Buffer;
}
export interface HelloAck extends Hello {
  readonly proof: Buffer;
}

function helloSize(node: Buffer): number {
  return 2 + 1 + 1 + NONCE_SIZE + 8 + 8 + 4 + 1 + node.length;
}

function writeHello(w: PayloadWriter, h: Hello, node: Buffer): void {
  if (h.nonce.length !== NONCE_SIZE) throw new RangeError(`nonce must be ${NONCE_SIZE} bytes`);
  w.u16(h.version).u8(MAC_CODE[h.mac]).u8(h.role).bytes(h.nonce).u64(h.memorySize).u64(h.diskSize).u32(h.maxPayload).u8(node.length).bytes(node);
}

function readHello(r: PayloadReader, what: string): Hello {
  const version = r.u16();
  const macCode = r.u8();
  const mac = MAC_OF_CODE.get(macCode);
  if (mac === undefined) {
    throw new ProtocolError('MALFORMED', `${what} asks for MAC 0x${macCode.toString(16)} (0x10 HMAC-SHA256-128, 0x20 HMAC-SHA256, 0x50 Poly1305)`);
  }
  const role = r.u8();
  if (role !== Role.UNSPECIFIED && role !== Role.PRIMARY && role !== Role.SECONDARY) {
    throw new ProtocolError('MALFORMED', `${what} has unknown role ${role}`);
  }
  const nonce = Buffer.from(r.bytes(NONCE_SIZE)); // copied: it outlives the frame
  const memorySize = r.u64();
  const diskSize = r.u64();
  const maxPayload = r.u32();
  const node = r.str8();
  return { version, mac, role, nonce, memorySize, diskSize, maxPayload, node };
}

export function encodeHello(h: Hello): Buffer {
  const node = utf8(h.node, MAX_NODE_NAME, 'node name');
  const w = new PayloadWriter(helloSize(node));
  writeHello(w, h, node);
  return w.done();
}

export function decodeHello(payload: Buffer): Hello {
  const r = new PayloadReader(payload, 'HELLO');
  const h = readHello(r, 'HELLO');
  r.end();
  return h;
}

export function encodeHelloAck(h: HelloAck): Buffer {
  const node = utf8(h.node, MAX_NODE_NAME, 'node name');
  if (h.proof.length !== PROOF_SIZE) throw new RangeError(`proof must be ${PROOF_SIZE} bytes`);
  const w = new PayloadWriter(helloSize(node) + PROOF_SIZE);
  writeHello(w, h, node);
  w.bytes(h.proof);
  return w.done();
}

export function decodeHelloAck(payload: Buffer): HelloAck {
  const r = new PayloadReader(payload, 'HELLO_ACK');
  const h = readHello(r, 'HELLO_ACK');
  const proof = Buffer.from(r.bytes(PROOF_SIZE));
  r.end();
  return { ...h, proof };
}

export function encodeHelloProof(proof: Uint8Array): Buffer {
  if (proof.length !== PROOF_SIZE) throw new RangeError(`proof must be ${PROOF_SIZE} bytes`);
  return Buffer.from(proof);
}

export function decodeHelloProof(payload: Buffer): Buffer {
  const r = new PayloadReader(payload, 'HELLO_PROOF');
  const proof = r.bytes(PROOF_SIZE);
  r.end();
  return proof;
}

// ---- full sync -------------------------------------------------------------------------

export interface FullSyncBegin {
  readonly ramBytes: number;
  readonly deviceBytes: number;
  readonly diskBytes: number;
}

export function encodeFullSyncBegin(m: FullSyncBegin): Buffer {
  return new PayloadWriter(24).u64(m.ramBytes).u64(m.deviceBytes).u64(m.diskBytes).done();
}

export function decodeFullSyncBegin(payload: Buffer): FullSyncBegin {
  const r = new PayloadReader(payload, 'FULL_SYNC_BEGIN');
  const m = { ramBytes: r.u64(), deviceBytes: r.u64(), diskBytes: r.u64() };
  r.end();
  return m;
}

export interface FullSyncChunkHeader {
  readonly section: SyncSection;
  /** Byte offset of `data` within its section. */
  readonly offset: number;
  /** Progress: bytes of the whole sync sent including this chunk, out of totalBytes. */
  readonly doneBytes: number;
  readonly totalBytes: number;
}
export interface FullSyncChunk extends FullSyncChunkHeader {
  readonly data: Buffer;
}

const CHUNK_HEADER_SIZE = 1 + 8 + 8 + 8;

/** Parts for a FULL_SYNC_CHUNK: a small header and the data, uncopied. */
export function encodeFullSyncChunk(m: FullSyncChunkHeader, data: readonly Uint8Array[]): Uint8Array[] {
  const head = new PayloadWriter(CHUNK_HEADER_SIZE).u8(m.section).u64(m.offset).u64(m.doneBytes).u64(m.totalBytes).done();
  return [head, ...data];
}

export function decodeFullSyncChunk(payload: Buffer): FullSyncChunk {
  const r = new PayloadReader(payload, 'FULL_SYNC_CHUNK');
  const section = r.u8();
  if (section !== SyncSection.RAM && section !== SyncSection.DEVICE_STATE && section !== SyncSection.DISK) {
    throw new ProtocolError('MALFORMED', `FULL_SYNC_CHUNK has unknown section ${section}`);
  }
  const offset = r.u64();
  const doneBytes = r.u64();
  const totalBytes = r.u64();
  if (doneBytes > totalBytes) throw new ProtocolError('MALFORMED', `FULL_SYNC_CHUNK progress ${doneBytes} is past its total ${totalBytes}`);
  return { section, offset, doneBytes, totalBytes, data: r.rest() };
}

export interface FullSyncEnd {
  readonly totalBytes: number;
  readonly chunks: number;
}

export function encodeFullSyncEnd(m: FullSyncEnd): Buffer {
  return new PayloadWriter(12).u64(m.totalBytes).u32(m.chunks).done();
}

export function decodeFullSyncEnd(payload: Buffer): FullSyncEnd {
  const r = new PayloadReader(payload, 'FULL_SYNC_END');
  const m = { totalBytes: r.u64(), chunks: r.u32() };
  r.end();
  return m;
}

// ---- checkpoint state ------------------------------------------------------------------

/**
 * Parts for a PAGES payload: one small index buffer, then the page data uncopied, either
 * one 4 KiB view per page (straight from guest RAM or a staging area) or one contiguous
 * buffer of count x 4 KiB. Socket writes of these parts under cork become one writev.
 */
export function encodePages(pageNumbers: ArrayLike<number>, data: readonly Uint8Array[]): Uint8Array[] {
  const count = pageNumbers.length;
  let bytes = 0;
  for (const d of data) bytes += d.length;
  if (bytes !== count * PAGE_SIZE) throw new RangeError(`PAGES: ${count} page numbers but ${bytes} bytes of data`);
  const index = new PayloadWriter(4 + 4 * count).u32(count);
  for (let i = 0; i < count; i++) index.u32(pageNumbers[i]);
  return [index.done(), ...data];
}

export interface Pages {
  readonly pageNumbers: Uint32Array;
  /** count x 4 KiB, a view into the frame's payload. */
  readonly data: Buffer;
}

export function decodePages(payload: Buffer): Pages {
  const r = new PayloadReader(payload, 'PAGES');
  const count = r.u32();
  // Checked against what actually arrived before sizing anything by `count`.
  if (r.remaining !== count * (4 + PAGE_SIZE)) {
    throw new ProtocolError('MALFORMED', `PAGES declares ${count} pages but carries ${r.remaining} bytes after the count`);
  }
  const pageNumbers = new Uint32Array(count);
  for (let i = 0; i < count; i++) pageNumbers[i] = r.u32();
  return { pageNumbers, data: r.rest() };
}

export interface DiskExtent {
  /** Byte offset on the disk image. */
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Parts for a DISK payload: the extent table, then each extent's data uncopied. */
export function encodeDisk(extents: readonly DiskExtent[]): Uint8Array[] {
  const table = new PayloadWriter(4 + 12 * extents.length).u32(extents.length);
  for (const e of extents) table.u64(e.offset).u32(e.data.length);
  return [table.done(), ...extents.map((e) => e.data)];
}

export function decodeDisk(payload: Buffer): DiskExtent[] {
  const r = new PayloadReader(payload, 'DISK');
  const count = r.u32();
  if (count * 12 > r.remaining) throw new ProtocolError('MALFORMED', `DISK declares ${count} extents in ${r.remaining} bytes`);
  const table: { offset: number; length: number }[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const offset = r.u64();
    const length = r.u32();
    total += length;
    table.push({ offset, length });
  }
  if (total !== r.remaining) throw new ProtocolError('MALFORMED', `DISK extents total ${total} bytes but ${r.remaining} follow the table`);
  const extents = table.map(({ offset, length }) => ({ offset, data: r.bytes(length) }));
  r.end();
  return extents;
}

export interface Commit {
  /** Number of state frames (PAGES, DEVICE_STATE, DISK, EVENTS) of this epoch sent before
   *  COMMIT, so the secondary can tell a complete epoch from a partial one. */
  readonly frames: number;
  /** Output-commit watermark: the primary has released the events of epochs <= this. */
  readonly releasedUpTo: bigint;
  /** Verify mode: the primary's state digest (SHA-256) at the end of this epoch. */
  readonly digest?: Buffer;
}

const DIGEST_SIZE = 32;

export function encodeCommit(m: Commit): Buffer {
  if (m.digest && m.digest.length !== DIGEST_SIZE) throw new RangeError(`COMMIT digest must be ${DIGEST_SIZE} bytes`);
  const w = new PayloadWriter(12 + (m.digest ? DIGEST_SIZE : 0)).u32(m.frames).u64(m.releasedUpTo);
  if (m.digest) w.bytes(m.digest);
  return w.done();
}

export function decodeCommit(payload: Buffer): Commit {
  const r = new PayloadReader(payload, 'COMMIT');
  const frames = r.u32();
  const releasedUpTo = r.u64n();
  if (r.remaining === 0) return { frames, releasedUpTo };
  if (r.remaining !== DIGEST_SIZE) throw new ProtocolError('MALFORMED', `COMMIT carries ${r.remaining} bytes after its fields (a digest is ${DIGEST_SIZE})`);
  const digest = Buffer.from(r.bytes(DIGEST_SIZE));
  r.end();
  return { frames, releasedUpTo, digest };
}

// ---- events: the outputs an epoch produced ----------------------------------------------

/** What kind of output a held event is. */
export const EventKind = { NET: 1, SERIAL: 2 } as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export interface HeldEvent {
  readonly kind: EventKind;
  /** Serial port index (0 = COM1); 0 for the NIC. */
  readonly port: number;
  readonly data: Uint8Array;
}

/** Largest single event: an Ethernet frame or a run of serial bytes is far below it. */
export const MAX_EVENT_BYTES = 1 << 20;

/** Parts for an EVENTS payload: count, then kind u8, port u8, length u32 and the bytes of each. */
export function encodeEvents(events: readonly HeldEvent[]): Uint8Array[] {
  const parts: Uint8Array[] = [new PayloadWriter(4).u32(events.length).done()];
  for (const e of events) {
    parts.push(new PayloadWriter(6).u8(e.kind).u8(e.port).u32(e.data.length).done(), e.data);
  }
  return parts;
}

export function decodeEvents(payload: Buffer): HeldEvent[] {
  const r = new PayloadReader(payload, 'EVENTS');
  const count = r.u32();
  // Each event takes at least its 6-byte header: refuse a count the payload cannot hold.
  if (count * 6 > r.remaining) throw new ProtocolError('MALFORMED', `EVENTS declares ${count} events in ${r.remaining} bytes`);
  const events: HeldEvent[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r.u8();
    if (kind !== EventKind.NET && kind !== EventKind.SERIAL) throw new ProtocolError('MALFORMED', `EVENTS event ${i} has unknown kind ${kind}`);
    const port = r.u8();
    if (kind === EventKind.SERIAL ? port > 3 : port !== 0) throw new ProtocolError('MALFORMED', `EVENTS event ${i} names port ${port}`);
    const length = r.u32();
    if (length > MAX_EVENT_BYTES) throw new ProtocolError('MALFORMED', `EVENTS event ${i} is ${length} bytes (at most ${MAX_EVENT_BYTES})`);
    if (length > r.remaining) throw new ProtocolError('MALFORMED', `EVENTS event ${i} is ${length} bytes, ${r.remaining} remain`);
    events.push({ kind: kind as EventKind, port, data: Buffer.from(r.bytes(length)) });
  }
  r.end();
  return events;
}

export function decodeEmpty(payload: Buffer, what: string): void {
  new PayloadReader(payload, what).end();
}

export function encodeHeartbeat(sentAtNs: bigint): Buffer {
  return new PayloadWriter(8).u64(sentAtNs).done();
}

export function decodeHeartbeat(payload: Buffer): bigint {
  const r = new PayloadReader(payload, 'HEARTBEAT');
  const t = r.u64n();
  r.end();
  return t;
}

/** Reasons and messages are capped, cut at a UTF-8 character boundary. */
function encodeText(text: string): Buffer {
  let b = Buffer.from(text, 'utf8');
  if (b.length > MAX_TEXT) {
    let end = MAX_TEXT;
    while (end > 0 && (b[end] & 0xc0) === 0x80) end--; // back off continuation bytes
    b = b.subarray(0, end);
  }
  return new PayloadWriter(2 + b.length).u16(b.length).bytes(b).done();
}

function decodeText(payload: Buffer, what: string): string {
  const r = new PayloadReader(payload, what);
  const t = r.str16();
  r.end();
  return t;
}

export const encodeCancel = encodeText;
export const decodeCancel = (payload: Buffer): string => decodeText(payload, 'CANCEL');
export const encodeBye = encodeText;
export const decodeBye = (payload: Buffer): string => decodeText(payload, 'BYE');

export interface ErrorMessage {
  readonly code: number;
  readonly message: string;
}

/** ERROR codes: why a peer is about to close. */
export const ErrorCode = {
  PROTOCOL: 1, // the sender refused something this peer sent
  VERSION: 2,
  REFUSED: 3, // authentication or policy refusal; deliberately unspecific
  INTERNAL: 4,
} as const;

export function encodeError(m: ErrorMessage): Buffer {
  const text = encodeText(m.message);
  return Buffer.concat([new PayloadWriter(2).u16(m.code).done(), text]);
}

export function decodeError(payload: Buffer): ErrorMessage {
  const r = new PayloadReader(payload, 'ERROR');
  const code = r.u16();
  const message = r.str16();
  r.end();
  return { code, message };
}
