// FT pieces that need no guest: the command line, the guest's network announcement, and a
// whole primary/secondary pair on the small default guest (real processes, real sockets).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { announceFrames, parseMac, snoopGuestIp } from '../src/ft/common.ts';
import { parseFtArgs } from '../src/ft/options.ts';
import { bufferSize } from '../src/ft/primary.ts';

const BIN = fileURLToPath(new URL('../../../bin/ftx86', import.meta.url));
const MAC = parseMac('52:54:00:12:34:56');

describe('ftx86 run --ft: options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-ftopt-'));
  const key = join(dir, 'key');
  writeFileSync(key, Buffer.from('0123456789abcdef0123456789abcdef'), { mode: 0o600 });

  it('refuses incomplete and contradictory FT options with one line and exit code 2', () => {
    for (const [args, says] of [
      [['--ft', 'tertiary'], /--ft: expected primary or secondary/],
      [['--ft', 'primary', '--peer', '127.0.0.1:1'], /--ft-key/],
      [['--ft', 'primary', '--ft-key', key], /--peer HOST:PORT/],
      [['--ft', 'secondary', '--ft-key', key], /--listen HOST:PORT/],
      [['--ft', 'secondary', '--ft-key', key, '--listen', '127.0.0.1:0', '--peer', '127.0.0.1:1'], /--peer: only for --ft primary/],
      [['--ft-verify'], /only with --ft/],
      [['--ft', 'primary', '--ft-key', key, '--peer', 'nowhere'], /--peer: expected HOST:PORT/],
      [['--ft', 'primary', '--ft-key', key, '--peer', '127.0.0.1:1', '--ft-peer-loss', 'maybe'], /--ft-peer-loss/],
      [['--ft', 'primary', '--ft-key', key, '--peer', '127.0.0.1:1', '--ft-timeout-ms', '100', '--ft-heartbeat-ms', '200'], /must be longer than the heartbeat/],
      [['--ft', 'primary', '--ft-key', key, '--peer', '127.0.0.1:1', '--save-state', 'x', '--save-at', '5'], /not with --ft/],
      [['--ft', 'secondary', '--ft-key', key, '--listen', '127.0.0.1:0', '--restore', 'x'], /the secondary gets its guest from the primary/],
      [['--ft', 'primary', '--ft-key', join(dir, 'missing'), '--peer', '127.0.0.1:1'], /--ft-key/],
    ] as const) {
      const r = spawnSync(BIN, ['run', ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(says);
    }
  });

  it('reads the defaults documented in --help', () => {
    const o = parseFtArgs({ ft: 'primary', peer: '127.0.0.1:7000', 'ft-key': key })!;
    expect(o).toMatchObject({ role: 'primary', peer: { host: '127.0.0.1', port: 7000 }, batchUs: 2000, maxUnacked: 4, peerLoss: 'hold', verifyEvery: 0 });
    const help = spawnSync(BIN, ['run', '--help'], { encoding: 'utf8' }).stdout;
    for (const opt of ['--ft ROLE', '--listen', '--peer', '--ft-key', '--ft-batch-us', '--ft-peer-loss', '--ft-verify', '--ft-reprotect']) expect(help).toContain(opt);
    expect(help).toMatch(/default 2000/);
  });

  it('a primary with no secondary to reach says so and exits 2 after its connect timeout', () => {
    const r = spawnSync(BIN, ['run', '--ft', 'primary', '--ft-key', key, '--peer', '127.0.0.1:1', '--ft-connect-timeout-ms', '500', '--serial', 'none', '--debugcon', 'none'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/cannot reach the secondary at 127\.0\.0\.1:1/);
  });
});

describe('the guest\'s network position', () => {
  it('learns the guest\'s IP from its own ARP and IPv4 frames only', () => {
    const arp = new Uint8Array(42);
    arp.fill(0xff, 0, 6);
    arp.set(MAC, 6);
    arp.set([0x08, 0x06], 12);
    arp.set([10, 0, 2, 15], 28);
    expect(snoopGuestIp(arp, MAC)).toBe('10.0.2.15');
    const other = arp.slice();
    other[11] ^= 1; // another sender
    expect(snoopGuestIp(other, MAC)).toBeUndefined();
    const ip = new Uint8Array(34);
    ip.set(MAC, 6);
    ip.set([0x08, 0x00, 0x45], 12);
    ip.set([192, 168, 1, 9], 26);
    expect(snoopGuestIp(ip, MAC)).toBe('192.168.1.9');
  });

  it('announces a known IP with a gratuitous ARP request and the MAC with RARP', () => {
    const [garp, rarp] = announceFrames(MAC, '10.0.2.15');
    const g = Buffer.from(garp);
    expect(g.subarray(0, 6).equals(Buffer.alloc(6, 0xff))).toBe(true); // broadcast
    expect(g.subarray(6, 12).equals(Buffer.from(MAC))).toBe(true);
    expect(g.readUInt16BE(12)).toBe(0x0806);
    expect(g.readUInt16BE(20)).toBe(1); // request
    expect([...g.subarray(28, 32)]).toEqual([10, 0, 2, 15]); // sender IP = target IP: gratuitous
    expect([...g.subarray(38, 42)]).toEqual([10, 0, 2, 15]);
    const r = Buffer.from(rarp);
    expect(r.readUInt16BE(12)).toBe(0x8035);
    expect(r.readUInt16BE(20)).toBe(3); // reverse request
    expect(r.subarray(32, 38).equals(Buffer.from(MAC))).toBe(true);
    expect(announceFrames(MAC, undefined).length).toBe(1);
  });
});

describe('an FT pair on the built-in guest', () => {
  it('runs the guest to power-off under FT: its output is released once committed, and the secondary leaves with it', async () => {
    const { spawn } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'ftx86-ftpair-'));
    const key = join(dir, 'key');
    writeFileSync(key, Buffer.from('fedcba9876543210fedcba9876543210'), { mode: 0o600 });
    const run = (args: string[]) => {
      const child = spawn(BIN, ['run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      const out = { stdout: '', stderr: '', code: undefined as number | null | undefined };
      child.stdout.on('data', (d) => { out.stdout += d; });
      child.stderr.on('data', (d) => { out.stderr += d; });
      const done = new Promise<void>((resolve) => child.on('exit', (code) => { out.code = code; resolve(); }));
      return { child, out, done };
    };
    const secondary = run(['--ft', 'secondary', '--ft-key', key, '--listen', '127.0.0.1:0', '--serial', 'file:' + join(dir, 's.txt'), '--debugcon', 'none']);
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(secondary.out.stderr)), 30_000);
      secondary.child.stderr.on('data', () => {
        const m = /"event":"ft-listening"[^\n]*"port":(\d+)/.exec(secondary.out.stderr);
        if (m) { clearTimeout(t); resolve(Number(m[1])); }
      });
    });
    const primary = run(['--ft', 'primary', '--ft-key', key, '--peer', `127.0.0.1:${port}`, '--serial', 'stdio', '--debugcon', 'none', '--ft-verify']);
    await Promise.all([primary.done, secondary.done]);
    expect(primary.out.code, primary.out.stderr).toBe(0);
    expect(primary.out.stdout).toContain('Primes below 50000: 5133');
    expect(secondary.out.code, secondary.out.stderr).toBe(0);
    expect(secondary.out.stderr).toMatch(/"event":"ft-primary-done"/);
    const stats = [...secondary.out.stderr.matchAll(/"event":"ft-secondary-stats"[^\n]*"verified":(\d+),"mismatches":(\d+)/g)].at(-1)!;
    expect(Number(stats[1])).toBeGreaterThan(0);
    expect(Number(stats[2])).toBe(0);
  }, 120_000);
});

describe('checkpoint buffers', () => {
  it('are sized in steps of an eighth of a power of two, so that a slightly larger checkpoint fits the last one\'s buffer', () => {
    const MiB = 1 << 20;
    expect(bufferSize(1)).toBe(MiB);
    expect(bufferSize(MiB)).toBe(MiB);
    for (let pages = 257; pages < 40_000; pages += 37) {
      const bytes = pages * 4096;
      const size = bufferSize(bytes);
      expect(size).toBeGreaterThanOrEqual(bytes);
      expect(size).toBeLessThanOrEqual(bytes * 1.25);
    }
    // 4,596 and 4,632 dirty pages (two checkpoints of a memory workload): one size serves both.
    expect(bufferSize(4596 * 4096)).toBe(20 * MiB);
    expect(bufferSize(4632 * 4096)).toBe(20 * MiB);
  });
});
