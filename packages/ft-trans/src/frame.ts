// The FT transaction protocol's framing: every message is one frame
//
//   header (32 bytes, big-endian) | payload (length bytes) | trailer
//
//   off size field
//     0    4 magic        'FT86'
//     4    1 version      PROTOCOL_VERSION
//     5    1 type         MessageType
//     6    2 flags        bits 0-1 trailer kind (TrailerKind); bits 2-15 reserved, zero
//     8    4 length       payload bytes
//    12    4 header CRC   CRC-32C of header bytes 0-11 and 16-31
//    16    8 epoch        u64, the checkpoint epoch the message belongs to
//    24    8 sequence     u64, 0, 1, 2, ... per direction, from the first frame on
//
// and the trailer is a CRC-32C (4 bytes) over header + payload before the handshake has
// established a session key, and a MAC over header + payload under the session key of that
// direction after it: the handshake chooses Poly1305 (the default: the 16-byte tag of
// ChaCha20-Poly1305, RFC 8439, with header + payload as its associated data, nothing
// encrypted, and the frame's sequence number as the nonce) or HMAC-SHA256, truncated to 16
// bytes or full (32). Poly1305 costs a seventh of HMAC-SHA256 per byte (15 against 2 GB/s
// on one core of this machine, bench/ft-link.ts), and every checkpoint's pages pass
// through the MAC on both sides. Its nonce never repeats under a key: the keys are fresh
// per session and per direction (auth.ts), and the sequence number counts that
// direction's frames.
//
// The header CRC lets a receiver refuse a corrupted length at once instead of waiting for
// (and buffering) up to maxPayload bytes that will never form a frame; it is not a
// security measure: a forged header is caught by the MAC when its frame completes.
// The sequence number is inside the MACed header, so a replayed, reordered or dropped
// frame is refused even though each frame's MAC is valid.

import { createCipheriv, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import { crc32c } from './crc32c.ts';
import { ProtocolError, type ProtocolErrorCode } from './errors.ts';

export const MAGIC = 0x46543836; // 'FT86'
const MAGIC_BYTES = [0x46, 0x54, 0x38, 0x36];
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 32;
export const MIB = 1024 * 1024;
/** Default cap on one frame's payload. Dirty-page batches should stay well below it. */
export const DEFAULT_MAX_PAYLOAD = 64 * MIB;
/** Cap before authentication: HELLO/HELLO_ACK/ERROR are tiny, and an anonymous peer must
 *  not make us buffer megabytes. */
export const PRE_AUTH_MAX_PAYLOAD = 4096;
/** The u32 length field's ceiling. */
const LENGTH_FIELD_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

export const MessageType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  HELLO_PROOF: 0x03,
  HELLO_DONE: 0x04,
  FULL_SYNC_BEGIN: 0x10,
  FULL_SYNC_CHUNK: 0x11,
  FULL_SYNC_END: 0x12,
  PAGES: 0x20,
  DEVICE_STATE: 0x21,
  DISK: 0x22,
  EVENTS: 0x23,
  COMMIT: 0x24,
  ACK: 0x25,
  CANCEL: 0x26,
  HEARTBEAT: 0x30,
  ERROR: 0x3e,
  BYE: 0x3f,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];
export type MessageTypeName = keyof typeof MessageType;

const TYPE_NAMES = new Map<number, MessageTypeName>(
  (Object.entries(MessageType) as [MessageTypeName, MessageType][]).map(([name, code]) => [code, name]),
);

export function isMessageType(code: number): code is MessageType {
  return TYPE_NAMES.has(code);
}

export function messageTypeName(code: number): string {
  return TYPE_NAMES.get(code) ?? `0x${code.toString(16).padStart(2, '0')}`;
}

/** The handshake's own messages; after it they are protocol errors. */
export const HANDSHAKE_TYPES: ReadonlySet<number> = new Set([
  MessageType.HELLO,
  MessageType.HELLO_ACK,
  MessageType.HELLO_PROOF,
  MessageType.HELLO_DONE,
]);

export const TrailerKind = { CRC32C: 0, HMAC_128: 1, HMAC_256: 2, POLY1305: 3 } as const;
export type TrailerKind = (typeof TrailerKind)[keyof typeof TrailerKind];
const TRAILER_MASK = 0x3;
const TRAILER_SIZE = [4, 16, 32, 16] as const;
const TRAILER_NAMES = ['CRC-32C', 'HMAC-SHA256-128', 'HMAC-SHA256', 'Poly1305'] as const;

/** The session MACs a handshake can choose. */
export type MacKind = 'poly1305' | 'hmac-sha256-128' | 'hmac-sha256';
export const MAC_KINDS: readonly MacKind[] = ['poly1305', 'hmac-sha256-128', 'hmac-sha256'];
export const DEFAULT_MAC: MacKind = 'poly1305';

/** How a frame's trailer is made and checked. */
export type Sealing = { readonly kind: 'crc32c' } | { readonly kind: 'mac'; readonly key: KeyObject; readonly mac: MacKind };
export const CRC_SEALING: Sealing = { kind: 'crc32c' };

function trailerKindOf(s: Sealing): TrailerKind {
  if (s.kind === 'crc32c') return TrailerKind.CRC32C;
  return s.mac === 'poly1305' ? TrailerKind.POLY1305 : s.mac === 'hmac-sha256-128' ? TrailerKind.HMAC_128 : TrailerKind.HMAC_256;
}

/** One frame's MAC, fed header and payload bytes in order. */
interface FrameMac {
  update(bytes: Uint8Array): void;
  /** The trailer: the tag, truncated as the MAC kind says. */
  digest(): Buffer;
}

/** The Poly1305 nonce of frame `seq`: 4 zero bytes, then the sequence number (u64 BE). */
function polyNonce(seq: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(seq, 4);
  return nonce;
}

function frameMac(key: KeyObject, mac: MacKind, seq: bigint): FrameMac {
  if (mac === 'poly1305') {
    // An AEAD over nothing, with the frame as associated data: the tag is a one-time
    // Poly1305 of it under a key ChaCha20 derives from (session key, nonce).
    const aead = createCipheriv('chacha20-poly1305', key, polyNonce(seq), { authTagLength: 16 });
    return {
      update: (bytes) => void aead.setAAD(bytes, { plaintextLength: 0 }),
      digest: () => { aead.final(); return aead.getAuthTag(); },
    };
  }
  const hmac = createHmac('sha256', key);
  const length = mac === 'hmac-sha256-128' ? 16 : 32;
  return {
    update: (bytes) => void hmac.update(bytes),
    digest: () => hmac.digest().subarray(0, length),
  };
}

export interface FrameFields {
  readonly type: MessageType;
  readonly epoch: bigint;
  readonly seq: bigint;
  /** Raw version byte; defaults to PROTOCOL_VERSION. */
  readonly version?: number;
  /** Raw flag bits other than the trailer kind, which the sealing decides. Tests forge with it. */
  readonly extraFlags?: number;
}

export interface Frame {
  readonly type: MessageType;
  readonly flags: number;
  readonly epoch: bigint;
  readonly seq: bigint;
  /** Whole payload. A view into received chunks when it arrived in one, else one copy. */
  readonly payload: Buffer;
}

function checkU64(name: string, v: bigint): void {
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} ${v} is not a u64`);
}

/**
 * Seal one frame: returns [header, ...parts, trailer]. The payload parts are not copied,
 * so a caller can hand guest-RAM page views straight to socket.write (under cork, one
 * writev); they must then stay unmodified until written.
 */
export function sealFrame(fields: FrameFields, parts: readonly Uint8Array[], sealing: Sealing): Uint8Array[] {
  checkU64('epoch', fields.epoch);
  checkU64('sequence number', fields.seq);
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > LENGTH_FIELD_MAX) throw new RangeError(`payload of ${length} bytes exceeds the u32 length field`);
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt8(fields.version ?? PROTOCOL_VERSION, 4);
  header.writeUInt8(fields.type, 5);
  header.writeUInt16BE(((fields.extraFlags ?? 0) & ~TRAILER_MASK) | trailerKindOf(sealing), 6);
  header.writeUInt32BE(length, 8);
  header.writeBigUInt64BE(fields.epoch, 16);
  header.writeBigUInt64BE(fields.seq, 24);
  header.writeUInt32BE(headerCrc(header), 12);

  let trailer: Buffer;
  if (sealing.kind === 'crc32c') {
    let crc = crc32c(header);
    for (const p of parts) crc = crc32c(p, crc);
    trailer = Buffer.allocUnsafe(4);
    trailer.writeUInt32BE(crc, 0);
  } else {
    const mac = frameMac(sealing.key, sealing.mac, fields.seq);
    mac.update(header);
    for (const p of parts) mac.update(p);
    trailer = mac.digest();
  }
  return [header, ...parts, trailer];
}

function headerCrc(header: Uint8Array): number {
  return crc32c(header.subarray(16, HEADER_SIZE), crc32c(header.subarray(0, 12)));
}

export interface FrameEncoderOptions {
  /** Refuse to build frames the peer's decoder would refuse. Default DEFAULT_MAX_PAYLOAD. */
  maxPayload?: number;
  /** Version byte to stamp; only tests and future upgrades change it. */
  version?: number;
}

/** Builds one direction's frames: numbers them and seals them with the current sealing. */
export class FrameEncoder {
  #seq = 0n;
  #sealing: Sealing = CRC_SEALING;
  #version: number;
  maxPayload: number;

  constructor(opts: FrameEncoderOptions = {}) {
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.#version = opts.version ?? PROTOCOL_VERSION;
  }

  /** From the next frame on, seal with `mac` under `key` (the handshake calls this). */
  setMacKey(key: KeyObject, mac: MacKind): void {
    this.#sealing = { kind: 'mac', key, mac };
  }

  get nextSeq(): bigint {
    return this.#seq;
  }

  encode(type: MessageType, epoch: bigint, parts: readonly Uint8Array[] = []): Uint8Array[] {
    let length = 0;
    for (const p of parts) length += p.length;
    if (length > this.maxPayload) {
      throw new RangeError(`${messageTypeName(type)} payload of ${length} bytes exceeds maxPayload ${this.maxPayload}`);
    }
    const frame = sealFrame({ type, epoch, seq: this.#seq, version: this.#version }, parts, this.#sealing);
    this.#seq++;
    return frame;
  }
}

export interface FrameDecoderOptions {
  /** Largest payload accepted; a larger length field is refused from the header alone. */
  maxPayload?: number;
  /** Version byte to accept. */
  version?: number;
}

type DecodeState = 'header' | 'payload' | 'trailer';

/**
 * Streaming decoder for one direction. push() TCP chunks of any size; next() returns the
 * next complete, verified frame, or undefined until more bytes arrive. Parsing is lazy, so
 * a setMacKey() between two next() calls applies exactly from the following frame: the
 * handshake relies on that to switch from CRC to MAC mid-stream.
 *
 * Memory: the header is validated (magic, header CRC, version, type, flags, trailer kind,
 * length <= maxPayload) before any payload byte is considered, and payload bytes are kept
 * as references to the pushed chunks, so memory grows only with bytes actually received;
 * the one copy is the concatenation of a multi-chunk payload when its frame completes.
 * The MAC is computed incrementally as payload bytes arrive, so verifying a 64 MiB frame
 * costs no second pass over cold memory. Pushed chunks must not be modified afterwards.
 *
 * After any ProtocolError the decoder is dead: every later call throws the same error.
 */
export class FrameDecoder {
  maxPayload: number;
  #version: number;
  #sealing: Sealing = CRC_SEALING;
  #expectedSeq = 0n;

  #chunks: Buffer[] = [];
  #chunkIndex = 0;
  #chunkOffset = 0;
  #buffered = 0;
  #streamOffset = 0; // bytes consumed, for error messages
  #frameStart = 0;

  #state: DecodeState = 'header';
  #small = Buffer.alloc(HEADER_SIZE); // header, then trailer: both <= 32 bytes
  #smallLen = 0;
  #header = Buffer.alloc(HEADER_SIZE);
  #type: MessageType = MessageType.HELLO;
  #flags = 0;
  #epoch = 0n;
  #seq = 0n;
  #length = 0;
  #remaining = 0;
  #trailerSize = 0;
  #parts: Buffer[] = [];
  #mac: FrameMac | null = null;
  #crc = 0;
  #failed: ProtocolError | null = null;

  constructor(opts: FrameDecoderOptions = {}) {
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.#version = opts.version ?? PROTOCOL_VERSION;
  }

  /** From the next frame on, require a `mac` trailer under `key`. */
  setMacKey(key: KeyObject, mac: MacKind): void {
    this.#sealing = { kind: 'mac', key, mac };
  }

  get authenticated(): boolean {
    return this.#sealing.kind === 'mac';
  }

  /** Bytes pushed but not yet returned as part of a frame. */
  get bufferedBytes(): number {
    return this.#buffered + (this.#streamOffset - this.#frameStart);
  }

  /** True when every byte pushed has been returned in a frame. */
  get atFrameBoundary(): boolean {
    return this.bufferedBytes === 0;
  }

  push(chunk: Uint8Array): void {
    if (this.#failed) throw this.#failed;
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#buffered += chunk.length;
  }

  /** The stream ended: refuse it if it ended inside a frame. */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (!this.atFrameBoundary) {
      this.#fail('TRUNCATED', `stream ended inside a frame that started at offset ${this.#frameStart}`);
    }
  }

  *frames(): Generator<Frame, void, undefined> {
    for (let f = this.next(); f; f = this.next()) yield f;
  }

  next(): Frame | undefined {
    if (this.#failed) throw this.#failed;
    for (;;) {
      if (this.#state === 'header') {
        const complete = this.#fillSmall(HEADER_SIZE);
        this.#checkMagicPrefix(); // garbage fails on its first byte, not after 32
        if (!complete) return undefined;
        this.#small.copy(this.#header, 0, 0, HEADER_SIZE);
        this.#smallLen = 0;
        this.#beginFrame();
      } else if (this.#state === 'payload') {
        if (!this.#takePayload()) return undefined;
        this.#state = 'trailer';
      } else {
        if (!this.#fillSmall(this.#trailerSize)) return undefined;
        this.#smallLen = 0;
        this.#state = 'header';
        return this.#finishFrame(this.#small.subarray(0, this.#trailerSize));
      }
    }
  }

  #fail(code: ProtocolErrorCode, message: string): never {
    this.#failed = new ProtocolError(code, message);
    // Drop references to buffered bytes: nothing more will be parsed.
    this.#chunks = [];
    this.#parts = [];
    this.#buffered = 0;
    throw this.#failed;
  }

  /** Copy bytes into #small until it holds `need`; false if the queue ran dry first. */
  #fillSmall(need: number): boolean {
    while (this.#smallLen < need) {
      const chunk = this.#chunks[this.#chunkIndex];
      if (!chunk) {
        this.#compact();
        return false;
      }
      const n = Math.min(need - this.#smallLen, chunk.length - this.#chunkOffset);
      chunk.copy(this.#small, this.#smallLen, this.#chunkOffset, this.#chunkOffset + n);
      this.#smallLen += n;
      this.#advance(n, chunk.length);
    }
    return true;
  }

  #advance(n: number, chunkLength: number): void {
    this.#chunkOffset += n;
    this.#buffered -= n;
    this.#streamOffset += n;
    if (this.#chunkOffset === chunkLength) {
      this.#chunkIndex++;
      this.#chunkOffset = 0;
    }
  }

  #compact(): void {
    // Forget consumed chunks so their memory can go (the queue is otherwise append-only).
    if (this.#chunkIndex > 0) {
      this.#chunks.splice(0, this.#chunkIndex);
      this.#chunkIndex = 0;
    }
  }

  #checkMagicPrefix(): void {
    for (let i = 0; i < Math.min(4, this.#smallLen); i++) {
      if (this.#small[i] !== MAGIC_BYTES[i]) {
        const seen = this.#small.subarray(0, Math.min(4, this.#smallLen)).toString('hex').padEnd(8, '.');
        this.#fail('BAD_MAGIC', `bad magic 0x${seen} at stream offset ${this.#frameStart} (not an ftx86 FT peer, or the stream lost frame sync)`);
      }
    }
  }

  #beginFrame(): void {
    const h = this.#header;
    const at = `at stream offset ${this.#frameStart}`;
    if (h.readUInt32BE(12) !== headerCrc(h)) this.#fail('HEADER_CHECKSUM', `frame header checksum mismatch ${at} (corrupted header)`);
    const version = h.readUInt8(4);
    if (version !== this.#version) {
      this.#fail('BAD_VERSION', `frame in protocol version ${version} ${at}; this build speaks version ${this.#version}`);
    }
    const type = h.readUInt8(5);
    if (!isMessageType(type)) this.#fail('BAD_TYPE', `unknown message type ${messageTypeName(type)} ${at}`);
    const flags = h.readUInt16BE(6);
    const trailerKind = flags & TRAILER_MASK;
    if (flags & ~TRAILER_MASK) {
      this.#fail('BAD_FLAGS', `reserved flag bits 0x${flags.toString(16)} set in ${messageTypeName(type)} frame ${at}`);
    }
    const expected = trailerKindOf(this.#sealing);
    if (trailerKind !== expected) {
      const why =
        expected === TrailerKind.CRC32C
          ? 'before the handshake established a session key'
          : trailerKind === TrailerKind.CRC32C
            ? 'after authentication: unauthenticated frames are refused'
            : 'instead of the negotiated MAC';
      this.#fail('WRONG_TRAILER', `${messageTypeName(type)} frame ${at} carries a ${TRAILER_NAMES[trailerKind]} trailer ${why}`);
    }
    const length = h.readUInt32BE(8);
    if (length > this.maxPayload) {
      this.#fail('TOO_LARGE', `${messageTypeName(type)} frame ${at} declares a ${length}-byte payload, over the ${this.maxPayload}-byte limit`);
    }
    this.#type = type;
    this.#flags = flags;
    this.#epoch = h.readBigUInt64BE(16);
    this.#seq = h.readBigUInt64BE(24);
    this.#length = length;
    this.#remaining = length;
    this.#trailerSize = TRAILER_SIZE[trailerKind];
    this.#parts = [];
    if (this.#sealing.kind === 'mac') {
      this.#mac = frameMac(this.#sealing.key, this.#sealing.mac, this.#seq);
      this.#mac.update(h);
    } else {
      this.#mac = null;
      this.#crc = crc32c(h);
    }
    this.#state = 'payload';
  }

  /** Move payload bytes from the queue into #parts, MACing as they come; true when complete. */
  #takePayload(): boolean {
    while (this.#remaining > 0) {
      const chunk = this.#chunks[this.#chunkIndex];
      if (!chunk) {
        this.#compact();
        return false;
      }
      const n = Math.min(this.#remaining, chunk.length - this.#chunkOffset);
      const view = chunk.subarray(this.#chunkOffset, this.#chunkOffset + n);
      if (this.#mac) this.#mac.update(view);
      else this.#crc = crc32c(view, this.#crc);
      this.#parts.push(view);
      this.#remaining -= n;
      this.#advance(n, chunk.length);
    }
    return true;
  }

  #finishFrame(trailer: Buffer): Frame {
    const what = `${messageTypeName(this.#type)} frame (seq ${this.#seq}) at stream offset ${this.#frameStart}`;
    if (this.#mac) {
      const expected = this.#mac.digest();
      this.#mac = null;
      if (!timingSafeEqual(expected, trailer)) {
        this.#fail('MAC', `MAC verification failed on ${what}: forged, altered, or sent under another key`);
      }
    } else if (trailer.readUInt32BE(0) !== this.#crc) {
      this.#fail('CHECKSUM', `CRC-32C mismatch on ${what}: corrupted frame`);
    }
    // Checked after the trailer so that a forged frame reports as a MAC failure, and only a
    // genuine frame out of place reports as a sequence error.
    if (this.#seq !== this.#expectedSeq) {
      const kind = this.#seq < this.#expectedSeq ? 'replayed or reordered' : 'a frame was dropped or reordered';
      this.#fail('SEQUENCE', `sequence error: expected frame ${this.#expectedSeq}, got ${what} (${kind})`);
    }
    this.#expectedSeq++;
    this.#frameStart = this.#streamOffset;
    const parts = this.#parts;
    this.#parts = [];
    const payload = parts.length === 1 ? parts[0] : Buffer.concat(parts, this.#length);
    this.#compact();
    return { type: this.#type, flags: this.#flags, epoch: this.#epoch, seq: this.#seq, payload };
  }
}
