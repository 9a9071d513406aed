// An authenticated, ordered, MACed message channel between the primary (client) and the
// secondary (server), over one TCP connection.
//
// Failure model: any bad byte from the peer (MAC failure, sequence error, garbage, a
// frame type that has no business here) closes the channel; nothing after the fault is
// delivered. FT cannot resynchronise a stream it no longer trusts: the primary reconnects
// and the secondary discards the partial epoch, which is what a lost link means anyway.

import { EventEmitter } from 'node:events';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { clientHandshake, serverHandshake, DEFAULT_HANDSHAKE_TIMEOUT_MS, type HandshakeResult, type LocalInfo } from './auth.ts';
import { ChannelClosedError, ProtocolError, oneLine } from './errors.ts';
import { HANDSHAKE_TYPES, MessageType, messageTypeName, type FrameDecoder, type FrameEncoder, type Frame, type MacKind } from './frame.ts';
import { stderrLogger, type FtLogger } from './logger.ts';
import { decodeBye, decodeError, encodeBye, encodeHeartbeat, type PeerInfo } from './messages.ts';

export interface FtChannelEvents {
  /** A verified frame for the application (not HEARTBEAT, BYE or ERROR, which the channel handles). */
  frame: [frame: Frame];
  heartbeat: [frame: Frame];
  /** The peer is closing in order. */
  bye: [reason: string];
  /** The socket's write buffer emptied after send() returned false. */
  drain: [];
  /** A protocol violation, peer ERROR, timeout or socket error; 'close' follows. Emitted
   *  only when someone listens: a hostile peer must not crash the process. Always logged. */
  error: [err: Error];
  /** Once. null after an orderly BYE, else the error that ended the channel. */
  close: [err: Error | null];
  /** EventEmitter's own; listed so the typed emitter lets the channel watch for 'frame'. */
  newListener: [event: string | symbol, listener: (...args: never[]) => void];
}

export interface ChannelOptions {
  logger?: FtLogger;
  /** Send a HEARTBEAT when nothing was sent for this long. 0 (default) = never. */
  heartbeatIntervalMs?: number;
  /** Fail the channel with TIMEOUT when no byte arrives for this long while reading.
   *  0 (default) = never. Set it together with the peer's heartbeatIntervalMs. */
  peerTimeoutMs?: number;
  /** The epoch field of each HEARTBEAT sent: the primary reports its output watermark there. */
  heartbeatEpoch?: () => bigint;
  /** Frames the async iterator buffers before it pauses the socket. Default 16. */
  maxQueuedFrames?: number;
}

const BYE_TIMEOUT_MS = 5_000;

export class FtChannel extends EventEmitter<FtChannelEvents> {
  readonly peer: PeerInfo;
  readonly remote: string;
  readonly #socket: Socket;
  readonly #decoder: FrameDecoder;
  readonly #encoder: FrameEncoder;
  readonly #logger: FtLogger;
  readonly #maxQueued: number;
  readonly #heartbeatEpoch: (() => bigint) | undefined;
  #started = false;
  #paused = false;
  #pumping = false;
  #closing = false; // BYE sent or received: no more application frames either way
  #closed = false;
  #byeSent = false;
  #byeReceived = false;
  #closeError: Error | null = null;
  #eof = false;
  #iterating = false;
  #lastRx = performance.now();
  #lastTx = performance.now();
  #timer: NodeJS.Timeout | undefined;
  #closedPromise: Promise<void>;

  constructor(socket: Socket, hs: HandshakeResult, opts: ChannelOptions = {}) {
    super();
    this.#socket = socket;
    this.#decoder = hs.decoder;
    this.#encoder = hs.encoder;
    this.peer = hs.peer;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#logger = opts.logger ?? stderrLogger;
    this.#maxQueued = opts.maxQueuedFrames ?? 16;
    this.#heartbeatEpoch = opts.heartbeatEpoch;
    this.#closedPromise = new Promise((resolve) => this.once('close', () => resolve()));

    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('error', (e) => this.#fail(e));
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.emit('drain'));
    socket.pause(); // until someone consumes frames: none may be emitted to nobody
    if (socket.destroyed) queueMicrotask(() => this.#onClose());

    // Start delivering once a 'frame' listener exists (after the current call stack, so a
    // caller can attach 'error'/'close' listeners in the same tick).
    this.on('newListener', (event) => {
      if (event === 'frame') queueMicrotask(() => this.#start());
    });

    const hb = opts.heartbeatIntervalMs ?? 0;
    const timeout = opts.peerTimeoutMs ?? 0;
    if (hb > 0 || timeout > 0) {
      const tick = Math.max(1, Math.min(hb > 0 ? hb : Infinity, timeout > 0 ? timeout / 4 : Infinity));
      this.#timer = setInterval(() => this.#tick(hb, timeout), tick);
      this.#timer.unref();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes queued in the socket, not yet handed to the kernel. */
  get writableLength(): number {
    return this.#socket.writableLength;
  }

  /**
   * Send one message. Parts are written without copying (one writev under cork) and must
   * not change until written. Returns false when the socket buffer is over its high-water
   * mark: wait for whenWritable() (or 'drain') before sending more.
   */
  send(type: MessageType, epoch: bigint, parts: readonly Uint8Array[] = []): boolean {
    if (this.#closing || this.#closed || this.#closeError) throw new ChannelClosedError(`channel to ${this.remote} is closed`);
    if (HANDSHAKE_TYPES.has(type) || type === MessageType.BYE) {
      throw new RangeError(`${messageTypeName(type)} is sent by the channel itself`);
    }
    return this.#write(type, epoch, parts);
  }

  #write(type: MessageType, epoch: bigint, parts: readonly Uint8Array[]): boolean {
    const bufs = this.#encoder.encode(type, epoch, parts);
    this.#socket.cork();
    let ok = true;
    for (const b of bufs) ok = this.#socket.write(b);
    this.#socket.uncork();
    this.#lastTx = performance.now();
    return ok;
  }

  /**
   * TEST ONLY (the FT fault hooks): write the first `bytes` bytes of a frame and nothing
   * more, as a sender that dies mid-frame would.
   */
  testSendPartial(type: MessageType, epoch: bigint, parts: readonly Uint8Array[], bytes: number): void {
    const whole = Buffer.concat(this.#encoder.encode(type, epoch, parts));
    this.#socket.write(whole.subarray(0, Math.min(bytes, whole.length)));
  }

  /** Resolves when send() may go on; rejects if the channel closes first. */
  whenWritable(): Promise<void> {
    if (this.#closed) return Promise.reject(new ChannelClosedError(`channel to ${this.remote} is closed`));
    if (!this.#socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = (err: Error | null): void => {
        this.off('drain', onDrain);
        reject(err ?? new ChannelClosedError(`channel to ${this.remote} closed`));
      };
      this.once('drain', onDrain);
      this.once('close', onClose);
    });
  }

  /** Stop reading from the socket (TCP flow control then pushes back on the peer). */
  pause(): void {
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    this.#paused = false;
    if (!this.#started) {
      this.#start();
      return;
    }
    this.#pump();
    if (!this.#paused && !this.#closed) this.#socket.resume();
  }

  /** Orderly close: BYE, then FIN; resolves when the connection is gone. */
  close(reason = 'closing'): Promise<void> {
    if (!this.#closing && !this.#closed) {
      this.#closing = true;
      this.#byeSent = true;
      this.#write(MessageType.BYE, 0n, [encodeBye(reason)]);
      this.#socket.end();
      // Keep reading until the peer's FIN, but not forever.
      setTimeout(() => this.#socket.destroy(), BYE_TIMEOUT_MS).unref();
      if (!this.#started) this.#start();
    }
    return this.#closedPromise;
  }

  /** Drop the connection now. */
  destroy(err?: Error): void {
    if (err) this.#fail(err);
    else {
      this.#closeError ??= new ChannelClosedError(`channel to ${this.remote} destroyed locally`);
      this.#socket.destroy();
    }
  }

  #start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#lastRx = performance.now();
    this.#pump(); // frames that arrived with the handshake's last bytes
    if (!this.#paused && !this.#closed) this.#socket.resume();
  }

  #onData(chunk: Buffer): void {
    this.#lastRx = performance.now();
    if (this.#closed || this.#closeError) return;
    this.#decoder.push(chunk);
    this.#pump();
  }

  #pump(): void {
    if (this.#pumping) return; // a frame handler called resume(): the loop below goes on
    this.#pumping = true;
    try {
      while (!this.#paused && !this.#closed && !this.#closeError) {
        let f: Frame | undefined;
        try {
          f = this.#decoder.next();
        } catch (e) {
          this.#fail(e as Error);
          return;
        }
        if (!f) {
          if (this.#eof) this.#judgeEof();
          return;
        }
        this.#deliver(f);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #deliver(f: Frame): void {
    if (this.#byeReceived) {
      this.#fail(new ProtocolError('UNEXPECTED', `${messageTypeName(f.type)} frame after the peer's BYE`));
      return;
    }
    switch (f.type) {
      case MessageType.HELLO:
      case MessageType.HELLO_ACK:
      case MessageType.HELLO_PROOF:
      case MessageType.HELLO_DONE:
        this.#fail(new ProtocolError('UNEXPECTED', `${messageTypeName(f.type)} frame after the handshake`));
        return;
      case MessageType.HEARTBEAT:
        this.emit('heartbeat', f);
        return;
      case MessageType.ERROR: {
        let text = 'unreadable ERROR payload';
        try {
          const m = decodeError(f.payload);
          text = `code ${m.code}: ${m.message}`;
        } catch {
          // the peer is failing anyway; report what we can
        }
        this.#fail(new ProtocolError('PEER_ERROR', `peer reported an error: ${oneLine(text)}`));
        return;
      }
      case MessageType.BYE: {
        let reason = '';
        try {
          reason = decodeBye(f.payload);
        } catch (e) {
          this.#fail(e as Error);
          return;
        }
        this.#byeReceived = true;
        this.#closing = true;
        this.emit('bye', oneLine(reason));
        this.#socket.end(); // answer with our FIN; the peer's follows or has come
        return;
      }
      default:
        this.emit('frame', f);
    }
  }

  #onEnd(): void {
    // The peer's FIN can arrive while complete frames still wait in the decoder (a slow
    // consumer paused us): those were verified and are delivered first, so the end of the
    // stream is judged when the pump runs dry.
    this.#eof = true;
    this.#pump();
  }

  #judgeEof(): void {
    this.#eof = false;
    try {
      this.#decoder.end();
    } catch (e) {
      this.#fail(e as Error);
      return;
    }
    if (!this.#byeReceived && !this.#byeSent) {
      this.#fail(new ProtocolError('CLOSED', `peer ${this.remote} closed the connection without BYE`));
    }
  }

  #tick(heartbeatMs: number, timeoutMs: number): void {
    if (this.#closed) return;
    const now = performance.now();
    // Time spent paused by our own consumer is not the peer's silence.
    if (!this.#started || this.#paused) this.#lastRx = now;
    if (timeoutMs > 0 && now - this.#lastRx > timeoutMs) {
      this.#fail(new ProtocolError('TIMEOUT', `no data from peer ${this.remote} for ${Math.round(now - this.#lastRx)} ms`));
      return;
    }
    if (heartbeatMs > 0 && !this.#closing && now - this.#lastTx >= heartbeatMs) {
      this.#write(MessageType.HEARTBEAT, this.#heartbeatEpoch?.() ?? 0n, [encodeHeartbeat(process.hrtime.bigint())]);
    }
  }

  #fail(err: Error): void {
    if (this.#closed || this.#closeError) return;
    this.#closeError = err;
    const code = err instanceof ProtocolError ? err.code : (err as NodeJS.ErrnoException).code;
    this.#logger.warn(
      { event: err instanceof ProtocolError ? 'ft-link-refused' : 'ft-link-error', remote: this.remote, peer: this.peer.node, code },
      err.message,
    );
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    if (!this.#closeError && !this.#byeReceived && !this.#byeSent) {
      this.#fail(new ProtocolError('CLOSED', `connection to ${this.remote} closed without BYE`));
    }
    this.#closed = true;
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    const orderly = this.#closeError === null;
    this.#logger.info({ event: 'ft-link-closed', remote: this.remote, peer: this.peer.node, orderly }, orderly ? 'FT link closed' : `FT link lost: ${this.#closeError?.message}`);
    this.emit('close', this.#closeError);
  }

  /**
   * Frames as an async iterator: ends after an orderly close, throws the error that ended
   * the channel otherwise (after the frames verified before it). Buffers up to
   * maxQueuedFrames, then pauses the socket so the peer feels the backpressure. Leaving
   * the loop early detaches and pauses the channel; it stays open.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Frame> {
    if (this.#iterating) throw new Error('FtChannel: only one async iterator at a time');
    this.#iterating = true;
    const queue: Frame[] = [];
    let ended = false;
    let endError: Error | null = null;
    let waiter: { resolve: (r: IteratorResult<Frame>) => void; reject: (e: Error) => void } | null = null;
    let pausedByUs = false;

    const onFrame = (f: Frame): void => {
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.resolve({ value: f, done: false });
        return;
      }
      queue.push(f);
      if (queue.length >= this.#maxQueued && !this.#paused) {
        pausedByUs = true;
        this.pause();
      }
    };
    const onClose = (err: Error | null): void => {
      ended = true;
      endError = err;
      if (waiter) {
        const w = waiter;
        waiter = null;
        if (err) w.reject(err);
        else w.resolve({ value: undefined, done: true });
        endError = null;
      }
    };
    const detach = (): void => {
      this.off('frame', onFrame);
      this.off('close', onClose);
      this.#iterating = false;
    };
    this.on('frame', onFrame);
    this.once('close', onClose);
    if (this.#closed) onClose(this.#closeError);
    this.#start();
    if (this.#paused && !pausedByUs) this.resume();

    const it: AsyncIterableIterator<Frame> = {
      next: (): Promise<IteratorResult<Frame>> => {
        const f = queue.shift();
        if (f) {
          if (pausedByUs && queue.length <= this.#maxQueued / 2) {
            pausedByUs = false;
            this.resume();
          }
          return Promise.resolve({ value: f, done: false });
        }
        if (ended) {
          detach();
          const err = endError;
          endError = null;
          return err ? Promise.reject(err) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => (waiter = { resolve, reject }));
      },
      return: (): Promise<IteratorResult<Frame>> => {
        detach();
        if (!this.#closed) this.pause();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }
}

// ---- connect / listen ----------------------------------------------------------------

interface CommonOptions extends ChannelOptions {
  key: KeyObject;
  /** What this side announces: role, memory and disk size, node name. */
  local?: LocalInfo;
  /** Largest payload accepted and sent after authentication. Default 64 MiB. */
  maxPayload?: number;
  handshakeTimeoutMs?: number;
  /** Protocol version to speak; only tests change it. */
  version?: number;
}

export interface ConnectOptions extends CommonOptions {
  host?: string;
  port: number;
  /** The session MAC; the server follows the client. Default Poly1305. */
  mac?: MacKind;
}

/** Primary side: connect to a secondary, authenticate, and return the channel. */
export async function connect(opts: ConnectOptions): Promise<FtChannel> {
  const logger = opts.logger ?? stderrLogger;
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const socket = netConnect({ host, port: opts.port, noDelay: true });
  const remote = `${host}:${opts.port}`;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ProtocolError('TIMEOUT', `no TCP connection to ${remote} within ${timeoutMs} ms`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const hs = await clientHandshake(socket, { ...opts, timeoutMs });
    logger.info({ event: 'ft-authenticated', remote, peer: hs.peer.node, role: hs.peer.role }, 'FT peer authenticated');
    return new FtChannel(socket, hs, opts);
  } catch (e) {
    const err = e as Error;
    const code = err instanceof ProtocolError ? err.code : (err as NodeJS.ErrnoException).code;
    logger.warn({ event: 'ft-handshake-failed', remote, code }, err.message);
    socket.destroy();
    throw err;
  }
}

export interface ListenOptions extends CommonOptions {
  /** Loopback unless told otherwise: the FT link carries the whole guest's memory. */
  host?: string;
  /** 0 (default) picks a free port; read it from the listener. */
  port?: number;
  /** Connections still in the handshake; more are dropped. Default 16. */
  maxPendingHandshakes?: number;
  onChannel: (channel: FtChannel) => void;
}

export interface FtListener {
  readonly host: string;
  readonly port: number;
  /** Stop accepting and drop unauthenticated connections; established channels stay. */
  close(): Promise<void>;
}

/** Secondary side: accept connections, authenticate each, hand over channels. */
export async function listen(opts: ListenOptions): Promise<FtListener> {
  const logger = opts.logger ?? stderrLogger;
  const pending = new Set<Socket>();
  const maxPending = opts.maxPendingHandshakes ?? 16;

  const server: Server = createServer({ noDelay: true }, (socket) => {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    if (pending.size >= maxPending) {
      logger.warn({ event: 'ft-handshake-refused', remote, code: 'BUSY' }, `too many handshakes in progress (${maxPending}); dropped`);
      socket.destroy();
      return;
    }
    pending.add(socket);
    socket.on('error', () => {}); // reported through the handshake's own listener
    serverHandshake(socket, { ...opts, timeoutMs: opts.handshakeTimeoutMs })
      .then((hs) => {
        pending.delete(socket);
        logger.info({ event: 'ft-authenticated', remote, peer: hs.peer.node, role: hs.peer.role }, 'FT peer authenticated');
        opts.onChannel(new FtChannel(socket, hs, opts));
      })
      .catch((e: unknown) => {
        pending.delete(socket);
        const err = e as Error;
        const code = err instanceof ProtocolError ? err.code : (err as NodeJS.ErrnoException).code;
        logger.warn({ event: 'ft-handshake-refused', remote, code }, err.message);
        // end() rather than destroy(): let a queued ERROR reach the peer before the FIN;
        // destroy() would reset the connection and could discard it.
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => logger.error({ event: 'ft-listener-error', code: (e as NodeJS.ErrnoException).code }, e.message));
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('listen: no TCP address');
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of pending) s.destroy();
        // server.close()'s callback would wait for the established channels too.
        server.close();
        setImmediate(resolve);
      }),
  };
}
