// FT link throughput: PAGES frames from a primary (this process) to a secondary (a child
// process, so sender and receiver each get a core), over loopback TCP.
//
//   raw            the same page bytes, no framing: the socket's ceiling in this run
//   frames-crc32c  framed, CRC-32C trailer: "MAC off"
//   frames-poly1305 framed, Poly1305 (the session MAC ftx86 uses by default)
//   frames-hmac128 framed, HMAC-SHA256 truncated to 16 bytes
//   frames-hmac256 framed, full HMAC-SHA256
//   channel        FtChannel end to end with its default MAC, Poly1305 (connect/listen,
//                  handshake not timed)
//   channel-hmac128 the same with HMAC-SHA256-128 (the default before session 8)
//
// Also single-core reference speeds measured in the same run: memcpy, Poly1305, HMAC-SHA256,
// CRC-32C.
// MB = 10^6 bytes. Run: npx tsx bench/ft-link.ts [--quick]. Results: bench/results/ft-link.json.

import { spawn } from 'node:child_process';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  FrameDecoder,
  FrameEncoder,
  MIB,
  MessageType,
  PAGE_SIZE,
  connect,
  crc32c,
  decodePages,
  encodePages,
  listen,
  loadKeyFile,
  silentLogger,
  type MacKind,
} from '../packages/ft-trans/src/index.ts';

type Mode = 'raw' | 'frames-crc32c' | 'frames-poly1305' | 'frames-hmac128' | 'frames-hmac256' | 'channel' | 'channel-hmac128';
const MODES: Mode[] = ['raw', 'frames-crc32c', 'frames-poly1305', 'frames-hmac128', 'frames-hmac256', 'channel', 'channel-hmac128'];

interface Job {
  mode: Mode;
  keyFile: string;
  totalBytes: number; // page bytes to move
  frameBytes: number; // page bytes per PAGES frame
}

const macOf = (mode: Mode): MacKind | 0 =>
  mode.endsWith('hmac128') ? 'hmac-sha256-128' : mode.endsWith('hmac256') ? 'hmac-sha256' : mode.endsWith('poly1305') || mode === 'channel' ? 'poly1305' : 0;
const isChannel = (mode: Mode): boolean => mode.startsWith('channel');

// ---- receiver (child process) ---------------------------------------------------------

async function receiver(): Promise<void> {
  const out = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const job = JSON.parse(line) as Job;
    const key = loadKeyFile(job.keyFile);
    if (isChannel(job.mode)) {
      let got = 0;
      const listener = await listen({
        key,
        logger: silentLogger,
        maxPayload: job.frameBytes + MIB,
        onChannel: (ch) => {
          ch.on('frame', (f) => {
            got += decodePages(f.payload).data.length;
            if (got >= job.totalBytes) ch.send(MessageType.ACK, f.epoch);
          });
          ch.on('error', () => {});
        },
      });
      out({ port: listener.port });
      await new Promise((r) => setTimeout(r, 0));
      continue; // the listener lives until the process ends; one per job is fine
    }
    const server = createServer({ noDelay: true }, (sock) => {
      let got = 0;
      const mac = macOf(job.mode);
      const dec = new FrameDecoder({ maxPayload: job.frameBytes + MIB });
      if (mac) dec.setMacKey(key, mac);
      sock.on('data', (chunk: Buffer) => {
        if (job.mode === 'raw') got += chunk.length;
        else {
          dec.push(chunk);
          for (const f of dec.frames()) got += decodePages(f.payload).data.length;
        }
        if (got >= job.totalBytes) {
          sock.end(Buffer.from([1]));
          server.close();
        }
      });
    });
    server.listen(0, '127.0.0.1', () => out({ port: (server.address() as { port: number }).port }));
  }
}

// ---- sender (this process) ------------------------------------------------------------

async function sendAll(job: Job, port: number, ram: Buffer): Promise<number> {
  const pagesPerFrame = job.frameBytes / PAGE_SIZE;
  const ramPages = ram.length / PAGE_SIZE;
  const frames = job.totalBytes / job.frameBytes;
  // A dirty-page list: scattered 4 KiB views into "guest RAM", handed to writev uncopied.
  const frameParts = (i: number): { pfns: number[]; views: Buffer[] } => {
    const pfns: number[] = [];
    const views: Buffer[] = [];
    for (let k = 0; k < pagesPerFrame; k++) {
      const pfn = ((i * pagesPerFrame + k) * 7919) % ramPages;
      pfns.push(pfn);
      views.push(ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE));
    }
    return { pfns, views };
  };

  if (isChannel(job.mode)) {
    const mac = macOf(job.mode) || undefined;
    const ch = await connect({ port, key: loadKeyFile(job.keyFile), logger: silentLogger, maxPayload: job.frameBytes + MIB, mac });
    const acked = new Promise<void>((resolve) => ch.on('frame', () => resolve()));
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) {
      const { pfns, views } = frameParts(i);
      if (!ch.send(MessageType.PAGES, BigInt(i), encodePages(pfns, views))) await ch.whenWritable();
    }
    await acked;
    const dt = performance.now() - t0;
    ch.destroy();
    return dt;
  }

  const sock: Socket = netConnect({ host: '127.0.0.1', port, noDelay: true });
  await once(sock, 'connect');
  const done = once(sock, 'data');
  const mac = macOf(job.mode);
  const enc = new FrameEncoder({ maxPayload: job.frameBytes + MIB });
  if (mac) enc.setMacKey(loadKeyFile(job.keyFile), mac);
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    const { pfns, views } = frameParts(i);
    const bufs = job.mode === 'raw' ? views : enc.encode(MessageType.PAGES, BigInt(i), encodePages(pfns, views));
    sock.cork();
    let ok = true;
    for (const b of bufs) ok = sock.write(b);
    sock.uncork();
    if (!ok) await once(sock, 'drain');
  }
  await done;
  const dt = performance.now() - t0;
  sock.destroy();
  return dt;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function referenceSpeeds(): Record<string, number> {
  const buf = randomBytes(64 * MIB);
  const dst = Buffer.allocUnsafe(buf.length);
  const key = randomBytes(32);
  const rate = (fn: () => void): number => {
    const runs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      fn();
      runs.push(buf.length / 1e6 / ((performance.now() - t0) / 1000));
    }
    return Math.round(median(runs));
  };
  return {
    'memcpy MB/s': rate(() => buf.copy(dst)),
    'Poly1305 MB/s': rate(() => {
      const aead = createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: 16 });
      aead.setAAD(buf, { plaintextLength: 0 });
      aead.final();
      return aead.getAuthTag();
    }),
    'HMAC-SHA256 MB/s': rate(() => createHmac('sha256', key).update(buf).digest()),
    'CRC-32C (JS) MB/s': rate(() => crc32c(buf)),
  };
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const totalBytes = (quick ? 256 : 1024) * MIB;
  const frameSizes = [1 * MIB, 16 * MIB];
  const reps = quick ? 1 : 3;

  const dir = mkdtempSync(join(tmpdir(), 'ft-link-'));
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, randomBytes(32));
  chmodSync(keyFile, 0o600);

  const self = fileURLToPath(import.meta.url);
  const loader = pathToFileURL(fileURLToPath(new URL('../node_modules/tsx/dist/loader.mjs', import.meta.url))).href;
  const child = spawn(process.execPath, ['--import', loader, self, '--receiver'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const replies = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const ram = randomBytes(64 * MIB);

  const reference = referenceSpeeds();
  const runs: { mode: Mode; frameMiB: number; rep: number; seconds: number; MBps: number }[] = [];
  for (const frameBytes of frameSizes) {
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of MODES) {
        const job: Job = { mode, keyFile, totalBytes, frameBytes };
        child.stdin!.write(`${JSON.stringify(job)}\n`);
        const { port } = JSON.parse((await replies.next()).value as string) as { port: number };
        const ms = await sendAll(job, port, ram);
        const MBps = Math.round(totalBytes / 1e6 / (ms / 1000));
        runs.push({ mode, frameMiB: frameBytes / MIB, rep, seconds: ms / 1000, MBps });
        process.stderr.write(`${mode.padEnd(16)} ${String(frameBytes / MIB).padStart(2)} MiB frames  rep ${rep}: ${MBps} MB/s\n`);
      }
    }
  }
  child.kill();

  const summary: Record<string, Record<string, number>> = {};
  for (const mode of MODES) {
    summary[mode] = {};
    for (const fb of frameSizes) {
      summary[mode][`${fb / MIB} MiB frames, median MB/s`] = median(runs.filter((r) => r.mode === mode && r.frameMiB === fb / MIB).map((r) => r.MBps));
    }
  }
  console.log('\nFT link throughput, page bytes per second over loopback (MB = 10^6 B)');
  console.table(summary);
  console.log('single-core reference, same run:', reference);

  const result = {
    bench: 'ft-link',
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    // Other work on the machine skews every number here; the 1/5/15-minute load at the end.
    loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
    totalBytesPerRun: totalBytes,
    reps,
    note: 'sender in this process, receiver in a child process; PAGES of scattered 4 KiB views (writev, no copy on send); MB = 10^6 bytes',
    reference,
    summary,
    runs,
  };
  const outDir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'ft-link.json'), `${JSON.stringify(result, null, 2)}\n`);
}

if (process.argv.includes('--receiver')) await receiver();
else await main();
