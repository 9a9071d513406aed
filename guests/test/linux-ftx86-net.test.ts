// The Debian guest's network on ftx86, end to end with real Linux networking:
// 1. a TAP device inside a network namespace this test makes (the NIC backend is a socat
//    bridge started by `ftx86 run --net tap:NAME`, see packages/emulator/src/net/tap.ts): the
//    host pings the guest and downloads a multi-MB file from busybox httpd in the guest;
// 2. two ftx86 processes whose NICs are joined by the UDP backend: one guest pings the other.
// All traffic stays inside the namespace or on loopback.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerialSession } from './serial-session.ts';

const guestDir = fileURLToPath(new URL('../linux/', import.meta.url));
const outDir = join(guestDir, 'out');
const ftx86 = fileURLToPath(new URL('../../bin/ftx86', import.meta.url));
const prompt = /~ # /;
const BOOT_MS = 25 * 60_000;

function cmdline(): string {
  const v = readFileSync(join(outDir, 'versions.env'), 'utf8');
  return /KERNEL_CMDLINE="?([^"\n]*)"?/.exec(v)?.[1] ?? 'console=ttyS0';
}

function canMakeNamespaces(): boolean {
  if (process.getuid?.() !== 0) return false;
  for (const tool of ['ip', 'socat', 'ping']) if (spawnSync('which', [tool]).status !== 0) return false;
  return true;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const p = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return p;
}

function sh(args: string[]): string {
  return execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const ready = canMakeNamespaces();

describe.skipIf(!ready)('Debian guest networking on ftx86 (TAP in a network namespace, UDP between two VMs)', { timeout: 40 * 60_000 }, () => {
  const ns = `ftx86-t${process.pid}`;
  let workDir: string;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), 'ftx86-net-'));
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  });

  afterAll(() => {
    // Anything left in the namespace (a socat bridge whose emulator was killed) goes with it.
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) spawnSync('kill', ['-9', pid]);
    spawnSync('ip', ['netns', 'delete', ns]);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('answers ping from the host and serves a multi-MB file over TCP with the right checksum', async () => {
    const guest = SerialSession.spawn('ip', [
      'netns', 'exec', ns, ftx86, 'run',
      '--kernel', join(outDir, 'bzImage'), '--initrd', join(outDir, 'initrd.cpio.gz'),
      '--append', `${cmdline()} ftx86.ip=10.0.3.2/24`,
      '--memory', '128M', '--net', 'tap:ftx86tap0', '--serial', 'stdio',
    ], { name: 'ftx86 (tap)', transcriptPath: join(workDir, 'tap-console.log') });
    try {
      // socat creates the TAP device in the namespace; give it the host side's address.
      await waitFor(() => spawnSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'show', 'ftx86tap0']).status === 0, 60_000, 'the TAP device');
      sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', '10.0.3.1/24', 'dev', 'ftx86tap0']);
      sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'ftx86tap0', 'up']);
      await guest.expect(/^FTX86-READY$/m, BOOT_MS);
      await guest.expect(prompt, 60_000);

      const ping = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-W', '20', '10.0.3.2'], { encoding: 'utf8', timeout: 120_000 });
      expect(ping.stdout, ping.stderr).toMatch(/3 received/);

      const made = await guest.run('mkdir -p /www && dd if=/dev/urandom of=/www/blob bs=1024 count=3072 2>/dev/null && md5sum /www/blob && httpd -p 80 -h /www && echo serving', 300_000);
      expect(made.output).toContain('serving');
      const guestSum = made.output.trim().split(/\s+/)[0];
      // The client runs in the namespace too: node's http, counting bytes and hashing them.
      const client = `
        const http = require('http'); const crypto = require('crypto');
        const h = crypto.createHash('md5'); let n = 0;
        http.get('http://10.0.3.2/blob', (res) => {
          res.on('data', (d) => { h.update(d); n += d.length; });
          res.on('end', () => { console.log(res.statusCode, n, h.digest('hex')); });
        }).on('error', (e) => { console.log('error', e.message); process.exitCode = 1; });`;
      const dl = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', client], { encoding: 'utf8', timeout: 900_000 });
      expect(dl.stdout.trim()).toBe(`200 ${3072 * 1024} ${guestSum}`);

      const alive = await guest.run('echo still-here', 120_000);
      expect(alive.output.trim()).toBe('still-here');
      guest.sendLine('poweroff -f');
      expect((await guest.waitForExit(300_000)).code).toBe(0);
    } finally {
      await guest.close();
    }
  }, 40 * 60_000);

  it('carries frames between two ftx86 processes over the UDP backend: the guests ping each other', async () => {
    const pa = await freeUdpPort();
    const pb = await freeUdpPort();
    const boot = (name: string, ip: string, local: number, remote: number) => SerialSession.spawn(ftx86, [
      'run', '--kernel', join(outDir, 'bzImage'), '--initrd', join(outDir, 'initrd.cpio.gz'),
      '--append', `${cmdline()} ftx86.ip=${ip}/24`, '--memory', '96M',
      '--net', `udp:${local}:127.0.0.1:${remote}`, '--serial', 'stdio',
    ], { name, transcriptPath: join(workDir, `${name}.log`) });
    const a = boot('guest-a', '10.0.4.1', pa, pb);
    const b = boot('guest-b', '10.0.4.2', pb, pa);
    try {
      await Promise.all([a.expect(/^FTX86-READY$/m, BOOT_MS * 2), b.expect(/^FTX86-READY$/m, BOOT_MS * 2)]);
      await Promise.all([a.expect(prompt, 60_000), b.expect(prompt, 60_000)]);
      const ping = await a.run('ping -c 3 -W 30 10.0.4.2', 300_000);
      expect(ping.output).toMatch(/3 packets received/);
      a.sendLine('poweroff -f');
      b.sendLine('poweroff -f');
      expect((await a.waitForExit(300_000)).code).toBe(0);
      expect((await b.waitForExit(300_000)).code).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  }, 60 * 60_000);
});
