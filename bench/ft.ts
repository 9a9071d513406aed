/**
 * Fault tolerance on the Debian guest, end to end with real ftx86 processes:
 * `npx tsx bench/ft.ts [--quick] [--trials N]`.
 *
 * Every number is a ratio against a physical limit or a peer measured in the same run:
 *
 *   reference   copies of N 4 KiB pages out of a 128 MiB buffer (the guest's RAM size) into
 *               one buffer, as the primary's checkpoint copies them: random pages after a
 *               64 MiB sweep that evicts the cache (into a new buffer as the primary does,
 *               and into a ready one), and consecutive cached pages (memcpy's best case);
 *               and raw loopback TCP from this process to a child process (no framing, no MAC).
 *   checkpoints one FT pair (secondary, then a primary restored from postBootState(), the
 *               guest idle at its shell), FTX86_LOG_LEVEL=debug: each workload runs in the
 *               background for PHASE seconds and every `ft-checkpoint` line of the phase is
 *               kept: checkpoints/s, pause (median, p99) against dirty pages, bytes, and the
 *               pause against the cold copy of the same number of pages; the commit round
 *               trip (checkpoint sent to its ACK, the primary's log times) gives the link rate.
 *   overhead    fixed guest workloads timed by this process (command typed to its end marker
 *               on the console, so output commit counts), on the same FT pair and on a
 *               standalone restore of the same state (FT off).
 *   failover    TRIALS fresh pairs: the guest prints the console record loop, the primary
 *               gets SIGKILL (time taken here); the secondary's console connection opens, a
 *               key typed on it the moment it opens comes back as the guest's echo (the
 *               guest's kernel running again), and the secondary's own `ft-failover` ms.
 *               Then a few trials with SIGSTOP instead (a hung primary: the socket stays
 *               open, so detection waits for --ft-timeout-ms).
 *   full sync   every pair's start: bytes sent and time to `ft-protected`, vs loopback TCP.
 *
 * Both processes get 2 of this machine's 2 cores, with this one and whatever else runs:
 * the load average is recorded. Results: bench/results/ft.json, ft-pause.svg, ft-failover.svg
 * (--quick: ft-quick.*). `npx tsx bench/ft.ts --charts-from bench/results/ft.json` draws the
 * charts again from a results file without measuring.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageType, connect, encodePages, loadKeyFile, silentLogger } from '../packages/ft-trans/src/index.ts';
import { FtProcess, makeKeyFile } from '../guests/test/ft-harness.ts';
import { arpResponder, freeUdpPort, postBootState } from '../guests/test/linux-guest.ts';

const quick = process.argv.includes('--quick');
const trialsArg = process.argv.indexOf('--trials');
const TRIALS = trialsArg > 0 ? Number(process.argv[trialsArg + 1]) : quick ? 2 : 10;
const STOP_TRIALS = quick ? 1 : 3;
const PHASE_S = quick ? 6 : 20;
const OVERHEAD_REPS = quick ? 1 : 4;
const PAGE = 4096;
const MiB = 1 << 20;
const HEARTBEAT_MS = 200;
const TIMEOUT_MS = 3000;

const t0 = performance.now();
const say = (s: string): void => void process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}
const median = (xs: readonly number[]) => quantile(xs, 0.5);
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const r1 = (x: number) => Math.round(x * 10) / 10;

/** Least squares y = a + b x. */
function fit(xs: readonly number[], ys: readonly number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) { sxy += (xs[i] - mx) * (ys[i] - my); sxx += (xs[i] - mx) ** 2; }
  const b = sxx > 0 ? sxy / sxx : 0;
  return { a: my - b * mx, b };
}

// ---- references measured in this run ---------------------------------------------------

interface GatherPoint { pages: number; ms: number; MBps: number }

/**
 * Copying n dirty pages of a 128 MiB "guest RAM" (the guest's size) into one buffer, median
 * of reps, three ways:
 *   fresh  random pages, cache evicted first (a 64 MiB sweep), into a new Buffer.allocUnsafe:
 *          the primary's own code path (primary.ts checkpoint())
 *   cold   the same into a destination allocated and touched beforehand: the copy alone
 *   warm   n consecutive pages, not evicted, into a touched destination: memcpy's best case
 */
function pageCopies(): Record<'fresh' | 'cold' | 'warm', GatherPoint[]> {
  const ram = Buffer.alloc(128 * MiB, 1);
  for (let i = 0; i < ram.length; i += PAGE) ram[i] = i & 0xff;
  const sweep = Buffer.alloc(64 * MiB, 2);
  const ready = Buffer.alloc(16384 * PAGE, 3);
  const ramPages = ram.length / PAGE;
  const out: Record<'fresh' | 'cold' | 'warm', GatherPoint[]> = { fresh: [], cold: [], warm: [] };
  for (const n of [1, 4, 16, 64, 256, 1024, 4096, 16384]) {
    for (const kind of ['fresh', 'cold', 'warm'] as const) {
      const runs: number[] = [];
      for (let rep = 0; rep < (n <= 1024 ? 15 : 7); rep++) {
        const pfns = new Uint32Array(n);
        const base = Math.floor(Math.random() * (ramPages - n));
        for (let i = 0; i < n; i++) pfns[i] = kind === 'warm' ? base + i : Math.floor(Math.random() * ramPages);
        pfns.sort();
        if (kind === 'warm') {
          for (let i = 0; i < n; i++) ready.set(ram.subarray(pfns[i] * PAGE, (pfns[i] + 1) * PAGE), i * PAGE);
        } else {
          let x = 0;
          for (let i = 0; i < sweep.length; i += 64) x += sweep[i]++;
          if (x < 0) throw new Error('unreachable');
        }
        const t = performance.now();
        const data = kind === 'fresh' ? Buffer.allocUnsafe(n * PAGE) : ready;
        for (let i = 0; i < n; i++) data.set(ram.subarray(pfns[i] * PAGE, (pfns[i] + 1) * PAGE), i * PAGE);
        runs.push(performance.now() - t);
      }
      const ms = median(runs);
      out[kind].push({ pages: n, ms: r3(ms), MBps: Math.round((n * PAGE) / 1e6 / (ms / 1000)) });
    }
  }
  return out;
}

/** Raw loopback TCP, this process to a child process: MB/s (10^6 B), median of reps. */
async function loopbackTcp(totalBytes: number, reps: number): Promise<number[]> {
  const receiver = `
    const net = require('node:net');
    const total = ${totalBytes};
    const srv = net.createServer((s) => { let n = 0; s.on('data', (d) => { n += d.length; if (n >= total) { s.end(Buffer.from([1])); } }); });
    srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));`;
  const rates: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const child = spawn(process.execPath, ['-e', receiver], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = await once(child.stdout!, 'data') as [Buffer];
    const sock = netConnect({ host: '127.0.0.1', port: Number(String(line).trim()), noDelay: true });
    await once(sock, 'connect');
    const chunk = randomBytes(4 * MiB);
    const done = once(sock, 'data');
    const t = performance.now();
    for (let sent = 0; sent < totalBytes; sent += chunk.length) {
      if (!sock.write(chunk)) await once(sock, 'drain');
    }
    await done;
    rates.push(Math.round(totalBytes / 1e6 / ((performance.now() - t) / 1000)));
    sock.destroy();
    child.kill();
  }
  return rates;
}

/**
 * The FT link itself: an FtChannel (handshake, a Poly1305 MAC per frame, as ftx86 runs it) sending
 * PAGES frames of `frameBytes` scattered 4 KiB pages to bench/ft-link.ts's receiver in a
 * child process, which ACKs the last one: MB/s of page bytes, per rep.
 */
async function ftChannelRate(dir: string, totalBytes: number, frameBytes: number, reps: number): Promise<number[]> {
  const keyFile = join(dir, 'link.key');
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const loader = pathToFileURL(fileURLToPath(new URL('../node_modules/tsx/dist/loader.mjs', import.meta.url))).href;
  const child = spawn(process.execPath, ['--import', loader, fileURLToPath(new URL('./ft-link.ts', import.meta.url)), '--receiver'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const replies = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const ram = randomBytes(64 * MiB);
  const ramPages = ram.length / PAGE;
  const perFrame = frameBytes / PAGE;
  const rates: number[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      child.stdin!.write(`${JSON.stringify({ mode: 'channel', keyFile, totalBytes, frameBytes })}\n`);
      const { port } = JSON.parse((await replies.next()).value as string) as { port: number };
      const ch = await connect({ port, key: loadKeyFile(keyFile), logger: silentLogger, maxPayload: frameBytes + MiB });
      const acked = new Promise<void>((resolve) => ch.on('frame', () => resolve()));
      const t = performance.now();
      for (let i = 0; i < totalBytes / frameBytes; i++) {
        const pfns: number[] = [];
        const views: Buffer[] = [];
        for (let k = 0; k < perFrame; k++) {
          const pfn = ((i * perFrame + k) * 7919) % ramPages;
          pfns.push(pfn);
          views.push(ram.subarray(pfn * PAGE, (pfn + 1) * PAGE));
        }
        if (!ch.send(MessageType.PAGES, BigInt(i), encodePages(pfns, views))) await ch.whenWritable();
      }
      await acked;
      rates.push(Math.round(totalBytes / 1e6 / ((performance.now() - t) / 1000)));
      ch.destroy();
    }
  } finally {
    child.kill();
  }
  return rates;
}

// ---- the guest's console ---------------------------------------------------------------

interface Conn { socket: Socket; text: string; openedAt: number; chunks: { at: number; end: number }[] }

/** The outside world of COM1, with the time of every connection and every chunk. */
class Console {
  readonly conns: Conn[] = [];
  private readonly server: Server;
  private readonly waiters = new Set<() => void>();
  onConnect: ((c: Conn) => void) | undefined;
  readonly ready: Promise<number>;

  constructor() {
    this.server = createServer((socket) => {
      socket.setNoDelay(true);
      const c: Conn = { socket, text: '', openedAt: performance.now(), chunks: [] };
      this.conns.push(c);
      this.onConnect?.(c);
      socket.on('data', (d) => {
        c.text += d.toString('latin1');
        c.chunks.push({ at: performance.now(), end: c.text.length });
        this.notify();
      });
      socket.on('error', () => {});
      this.notify();
    });
    this.ready = new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as { port: number }).port)));
  }

  private notify(): void { for (const w of [...this.waiters]) w(); }
  get last(): Conn | undefined { return this.conns[this.conns.length - 1]; }
  type(text: string): void { this.last?.socket.write(text); }

  waitFor<T>(what: string, timeoutMs: number, poll: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => { const v = poll(); if (v !== undefined) { done(); resolve(v); } };
      const timer = setTimeout(() => { done(); reject(new Error(`console: no ${what} within ${timeoutMs} ms; last output:\n${(this.last?.text ?? '').slice(-800)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  private marks = 0;
  /**
   * Type `cmd`, then an end marker that only the shell's output (not the typed echo) can
   * show; resolves with ms from typing to the marker.
   */
  async run(cmd: string, timeoutMs = 120_000): Promise<number> {
    const k = 1000 + this.marks++;
    const c = this.last!;
    const from = c.text.length;
    const t = performance.now();
    c.socket.write(`${cmd}; echo MARK$((${k}+1))END\n`);
    const re = new RegExp(`MARK${k + 1}END`);
    await this.waitFor(`marker of "${cmd.slice(0, 40)}"`, timeoutMs, () => (re.test(c.text.slice(from)) ? true : undefined));
    return performance.now() - t;
  }

  close(): void {
    for (const c of this.conns) c.socket.destroy();
    this.server.close();
  }
}

// ---- processes -------------------------------------------------------------------------

interface Guest { state: string; disk: string; dir: string }

/** A private copy of the post-boot state (other runs may rebuild the shared cache under us). */
async function privateGuest(): Promise<Guest> {
  const s = await postBootState();
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-bench-ft-'));
  copyFileSync(s.statePath, join(dir, 'guest.state'));
  copyFileSync(s.diskPath, join(dir, 'disk.img'));
  return { state: join(dir, 'guest.state'), disk: join(dir, 'disk.img'), dir };
}

interface Pair { primary: FtProcess; secondary: FtProcess; kill(): void }

let pairCount = 0;
async function startPair(g: Guest, consolePort: number, o: { common?: string[]; primaryEnv?: NodeJS.ProcessEnv } = {}): Promise<Pair> {
  const key = makeKeyFile(g.dir);
  const secondaryDisk = join(g.dir, `secondary-${pairCount++}.img`);
  copyFileSync(g.disk, secondaryDisk);
  writeFileSync(secondaryDisk, Buffer.from('not synced yet'), { flag: 'r+' });
  const serial = `tcp:127.0.0.1:${consolePort}`;
  const timing = ['--ft-heartbeat-ms', String(HEARTBEAT_MS), '--ft-timeout-ms', String(TIMEOUT_MS)];
  const secondary = new FtProcess('secondary', [
    'run', '--ft', 'secondary', '--listen', '127.0.0.1:0', '--ft-key', key, '--disk', secondaryDisk,
    '--serial', serial, '--debugcon', 'none', ...timing, ...(o.common ?? []),
  ]);
  const listening = await secondary.waitEvent('ft-listening', 60_000);
  const primary = new FtProcess('primary', [
    'run', '--restore', g.state, '--disk', g.disk, '--ft', 'primary', '--peer', `127.0.0.1:${listening.port as number}`, '--ft-key', key,
    '--serial', serial, '--debugcon', 'none', ...timing, ...(o.common ?? []),
  ], { FTX86_LOG_LEVEL: 'debug', ...o.primaryEnv });
  return { primary, secondary, kill: () => { primary.kill(); secondary.kill(); } };
}

/** Parse the JSON log lines of `text` (a slice of a process's stderr). */
function logLines(text: string, event: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{') || !line.includes(`"${event}"`)) continue;
    try {
      const l = JSON.parse(line) as Record<string, unknown>;
      if (l.event === event) out.push(l);
    } catch { /* a partial line */ }
  }
  return out;
}

/** Full sync of a pair that reached ft-protected: bytes on the wire and ms. */
function fullSyncOf(p: Pair): { ms: number; totalBytes: number; sentBytes: number; MBps: number } | undefined {
  const prot = logLines(p.primary.stderr, 'ft-protected')[0];
  const done = logLines(p.secondary.stderr, 'ft-sync-done')[0];
  if (!prot || !done) return undefined;
  const ms = prot.ms as number;
  const sent = done.bytes as number;
  return { ms, totalBytes: prot.bytes as number, sentBytes: sent, MBps: Math.round(sent / 1e6 / (ms / 1000)) };
}

async function toPrompt(con: Console, p: Pair | FtProcess): Promise<void> {
  if ('primary' in p) await p.primary.waitEvent('ft-protected', 120_000);
  await con.waitFor('console connection', 60_000, () => con.last);
  await con.run('true', 60_000);
}

// ---- 1 + 3: checkpoints under workloads, and FT overhead --------------------------------

interface Checkpoint { workload: string; epoch: number; pauseMs: number; pages: number; bytes: number; events: number; diskWrites: number; time: number; ackMs?: number }

const BG = (body: string) => `( ${body} ) &`;
const WORKLOADS: { name: string; start?: string; what: string }[] = [
  { name: 'idle', what: 'the shell at its prompt, nothing typed' },
  { name: 'records', start: BG("i=0; while :; do i=$((i+1)); echo \"REC $i $(sed -n '/^now at/{p;q}' /proc/timer_list)\"; done"), what: 'the console record loop (RECORD_LOOP)' },
  { name: 'memory', start: BG('while :; do dd if=/dev/zero of=/ftbench bs=1M count=16 2>/dev/null; done'), what: 'dd 16 MiB of zeros into a rootfs (ramfs) file, over and over' },
  { name: 'disk', start: BG('while :; do dd if=/dev/zero of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null; done'), what: 'dd 1 MiB to the virtio disk with fsync, over and over' },
  { name: 'network', start: BG('while :; do ping -c 20 -W 1 -i 0.05 10.0.2.2 >/dev/null 2>&1; done'), what: 'ping every 50 ms to a host-side ARP responder over the UDP NIC' },
];

const OVERHEAD: { name: string; cmd: string }[] = [
  { name: 'cpu: shell loop', cmd: 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' },
  { name: 'memory: 4 x dd 16 MiB to rootfs', cmd: 'for i in 1 2 3 4; do dd if=/dev/zero of=/ov bs=1M count=16 2>/dev/null; done; rm -f /ov' },
  { name: 'console: seq 1 2000', cmd: 'seq 1 2000' },
  { name: 'disk: dd 2 MiB + fsync', cmd: 'dd if=/dev/zero of=/dev/vda bs=64k count=32 conv=fsync 2>/dev/null' },
];

async function overheadRuns(con: Console, label: string, rep: number): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const w of OVERHEAD) {
    const ms = await con.run(w.cmd, 300_000);
    (out[w.name] ??= []).push(r1(ms));
    say(`  overhead ${label.padEnd(6)} ${w.name.padEnd(32)} rep ${rep}: ${(ms / 1000).toFixed(2)} s`);
    await sleep(500);
  }
  return out;
}

async function checkpointsAndOverhead(g: Guest) {
  const con = new Console();
  const consolePort = await con.ready;
  const [guestPort, hostPort] = [await freeUdpPort(), await freeUdpPort()];
  const arp = arpResponder(hostPort, guestPort, [10, 0, 2, 2], [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]);
  let frames = 0;
  arp.on('message', () => { frames++; });
  const pair = await startPair(g, consolePort, { common: ['--net', `udp:${guestPort}:127.0.0.1:${hostPort}`] });
  const phases: { workload: string; what: string; seconds: number; checkpoints: Checkpoint[]; framesOut: number }[] = [];
  try {
    await toPrompt(con, pair);
    say(`pair protected; full sync ${JSON.stringify(fullSyncOf(pair))}`);
    await con.run('ip link set eth0 up 2>/dev/null; rm -f /ftbench', 60_000);
    for (const w of WORKLOADS) {
      await sleep(1000);
      const from = pair.primary.stderr.length;
      const f0 = frames;
      const ts = Date.now();
      if (w.start) con.type(`${w.start}\n`);
      await sleep(PHASE_S * 1000);
      const te = Date.now();
      if (w.start) await con.run('kill $!; wait $! 2>/dev/null', 120_000);
      const slice = pair.primary.stderr.slice(from);
      const acks = new Map<number, number>();
      for (const a of logLines(slice, 'ft-ack')) acks.set(Number(a.epoch), a.time as number);
      const cps: Checkpoint[] = logLines(slice, 'ft-checkpoint')
        .filter((l) => (l.time as number) >= ts && (l.time as number) <= te)
        .map((l) => {
          const ack = acks.get(Number(l.epoch));
          return {
            workload: w.name, epoch: Number(l.epoch), pauseMs: l.pauseMs as number, pages: l.pages as number, bytes: l.bytes as number,
            events: l.events as number, diskWrites: l.diskWrites as number, time: l.time as number,
            ackMs: ack === undefined ? undefined : ack - (l.time as number),
          };
        });
      phases.push({ workload: w.name, what: w.what, seconds: (te - ts) / 1000, checkpoints: cps, framesOut: frames - f0 });
      const p = cps.map((c) => c.pauseMs);
      say(`phase ${w.name.padEnd(8)} ${cps.length} checkpoints (${(cps.length / ((te - ts) / 1000)).toFixed(1)}/s), pause median ${median(p).toFixed(2)} ms p99 ${quantile(p, 0.99).toFixed(2)} ms, pages median ${median(cps.map((c) => c.pages))} max ${Math.max(0, ...cps.map((c) => c.pages))}`);
    }
  } finally {
    pair.kill();
    con.close();
    arp.close();
  }
  const fullSync = fullSyncOf(pair);

  // FT on and off alternate (off on, on off, ...), each a fresh VM restored from the same
  // state, so drifting load on the machine hits both alike.
  say('FT overhead: the same workloads on a fresh FT pair and on a standalone restore, alternating');
  const overheadOn: Record<string, number[]> = {};
  const overheadOff: Record<string, number[]> = {};
  const merge = (into: Record<string, number[]>, from: Record<string, number[]>) => { for (const [k, v] of Object.entries(from)) (into[k] ??= []).push(...v); };
  for (let rep = 0; rep < OVERHEAD_REPS; rep++) {
    for (const on of rep % 2 === 0 ? [false, true] : [true, false]) {
      const c = new Console();
      const port = await c.ready;
      const vm = on ? await startPair(g, port) : new FtProcess('standalone', ['run', '--restore', g.state, '--disk', g.disk, '--serial', `tcp:127.0.0.1:${port}`, '--debugcon', 'none']);
      try {
        await toPrompt(c, vm);
        merge(on ? overheadOn : overheadOff, await overheadRuns(c, on ? 'FT on' : 'FT off', rep));
      } finally {
        vm.kill();
        c.close();
      }
    }
  }
  return { phases, overheadOn, overheadOff, fullSync };
}

// ---- 2: failover ---------------------------------------------------------------------

interface FailoverTrial {
  signal: 'SIGKILL' | 'SIGSTOP';
  /** The secondary declared the primary lost (its ft-failover-start log time, ms clock). */
  killToDetectMs: number;
  /** The secondary's own measure: from detecting the loss to the guest running. */
  secondaryFailoverMs: number;
  /** The secondary opened its console connection (during failover, before the guest runs). */
  killToConsoleMs: number;
  /** First byte on the secondary's console: re-released output, or the guest's. */
  killToFirstByteMs: number | undefined;
  /** A key typed the moment the secondary's console opened came back as the guest's echo. */
  killToEchoMs: number;
  /** From the secondary's ft-failover log line (its ms clock) to its console connection opening. */
  failoverLogToConsoleMs: number;
  rereleasedEvents: number;
  recordsBeforeKill: number;
  fullSync?: ReturnType<typeof fullSyncOf>;
}

const RECORD_LOOP_FG = "i=0; while :; do i=$((i+1)); echo \"REC $i $(sed -n '/^now at/{p;q}' /proc/timer_list)\"; done\n";

async function failoverTrial(g: Guest, signal: FailoverTrial['signal']): Promise<FailoverTrial> {
  const con = new Console();
  const port = await con.ready;
  const pair = await startPair(g, port);
  try {
    await toPrompt(con, pair);
    con.type(RECORD_LOOP_FG);
    const first = con.last!;
    const want = 10 + Math.floor(Math.random() * 20);
    await con.waitFor(`record ${want}`, 60_000, () => ((first.text.match(/^REC \d+ /gm)?.length ?? 0) >= want ? true : undefined));
    await sleep(Math.floor(Math.random() * 200));
    let echoConn: Conn | undefined;
    con.onConnect = (c) => { echoConn = c; c.socket.write('Q'); };
    const recordsBeforeKill = first.text.match(/^REC \d+ /gm)?.length ?? 0;
    const killWall = Date.now();
    const killAt = performance.now();
    pair.primary.child.kill(signal);
    const started = await pair.secondary.waitEvent('ft-failover-start', TIMEOUT_MS + 30_000);
    const done = await pair.secondary.waitEvent('ft-failover', 60_000);
    await con.waitFor('the secondary\'s console', 30_000, () => echoConn);
    const c = echoConn!;
    await con.waitFor('the echo of the key typed on the secondary\'s console', 30_000, () => (c.text.includes('Q') ? true : undefined));
    const echoAt = c.chunks.find((k) => c.text.slice(0, k.end).includes('Q'))!.at;
    const trial: FailoverTrial = {
      signal,
      killToDetectMs: (started.time as number) - killWall,
      secondaryFailoverMs: done.ms as number,
      killToConsoleMs: r1(c.openedAt - killAt),
      killToFirstByteMs: c.chunks[0] ? r1(c.chunks[0].at - killAt) : undefined,
      killToEchoMs: r1(echoAt - killAt),
      failoverLogToConsoleMs: r1(killWall + (c.openedAt - killAt) - (done.time as number)),
      rereleasedEvents: done.rereleasedEvents as number,
      recordsBeforeKill,
      fullSync: fullSyncOf(pair),
    };
    return trial;
  } finally {
    pair.primary.child.kill('SIGKILL');
    pair.kill();
    con.close();
  }
}

// ---- charts --------------------------------------------------------------------------

const COLORS: Record<string, string> = { idle: '#888888', records: '#3b6fb6', memory: '#d2752d', disk: '#4c9a4c', network: '#a64ca6', overhead: '#c9b53a' };

function pauseChart(cps: Checkpoint[], gather: { pages: number; ms: number }[]): string {
  const w = 800, h = 460, L = 70, R = 200, T = 40, B = 50;
  const xs = cps.map((c) => Math.max(1, c.pages));
  const ys = cps.map((c) => Math.max(0.01, c.pauseMs));
  const xmax = 10 ** Math.ceil(Math.log10(Math.max(10, ...xs, ...gather.map((g) => g.pages))));
  const ymin = 10 ** Math.floor(Math.log10(Math.min(...ys, ...gather.map((g) => Math.max(0.001, g.ms)))));
  const ymax = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  const X = (v: number) => L + (Math.log10(v) / Math.log10(xmax)) * (w - L - R);
  const Y = (v: number) => h - B - ((Math.log10(v) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))) * (h - T - B);
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`;
  s += `<text x="10" y="20" font-weight="bold">Checkpoint pause vs dirty pages (log-log), Debian guest, 128 MiB</text>`;
  for (let d = 1; d <= xmax; d *= 10) s += `<line x1="${X(d)}" y1="${T}" x2="${X(d)}" y2="${h - B}" stroke="#ddd"/><text x="${X(d) - 10}" y="${h - B + 16}">${d}</text>`;
  for (let d = ymin; d <= ymax * 1.001; d *= 10) s += `<line x1="${L}" y1="${Y(d)}" x2="${w - R}" y2="${Y(d)}" stroke="#ddd"/><text x="${L - 50}" y="${Y(d) + 4}">${+d.toPrecision(1)}</text>`;
  s += `<text x="${(w - R) / 2}" y="${h - 12}">dirty pages in the checkpoint</text><text x="12" y="${T - 8}">pause (ms)</text>`;
  for (const c of cps) s += `<circle cx="${X(Math.max(1, c.pages)).toFixed(1)}" cy="${Y(Math.max(0.01, c.pauseMs)).toFixed(1)}" r="2.5" fill="${COLORS[c.workload] ?? '#000'}" fill-opacity="0.6"/>`;
  s += `<polyline fill="none" stroke="#000" stroke-width="1.5" stroke-dasharray="4 3" points="${gather.map((g) => `${X(g.pages).toFixed(1)},${Y(Math.max(ymin, g.ms)).toFixed(1)}`).join(' ')}"/>`;
  // The model "pause = its fixed part + a cold copy of the pages": fixed = median pause under 64 pages.
  const fixed = median(cps.filter((c) => c.pages < 64).map((c) => c.pauseMs));
  s += `<polyline fill="none" stroke="#c03030" stroke-width="1.5" points="${gather.map((g) => `${X(g.pages).toFixed(1)},${Y(Math.min(ymax, fixed + g.ms)).toFixed(1)}`).join(' ')}"/>`;
  let ly = T + 10;
  for (const [name, col] of Object.entries(COLORS)) {
    if (!cps.some((c) => c.workload === name)) continue;
    s += `<circle cx="${w - R + 15}" cy="${ly - 4}" r="4" fill="${col}"/><text x="${w - R + 24}" y="${ly}">${name}</text>`;
    ly += 18;
  }
  s += `<line x1="${w - R + 8}" y1="${ly - 4}" x2="${w - R + 22}" y2="${ly - 4}" stroke="#000" stroke-dasharray="4 3"/><text x="${w - R + 24}" y="${ly}">cold copy, N random pages</text>`;
  ly += 18;
  s += `<line x1="${w - R + 8}" y1="${ly - 4}" x2="${w - R + 22}" y2="${ly - 4}" stroke="#c03030"/><text x="${w - R + 24}" y="${ly}">fixed part + cold copy</text>`;
  return `${s}</svg>\n`;
}

function failoverChart(trials: FailoverTrial[]): string {
  const series: [string, string, number[]][] = [
    ['kill to detection (secondary log)', '#888888', trials.map((t) => t.killToDetectMs)],
    ['secondary ft-failover ms (detection to its log line)', '#4c9a4c', trials.map((t) => t.secondaryFailoverMs)],
    ['kill to the secondary\'s console connection', '#d2752d', trials.map((t) => t.killToConsoleMs)],
    ['kill to the guest\'s echo of a key typed there (guest running)', '#3b6fb6', trials.map((t) => t.killToEchoMs)],
  ];
  const w = 680, L = 60, R = 20, T = 40, B = 50 + 16 * series.length, h = 300 + B;
  const xmax = Math.max(1, ...series.flatMap((s) => s[2])) * 1.05;
  const X = (v: number) => L + (v / xmax) * (w - L - R);
  const Y = (p: number) => h - B - p * (h - T - B);
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`;
  s += `<text x="10" y="20" font-weight="bold">Failover after SIGKILL of the primary: CDF over ${trials.length} trials</text>`;
  const step = 10 ** Math.floor(Math.log10(xmax / 2));
  for (let v = 0; v <= xmax; v += step) s += `<line x1="${X(v)}" y1="${T}" x2="${X(v)}" y2="${h - B}" stroke="#eee"/><text x="${X(v) - 8}" y="${h - B + 16}">${v}</text>`;
  for (const p of [0, 0.25, 0.5, 0.75, 1]) s += `<line x1="${L}" y1="${Y(p)}" x2="${w - R}" y2="${Y(p)}" stroke="#eee"/><text x="${L - 30}" y="${Y(p) + 4}">${p}</text>`;
  s += `<text x="${w / 2 - 20}" y="${h - B + 32}">ms</text>`;
  series.forEach(([name, col, vals], i) => {
    const v = [...vals].sort((a, b) => a - b);
    let pts = `${X(0)},${Y(0)}`;
    v.forEach((x, k) => { pts += ` ${X(x).toFixed(1)},${Y(k / v.length).toFixed(1)} ${X(x).toFixed(1)},${Y((k + 1) / v.length).toFixed(1)}`; });
    s += `<polyline fill="none" stroke="${col}" stroke-width="2" points="${pts}"/>`;
    const ly = h - B + 48 + i * 16;
    s += `<line x1="${L}" y1="${ly - 4}" x2="${L + 20}" y2="${ly - 4}" stroke="${col}" stroke-width="2"/><text x="${L + 26}" y="${ly}">${name}</text>`;
  });
  return `${s}</svg>\n`;
}

/** `--charts-from FILE`: draw the charts again from a results file (no measuring). */
function chartsFrom(file: string): void {
  const r = JSON.parse(readFileSync(file, 'utf8')) as {
    quick: boolean;
    reference: { pageCopies: { cold: GatherPoint[] } };
    checkpointSamples: { w: string; pages: number; pauseMs: number }[];
    failoverTrials: FailoverTrial[];
  };
  const cps = r.checkpointSamples.map((c) => ({ workload: c.w, pages: c.pages, pauseMs: c.pauseMs }) as Checkpoint);
  const outDir = fileURLToPath(new URL('./results/', import.meta.url));
  const suffix = r.quick ? '-quick' : '';
  writeFileSync(join(outDir, `ft-pause${suffix}.svg`), pauseChart(cps, r.reference.pageCopies.cold));
  writeFileSync(join(outDir, `ft-failover${suffix}.svg`), failoverChart(r.failoverTrials.filter((t) => t.signal === 'SIGKILL')));
}

function gitDescribe(): string {
  try {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'packages'], { cwd: root, encoding: 'utf8' }).trim();
    return dirty ? `${head} + uncommitted changes in packages/` : head;
  } catch {
    return 'unknown';
  }
}

// ---- main ----------------------------------------------------------------------------

async function main(): Promise<void> {
  const load0 = loadavg();
  say(`bench/ft${quick ? ' --quick' : ''}: ${TRIALS} SIGKILL + ${STOP_TRIALS} SIGSTOP failover trials, ${PHASE_S} s per workload; load average ${load0.map((l) => l.toFixed(2)).join(' ')}`);
  const g = await privateGuest();
  try {
    say('reference: copying N pages of a 128 MiB buffer (fresh = the primary\'s path, cold = copy only, warm = consecutive, cached)');
    const copies = pageCopies();
    const fits = Object.fromEntries(Object.entries(copies).map(([k, pts]) => {
      const big = pts.filter((x) => x.pages >= 64);
      const f = fit(big.map((x) => x.pages), big.map((x) => x.ms));
      say(`  ${k.padEnd(5)} ${pts.map((x) => `${x.pages}:${x.ms}`).join(' ')} ms; ${(f.b * 1000).toFixed(2)} us/page = ${Math.round(PAGE / 1e3 / f.b)} MB/s`);
      return [k, f];
    })) as Record<'fresh' | 'cold' | 'warm', { a: number; b: number }>;
    const gather = copies.cold;
    say('reference: raw loopback TCP to a child process');
    const tcp = await loopbackTcp((quick ? 256 : 1024) * MiB, 3);
    say(`  ${tcp.join(', ')} MB/s`);
    const tcpMBps = median(tcp);
    say('reference: the FT link (FtChannel, Poly1305 per frame) with 4 MiB PAGES frames, to a child process');
    const link = await ftChannelRate(g.dir, (quick ? 128 : 512) * MiB, 4 * MiB, 3);
    say(`  ${link.join(', ')} MB/s`);
    const linkMBps = median(link);
    const macBuf = randomBytes(64 * MiB);
    const macRuns: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const aead = createCipheriv('chacha20-poly1305', randomBytes(32), randomBytes(12), { authTagLength: 16 });
      aead.setAAD(macBuf, { plaintextLength: 0 });
      aead.final();
      aead.getAuthTag();
      macRuns.push(Math.round(macBuf.length / 1e6 / ((performance.now() - t) / 1000)));
    }
    const macMBps = median(macRuns);
    say(`reference: Poly1305 (every FT frame carries one) ${macMBps} MB/s on one core`);

    say('checkpoints under workloads (one FT pair)');
    const cp = await checkpointsAndOverhead(g);

    say('failover trials');
    const trials: FailoverTrial[] = [];
    for (let i = 0; i < TRIALS + STOP_TRIALS; i++) {
      const signal = i < TRIALS ? 'SIGKILL' : 'SIGSTOP';
      try {
        const t = await failoverTrial(g, signal);
        trials.push(t);
        say(`  trial ${i + 1} ${signal}: detect ${t.killToDetectMs} ms, secondary ft-failover ${t.secondaryFailoverMs} ms, console open ${t.killToConsoleMs} ms, echo ${t.killToEchoMs} ms; full sync ${t.fullSync?.sentBytes} B in ${t.fullSync?.ms} ms`);
      } catch (e) {
        say(`  trial ${i + 1} ${signal} failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }

    // ---- summaries ----
    const all = cp.phases.flatMap((p) => p.checkpoints);
    // The pause's fixed part (CPU + device capture and encoding, the tap cut) is the median pause
    // of checkpoints under 64 pages; the copy's part of a checkpoint of 256+ pages is what is left.
    const fixedMs = median(all.filter((c) => c.pages < 64).map((c) => c.pauseMs));
    const marginalUs = (cs: Checkpoint[]) => {
      const big = cs.filter((x) => x.pages >= 256);
      return big.length ? r3(median(big.map((x) => ((x.pauseMs - fixedMs) / x.pages) * 1000))) : null;
    };
    const perWorkload = cp.phases.map((p) => {
      const c = p.checkpoints;
      const pauses = c.map((x) => x.pauseMs);
      const acked = c.filter((x) => x.ackMs !== undefined && x.bytes >= 2e6 && (x.ackMs as number) > 0);
      return {
        workload: p.workload,
        what: p.what,
        seconds: r1(p.seconds),
        checkpoints: c.length,
        checkpointsPerS: r1(c.length / p.seconds),
        pauseMedianMs: r3(median(pauses)),
        pauseP99Ms: r3(quantile(pauses, 0.99)),
        pagesMedian: median(c.map((x) => x.pages)),
        pagesP99: quantile(c.map((x) => x.pages), 0.99),
        bytesPerCheckpointMedian: median(c.map((x) => x.bytes)),
        bytesPerCheckpointMean: Math.round(c.reduce((s, x) => s + x.bytes, 0) / Math.max(1, c.length)),
        shippedMBps: r1(c.reduce((s, x) => s + x.bytes, 0) / 1e6 / p.seconds),
        eventsPerCheckpointMean: r1(c.reduce((s, x) => s + x.events, 0) / Math.max(1, c.length)),
        diskWritesPerCheckpointMean: r1(c.reduce((s, x) => s + x.diskWrites, 0) / Math.max(1, c.length)),
        commitRoundTripMedianMs: median(c.filter((x) => x.ackMs !== undefined).map((x) => x.ackMs as number)),
        // checkpoints of 256+ pages: (pause - the fixed part) / pages, in us
        marginalUsPerPage: marginalUs(c),
        // checkpoints of 2+ MB: bytes over (ACK log time - checkpoint log time). Not the link's rate: the
        // primary sees the ACK only when its event loop runs between guest slices (see the report)
        bytesOverCommitRttMBps: acked.length ? Math.round(median(acked.map((x) => x.bytes / 1e6 / ((x.ackMs as number) / 1000)))) : null,
        framesToHost: p.framesOut,
      };
    });
    const pfit = fit(all.map((c) => c.pages), all.map((c) => c.pauseMs));
    const bins = new Map<number, number[]>();
    for (const c of all) {
      const lo = 2 ** Math.max(0, Math.floor(Math.log2(Math.max(1, c.pages))));
      bins.set(lo, [...(bins.get(lo) ?? []), c.pauseMs]);
    }
    const pauseByPages = [...bins.entries()].sort((a, b) => a[0] - b[0])
      .map(([lo, ps]) => ({ pagesFrom: lo, pagesTo: lo * 2 - 1, checkpoints: ps.length, pauseMedianMs: r3(median(ps)), pauseP99Ms: r3(quantile(ps, 0.99)) }));
    const mUs = marginalUs(all);
    const copyRate = {
      fixedMs: r3(fixedMs),
      marginalUsPerPage: mUs,
      marginalMBps: mUs ? Math.round(PAGE / mUs) : null,
      marginalOverCopy: mUs ? Object.fromEntries(Object.entries(fits).map(([k, f]) => [k, r3(mUs / (f.b * 1000))])) : null,
      note: 'fixedMs: median pause of checkpoints under 64 pages; marginal: median over checkpoints of 256+ pages of (pause - fixedMs) / pages; marginalOverCopy: that per page over the reference copies\' per page (below 1: the pause copies faster than the reference)',
      pauseByPages,
      pauseFit: { fixedMs: r3(pfit.a), usPerPage: r3(pfit.b * 1000), note: 'least squares over every checkpoint (pause = fixedMs + usPerPage * pages): pulled by the descheduled outliers of a loaded machine; marginal* is the robust one' },
      copyFits: Object.fromEntries(Object.entries(fits).map(([k, f]) => [k, { fixedMs: r3(f.a), usPerPage: r3(f.b * 1000), MBps: Math.round(PAGE / 1e6 / (f.b / 1000)) }])),
      note2: 'copyFits: the same fit over 64..16384 pages of the reference copies (fresh: random pages into a new allocUnsafe buffer after a cache sweep, as the primary does; cold: into a ready buffer; warm: consecutive cached pages)',
      pausePerPageOverCopy: Object.fromEntries(Object.entries(fits).map(([k, f]) => [k, r3(pfit.b / f.b)])),
      pauseCopyMBps: pfit.b > 0 ? Math.round(PAGE / 1e6 / (pfit.b / 1000)) : null,
    };
    const kills = trials.filter((t) => t.signal === 'SIGKILL');
    const stops = trials.filter((t) => t.signal === 'SIGSTOP');
    const dist = (xs: number[]) => ({ n: xs.length, min: r1(Math.min(...xs)), median: r1(median(xs)), p90: r1(quantile(xs, 0.9)), max: r1(Math.max(...xs)) });
    const failover = {
      heartbeatMs: HEARTBEAT_MS,
      timeoutMs: TIMEOUT_MS,
      sigkill: kills.length ? {
        killToDetectMs: dist(kills.map((t) => t.killToDetectMs)),
        secondaryFailoverMs: dist(kills.map((t) => t.secondaryFailoverMs)),
        killToConsoleMs: dist(kills.map((t) => t.killToConsoleMs)),
        killToEchoMs: dist(kills.map((t) => t.killToEchoMs)),
        failoverLogToConsoleMs: dist(kills.map((t) => t.failoverLogToConsoleMs)),
      } : null,
      sigstop: stops.length ? {
        killToDetectMs: dist(stops.map((t) => t.killToDetectMs)),
        secondaryFailoverMs: dist(stops.map((t) => t.secondaryFailoverMs)),
        killToEchoMs: dist(stops.map((t) => t.killToEchoMs)),
      } : null,
    };
    const overhead = OVERHEAD.map((w) => {
      const on = median(cp.overheadOn[w.name] ?? []);
      const off = median(cp.overheadOff[w.name] ?? []);
      return { workload: w.name, cmd: w.cmd, ftOffS: r3(off / 1000), ftOnS: r3(on / 1000), ratio: r3(on / off), runsOnMs: cp.overheadOn[w.name], runsOffMs: cp.overheadOff[w.name] };
    });
    const syncs = [cp.fullSync, ...trials.map((t) => t.fullSync)].filter((s): s is NonNullable<typeof s> => s !== undefined);
    const fullSync = {
      n: syncs.length,
      totalBytes: syncs[0]?.totalBytes,
      sentBytesMedian: median(syncs.map((s) => s.sentBytes)),
      msMedian: median(syncs.map((s) => s.ms)),
      MBpsMedian: median(syncs.map((s) => s.MBps)),
      overLoopbackTcp: r3(median(syncs.map((s) => s.MBps)) / tcpMBps),
      overPoly1305: r3(median(syncs.map((s) => s.MBps)) / macMBps),
      overFtChannel: r3(median(syncs.map((s) => s.MBps)) / linkMBps),
      note: 'totalBytes: RAM + device state + disk; sentBytes: what crossed the link (zero 4 MiB RAM chunks are skipped); ms: sync start to the secondary\'s ACK (primary log)',
    };

    console.log('\n| workload | checkpoints/s | pause median ms | pause p99 ms | pages median (p99) | bytes/checkpoint median | shipped MB/s | marginal us/page (≥256 pages) | commit RTT median ms |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const p of perWorkload) {
      console.log(`| ${p.workload} | ${p.checkpointsPerS} | ${p.pauseMedianMs} | ${p.pauseP99Ms} | ${p.pagesMedian} (${p.pagesP99}) | ${p.bytesPerCheckpointMedian} | ${p.shippedMBps} | ${p.marginalUsPerPage ?? '-'} | ${p.commitRoundTripMedianMs} |`);
    }
    console.log('\ncopy rate:', copyRate);
    console.log(`loopback TCP ${tcpMBps} MB/s, FT link (FtChannel) ${linkMBps} MB/s, Poly1305 ${macMBps} MB/s`);
    console.log('full sync:', fullSync);
    console.log('failover:', JSON.stringify(failover, null, 1));
    console.table(overhead.map(({ runsOnMs: _a, runsOffMs: _b, cmd: _c, ...o }) => o));

    const load1 = loadavg();
    const result = {
      bench: 'ft',
      date: new Date().toISOString(),
      quick,
      // Other engineers edit the tree: every ftx86 process runs the sources as they were when it started.
      commit: gitDescribe(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      loadavgStart: load0.map((l) => Math.round(l * 100) / 100),
      loadavgEnd: load1.map((l) => Math.round(l * 100) / 100),
      note: 'MB = 10^6 bytes. The primary and secondary run on this machine\'s 2 cores together with this process and whatever else runs (see loadavg). Pause = the primary\'s ft-checkpoint pauseMs: dirty page copy + CPU/device capture and encoding.',
      settings: { phaseSeconds: PHASE_S, overheadReps: OVERHEAD_REPS, trials: TRIALS, stopTrials: STOP_TRIALS, heartbeatMs: HEARTBEAT_MS, timeoutMs: TIMEOUT_MS, ftDefaults: 'batch 2000 us, interval 100 ms, max 4 unacked' },
      reference: { pageCopies: copies, poly1305MBps: macMBps, ftChannelMBps: link, ftChannelMBpsMedian: linkMBps, ftChannelOverLoopbackTcp: r3(linkMBps / tcpMBps), loopbackTcpMBps: tcp, loopbackTcpMBpsMedian: tcpMBps },
      checkpoints: perWorkload,
      copyRate,
      failover,
      failoverTrials: trials,
      overhead,
      fullSync,
      fullSyncs: syncs,
      checkpointSamples: all.map((c) => ({ w: c.workload, pages: c.pages, pauseMs: c.pauseMs, bytes: c.bytes, ackMs: c.ackMs ?? null })),
    };
    const outDir = fileURLToPath(new URL('./results/', import.meta.url));
    mkdirSync(outDir, { recursive: true });
    const suffix = quick ? '-quick' : '';
    writeFileSync(join(outDir, `ft${suffix}.json`), `${JSON.stringify(result, null, 1)}\n`);
    writeFileSync(join(outDir, `ft-pause${suffix}.svg`), pauseChart(all, gather));
    if (kills.length) writeFileSync(join(outDir, `ft-failover${suffix}.svg`), failoverChart(kills));
    say(`done; load average ${load1.map((l) => l.toFixed(2)).join(' ')}; results in bench/results/ft${suffix}.json`);
  } finally {
    rmSync(g.dir, { recursive: true, force: true });
  }
}

const chartsArg = process.argv.indexOf('--charts-from');
if (chartsArg > 0) chartsFrom(process.argv[chartsArg + 1]);
else main().catch((e) => { console.error(`bench/ft: ${(e as Error).stack}`); process.exitCode = 1; });
