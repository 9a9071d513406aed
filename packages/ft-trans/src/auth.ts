// Peer authentication: a shared key read from a private file, a mutual challenge-response
// handshake, and the session keys that MAC every frame after it.
//
//   client (primary)                                   server (secondary)
//   HELLO      {version, mac, role, nonceC, memorySize, diskSize, maxPayload, node}
//                                                                   CRC-32C, seq 0
//                                   HELLO_ACK {same fields for the server, nonceS, proofS}  CRC, seq 0
//   HELLO_PROOF {proofC}                                            MAC c2s, seq 1
//                                   HELLO_DONE {}                   MAC s2c, seq 1
//
//   T      = SHA-256(HELLO payload | HELLO_ACK payload without proofS)
//   proofS = HMAC-SHA256(key, "server" | nonceC | nonceS | u16 version | T)
//   proofC = HMAC-SHA256(key, "client" | nonceS | nonceC | u16 version | T)
//   session key = HKDF-SHA256(key, salt = nonceC | nonceS, info = "ftx86 session")
//   c2s / s2c   = HKDF-SHA256(session key, salt = "", info = "ftx86 session c2s" / "... s2c")
//
// Why these choices:
// - Each side proves the key over the other's fresh nonce, so a recorded handshake cannot be
//   replayed to either side; the server also refuses any nonceC it has already seen.
// - T binds the proofs to every pre-authentication field, which travel under a mere CRC:
//   a man in the middle who rewrites memory size, role or the MAC chosen breaks the proofs.
// - Separate per-direction MAC keys: with one key, a frame reflected back to its sender
//   with the matching sequence number would verify.
// - The session key depends on both nonces, so frames of one session never verify in
//   another, even at the same sequence numbers.

import { createHash, createHmac, createSecretKey, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { Socket } from 'node:net';
import { ProtocolError, oneLine } from './errors.ts';
import {
  DEFAULT_MAX_PAYLOAD,
  FrameDecoder,
  FrameEncoder,
  MessageType,
  PRE_AUTH_MAX_PAYLOAD,
  PROTOCOL_VERSION,
  messageTypeName,
  type Frame,
  DEFAULT_MAC,
  type MacKind,
} from './frame.ts';
import {
  ErrorCode,
  NONCE_SIZE,
  decodeEmpty,
  decodeError,
  decodeHello,
  decodeHelloAck,
  decodeHelloProof,
  encodeError,
  encodeHello,
  encodeHelloProof,
  type Hello,
  type PeerInfo,
} from './messages.ts';

export const MIN_KEY_BYTES = 16;
/** A key file larger than this is not a key file (a certificate, a disk image...). */
export const MAX_KEY_FILE_BYTES = 4096;

export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

/**
 * Read the shared key. Like ssh with a private key, refuse a file that group or others can
 * access, or that another user owns: anyone who reads it can impersonate a peer and feed
 * state into the secondary. The key material is the file's bytes less one trailing newline
 * (so `openssl rand -hex 32 > key` and `head -c 32 /dev/urandom > key` both work).
 * Errors name the path, size and mode, never the contents.
 */
export function loadKeyFile(path: string): KeyObject {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang us; fstat refuses it below.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new KeyFileError(`key file ${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const raw = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
  try {
    // fstat on the open descriptor: the checks apply to the very file read, not to
    // whatever the path points at a moment later.
    const st = fstatSync(fd);
    if (!st.isFile()) throw new KeyFileError(`key file ${path}: not a regular file`);
    if (process.platform !== 'win32') {
      const mode = st.mode & 0o777;
      if (mode & 0o077) {
        throw new KeyFileError(
          `key file ${path}: accessible by group or others (mode 0${mode.toString(8)}); run: chmod 600 ${path}`,
        );
      }
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
        throw new KeyFileError(`key file ${path}: owned by uid ${st.uid}, not by this user (uid ${uid}) or root`);
      }
    }
    let n = 0;
    for (let r = 1; r > 0 && n < raw.length; n += r) r = readSync(fd, raw, n, raw.length - n, null);
    if (n === 0) throw new KeyFileError(`key file ${path}: empty`);
    if (n > MAX_KEY_FILE_BYTES) throw new KeyFileError(`key file ${path}: larger than ${MAX_KEY_FILE_BYTES} bytes; not a key file`);
    let end = n;
    if (raw[end - 1] === 0x0a) end--;
    if (end > 0 && raw[end - 1] === 0x0d) end--;
    return keyFromBytes(raw.subarray(0, end), `key file ${path}`);
  } finally {
    raw.fill(0); // the KeyObject holds its own copy; leave none in the JS heap
    closeSync(fd);
  }
}

/**
 * A key from bytes already in memory (tests, a secret manager). A KeyObject prints as
 * `SecretKeyObject { type: 'secret' }`, so a logged options object cannot leak it.
 */
export function keyFromBytes(material: Uint8Array, what = 'key'): KeyObject {
  if (material.length < MIN_KEY_BYTES) {
    throw new KeyFileError(`${what}: ${material.length} bytes of key material; at least ${MIN_KEY_BYTES} are required`);
  }
  if (material.every((b) => b === material[0])) {
    throw new KeyFileError(`${what}: a constant byte string, not a secret`);
  }
  return createSecretKey(Buffer.from(material));
}

function checkKey(key: KeyObject): void {
  if (key.type !== 'secret' || (key.symmetricKeySize ?? 0) < MIN_KEY_BYTES) {
    throw new KeyFileError(`key: a secret KeyObject of at least ${MIN_KEY_BYTES} bytes is required`);
  }
}

// ---- handshake cryptography -----------------------------------------------------------

export interface SessionKeys {
  readonly c2s: KeyObject;
  readonly s2c: KeyObject;
}

function hkdf(ikm: KeyObject, salt: Uint8Array, info: string): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync('sha256', ikm, salt, info, 32)));
}

export function deriveSessionKeys(key: KeyObject, nonceC: Uint8Array, nonceS: Uint8Array): SessionKeys {
  const session = hkdf(key, Buffer.concat([nonceC, nonceS]), 'ftx86 session');
  return {
    c2s: hkdf(session, Buffer.alloc(0), 'ftx86 session c2s'),
    s2c: hkdf(session, Buffer.alloc(0), 'ftx86 session s2c'),
  };
}

export function handshakeTranscript(helloPayload: Uint8Array, ackFields: Uint8Array): Buffer {
  return createHash('sha256').update(helloPayload).update(ackFields).digest();
}

function proof(key: KeyObject, label: string, first: Uint8Array, second: Uint8Array, version: number, transcript: Uint8Array): Buffer {
  const v = Buffer.alloc(2);
  v.writeUInt16BE(version, 0);
  return createHmac('sha256', key).update(label).update(first).update(second).update(v).update(transcript).digest();
}

export function serverProof(key: KeyObject, nonceC: Uint8Array, nonceS: Uint8Array, version: number, transcript: Uint8Array): Buffer {
  return proof(key, 'server', nonceC, nonceS, version, transcript);
}

export function clientProof(key: KeyObject, nonceC: Uint8Array, nonceS: Uint8Array, version: number, transcript: Uint8Array): Buffer {
  return proof(key, 'client', nonceS, nonceC, version, transcript);
}

function proofsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Client nonces seen by any server in this process. A replayed HELLO could not finish the
 * handshake anyway (nonceS is fresh), but refusing it at once keeps a replayer from even
 * costing us a HELLO_ACK. Bounded: the oldest entries go past REPLAY_MEMORY nonces
 * (~13 MB); past that bound only the fresh-nonceS argument protects.
 */
const REPLAY_MEMORY = 100_000;
const seenClientNonces = new Set<string>();

function rememberClientNonce(nonce: Buffer): boolean {
  const k = nonce.toString('base64');
  if (seenClientNonces.has(k)) return false;
  seenClientNonces.add(k);
  if (seenClientNonces.size > REPLAY_MEMORY) {
    const oldest = seenClientNonces.values().next();
    if (!oldest.done) seenClientNonces.delete(oldest.value);
  }
  return true;
}

// ---- handshake over a socket ----------------------------------------------------------

/** What a side says about itself in HELLO / HELLO_ACK. */
export interface LocalInfo {
  role?: PeerInfo['role'];
  memorySize?: number;
  diskSize?: number;
  node?: string;
}

export interface HandshakeOptions {
  key: KeyObject;
  local?: LocalInfo;
  /** Client only: the session MAC to ask for (the server follows). Default Poly1305. */
  mac?: MacKind;
  /** Largest payload after authentication. */
  maxPayload?: number;
  /** Protocol version to speak; only tests change it. */
  version?: number;
  /** Default 10 s: an anonymous connection must not sit on a slot forever. */
  timeoutMs?: number;
}

export interface HandshakeResult {
  readonly decoder: FrameDecoder;
  readonly encoder: FrameEncoder;
  readonly peer: PeerInfo;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Frame I/O during the handshake: pull one frame at a time so a key switch applies exactly. */
class HandshakeLink {
  #wake: (() => void) | null = null;
  #error: Error | null = null;
  #timer: NodeJS.Timeout;
  readonly #onData = (chunk: Buffer): void => {
    try {
      this.decoder.push(chunk);
    } catch (e) {
      this.#error ??= e as Error;
    }
    this.#poke();
  };
  readonly #onEnd = (): void => {
    this.#error ??= new ProtocolError('CLOSED', 'peer closed the connection during the handshake');
    this.#poke();
  };
  readonly #onError = (e: Error): void => {
    this.#error ??= new ProtocolError('CLOSED', `connection failed during the handshake: ${e.message}`);
    this.#poke();
  };

  constructor(
    readonly socket: Socket,
    readonly decoder: FrameDecoder,
    readonly encoder: FrameEncoder,
    timeoutMs: number,
  ) {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
    this.#timer = setTimeout(() => {
      this.#error ??= new ProtocolError('TIMEOUT', `handshake not completed within ${timeoutMs} ms`);
      this.#poke();
    }, timeoutMs);
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(): Promise<Frame> {
    for (;;) {
      // Frames already received go first: a peer's ERROR is usually followed by its close.
      const f = this.decoder.next(); // throws ProtocolError on a bad frame
      if (f) return f;
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  write(type: MessageType, parts: readonly Uint8Array[]): void {
    const bufs = this.encoder.encode(type, 0n, parts);
    this.socket.cork();
    for (const b of bufs) this.socket.write(b);
    this.socket.uncork();
  }

  /**
   * Stop reading; bytes already received stay in the decoder for the channel. The 'error'
   * listener stays: a socket error between here and the channel's own listener must not
   * become an uncaught exception (the channel sees the close that follows it).
   */
  release(): void {
    clearTimeout(this.#timer);
    this.socket.pause();
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onEnd);
  }
}

function expectType(f: Frame, type: MessageType): void {
  if (f.type === MessageType.ERROR) {
    let text = 'unreadable ERROR';
    try {
      text = decodeError(f.payload).message;
    } catch {
      // keep the placeholder: the peer is closing anyway
    }
    throw new ProtocolError('PEER_ERROR', `peer refused the handshake: ${oneLine(text)}`);
  }
  if (f.type !== type) {
    throw new ProtocolError('UNEXPECTED', `expected ${messageTypeName(type)} during the handshake, got ${messageTypeName(f.type)}`);
  }
}

function localHello(opts: HandshakeOptions, version: number, mac: MacKind, nonce: Buffer): Hello {
  const l = opts.local ?? {};
  const maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  return { version, mac, role: l.role ?? 0, nonce, memorySize: l.memorySize ?? 0, diskSize: l.diskSize ?? 0, maxPayload, node: l.node ?? '' };
}

function peerInfo(h: Hello): PeerInfo {
  const { version, mac, role, memorySize, diskSize, maxPayload, node } = h;
  return { version, mac, role, memorySize, diskSize, maxPayload, node };
}

/** After authentication: accept up to our limit, send up to the peer's (an oversized
 *  send() then fails locally with a RangeError instead of killing the link). */
function applyLimits(opts: HandshakeOptions, decoder: FrameDecoder, encoder: FrameEncoder, peer: Hello): void {
  decoder.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  encoder.maxPayload = Math.min(encoder.maxPayload, peer.maxPayload);
}

function newCodecs(opts: HandshakeOptions): { decoder: FrameDecoder; encoder: FrameEncoder; version: number } {
  checkKey(opts.key);
  const version = opts.version ?? PROTOCOL_VERSION;
  return {
    version,
    decoder: new FrameDecoder({ maxPayload: PRE_AUTH_MAX_PAYLOAD, version }),
    encoder: new FrameEncoder({ maxPayload: opts.maxPayload, version }),
  };
}

/** Run the client side on a connected socket. Rejects with a ProtocolError; the caller closes. */
export async function clientHandshake(socket: Socket, opts: HandshakeOptions): Promise<HandshakeResult> {
  const { decoder, encoder, version } = newCodecs(opts);
  const mac = opts.mac ?? DEFAULT_MAC;
  const link = new HandshakeLink(socket, decoder, encoder, opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  try {
    const nonceC = randomBytes(NONCE_SIZE);
    const helloPayload = encodeHello(localHello(opts, version, mac, nonceC));
    link.write(MessageType.HELLO, [helloPayload]);

    const ackFrame = await link.read();
    expectType(ackFrame, MessageType.HELLO_ACK);
    const ack = decodeHelloAck(ackFrame.payload);
    if (ack.version !== version) {
      throw new ProtocolError('BAD_VERSION', `server speaks protocol version ${ack.version}; this build speaks ${version}`);
    }
    const transcript = handshakeTranscript(helloPayload, ackFrame.payload.subarray(0, ackFrame.payload.length - ack.proof.length));
    if (!proofsEqual(serverProof(opts.key, nonceC, ack.nonce, version, transcript), ack.proof)) {
      throw new ProtocolError('AUTH', 'server failed authentication: its proof does not verify under our key (wrong key, or the handshake was tampered with)');
    }
    // The proof covers T, which covers the MAC the server echoed; a mismatch here is a
    // server bug, not an attack.
    if (ack.mac !== mac) throw new ProtocolError('MALFORMED', `server chose MAC ${ack.mac}; we asked for ${mac}`);

    const keys = deriveSessionKeys(opts.key, nonceC, ack.nonce);
    encoder.setMacKey(keys.c2s, mac);
    decoder.setMacKey(keys.s2c, mac);
    link.write(MessageType.HELLO_PROOF, [encodeHelloProof(clientProof(opts.key, nonceC, ack.nonce, version, transcript))]);

    const done = await link.read();
    expectType(done, MessageType.HELLO_DONE);
    decodeEmpty(done.payload, 'HELLO_DONE');
    applyLimits(opts, decoder, encoder, ack);
    return { decoder, encoder, peer: peerInfo(ack) };
  } finally {
    link.release();
  }
}

/** Run the server side on an accepted socket. Rejects with a ProtocolError; the caller closes. */
export async function serverHandshake(socket: Socket, opts: HandshakeOptions): Promise<HandshakeResult> {
  const { decoder, encoder, version } = newCodecs(opts);
  const link = new HandshakeLink(socket, decoder, encoder, opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  // Pre-authentication failures get a short ERROR so an operator on the other side sees
  // why; it says nothing an eavesdropper could use.
  const refuse = (code: number, message: string): void => {
    if (!decoder.authenticated && !socket.destroyed) link.write(MessageType.ERROR, [encodeError({ code, message })]);
  };
  try {
    let helloFrame: Frame;
    try {
      helloFrame = await link.read();
    } catch (e) {
      if (e instanceof ProtocolError && e.code === 'BAD_VERSION') refuse(ErrorCode.VERSION, `this server speaks protocol version ${version}`);
      throw e;
    }
    expectType(helloFrame, MessageType.HELLO);
    const hello = decodeHello(helloFrame.payload);
    if (hello.version !== version) {
      refuse(ErrorCode.VERSION, `this server speaks protocol version ${version}`);
      throw new ProtocolError('BAD_VERSION', `client speaks protocol version ${hello.version}; this server speaks ${version}`);
    }
    if (!rememberClientNonce(hello.nonce)) {
      refuse(ErrorCode.REFUSED, 'refused');
      throw new ProtocolError('REPLAY', 'replayed HELLO: this client nonce was already used in this process');
    }

    const nonceS = randomBytes(NONCE_SIZE);
    const ackFields = encodeHello(localHello(opts, version, hello.mac, nonceS));
    const transcript = handshakeTranscript(helloFrame.payload, ackFields);
    link.write(MessageType.HELLO_ACK, [ackFields, serverProof(opts.key, hello.nonce, nonceS, version, transcript)]);
    const keys = deriveSessionKeys(opts.key, hello.nonce, nonceS);
    encoder.setMacKey(keys.s2c, hello.mac);
    decoder.setMacKey(keys.c2s, hello.mac);

    let proofFrame: Frame;
    try {
      proofFrame = await link.read();
    } catch (e) {
      if (e instanceof ProtocolError && e.code === 'MAC') {
        throw new ProtocolError('AUTH', 'client failed authentication: its HELLO_PROOF does not verify under our key (wrong key, or a replayed handshake)');
      }
      throw e;
    }
    expectType(proofFrame, MessageType.HELLO_PROOF);
    const expected = clientProof(opts.key, hello.nonce, nonceS, version, transcript);
    if (!proofsEqual(expected, decodeHelloProof(proofFrame.payload))) {
      throw new ProtocolError('AUTH', 'client failed authentication: its proof does not verify (wrong key, or the handshake was tampered with)');
    }
    applyLimits(opts, decoder, encoder, hello);
    link.write(MessageType.HELLO_DONE, []);
    return { decoder, encoder, peer: peerInfo(hello) };
  } finally {
    link.release();
  }
}
