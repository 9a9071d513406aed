/**
 * `ftx86 run --save-state / --restore / --print-digest-at` in real child processes: a
 * restored guest continues exactly as the one that saved it, runs on the virtual clock are
 * reproducible, and bad state files are refused before anything runs.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sealSnapshot } from '@ftx86/emulator/src/snapshot/index.ts';

const path = (p: string) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const BIN = path('bin/ftx86');
const HELLO = path('guests/hello/hello.bin');
const MIX = path('guests/bench/mix.bin');
const TICKS = path('guests/vmstate/ticks.bin');
const VIRTUAL = ['--clock', 'virtual', '--rtc-base', '2024-01-01T00:00:00Z'];

interface Result { code: number | null; stdout: string; stderr: string }

function ftx86(args: string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** The "ftx86: digest at instruction N: HEX" lines of a run, by N. */
function digests(r: Result): Map<number, string> {
  const m = new Map<number, string>();
  for (const [, n, hex] of r.stderr.matchAll(/^ftx86: digest at instruction (\d+): ([0-9a-f]{64})$/gm)) m.set(Number(n), hex);
  return m;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

const dir = mkdtempSync(join(tmpdir(), 'ftx86-vmstate-'));
const DISK = join(dir, 'disk.img');
{
  // 1 MiB of fixed noise: what the ticks guest reads back depends on every byte it sees.
  const d = Buffer.alloc(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < d.length; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; d[i] = x & 0xff; }
  writeFileSync(DISK, d);
}
const DISK_SHA = sha256(DISK);

describe('ftx86 run --clock virtual is reproducible', () => {
  it('two runs of hello.bin give the same digest at each of three instruction counts', async () => {
    const args = ['run', ...VIRTUAL, '--serial', 'none', '--print-digest-at', '1000000,4000000', '--print-digest-at', '9000000'];
    const [a, b] = await Promise.all([ftx86(args), ftx86(args)]);
    expect(a.code, a.stderr).toBe(0);
    expect([...digests(a).keys()]).toEqual([1_000_000, 4_000_000, 9_000_000]);
    expect(digests(b)).toEqual(digests(a));
    expect(new Set(digests(a).values()).size).toBe(3);
  });

  it('two runs of mix.bin give the same digest at each of three instruction counts', async () => {
    const args = ['run', '--kernel', MIX, ...VIRTUAL, '--serial', 'none', '--max-instructions', '15000000', '--print-digest-at', '2000000,8000000,15000000'];
    const [a, b] = await Promise.all([ftx86(args), ftx86(args)]);
    expect(a.code, a.stderr).toBe(0);
    expect(digests(a).size).toBe(3);
    expect(digests(b)).toEqual(digests(a));
  });

  it('two runs of the ticks guest, on timer interrupts and a disk, agree and leave the image as it was', async () => {
    const args = ['run', '--kernel', TICKS, ...VIRTUAL, '--disk', DISK, '--print-digest-at', '40000,100000,170000'];
    const [a, b] = await Promise.all([ftx86(args), ftx86(args)]);
    expect(a.code, a.stderr).toBe(1); // the guest exits through port 0xF4 with status 0
    expect(a.stdout).toMatch(/tick 1000\r\nchecksum [0-9a-f]{8}\r\n$/);
    expect(b.stdout).toBe(a.stdout);
    expect(digests(a).size).toBe(3);
    expect(digests(b)).toEqual(digests(a));
    expect(sha256(DISK)).toBe(DISK_SHA);
  });
});

describe('ftx86 run --record-input / --replay-input', () => {
  it('input typed on COM1 is logged with its instruction count and guest time, and the replay is the same run', async () => {
    const log = join(dir, 'input.log');
    const args = ['run', '--kernel', TICKS, ...VIRTUAL, '--disk', DISK, '--print-digest-at', '100000,170000'];
    const recorded = await ftx86([...args, '--record-input', log], 'typed on the host\n');
    expect(recorded.code, recorded.stderr).toBe(1);
    expect(recorded.stdout).toContain('typed on the host'); // the guest echoes what it reads
    const events = readFileSync(log, 'utf8').split('\n').filter((l) => /^\d/.test(l));
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) expect(e).toMatch(/^\d+ \d+(\.\d+)? ([0-9a-f]{2})+$/);
    // Replayed with nothing on stdin: the same output, the same digests.
    const replayed = await ftx86([...args, '--replay-input', log]);
    expect(replayed.stdout).toBe(recorded.stdout);
    expect(digests(replayed).size).toBe(2);
    expect(digests(replayed)).toEqual(digests(recorded));
  });
});

describe('ftx86 run --save-state and --restore', () => {
  const TICKS_STATE = join(dir, 'ticks.state');
  let ticksA: Result;

  beforeAll(async () => {
    // Saves at 90,000, then keeps running (and writing its disk) to the end.
    ticksA = await ftx86(['run', '--kernel', TICKS, ...VIRTUAL, '--disk', DISK,
      '--save-state', TICKS_STATE, '--save-at', '90000', '--after-save', 'continue', '--print-digest-at', '150000,180000']);
  });

  it('hello.bin: the restored guest prints the rest and reaches the same digest; a save point changes nothing', async () => {
    const state = join(dir, 'hello.state');
    const common = ['run', ...VIRTUAL, '--serial', 'stdio', '--print-digest-at', '8000000'];
    const [a, c] = await Promise.all([
      ftx86([...common, '--save-state', state, '--save-at', '4000000', '--after-save', 'continue']),
      ftx86(common),
    ]);
    expect(a.stderr).toMatch(/^ftx86: saved the state at instruction 4000000 to .*hello\.state \(\d+ bytes\)$/m);
    const b = await ftx86(['run', '--restore', state, '--serial', 'stdio', '--print-digest-at', '8000000']);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toBe('Primes below 50000: 5133\r\nPowering off.\r\n');
    expect(a.stdout.endsWith(b.stdout)).toBe(true);
    expect(digests(b).get(8_000_000)).toMatch(/^[0-9a-f]{64}$/);
    expect(digests(b)).toEqual(digests(a));
    expect(digests(c)).toEqual(digests(a));
  });

  it('mix.bin: saved at 10M and restored in a new process, the digest at 20M is the one the saver reached', async () => {
    const state = join(dir, 'mix.state');
    const a = await ftx86(['run', '--kernel', MIX, ...VIRTUAL, '--serial', 'none', '--max-instructions', '20000000',
      '--save-state', state, '--save-at', '10000000', '--after-save', 'continue', '--print-digest-at', '20000000']);
    const b = await ftx86(['run', '--restore', state, '--serial', 'none', '--max-instructions', '20000000', '--print-digest-at', '20000000']);
    expect(b.code, b.stderr).toBe(0);
    expect(digests(a).size).toBe(1);
    expect(digests(b)).toEqual(digests(a));
  });

  it('the ticks guest with a disk written before and after the save: restored twice, both continue as the saver did', async () => {
    expect(ticksA.code, ticksA.stderr).toBe(1);
    // The saver went on writing its disk after the save; the image is untouched all the
    // same, so the state restores from it, as often as wanted.
    expect(sha256(DISK)).toBe(DISK_SHA);
    const restore = ['run', '--restore', TICKS_STATE, '--disk', DISK, '--print-digest-at', '150000,180000'];
    const [b1, b2] = await Promise.all([ftx86(restore), ftx86(restore)]);
    for (const b of [b1, b2]) {
      expect(b.code, b.stderr).toBe(1);
      expect(digests(b)).toEqual(digests(ticksA));
      expect(ticksA.stdout.endsWith(b.stdout)).toBe(true);
      expect(b.stdout).toMatch(/checksum [0-9a-f]{8}\r\n$/);
    }
    expect(digests(ticksA).size).toBe(2);
  });

  it('--after-save stop writes the state and exits 0 at that instruction', async () => {
    const state = join(dir, 'stopped.state');
    const r = await ftx86(['run', ...VIRTUAL, '--serial', 'stdio', '--save-state', state, '--save-at', '2000000']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Hello from ftx86');
    expect(r.stdout).not.toContain('Primes');
    expect(r.stderr).toMatch(/^ftx86: saved the state at instruction 2000000 to /);
    const b = await ftx86(['run', '--restore', state, '--serial', 'stdio']);
    expect(b.stdout).toBe('Primes below 50000: 5133\r\nPowering off.\r\n');
  });

  it('refuses a bad state file with one specific line and exit code 2, running nothing', async () => {
    const good = readFileSync(TICKS_STATE);
    const file = (name: string, bytes: Uint8Array) => { const p = join(dir, name); writeFileSync(p, bytes); return p; };
    const truncated = file('truncated.state', good.subarray(0, good.length - 4096));
    const flipped = Buffer.from(good); flipped[flipped.length >> 1] ^= 0x01;
    const magic = Buffer.from(good); magic.write('QEMU', 0, 'latin1');
    const newer = Buffer.from(good); newer.writeUInt16LE(2, 8);
    // A section of an unknown type (99, named "foo") before the first one.
    const extra = Buffer.from([99, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x66, 0x6f, 0x6f]);
    const unknown = Buffer.concat([good.subarray(0, 24), extra, good.subarray(24)]);
    unknown.writeUInt32LE(unknown.readUInt32LE(12) + 1, 12);
    unknown.writeUInt32LE(unknown.length, 16);
    sealSnapshot(unknown);
    const otherDisk = join(dir, 'other.img');
    copyFileSync(DISK, otherDisk);
    { const d = readFileSync(otherDisk); d[777] ^= 0xff; writeFileSync(otherDisk, d); }
    const cases: [string[], RegExp][] = [
      [['--restore', truncated, '--disk', DISK], /^ftx86: --restore \S+truncated\.state: snapshot truncated: expected 4096 more bytes at offset \d+/],
      [['--restore', file('flipped.state', flipped), '--disk', DISK], /^ftx86: --restore \S+: snapshot checksum mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}/],
      [['--restore', file('magic.state', magic), '--disk', DISK], /^ftx86: --restore \S+: not an ftx86 snapshot: bad magic 51 45 4d 55 36 56 4d 00 at offset 0/],
      [['--restore', file('newer.state', newer), '--disk', DISK], /^ftx86: --restore \S+: snapshot format version 2 is newer than this build reads \(up to 1\)/],
      [['--restore', file('unknown.state', unknown), '--disk', DISK], /^ftx86: --restore \S+: unknown section type 99 named "foo" at offset 24$/],
      [['--restore', TICKS_STATE, '--disk', otherDisk], /^ftx86: --disk \S+other\.img: not the image the state was saved against \(sha256 [0-9a-f]{64}, the state's image had [0-9a-f]{64}\)$/],
      [['--restore', join(dir, 'missing.state')], /^ftx86: --restore: cannot read \S+missing\.state: ENOENT$/],
    ];
    const results = await Promise.all(cases.map(([args]) => ftx86(['run', ...args])));
    results.forEach((r, i) => {
      const [args, message] = cases[i];
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
      expect(r.stdout, 'the guest must not have run').toBe('');
    });
  });

  it('--save-on SIGUSR1 saves at the next instruction boundary when the signal comes, and the guest runs on', async () => {
    // The realtime clock: the ticks guest takes a second of wall time, long enough to be
    // signalled in the middle. The signal is sent once it has printed its first line.
    const state = join(dir, 'signalled.state');
    const child = spawn(BIN, ['run', '--kernel', TICKS, '--disk', DISK, '--save-state', state, '--save-on', 'SIGUSR1',
      '--after-save', 'continue'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stderr!.on('data', (d) => { stderr += d; });
    child.stdout!.on('data', (d) => {
      stdout += d;
      if (!signalled && /tick 100\r\n/.test(stdout)) { signalled = true; child.kill('SIGUSR1'); }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(1);
    const saved = /^ftx86: saved the state at instruction (\d+) to \S+signalled\.state \(\d+ bytes\)$/m.exec(stderr);
    expect(saved, stderr).not.toBeNull();
    expect(stdout).toMatch(/tick 1000\r\nchecksum [0-9a-f]{8}\r\n$/);
    // The restored guest goes on from the tick it had reached, to the end.
    const b = await ftx86(['run', '--restore', state, '--disk', DISK]);
    expect(b.code, b.stderr).toBe(1);
    const ticks = [...b.stdout.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
    expect(ticks[0]).toBeGreaterThan(100);
    expect(ticks[ticks.length - 1]).toBe(1000);
    expect(b.stdout).toMatch(/checksum [0-9a-f]{8}\r\n$/);
    expect(sha256(DISK)).toBe(DISK_SHA);
  });

  it('refuses a control request it cannot serve and a log of frames for a machine without a NIC', async () => {
    const netLog = join(dir, 'frames.log');
    writeFileSync(netLog, `5 5 net ${'ff'.repeat(6)}${'52'.repeat(6)}0806${'00'.repeat(46)}\n`);
    const cases: [string[], RegExp][] = [
      [['--save-state', join(dir, 'x.state'), '--save-on', 'SIGHUP'], /^ftx86: --save-on: expected SIGUSR1 or SIGUSR2, got "SIGHUP"$/],
      [['--save-on', 'SIGUSR1'], /^ftx86: --save-on: say where with --save-state FILE$/],
      [['--save-state', join(dir, 'x.state')], /^ftx86: --save-state: say when with --save-at N or --save-on SIGNAL$/],
      [['--print-digest-every', '0'], /^ftx86: --print-digest-every: expected a positive integer, got "0"$/],
      [[...VIRTUAL, '--replay-input', netLog], /^ftx86: --replay-input: \S+frames\.log has received frames, and this machine has no NIC$/],
    ];
    const results = await Promise.all(cases.map(([args]) => ftx86(['run', ...args])));
    results.forEach((r, i) => {
      expect(r.code, cases[i][0].join(' ')).toBe(2);
      expect(r.stderr.trim()).toMatch(cases[i][1]);
      expect(r.stdout).toBe('');
    });
  });

  it('refuses options that conflict with the state, saying which', async () => {
    const cases: [string[], RegExp][] = [
      [['--memory', '64M', '--disk', DISK], /^ftx86: --memory: the state in \S+ was saved with 128M, not 64M/],
      [['--clock', 'realtime', '--disk', DISK], /^ftx86: --clock: the state in \S+ was saved with virtual, not realtime/],
      [['--kernel', HELLO, '--disk', DISK], /^ftx86: --kernel: the guest comes from the state given with --restore$/],
      [[], /^ftx86: --restore \S+: the state has a disk; give --disk with the image it was saved against \(1048576 bytes, sha256 [0-9a-f]{64}\)$/],
      [['--disk', DISK, '--net', 'udp:0:127.0.0.1:9'], /^ftx86: --net: the state in \S+ has no NIC$/],
      [['--disk', DISK, '--print-digest-at', '5000'], /^ftx86: instruction 5000 is not after the restored guest's instruction 90000$/],
    ];
    const results = await Promise.all(cases.map(([args]) => ftx86(['run', '--restore', TICKS_STATE, ...args])));
    results.forEach((r, i) => {
      expect(r.code, cases[i][0].join(' ')).toBe(2);
      expect(r.stderr.trim()).toMatch(cases[i][1]);
      expect(r.stdout).toBe('');
    });
  });
});
