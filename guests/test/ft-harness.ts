/**
 * What the FT tests share: an FT pair of real ftx86 processes restored from the post-boot
 * Debian state, and an observer that plays the outside world for the guest's console.
 *
 *   new ConsoleObserver()            a TCP server on loopback; each ftx86 that opens
 *                                    `--serial tcp:...` to it is one connection (the
 *                                    primary's, then after failover the secondary's)
 *   startFtPair(opts): FtPair        a secondary listening on a free port, then a primary
 *                                    restored from postBootState() connecting to it; both
 *                                    log JSON lines (pino) to stderr, collected per process
 *   startSecondary(opts), startPrimary(opts)  one side at a time (a third process for
 *                                    re-protect, a secondary alone for bad peers)
 *   FtProcess's `wrap` / FtPairOptions.wrap  a command prefix, e.g. `ip netns exec NS`
 *   new ConsoleObserver(unixPath)    the observer on a Unix socket instead (reachable from
 *                                    another network namespace through a socat relay)
 *   records(text) / checkRecords()   the numbered console records of the output-commit test
 *                                    and the two properties it asserts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FTX86, postBootState, type PostBootState } from './linux-guest.ts';

/** One ftx86 process with its JSON log lines. */
export class FtProcess {
  readonly child: ChildProcess;
  stderr = '';
  stdout = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly waiters = new Set<() => void>();

  /** `wrap`: a command that execs the rest (`ip netns exec NS`), so signals still reach ftx86. */
  constructor(readonly name: string, args: string[], env: NodeJS.ProcessEnv = {}, wrap: readonly string[] = []) {
    const argv = [...wrap, FTX86, ...args];
    this.child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child.stdout!.on('data', (d) => { this.stdout += d; this.notify(); });
    this.child.stderr!.on('data', (d) => { this.stderr += d; this.notify(); });
    this.child.on('exit', (code, signal) => { this.exit = { code, signal }; this.notify(); });
  }

  private notify(): void { for (const w of [...this.waiters]) w(); }

  /** The parsed JSON log lines (non-JSON lines are skipped). */
  logs(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { /* a partial line */ }
    }
    return out;
  }

  events(name: string): Record<string, unknown>[] { return this.logs().filter((l) => l.event === name); }

  /** Resolves with the first log line of event `name`; rejects on exit or timeout. */
  waitEvent(name: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return this.waitFor(`log event ${name}`, timeoutMs, () => this.events(name)[0]);
  }

  waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.waitFor('exit', timeoutMs, () => this.exit, true);
  }

  waitFor<T>(what: string, timeoutMs: number, poll: () => T | undefined, exitOk = false): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = poll();
        if (v !== undefined) { done(); resolve(v); return; }
        if (this.exit && !exitOk) { done(); reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) while waiting for ${what}\n${this.stderr.slice(-3000)}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.stderr.slice(-3000)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.exit) this.child.kill(signal);
  }
}

/** The outside world of the guest's COM1: every connection's bytes, in order of connection. */
export class ConsoleObserver {
  readonly connections: { socket: Socket; text: string }[] = [];
  private server: Server;
  private readonly waiters = new Set<() => void>();
  /** The TCP port (0 when listening on a Unix socket). */
  readonly ready: Promise<number>;

  constructor(unixPath?: string) {
    this.server = createServer((socket) => {
      const c = { socket, text: '' };
      this.connections.push(c);
      socket.on('data', (d) => { c.text += d.toString('latin1'); this.notify(); });
      socket.on('error', () => {});
      this.notify();
    });
    this.ready = unixPath !== undefined
      ? new Promise((resolve) => this.server.listen(unixPath, () => resolve(0)))
      : new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as { port: number }).port)));
  }

  private notify(): void { for (const w of [...this.waiters]) w(); }

  /** Everything every connection delivered, concatenated in connection order. */
  get all(): string { return this.connections.map((c) => c.text).join(''); }

  /** Type on the newest connection (the VM that runs the guest now). */
  type(text: string): void { this.connections[this.connections.length - 1]?.socket.write(text); }

  waitFor<T>(what: string, timeoutMs: number, poll: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = poll();
        if (v !== undefined) { done(); resolve(v); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`console: no ${what} within ${timeoutMs} ms; last output:\n${this.all.slice(-1500)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  close(): void {
    for (const c of this.connections) c.socket.destroy();
    this.server.close();
  }
}

export interface FtPairOptions {
  observerPort: number;
  /** Extra options for both, e.g. --net. */
  common?: string[];
  primaryArgs?: string[];
  secondaryArgs?: string[];
  primaryEnv?: NodeJS.ProcessEnv;
  secondaryEnv?: NodeJS.ProcessEnv;
  /** Where the primary connects instead of the secondary (a proxy in between); given the secondary's port. */
  peerFor?: (secondaryPort: number) => Promise<string> | string;
  /** A command prefix for both processes (`ip netns exec NS`). */
  wrap?: string[];
}

export interface FtPair {
  primary: FtProcess;
  secondary: FtProcess;
  /** The secondary's own disk image (a copy the full sync overwrites). */
  secondaryDisk: string;
  /** The shared key file (for more secondaries). */
  key: string;
  /** Where the secondary listens. */
  secondaryPort: number;
  state: PostBootState;
  dir: string;
  kill(): void;
}

/** Timeouts for a loaded 2-core machine: a slice of guest work can hold a process's event loop for tens of ms. */
export const FT_TEST_TIMING = ['--ft-heartbeat-ms', '200', '--ft-timeout-ms', '3000'];

/** A key file as ftx86 wants it: random, owner-only. */
export function makeKeyFile(dir: string): string {
  const path = join(dir, 'ft.key');
  writeFileSync(path, randomBytes(32), { mode: 0o600 });
  return path;
}

/** A disk image for a secondary: any image of the right size, as the full sync writes the primary's over it. */
export function secondaryDiskFor(state: PostBootState, path: string): string {
  copyFileSync(state.diskPath, path);
  chmodSync(path, 0o600);
  writeFileSync(path, Buffer.from('not synced yet'), { flag: 'r+' });
  return path;
}

export interface SecondaryOptions {
  name?: string;
  key: string;
  disk: string;
  observerPort: number;
  /** Default 0: any free port (read it from the ft-listening log line). */
  listenPort?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  wrap?: string[];
}

/** Start a secondary; resolves once it listens. */
export async function startSecondary(o: SecondaryOptions): Promise<{ secondary: FtProcess; port: number }> {
  const secondary = new FtProcess(o.name ?? 'secondary', [
    'run', '--ft', 'secondary', '--listen', `127.0.0.1:${o.listenPort ?? 0}`, '--ft-key', o.key, '--disk', o.disk,
    '--serial', `tcp:127.0.0.1:${o.observerPort}`, '--debugcon', 'none', ...FT_TEST_TIMING, ...(o.args ?? []),
  ], o.env, o.wrap);
  const listening = await secondary.waitEvent('ft-listening', 30_000);
  return { secondary, port: listening.port as number };
}

export interface PrimaryOptions {
  state: PostBootState;
  key: string;
  /** HOST:PORT of the secondary (or of a proxy in front of it). */
  peer: string;
  observerPort: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  wrap?: string[];
}

/** A primary that restores the post-boot guest and syncs it to `peer`. */
export function startPrimary(o: PrimaryOptions): FtProcess {
  return new FtProcess('primary', [
    ...o.state.restoreArgs, '--ft', 'primary', '--peer', o.peer, '--ft-key', o.key,
    '--serial', `tcp:127.0.0.1:${o.observerPort}`, '--debugcon', 'none', ...FT_TEST_TIMING, ...(o.args ?? []),
  ], o.env, o.wrap);
}

/** Start a secondary, then a primary that restores the post-boot guest and syncs to it. */
export async function startFtPair(o: FtPairOptions): Promise<FtPair> {
  const state = await postBootState();
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-ft-'));
  const key = makeKeyFile(dir);
  const secondaryDisk = secondaryDiskFor(state, join(dir, 'secondary.img'));
  const { secondary, port } = await startSecondary({
    key, disk: secondaryDisk, observerPort: o.observerPort, args: [...(o.common ?? []), ...(o.secondaryArgs ?? [])], env: o.secondaryEnv, wrap: o.wrap,
  });
  const peer = o.peerFor ? await o.peerFor(port) : `127.0.0.1:${port}`;
  const primary = startPrimary({
    state, key, peer, observerPort: o.observerPort, args: [...(o.common ?? []), ...(o.primaryArgs ?? [])], env: o.primaryEnv, wrap: o.wrap,
  });
  return { primary, secondary, secondaryDisk, key, secondaryPort: port, state, dir, kill: () => { primary.kill(); secondary.kill(); } };
}

/** Wait until the primary is protected and the guest's shell answers on the console. */
export async function protectedShell(primary: FtProcess, observer: ConsoleObserver): Promise<void> {
  await primary.waitEvent('ft-protected', 60_000);
  await observer.waitFor('console connection', 10_000, () => observer.connections[0]);
  observer.type('\n');
  await observer.waitFor('shell prompt', 30_000, () => (/~ # /.test(observer.all) ? true : undefined));
}

// ---- numbered records: the output-commit test's workload ----------------------------------

/**
 * A shell loop printing `REC n now at T nsecs` forever: n counts, T is the guest's
 * nanosecond clock (/proc/timer_list), which a guest replayed from an older state cannot
 * print again. An observer that saw record n must never see a different record n.
 */
export const RECORD_LOOP = "i=0; while :; do i=$((i+1)); echo \"REC $i $(sed -n '/^now at/{p;q}' /proc/timer_list)\"; done\n";

const RECORD = /^REC (\d+) (now at \d+ nsecs)\r?$/gm;

export function records(text: string): { n: number; content: string }[] {
  return [...text.matchAll(RECORD)].map((m) => ({ n: Number(m[1]), content: m[2] }));
}

/**
 * The output-commit properties over everything the observer saw: no record contradicts an
 * earlier one with the same number (duplicates are allowed: at-least-once), and the
 * numbers have no gap. Returns the violations, empty when the run was correct.
 */
export function checkRecords(streams: readonly string[]): string[] {
  const seen = new Map<number, string>();
  const problems: string[] = [];
  let carry = '';
  for (const [i, text] of streams.entries()) {
    // A connection that begins in the middle of a line continues the line the previous one
    // ended in (the new primary resumed mid-record): read them as one.
    let body = text;
    if (carry) {
      const nl = text.indexOf('\n');
      const first = (nl < 0 ? text : text.slice(0, nl)).replace(/\r/g, '');
      if (!/^REC \d+ /.test(first)) body = carry + text;
    }
    for (const r of records(body)) {
      const before = seen.get(r.n);
      if (before !== undefined && before !== r.content) problems.push(`record ${r.n} contradicted on connection ${i}: "${before}" then "${r.content}"`);
      if (before === undefined) seen.set(r.n, r.content);
    }
    carry = body.slice(body.lastIndexOf('\n') + 1).replace(/\r/g, '');
  }
  // A connection that ended in the middle of a record showed its first bytes: they must
  // begin the record of that number wherever it was seen whole.
  for (const [i, text] of streams.entries()) {
    const tail = text.slice(text.lastIndexOf('\n') + 1).replace(/\r/g, '');
    const m = /^REC (\d+) (.+)$/.exec(tail);
    if (!m) continue;
    const whole = seen.get(Number(m[1]));
    if (whole !== undefined && !whole.startsWith(m[2])) problems.push(`record ${m[1]} contradicted: connection ${i} ended with "${tail}", the record is "${whole}"`);
  }
  const numbers = [...seen.keys()].sort((a, b) => a - b);
  for (let k = 1; k < numbers.length; k++) {
    if (numbers[k] !== numbers[k - 1] + 1) problems.push(`gap: record ${numbers[k - 1]} then ${numbers[k]}`);
  }
  return problems;
}
