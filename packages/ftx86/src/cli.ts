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
import { readFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import {
  Pc, loadMultiboot, isMultiboot, ImageError, type RunOutcome,
} from '@ftx86/emulator';
import { isBzImage, loadLinux } from '@ftx86/emulator/src/loaders/linux.ts';
import { RawFileBlockBackend } from '@ftx86/emulator/src/block-backend.ts';
import { UdpNetBackend, parseUdpSpec } from '@ftx86/emulator/src/net/udp.ts';
import { TapNetBackend, startTapBridge } from '@ftx86/emulator/src/net/tap.ts';
import type { NetBackend } from '@ftx86/emulator/src/net/backend.ts';

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
  --max-instructions N stop after N guest instructions
  --trace-io PORTS     log port writes, e.g. 0x3f8-0x3ff,0x70 (to stderr)
  --stats              at exit, print guest instructions, time and rate to stderr
  -h, --help           this text

On a terminal, the console is in raw mode: press Ctrl-A then x to quit.

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

function readImage(what: string, path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new UsageError(`${what}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

interface SerialBackend { write(bytes: Uint8Array): void; close(): void }

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
        help: { type: 'boolean', short: 'h' },
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
  let maxInstructions: number | undefined;
  if (v['max-instructions'] !== undefined) {
    maxInstructions = Number(v['max-instructions']);
    if (!Number.isSafeInteger(maxInstructions) || maxInstructions <= 0) throw new UsageError(`--max-instructions: expected a positive integer, got "${v['max-instructions']}"`);
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
  };
}

/** The built-in default guest: a small Multiboot program shipped (built) in guests/. */
export const DEFAULT_GUEST = new URL('../../../guests/hello/hello.bin', import.meta.url);

function openSerial(spec: string, onInput: (b: Uint8Array) => void, onQuit: () => void): SerialBackend {
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
    return { write: (b) => { sock.write(b); }, close: () => sock.destroy() };
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
async function openNet(spec: string): Promise<NetBackend> {
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

export async function run(opts: RunOptions): Promise<number> {
  let serial: SerialBackend | undefined;
  const debugOut = opts.debugcon === 'none' ? undefined : opts.debugcon === 'stdio'
    ? (b: number) => process.stdout.write(Uint8Array.of(b))
    : (() => { const fd = openSync(opts.debugcon.slice(5), 'w'); return (b: number) => { writeSync(fd, Uint8Array.of(b)); }; })();
  let disk: RawFileBlockBackend | undefined;
  if (opts.disk) {
    try {
      disk = new RawFileBlockBackend(opts.disk);
    } catch (e) {
      throw new UsageError(`--disk: ${(e as Error).message}`);
    }
  }
  let net: NetBackend | undefined;
  if (opts.net) net = await openNet(opts.net);
  let bios: Uint8Array | undefined;
  if (opts.bios) {
    if (opts.kernel || opts.initrd) throw new UsageError('--bios: the firmware boots the machine; drop --kernel/--initrd');
    bios = readImage('--bios', opts.bios);
    if (bios.length % 4096 !== 0 || bios.length < 0x10000 || bios.length > 16 << 20) {
      throw new UsageError(`--bios: ${opts.bios}: a ROM image must be a multiple of 4 KiB between 64 KiB and 16 MiB (got ${bios.length} bytes)`);
    }
  }
  const pc = new Pc({
    memoryBytes: opts.memory,
    bios,
    disk,
    net: net ? { backend: net } : undefined,
    clock: opts.clock,
    rtcBaseMs: opts.rtcBaseMs,
    noReboot: opts.noReboot,
    serialOut: [(bytes) => serial?.write(bytes)],
    debugConsole: debugOut,
  });
  const m = pc.machine;
  if (opts.traceIo) {
    const ports = opts.traceIo;
    m.hooks.on('ioportWrite', (port, size, value) => {
      if (ports.has(port)) process.stderr.write(`io: out 0x${port.toString(16)} <- 0x${value.toString(16)} (${size})\n`);
    });
  }
  const kernelPath = opts.kernel ?? (await import('node:url')).fileURLToPath(DEFAULT_GUEST);
  const image = bios ? undefined : readImage('--kernel', kernelPath);
  const initrd = opts.initrd ? readImage('--initrd', opts.initrd) : undefined;
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
  let interrupted = false;
  serial = openSerial(opts.serial, (b) => pc.serialIn(0, b), () => { interrupted = true; m.stop(); });
  const onSigint = () => { interrupted = true; m.stop(); };
  process.on('SIGINT', onSigint);
  let outcome: RunOutcome;
  const started = process.hrtime.bigint();
  try {
    outcome = await m.run(opts.maxInstructions ?? Number.MAX_SAFE_INTEGER);
  } finally {
    if (opts.stats) {
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      const n = m.cpu.instructionCount;
      process.stderr.write(`ftx86: ${n} instructions in ${s.toFixed(3)} s (${(Number(n) / s / 1e6).toFixed(1)} M/s)\n`);
    }
    process.off('SIGINT', onSigint);
    serial.close();
    net?.close();
    disk?.close();
  }
  if (interrupted) return EXIT_INTERRUPTED;
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
      process.stdout.write(HELP + '\n');
      return cmd === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (cmd !== 'run') throw new UsageError(`unknown command "${cmd}" (try: ftx86 run --help)`);
    const opts = parseRunArgs(rest);
    if (opts === 'help') { process.stdout.write(HELP + '\n'); return EXIT_OK; }
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
