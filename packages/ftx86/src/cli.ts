/**
 * ftx86 command line. `ftx86 run ...` boots a guest the way QEMU users expect.
 *
 * Exit codes (distinct ranges so a script can tell them apart):
 *   (v << 1) | 1   the guest wrote v to the debug-exit port 0xF4 (QEMU isa-debug-exit)
 *   0              ACPI power-off, or a reset with --no-reboot
 *   2              bad options, or an unreadable or invalid image
 *   4              the CPU halted with interrupts disabled and nothing can wake it
 *   6              internal emulator error (a bug: please report it)
 *   130            interrupted (Ctrl-A x on the console, or SIGINT)
 */
import { parseArgs } from 'node:util';
import { readFileSync, openSync, writeSync, closeSync, writeFileSync, renameSync, unlinkSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import {
  Pc, loadMultiboot, isMultiboot, ImageError, type RunOutcome,
} from '@ftx86/emulator';
import { isBzImage, loadLinux } from '@ftx86/emulator/src/loaders/linux.ts';
import { RawFileBlockBackend, type BlockBackend } from '@ftx86/emulator/src/block-backend.ts';
import { CowBlockBackend } from '@ftx86/emulator/src/disk-overlay.ts';
import {
  saveVm, decodeVm, restoreVm, digestVmState, pcOptionsFor, type DecodedPcState,
} from '@ftx86/emulator/src/vm-state.ts';
import { SnapshotError, cpuCacheFields, type PlainValue } from '@ftx86/emulator/src/snapshot/index.ts';
import { UdpNetBackend, parseUdpSpec } from '@ftx86/emulator/src/net/udp.ts';
import { TapNetBackend, startTapBridge } from '@ftx86/emulator/src/net/tap.ts';
import type { NetBackend } from '@ftx86/emulator/src/net/backend.ts';
import { EventTap } from '@ftx86/event-tap';
import { FT_HELP, FT_ARG_OPTIONS, parseFtArgs } from './ft/options.ts';
import { testEarlyRelease, type FtOptions } from './ft/common.ts';

export const EXIT_OK = 0;
export const EXIT_USAGE = 2;
export const EXIT_DEAD = 4;
export const EXIT_INTERNAL = 6;
export const EXIT_INTERRUPTED = 130;

export class UsageError extends Error {}

const HELP = `usage: ftx86 run [options]

Boot a guest. Like qemu-system-i386: a Linux bzImage (with --initrd and --append), or a
Multiboot image for small test guests (the built-in default guest when --kernel is absent).

  --kernel FILE        kernel: a Linux bzImage or a Multiboot image
  --initrd FILE        initial ramdisk (Linux)
  --append "ARGS"      kernel command line (Linux; the Multiboot command line otherwise)
  --memory SIZE        guest RAM, e.g. 128M, 1G (default 128M; 2M..3G)
  --disk FILE          raw disk image (virtio-blk)
  --net SPEC           udp:LPORT:RHOST:RPORT | tap:NAME
  --serial SPEC        COM1 backend: stdio (default) | file:PATH | tcp:HOST:PORT | none
  --debugcon SPEC      port 0xE9 console: stdio | file:PATH | none (default: stdio)
  --bios FILE          ROM image mapped at the top of 4 GiB, started at the reset vector
  --no-reboot          exit (code 0) on a guest reset or triple fault instead of rebooting
  --clock MODE         realtime (default) | virtual (time from the instruction counter)
  --rtc-base TIME      RTC start, ISO 8601 or seconds since 1970 (default: now)
  --max-instructions N stop when the guest has retired N instructions
  --save-state FILE    save the whole VM state to FILE at --save-at, or on --save-on
  --save-at N          the guest instruction count to save at (exactly)
  --save-on SIGNAL     SIGUSR1 | SIGUSR2: a control request; each time the process gets
                       SIGNAL, the state is saved at the next instruction boundary (the
                       file is replaced; stderr says at which instruction)
  --after-save MODE    stop (default: exit 0 once saved) | continue (the guest runs on)
  --restore FILE       continue a saved guest: RAM size, clock, RTC base, no-reboot and the
                       devices come from the state (conflicting options are refused);
                       --disk must name the image it was saved against (--bios the ROM,
                       if not where the saver had it), --serial and --net attach anew
                       (without --net a saved NIC has no cable); on a guest reset the
                       saver's kernel is loaded again if it is unchanged
  --print-digest-at N  print the state digest (SHA-256) at guest instruction N to stderr as
                       "ftx86: digest at instruction N: HEX" (repeat, or N,N,...)
  --print-digest-every K  the same at every multiple of K instructions
  --record-input FILE  virtual clock: log each COM1 input and each frame the NIC received
                       with the guest instruction count and guest time it reached the
                       guest at
  --replay-input FILE  virtual clock: deliver a --record-input log at exactly those points
                       (input from the serial and net backends is ignored)
  --trace-io PORTS     log port writes, e.g. 0x3f8-0x3ff,0x70 (to stderr)
  --stats              at exit, print guest instructions, time and rate to stderr
  -h, --help           this text

On a terminal, the console is in raw mode: press Ctrl-A then x to quit.

Instruction counts (--max-instructions, --save-at, --print-digest-at/-every) are the guest's,
counted from power-on, so they carry across a restore. With --save-state, --restore or
a digest option, a --disk image is only read: the guest's writes are kept in memory and
in the saved state (a state names its image by size and SHA-256), so the image still
matches every state saved from it. With --clock virtual and --rtc-base, the same guest and
the same options give the same digests at the same instruction counts. Input typed on
COM1 and frames from the network reach the guest at host-timed points, so a run with input
is reproduced by recording it (--record-input) and replaying the log (--replay-input); a
restored run replays the events from the state's instruction count on. A save on a
control request holds back input that arrives before it is done, so a state saved at
instruction N holds no input logged at N.

Exit codes: (v<<1)|1 when the guest writes v to port 0xF4; 0 on ACPI power-off or a reset
with --no-reboot; 2 bad options or images; 4 the CPU halted with interrupts off for good;
6 internal error; 130 interrupted.`;

export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--memory: cannot read size "${text}" (try 128M or 1G)`);
  const mult = { '': 1024 * 1024, K: 1024, M: 1024 * 1024, G: 1024 * 1024 * 1024 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  const bytes = Number(m[1]) * mult;
  if (bytes < 2 * 1024 * 1024 || bytes > 3 * 1024 * 1024 * 1024) throw new UsageError(`--memory: ${text} is outside 2M..3G`);
  return Math.floor(bytes / 4096) * 4096;
}

export function parsePorts(text: string): Set<number> {
  const set = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^\s*(0x[0-9a-f]+|\d+)(?:\s*-\s*(0x[0-9a-f]+|\d+))?\s*$/i.exec(part);
    if (!m) throw new UsageError(`--trace-io: cannot read port range "${part}"`);
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (lo > hi || hi > 0xffff) throw new UsageError(`--trace-io: bad port range "${part}"`);
    for (let p = lo; p <= hi; p++) set.add(p);
  }
  return set;
}

export function readImage(what: string, path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new UsageError(`${what}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

interface SerialBackend {
  write(bytes: Uint8Array): void;
  close(): void;
  /** Resolves once the backend is connected (tcp), or failed to; at once for the others. */
  ready?: Promise<void>;
}

export interface RunOptions {
  kernel?: string;
  initrd?: string;
  append: string;
  memory: number;
  disk?: string;
  net?: string;
  serial: string;
  debugcon: string;
  bios?: string;
  noReboot: boolean;
  clock: 'virtual' | 'realtime';
  rtcBaseMs?: number;
  maxInstructions?: number;
  traceIo?: Set<number>;
  stats: boolean;
  saveState?: string;
  saveAt?: number;
  /** Save whenever the process receives this signal (a control request). */
  saveOn?: 'SIGUSR1' | 'SIGUSR2';
  afterSave: 'stop' | 'continue';
  restore?: string;
  /** Guest instruction counts to print the state digest at, ascending. */
  printDigestAt: number[];
  /** Also print the digest at every multiple of this many instructions. */
  printDigestEvery?: number;
  recordInput?: string;
  replayInput?: string;
  /** Fault tolerance: this VM is an FT primary or secondary. */
  ft?: FtOptions;
  /** The options given on the command line (a restore refuses those that conflict). */
  given: Set<string>;
}

function parseCount(option: string, text: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${option}: expected a positive integer, got "${text}"`);
  return n;
}

export function parseRunArgs(argv: string[]): RunOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        append: { type: 'string' },
        memory: { type: 'string', short: 'm' },
        disk: { type: 'string' },
        net: { type: 'string' },
        serial: { type: 'string' },
        debugcon: { type: 'string' },
        bios: { type: 'string' },
        'no-reboot': { type: 'boolean' },
        clock: { type: 'string' },
        'rtc-base': { type: 'string' },
        'max-instructions': { type: 'string' },
        'trace-io': { type: 'string' },
        stats: { type: 'boolean' },
        'save-state': { type: 'string' },
        'save-at': { type: 'string' },
        'save-on': { type: 'string' },
        'after-save': { type: 'string' },
        restore: { type: 'string' },
        'print-digest-at': { type: 'string', multiple: true },
        'print-digest-every': { type: 'string' },
        'record-input': { type: 'string' },
        'replay-input': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...FT_ARG_OPTIONS,
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const clock = v.clock ?? 'realtime';
  if (clock !== 'virtual' && clock !== 'realtime') throw new UsageError(`--clock: expected realtime or virtual, got "${clock}"`);
  let rtcBaseMs: number | undefined;
  if (v['rtc-base'] !== undefined) {
    const t = v['rtc-base'];
    rtcBaseMs = /^\d+$/.test(t) ? Number(t) * 1000 : Date.parse(t);
    if (!Number.isFinite(rtcBaseMs)) throw new UsageError(`--rtc-base: cannot read time "${t}"`);
  }
  const maxInstructions = v['max-instructions'] !== undefined ? parseCount('--max-instructions', v['max-instructions']) : undefined;
  const saveAt = v['save-at'] !== undefined ? parseCount('--save-at', v['save-at']) : undefined;
  const saveOn = v['save-on'];
  if (saveOn !== undefined && saveOn !== 'SIGUSR1' && saveOn !== 'SIGUSR2') throw new UsageError(`--save-on: expected SIGUSR1 or SIGUSR2, got "${saveOn}"`);
  if (v['save-state'] !== undefined && saveAt === undefined && saveOn === undefined) throw new UsageError('--save-state: say when with --save-at N or --save-on SIGNAL');
  if (v['save-state'] === undefined && (saveAt !== undefined || saveOn !== undefined)) {
    throw new UsageError(`${saveAt !== undefined ? '--save-at' : '--save-on'}: say where with --save-state FILE`);
  }
  const afterSave = v['after-save'] ?? 'stop';
  if (afterSave !== 'stop' && afterSave !== 'continue') throw new UsageError(`--after-save: expected stop or continue, got "${afterSave}"`);
  if (v['after-save'] !== undefined && v['save-state'] === undefined) throw new UsageError('--after-save: there is no --save-state');
  const printDigestAt = [...new Set((v['print-digest-at'] ?? []).flatMap((t) => t.split(',')).map((t) => parseCount('--print-digest-at', t)))].sort((a, b) => a - b);
  const printDigestEvery = v['print-digest-every'] !== undefined ? parseCount('--print-digest-every', v['print-digest-every']) : undefined;
  if (maxInstructions !== undefined) {
    if (saveAt !== undefined && saveAt > maxInstructions) throw new UsageError(`--save-at: ${saveAt} is past --max-instructions ${maxInstructions}`);
    const late = printDigestAt.find((n) => n > maxInstructions);
    if (late !== undefined) throw new UsageError(`--print-digest-at: ${late} is past --max-instructions ${maxInstructions}`);
  }
  if (v['record-input'] !== undefined && v['replay-input'] !== undefined) throw new UsageError('--record-input: a run cannot record and replay at once');
  if (v.restore !== undefined) {
    // The guest, its RAM and its machine come from the state.
    for (const opt of ['kernel', 'initrd', 'append'] as const) {
      if (v[opt] !== undefined) throw new UsageError(`--${opt}: the guest comes from the state given with --restore`);
    }
  }
  let ft: FtOptions | undefined;
  try {
    ft = parseFtArgs(v);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (ft) {
    const clash = ['save-state', 'print-digest-at', 'print-digest-every', 'record-input', 'replay-input', 'max-instructions']
      .find((k) => v[k as keyof typeof v] !== undefined);
    if (clash) throw new UsageError(`--${clash}: not with --ft (an FT checkpoint is the state; the secondary carries it)`);
    if (ft.role === 'secondary' && v.restore !== undefined) throw new UsageError('--restore: the secondary gets its guest from the primary (give --restore to the primary)');
  }
  const serial = v.serial ?? 'stdio';
  if (!/^(stdio|none|file:.+|tcp:[^:]+:\d+)$/.test(serial)) throw new UsageError(`--serial: expected stdio, none, file:PATH or tcp:HOST:PORT, got "${serial}"`);
  const debugcon = v.debugcon ?? 'stdio';
  if (!/^(stdio|none|file:.+)$/.test(debugcon)) throw new UsageError(`--debugcon: expected stdio, none or file:PATH, got "${debugcon}"`);
  if (v.net !== undefined && !/^(udp:\d+:[^:]+:\d+|tap:[\w.-]+)$/.test(v.net)) throw new UsageError(`--net: expected udp:LPORT:RHOST:RPORT or tap:NAME, got "${v.net}"`);
  return {
    kernel: v.kernel,
    initrd: v.initrd,
    append: v.append ?? '',
    memory: parseSize(v.memory ?? '128M'),
    disk: v.disk,
    net: v.net,
    serial,
    debugcon,
    bios: v.bios,
    noReboot: v['no-reboot'] ?? false,
    clock,
    rtcBaseMs,
    maxInstructions,
    traceIo: v['trace-io'] !== undefined ? parsePorts(v['trace-io']) : undefined,
    stats: v.stats ?? false,
    saveState: v['save-state'],
    saveAt,
    saveOn,
    afterSave,
    restore: v.restore,
    printDigestAt,
    printDigestEvery,
    recordInput: v['record-input'],
    replayInput: v['replay-input'],
    ft,
    given: new Set(Object.keys(v).filter((k) => v[k as keyof typeof v] !== undefined)),
  };
}

/** The built-in default guest: a small Multiboot program shipped (built) in guests/. */
export const DEFAULT_GUEST = new URL('../../../guests/hello/hello.bin', import.meta.url);

export function openSerial(spec: string, onInput: (b: Uint8Array) => void, onQuit: () => void): SerialBackend {
  if (spec === 'none') return { write() {}, close() {} };
  if (spec.startsWith('file:')) {
    const fd = openSync(spec.slice(5), 'w');
    return { write: (b) => { writeSync(fd, b); }, close: () => closeSync(fd) };
  }
  if (spec.startsWith('tcp:')) {
    const [, host, port] = spec.split(':');
    const sock: Socket = createConnection({ host, port: Number(port) });
    sock.on('data', (d) => onInput(new Uint8Array(d)));
    sock.on('error', (e) => { process.stderr.write(`ftx86: serial tcp:${host}:${port}: ${e.message}\n`); });
    const ready = new Promise<void>((resolve) => { sock.once('connect', () => resolve()); sock.once('error', () => resolve()); });
    return { write: (b) => { sock.write(b); }, close: () => sock.destroy(), ready };
  }
  // stdio: raw mode on a terminal so the guest's shell gets every key; Ctrl-A x quits.
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  if (tty) stdin.setRawMode(true);
  let escape = false;
  const onData = (d: Buffer) => {
    if (!tty) { onInput(new Uint8Array(d)); return; }
    const out: number[] = [];
    for (const b of d) {
      if (escape) {
        escape = false;
        if (b === 0x78 /* x */) { onQuit(); return; }
        if (b !== 0x01) out.push(0x01);
        out.push(b);
      } else if (b === 0x01) {
        escape = true;
      } else {
        out.push(b);
      }
    }
    if (out.length) onInput(Uint8Array.from(out));
  };
  stdin.on('data', onData);
  stdin.resume();
  return {
    write: (b) => { process.stdout.write(b); },
    close: () => {
      stdin.off('data', onData);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
    },
  };
}

/**
 * --net udp:LPORT:RHOST:RPORT binds a UDP port on loopback; --net tap:NAME starts a socat
 * bridge to TAP device NAME over two loopback UDP ports (see net/tap.ts for why).
 */
export async function openNet(spec: string): Promise<NetBackend> {
  if (spec.startsWith('udp:')) {
    let b: UdpNetBackend;
    try {
      b = new UdpNetBackend(parseUdpSpec(spec.slice(4)));
      await b.ready;
    } catch (e) {
      throw new UsageError(`--net: ${(e as Error).message}`);
    }
    return b;
  }
  const name = spec.slice(4);
  // Two free loopback ports for the bridge: the kernel picks them.
  const { createSocket } = await import('node:dgram');
  const pick = () => new Promise<number>((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const emulatorPort = await pick();
  const bridgePort = await pick();
  let bridge;
  try {
    bridge = startTapBridge(name, emulatorPort, bridgePort);
  } catch (e) {
    throw new UsageError(`--net: ${(e as Error).message}`);
  }
  const b = new TapNetBackend(bridge, emulatorPort, bridgePort);
  try {
    await b.ready;
  } catch (e) {
    b.close();
    throw new UsageError(`--net: ${(e as Error).message}`);
  }
  return b;
}

/** A file the guest was loaded from, as a saved state records it. */
interface FileRecord { path: string; bytes: number; sha256: string }

/**
 * What a guest was loaded from (META "boot" of a state the CLI saves): with no firmware,
 * the CLI is what loads the kernel on a guest reset, and a restored run must too.
 */
export interface BootRecord { kernel: FileRecord | null; initrd: FileRecord | null; cmdline: string; bios: FileRecord | null }

function fileRecord(path: string, bytes: Uint8Array): FileRecord {
  return { path: resolvePath(path), bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

export function readBootRecord(v: unknown): BootRecord | undefined {
  const file = (f: unknown): FileRecord | null | undefined => {
    if (f === null) return null;
    if (typeof f !== 'object' || f === null) return undefined;
    const { path, bytes, sha256 } = f as Record<string, unknown>;
    return typeof path === 'string' && typeof bytes === 'number' && typeof sha256 === 'string' ? { path, bytes, sha256 } : undefined;
  };
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const kernel = file(r.kernel);
  const initrd = file(r.initrd);
  const bios = file(r.bios);
  if (kernel === undefined || initrd === undefined || bios === undefined || typeof r.cmdline !== 'string') return undefined;
  return { kernel, initrd, cmdline: r.cmdline, bios };
}

/** A recorded file, read again if it still is what was recorded. */
function rereadRecorded(f: FileRecord): Uint8Array | string {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(f.path));
  } catch (e) {
    return `${f.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return sha256 === f.sha256 ? bytes : `${f.path} has changed since the state was saved`;
}

/** The firmware ROM of a restored state: --bios, or the file the saver used, checked. */
function restoredFirmware(opts: RunOptions, saved: DecodedPcState, record: BootRecord | undefined): Uint8Array | undefined {
  const want = saved.config.bios;
  if (!want) {
    if (opts.bios) throw new UsageError(`--bios: the state in ${opts.restore} has no firmware ROM`);
    return undefined;
  }
  const path = opts.bios ?? record?.bios?.path;
  if (path === undefined) throw new UsageError(`--restore ${opts.restore}: the state runs on a firmware ROM; give it with --bios (sha256 ${want.sha256})`);
  const rom = readImage('--bios', path);
  const sha256 = createHash('sha256').update(rom).digest('hex');
  if (sha256 !== want.sha256) throw new UsageError(`--bios ${path}: not the ROM the state was saved with (sha256 ${sha256}, the state's had ${want.sha256})`);
  return rom;
}

/** A guest reset in a restored run: load the kernel the saver loaded, or stop. */
export function rebootFromRecord(pc: Pc, record: BootRecord): void {
  const m = pc.machine;
  const stop = (why: string) => {
    process.stderr.write(`ftx86: the guest reset, and cannot be booted again: ${why}\n`);
    m.requestStop({ kind: 'reset' });
  };
  if (!record.kernel) { stop('the state does not say what it was loaded from'); return; }
  const kernel = rereadRecorded(record.kernel);
  if (typeof kernel === 'string') { stop(kernel); return; }
  const initrd = record.initrd ? rereadRecorded(record.initrd) : undefined;
  if (typeof initrd === 'string') { stop(initrd); return; }
  if (isBzImage(kernel)) loadLinux(m.cpu, kernel, { cmdline: record.cmdline, initrd });
  else loadMultiboot(m.cpu, kernel, record.cmdline);
}

/** Read and check a --restore file; every refusal is one line naming the file. */
function readState(path: string): DecodedPcState {
  let bytes: Uint8Array;
  try {
    // The Buffer itself, not a copy: a state holds all of RAM.
    bytes = readFileSync(path);
  } catch (e) {
    throw new UsageError(`--restore: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return decodeVm(bytes);
  } catch (e) {
    if (e instanceof SnapshotError) throw new UsageError(`--restore ${path}: ${e.message}`);
    throw e;
  }
}

/**
 * The machine options of a restore come from the state; one given on the command line is
 * accepted only if it says the same.
 */
function checkRestoreOptions(opts: RunOptions, saved: DecodedPcState): void {
  const c = saved.config;
  const differ = (option: string, given: string, inState: string) =>
    new UsageError(`${option}: the state in ${opts.restore} was saved with ${inState}, not ${given} (leave ${option} out)`);
  if (opts.given.has('memory') && opts.memory !== c.memoryBytes) throw differ('--memory', `${opts.memory / 1048576}M`, `${c.memoryBytes / 1048576}M`);
  if (opts.given.has('clock') && opts.clock !== c.clock) throw differ('--clock', opts.clock, c.clock);
  if (opts.given.has('rtc-base') && opts.rtcBaseMs !== c.rtcBaseMs) {
    throw differ('--rtc-base', new Date(opts.rtcBaseMs!).toISOString(), new Date(c.rtcBaseMs).toISOString());
  }
  if (opts.given.has('no-reboot') && !c.noReboot) throw differ('--no-reboot', '--no-reboot', 'reboot on a guest reset');
  if (c.disk && !opts.disk) throw new UsageError(`--restore ${opts.restore}: the state has a disk; give --disk with the image it was saved against (${c.disk.bytes} bytes, sha256 ${c.disk.sha256})`);
  if (!c.disk && opts.disk) throw new UsageError(`--disk: the state in ${opts.restore} has no disk`);
  if (!c.net && opts.net) throw new UsageError(`--net: the state in ${opts.restore} has no NIC`);
  const first = [opts.saveAt, ...opts.printDigestAt, opts.maxInstructions].find((n) => n !== undefined && BigInt(n) <= saved.instructions);
  if (first !== undefined) throw new UsageError(`instruction ${first} is not after the restored guest's instruction ${saved.instructions}`);
}

/** A NIC whose cable is out: a restored NIC without --net. */
const unpluggedNet: NetBackend = { send() {}, onFrame() {}, close() {} };

/** Write `bytes` to `path` through a temporary file, so a failed save leaves no half state. */
function writeStateFile(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* it may not exist */ }
    throw new UsageError(`--save-state: cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * One recorded input: bytes typed on COM1, or a frame the NIC received, with the guest
 * instruction count and guest time it reached the guest at.
 */
interface InputEvent { count: bigint; ns: number; kind: 'serial' | 'net'; bytes: Uint8Array }

// A serial line is "COUNT NS HEX" (the first format, still read), a received frame "COUNT NS net HEX".
const INPUT_LOG_HEADER = '# ftx86 input log: instruction-count guest-ns [net] hex-bytes (COM1 input, or a frame received)\n';

function readInputLog(path: string): InputEvent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--replay-input: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const events: InputEvent[] = [];
  text.split('\n').forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const m = /^(\d+) (\S+) (?:(net) )?((?:[0-9a-f]{2})+)$/.exec(line);
    const ns = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(ns) || ns < 0) throw new UsageError(`--replay-input: ${path} line ${i + 1}: expected "COUNT NS HEX" or "COUNT NS net HEX"`);
    const e: InputEvent = { count: BigInt(m[1]), ns, kind: m[3] ? 'net' : 'serial', bytes: Uint8Array.from(Buffer.from(m[4], 'hex')) };
    const last = events[events.length - 1];
    if (last && (e.count < last.count || (e.count === last.count && e.ns < last.ns))) {
      throw new UsageError(`--replay-input: ${path} line ${i + 1}: events must be in the order they happened`);
    }
    events.push(e);
  });
  return events;
}

export async function run(opts: RunOptions): Promise<number> {
  // A --save-on signal that comes while the machine is being built is served at the first
  // instruction boundary (and Node does not take SIGUSR1 to start its inspector).
  let earlySave = false;
  const onEarlySave = () => { earlySave = true; };
  if (opts.saveOn) process.on(opts.saveOn, onEarlySave);
  if (opts.ft?.role === 'secondary') return (await import('./ft/run.ts')).runSecondary(opts, opts.ft);
  let serial: SerialBackend | undefined;
  const saved = opts.restore !== undefined ? readState(opts.restore) : undefined;
  if (saved) checkRestoreOptions(opts, saved);
  const debugOut = opts.debugcon === 'none' ? undefined : opts.debugcon === 'stdio'
    ? (b: number) => process.stdout.write(Uint8Array.of(b))
    : (() => { const fd = openSync(opts.debugcon.slice(5), 'w'); return (b: number) => { writeSync(fd, Uint8Array.of(b)); }; })();
  // A run that saves, restores or digests its state keeps the image read-only under an
  // overlay (disk-overlay.ts): a state must name exactly what its disk holds.
  const overlay = saved !== undefined || opts.saveState !== undefined || opts.printDigestAt.length > 0 || opts.printDigestEvery !== undefined;
  let image: RawFileBlockBackend | undefined;
  let disk: BlockBackend | undefined;
  if (opts.disk) {
    try {
      image = new RawFileBlockBackend(opts.disk, { readOnly: overlay });
      disk = overlay ? new CowBlockBackend(image) : image;
    } catch (e) {
      image?.close();
      throw new UsageError(`--disk: ${(e as Error).message}`);
    }
    const want = saved?.config.disk;
    if (want && disk instanceof CowBlockBackend) {
      const have = disk.base;
      if (have.bytes !== want.bytes || have.sha256 !== want.sha256) {
        image.close();
        throw new UsageError(`--disk ${opts.disk}: not the image the state was saved against (${have.bytes !== want.bytes
          ? `${have.bytes} bytes, the state's image had ${want.bytes}`
          : `sha256 ${have.sha256}, the state's image had ${want.sha256}`})`);
      }
    }
  }
  let net: NetBackend | undefined;
  if (opts.net) net = await openNet(opts.net);
  // Received frames are input: they pass through netInput (below) to be logged, or to be
  // ignored while a log is replayed. Until the run starts, a frame finds no cable.
  let netInput: (frame: Uint8Array) => void = () => {};
  let nicReceive: ((frame: Uint8Array) => void) | undefined;
  const tapped = (inner: NetBackend): NetBackend => ({
    send: (frame) => (tap ? tap.net(frame) : inner.send(frame)),
    onFrame: (fn) => { nicReceive = fn; inner.onFrame((frame) => netInput(frame)); },
    close: () => inner.close(),
  });
  // FT primary: outputs go through the event tap, which holds them until their epoch is
  // committed on the secondary (packages/event-tap).
  const tap = opts.ft
    ? new EventTap({ sinks: { net: (f) => net?.send(f), serial: (port, b) => { if (port === 0) serial?.write(b); } }, releaseEarly: testEarlyRelease() })
    : undefined;
  const netOption = saved
    ? (saved.config.net ? { backend: tapped(net ?? unpluggedNet), mac: saved.config.net.mac } : undefined)
    : (net ? { backend: tapped(net) } : undefined);
  const machineOptions = saved
    ? pcOptionsFor(saved.config)
    : { memoryBytes: opts.memory, clock: opts.clock, rtcBaseMs: opts.rtcBaseMs, noReboot: opts.noReboot };
  const record = saved ? readBootRecord(saved.boot) : undefined;
  let bios: Uint8Array | undefined;
  if (saved) {
    bios = restoredFirmware(opts, saved, record);
  } else if (opts.bios) {
    if (opts.kernel || opts.initrd) throw new UsageError('--bios: the firmware boots the machine; drop --kernel/--initrd');
    bios = readImage('--bios', opts.bios);
    if (bios.length % 4096 !== 0 || bios.length < 0x10000 || bios.length > 16 << 20) {
      throw new UsageError(`--bios: ${opts.bios}: a ROM image must be a multiple of 4 KiB between 64 KiB and 16 MiB (got ${bios.length} bytes)`);
    }
  }
  const pc = new Pc({
    ...machineOptions,
    bios,
    disk,
    net: netOption,
    serialOut: [(bytes) => (tap ? tap.serial(0, bytes) : serial?.write(bytes))],
    debugConsole: debugOut,
  });
  const m = pc.machine;
  if (opts.traceIo) {
    const ports = opts.traceIo;
    m.hooks.on('ioportWrite', (port, size, value) => {
      if (ports.has(port)) process.stderr.write(`io: out 0x${port.toString(16)} <- 0x${value.toString(16)} (${size})\n`);
    });
  }
  /** What the guest is loaded from, kept in a saved state so a restored guest can reboot. */
  let bootRecord: BootRecord;
  if (saved) {
    try {
      restoreVm(pc, saved);
    } catch (e) {
      if (e instanceof SnapshotError) throw new UsageError(`--restore ${opts.restore}: ${e.message}`);
      throw e;
    }
    bootRecord = record ?? { kernel: null, initrd: null, cmdline: '', bios: null };
    // A guest reset in a restored run loads the saver's kernel again, if it is still there.
    if (!bios) m.onReset(() => rebootFromRecord(pc, bootRecord));
  } else {
    const kernelPath = opts.kernel ?? (await import('node:url')).fileURLToPath(DEFAULT_GUEST);
    const image = bios ? undefined : readImage('--kernel', kernelPath);
    const initrd = opts.initrd ? readImage('--initrd', opts.initrd) : undefined;
    bootRecord = {
      kernel: image ? fileRecord(kernelPath, image) : null,
      initrd: initrd ? fileRecord(opts.initrd!, initrd) : null,
      cmdline: opts.append,
      bios: bios ? fileRecord(opts.bios!, bios) : null,
    };
    // With no firmware, what a BIOS would do at power-on and at every reset is ours: load the
    // kernel and enter it (a guest `reboot` comes back here).
    const boot = () => {
      if (!image) return; // --bios: the CPU stays at the reset vector.
      if (isBzImage(image)) {
        loadLinux(m.cpu, image, { cmdline: opts.append, initrd });
      } else if (isMultiboot(image)) {
        if (initrd) throw new UsageError('--initrd: only a Linux kernel takes an initrd');
        loadMultiboot(m.cpu, image, opts.append);
      } else {
        throw new ImageError(`${kernelPath}: not a Multiboot image or a Linux bzImage`);
      }
    };
    try {
      boot();
    } catch (e) {
      if (e instanceof ImageError) throw new UsageError(`--kernel: ${e.message}`);
      throw e;
    }
    m.onReset(boot);
  }

  // The run stops at every instruction count something must happen at: a digest, the
  // save, the end. Machine.run returns 'limit' exactly there, at an instruction boundary.
  const digestAt = new Set(opts.printDigestAt);
  const every = opts.printDigestEvery !== undefined ? BigInt(opts.printDigestEvery) : undefined;
  const points = [...new Set([...opts.printDigestAt, opts.saveAt, opts.maxInstructions].filter((n): n is number => n !== undefined))]
    .sort((a, b) => a - b);
  const cacheFields = cpuCacheFields(m.cpu);
  if ((opts.recordInput || opts.replayInput) && m.clock.mode !== 'virtual') {
    throw new UsageError(`${opts.recordInput ? '--record-input' : '--replay-input'}: needs --clock virtual (input is stamped with guest time)`);
  }
  // A replayed run takes the events from the state's instruction count on: those before it
  // are in the state already (a save at N comes before any input that arrived at N).
  const replay = opts.replayInput ? readInputLog(opts.replayInput).filter((e) => e.count >= m.cpu.instructionCount) : undefined;
  for (const e of replay ?? []) points.push(Number(e.count));
  points.sort((a, b) => a - b);
  if (replay?.some((e) => e.kind === 'net') && !nicReceive) throw new UsageError(`--replay-input: ${opts.replayInput} has received frames, and this machine has no NIC`);
  let recordFd: number | undefined;
  if (opts.recordInput) {
    try {
      recordFd = openSync(opts.recordInput, 'w');
      writeSync(recordFd, INPUT_LOG_HEADER);
    } catch (e) {
      throw new UsageError(`--record-input: cannot write ${opts.recordInput}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  /**
   * A control request (--save-on) stops the run at the next instruction boundary; input
   * that arrives before it is served waits here, so a state saved at instruction N holds
   * no input that the log stamps N (a replay from that state delivers it).
   */
  let controlPending = false;
  let stoppedForControl = false;
  let saveRequested = false;
  const held: (() => void)[] = [];
  const deliver = (kind: InputEvent['kind'], bytes: Uint8Array) => {
    if (kind === 'serial') pc.serialIn(0, bytes);
    else nicReceive?.(bytes);
  };
  const onLiveInput = (kind: InputEvent['kind'], b: Uint8Array) => {
    if (replay) return; // the log is the input
    if (controlPending) { held.push(() => onLiveInput(kind, b)); return; }
    // Input is only taken while run() yields between slices: the count and time are exact.
    if (recordFd !== undefined) {
      writeSync(recordFd, `${m.cpu.instructionCount} ${m.clock.nowNs()} ${kind === 'net' ? 'net ' : ''}${Buffer.from(b).toString('hex')}\n`);
    }
    deliver(kind, b);
  };
  const onInput = (b: Uint8Array) => onLiveInput('serial', b);
  netInput = (frame) => onLiveInput('net', frame);
  /** Deliver the replayed events due at this instruction count, at their guest times. */
  const deliverDue = () => {
    while (replay && replay.length > 0 && replay[0].count === m.cpu.instructionCount) {
      const e = replay.shift()!;
      if (!m.idleUntil(e.ns)) {
        throw new UsageError(`--replay-input: the guest diverged from the recording at instruction ${e.count} (guest time ${m.clock.nowNs()} ns, the input arrived at ${e.ns} ns)`);
      }
      deliver(e.kind, e.bytes);
    }
  };
  let interrupted = false;
  let savedNow = false;
  serial = openSerial(opts.serial, onInput, () => { interrupted = true; m.stop(); });
  const onSigint = () => { interrupted = true; m.stop(); };
  process.on('SIGINT', onSigint);
  const onSaveSignal = () => {
    saveRequested = true;
    controlPending = true;
    stoppedForControl = true;
    m.stop();
  };
  if (opts.saveOn) {
    process.off(opts.saveOn, onEarlySave);
    process.on(opts.saveOn, onSaveSignal);
    if (earlySave) onSaveSignal();
  }
  const save = () => {
    const bytes = saveVm(pc, { boot: bootRecord as unknown as PlainValue });
    writeStateFile(opts.saveState!, bytes);
    process.stderr.write(`ftx86: saved the state at instruction ${m.cpu.instructionCount} to ${opts.saveState} (${bytes.length} bytes)\n`);
    savedNow = true;
  };
  /** Serve a pending control request; false when the run is to end (--after-save stop). */
  const serveControl = (): boolean => {
    if (saveRequested) {
      saveRequested = false;
      save();
      if (opts.afterSave === 'stop') return false;
    }
    controlPending = false;
    for (const take of held.splice(0)) take();
    return true;
  };
  const ftPrimary = opts.ft && tap
    ? await (await import('./ft/run.ts')).startPrimary({ pc, tap, ft: opts.ft, boot: bootRecord as unknown as PlainValue })
    : undefined;
  let outcome: RunOutcome;
  const started = process.hrtime.bigint();
  const startCount = m.cpu.instructionCount;
  try {
    if (!controlPending) deliverDue();
    for (;;) {
      if (ftPrimary) { outcome = await ftPrimary.run(); break; }
      const now = m.cpu.instructionCount;
      let next = points.find((p) => BigInt(p) > now);
      if (every !== undefined) {
        const multiple = Number((now / every + 1n) * every);
        if (next === undefined || multiple < next) next = multiple;
      }
      outcome = await m.run(next === undefined ? Number.MAX_SAFE_INTEGER : BigInt(next) - now);
      if (outcome.kind === 'stopped' && stoppedForControl && !interrupted) {
        // Our own stop (--save-on): serve it and go on.
        stoppedForControl = false;
        if (!serveControl()) break;
        // The stop may have come at a replayed event's instruction count.
        deliverDue();
        continue;
      }
      // A control request that came as the run ended at a point is served before the
      // point's input is delivered (the run's pending stop then returns at once, and is
      // taken as served above).
      if (controlPending && outcome.kind === 'limit' && !serveControl()) break;
      if (outcome.kind !== 'limit' || next === undefined) break;
      const at = m.cpu.instructionCount;
      if (digestAt.has(next) || (every !== undefined && at % every === 0n)) {
        const state = decodeVm(saveVm(pc)).state;
        process.stderr.write(`ftx86: digest at instruction ${at}: ${digestVmState(state, cacheFields)}\n`);
      }
      if (next === opts.saveAt) {
        save();
        if (opts.afterSave === 'stop') break;
      }
      deliverDue();
      if (next === opts.maxInstructions) break;
    }
  } finally {
    if (opts.stats) {
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      const n = m.cpu.instructionCount - startCount;
      process.stderr.write(`ftx86: ${n} instructions in ${s.toFixed(3)} s (${(Number(n) / s / 1e6).toFixed(1)} M/s)\n`);
    }
    process.off('SIGINT', onSigint);
    if (opts.saveOn) process.off(opts.saveOn, onSaveSignal);
    if (recordFd !== undefined) closeSync(recordFd);
    serial.close();
    net?.close();
    image?.close();
  }
  const end = m.cpu.instructionCount;
  // With FTX86_JIT given, say how much the block compiler took (the default stays quiet).
  const jit = m.cpu.jit;
  if (jit && process.env.FTX86_JIT) {
    process.stderr.write(`ftx86: block compiler: ${jit.stats.blocks} blocks compiled in ${jit.stats.modules} modules (${jit.stats.compileMs.toFixed(0)} ms); ` +
      `${jit.retired} of ${end} instructions ran compiled\n`);
  }
  for (const p of points) {
    if (BigInt(p) <= end) continue;
    if (digestAt.has(p)) process.stderr.write(`ftx86: digest at instruction ${p}: not reached (the guest stopped at instruction ${end})\n`);
    if (p === opts.saveAt && !savedNow) process.stderr.write(`ftx86: --save-at ${p}: not reached, no state saved (the guest stopped at instruction ${end})\n`);
  }
  if (interrupted) return EXIT_INTERRUPTED;
  return exitCodeFor(outcome);
}

/** The process exit code for how a guest's run ended. */
export function exitCodeFor(outcome: RunOutcome): number {
  switch (outcome.kind) {
    case 'exit': return outcome.status;
    case 'poweroff': case 'reset': case 'limit': return EXIT_OK;
    case 'dead':
      process.stderr.write('ftx86: the CPU halted with interrupts disabled; nothing can wake it\n');
      return EXIT_DEAD;
    default: return EXIT_OK;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      process.stdout.write(HELP + FT_HELP + '\n');
      return cmd === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (cmd !== 'run') throw new UsageError(`unknown command "${cmd}" (try: ftx86 run --help)`);
    const opts = parseRunArgs(rest);
    if (opts === 'help') { process.stdout.write(HELP + FT_HELP + '\n'); return EXIT_OK; }
    return await run(opts);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ftx86: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`ftx86: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return EXIT_INTERNAL;
  }
}

if (process.argv[1] && /cli\.ts$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
