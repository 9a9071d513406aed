// Test plumbing: keys, a recording logger, a seeded PRNG, a man-in-the-middle TCP proxy
// that works on whole frames, and a child-process secondary.

import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HEADER_SIZE, keyFromBytes, type FtLogger } from '../src/index.ts';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function testKey(): ReturnType<typeof keyFromBytes> {
  return keyFromBytes(randomBytes(32));
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

export function recordingLogger(): FtLogger & { lines: LogLine[]; text(): string } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void lines.push({ level: 'error', obj, msg }),
    text: () => lines.map((l) => JSON.stringify(l)).join('\n'),
  };
}

/** mulberry32: reproducible "random" chunk sizes and mutations. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves when the socket is fully closed (by either side). */
export function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

/** Split a frame-aligned byte stream into whole frames using only header fields. */
export class FrameSplitter {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      if (this.#buf.length < HEADER_SIZE) break;
      const len = this.#buf.readUInt32BE(8);
      const trailer = [4, 16, 32, 16][this.#buf.readUInt16BE(6) & 3]; // CRC-32C, HMAC-128, HMAC-256, Poly1305
      const total = HEADER_SIZE + len + trailer;
      if (this.#buf.length < total) break;
      out.push(this.#buf.subarray(0, total));
      this.#buf = this.#buf.subarray(total);
    }
    return out;
  }
}

export type Dir = 'c2s' | 's2c';

export interface ProxyConn {
  readonly client: Socket;
  readonly server: Socket;
  /** Send bytes towards the server (c2s) or the client (s2c). */
  inject(dir: Dir, bytes: Buffer): void;
}

export interface ProxyOptions {
  /** Called for each whole frame, in order, per direction; returns what to forward instead
   *  (default: the frame itself). Index counts frames from 0 per direction. */
  onFrame?: (dir: Dir, index: number, frame: Buffer, conn: ProxyConn) => Buffer[] | void;
  /** Forward in writes of random sizes from this generator (bytes). */
  chunkSize?: () => number;
  /** Keep a copy of every byte the client sent. */
  record?: boolean;
}

/**
 * A TCP man in the middle between a client and the real server: forwards bytes and can
 * insert, alter, drop, reorder or reflect whole frames.
 */
export class MitmProxy {
  readonly conns: ProxyConn[] = [];
  readonly recorded: Buffer[] = [];
  #server: Server;
  port = 0;

  private constructor(
    private readonly target: number,
    private readonly opts: ProxyOptions,
  ) {
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(targetPort: number, opts: ProxyOptions = {}): Promise<MitmProxy> {
    const p = new MitmProxy(targetPort, opts);
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', () => r()));
    const a = p.#server.address();
    p.port = typeof a === 'object' && a ? a.port : 0;
    return p;
  }

  #accept(client: Socket): void {
    const server = netConnect({ host: '127.0.0.1', port: this.target, noDelay: true });
    client.setNoDelay(true);
    const write = (to: Socket, bytes: Buffer): void => {
      if (to.destroyed) return;
      if (!this.opts.chunkSize) {
        to.write(bytes);
        return;
      }
      for (let off = 0; off < bytes.length; ) {
        const n = Math.max(1, Math.min(bytes.length - off, this.opts.chunkSize()));
        to.write(bytes.subarray(off, off + n));
        off += n;
      }
    };
    const conn: ProxyConn = {
      client,
      server,
      inject: (dir, bytes) => write(dir === 'c2s' ? server : client, bytes),
    };
    this.conns.push(conn);
    const pipe = (dir: Dir, from: Socket, to: Socket): void => {
      const splitter = new FrameSplitter();
      let index = 0;
      from.on('data', (chunk: Buffer) => {
        if (dir === 'c2s' && this.opts.record) this.recorded.push(Buffer.from(chunk));
        if (!this.opts.onFrame) {
          write(to, chunk);
          return;
        }
        for (const f of splitter.push(chunk)) {
          const out = this.opts.onFrame(dir, index++, f, conn) ?? [f];
          for (const b of out) write(to, b);
        }
      });
      from.on('end', () => to.end());
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    };
    pipe('c2s', client, server);
    pipe('s2c', server, client);
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      c.client.destroy();
      c.server.destroy();
    }
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

export interface ChildLine {
  event: string;
  [k: string]: unknown;
}

/** A secondary in its own process (test/fixtures/secondary.ts), reporting as JSON lines. */
export class ChildSecondary {
  readonly lines: ChildLine[] = [];
  port = 0;
  private constructor(readonly proc: ChildProcess) {}

  static async start(env: Record<string, string>): Promise<ChildSecondary> {
    const loader = pathToFileURL(`${ROOT}node_modules/tsx/dist/loader.mjs`).href;
    const script = fileURLToPath(new URL('./fixtures/secondary.ts', import.meta.url));
    const proc = spawn(process.execPath, ['--import', loader, script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const child = new ChildSecondary(proc);
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (l) => {
      try {
        child.lines.push(JSON.parse(l) as ChildLine);
      } catch {
        child.lines.push({ event: 'stdout', text: l });
      }
    });
    await waitFor(() => child.lines.some((l) => l.event === 'listening'), 30_000, 'the child secondary to listen');
    child.port = Number(child.lines.find((l) => l.event === 'listening')!.port);
    return child;
  }

  events(name: string): ChildLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.kill('SIGTERM');
    await exited;
  }
}
