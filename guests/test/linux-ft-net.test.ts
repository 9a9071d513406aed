// Fault tolerance and the network, end to end with real Linux networking: the Debian guest
// (restored from the post-boot state) serves a file with busybox httpd to a host client in
// a network namespace this test makes; the primary is SIGKILLed in the middle of the
// download; the secondary takes over the guest's network position and the download
// finishes with the checksum the guest computed. The guest's shell then still answers on
// the secondary's console.
//
// Inside the namespace: a socat bridge between a TAP device (the host side, 10.0.2.2/24)
// and UDP on loopback, and both ftx86 processes with `--net udp:EMU:127.0.0.1:BRIDGE`, so
// the guest's network position is UDP port EMU, which the secondary binds once the primary
// is gone (packages/emulator/src/net/tap.ts). The console observer lives in the test's own
// namespace on a Unix socket; a socat relay in the namespace carries each ftx86's
// `--serial tcp:` connection to it, one connection per VM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OUT_DIR, POST_BOOT_GUEST_IP, arpResponder, freeUdpPort } from './linux-guest.ts';
import { ConsoleObserver, startFtPair, type FtPair, protectedShell } from './ft-harness.ts';

const built = existsSync(join(OUT_DIR, 'bzImage'));

/** Root, the tools, a TUN device and permission to make a namespace. */
function canMakeNamespaces(): boolean {
  if (process.getuid?.() !== 0 || !existsSync('/dev/net/tun')) return false;
  for (const tool of ['ip', 'socat']) if (spawnSync('which', [tool]).status !== 0) return false;
  const probe = `ftx86-probe${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return false;
  spawnSync('ip', ['netns', 'delete', probe]);
  return true;
}

const ready = built && canMakeNamespaces();

// Fixed ports: the namespace is new, nothing else binds in it.
const CONSOLE_RELAY_PORT = 7000;
const EMU_PORT = 7101;
const BRIDGE_PORT = 7102;
const TAP = 'ftft0';
const HOST_IP = '10.0.2.2';
const BLOB_KIB = 3072;

function sh(args: string[]): void {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
}

/** The download, in the namespace: node's http, reporting progress and the final checksum. */
const CLIENT = `
  const http = require('http'); const crypto = require('crypto');
  const h = crypto.createHash('md5'); let n = 0; let shown = 0;
  http.get(process.argv[1], (res) => {
    res.on('data', (d) => { h.update(d); n += d.length; if (n - shown >= 16384) { shown = n; console.log('GOT', n); } });
    res.on('end', () => { console.log('DONE', res.statusCode, n, h.digest('hex')); });
  }).on('error', (e) => { console.log('ERROR', e.message); process.exitCode = 1; });`;

describe.skipIf(!ready)('FT on the Debian guest: a download across failover (TAP in a network namespace)', () => {
  const ns = `ftx86-ft${process.pid}`;
  let dir: string;
  const helpers: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftx86-ft-net-'));
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  });

  afterAll(() => {
    for (const h of helpers) h.kill('SIGKILL');
    // Anything left in the namespace (an ftx86 or socat a failed test left behind) goes with it.
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) spawnSync('kill', ['-9', pid]);
    spawnSync('ip', ['netns', 'delete', ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function inNamespace(args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', () => {});
    helpers.push(child);
    return child;
  }

  async function until(what: string, ms: number, check: () => boolean): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('the primary dies mid-download; the download finishes with the right checksum and the shell still answers', async () => {
    const observerPath = join(dir, 'console.sock');
    const observer = new ConsoleObserver(observerPath);
    await observer.ready;
    inNamespace(['socat', `TCP-LISTEN:${CONSOLE_RELAY_PORT},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${observerPath}`]);
    inNamespace(['socat', `TUN,tun-type=tap,tun-name=${TAP},iff-up,iff-no-pi`, `UDP-DATAGRAM:127.0.0.1:${EMU_PORT},bind=127.0.0.1:${BRIDGE_PORT}`]);
    await until('the TAP device', 10_000, () => spawnSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'show', TAP]).status === 0);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', TAP]);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', TAP, 'up']);

    let pair: FtPair | undefined;
    try {
      pair = await startFtPair({
        observerPort: CONSOLE_RELAY_PORT,
        common: ['--net', `udp:${EMU_PORT}:127.0.0.1:${BRIDGE_PORT}`],
        wrap: ['ip', 'netns', 'exec', ns],
      });
      await protectedShell(pair.primary, observer);
      observer.type(`mkdir -p /www && dd if=/dev/urandom of=/www/blob bs=1024 count=${BLOB_KIB} 2>/dev/null && md5sum /www/blob && httpd -p 80 -h /www && echo SERV""ING\n`);
      const guestSum = await observer.waitFor('the file\'s checksum', 60_000, () => {
        const m = /^([0-9a-f]{32})  \/www\/blob\r?\n(?:.*\n)*?SERVING\r?$/m.exec(observer.all);
        return m?.[1];
      });

      const client = inNamespace([process.execPath, '-e', CLIENT, `http://${POST_BOOT_GUEST_IP}/blob`]);
      let out = '';
      client.stdout!.on('data', (d) => { out += d; });
      const got = () => Math.max(0, ...[...out.matchAll(/^GOT (\d+)$/gm)].map((m) => Number(m[1])));
      const total = BLOB_KIB * 1024;
      await until('a quarter of the download', 120_000, () => got() >= total / 4 || /^(DONE|ERROR)/m.test(out));
      const atKill = got();
      pair.primary.kill('SIGKILL');
      expect(out, 'the download ended before the primary was killed').not.toMatch(/^(DONE|ERROR)/m);

      await pair.primary.waitExit(10_000);
      await pair.secondary.waitEvent('ft-failover', 30_000);
      await pair.secondary.waitEvent('ft-net-attached', 30_000);
      const exit = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => { client.kill('SIGKILL'); }, 150_000);
        client.on('exit', (code) => { clearTimeout(timer); resolve(code); });
      });
      expect(out.trim().split('\n').pop(), out.slice(-500)).toBe(`DONE 200 ${total} ${guestSum}`);
      expect(exit).toBe(0);
      expect(atKill).toBeLessThan(total);

      // The guest's shell answers on the secondary's console.
      expect(observer.connections.length).toBe(2);
      observer.type('echo still-$((40+2))\n');
      await observer.waitFor('the shell on the secondary', 30_000, () => (/^still-42\r?$/m.test(observer.connections[1].text) ? true : undefined));
    } finally {
      pair?.kill();
      observer.close();
    }
  }, 300_000);
});

/** The sequence number of an ICMP echo request in an Ethernet frame, or undefined. */
function echoRequestSeq(frame: Buffer): number | undefined {
  if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 1) return undefined;
  const icmp = 14 + (frame[14] & 0xf) * 4;
  if (frame.length < icmp + 8 || frame[icmp] !== 8) return undefined;
  return frame.readUInt16BE(icmp + 6);
}

/**
 * The guest pings a peer that never answers (ICMP echo requests are its only output) on the
 * UDP backend; `failPrimary` then takes the primary away while it does. Resolves, once the
 * secondary's guest has pinged on for a while, with the sequence numbers the outside saw
 * and the pair's logs; the caller asserts on them and kills the pair.
 */
async function pingAcrossFailover(o: { primaryEnv?: NodeJS.ProcessEnv; failPrimary: (pair: FtPair) => Promise<void> }) {
  const observer = new ConsoleObserver();
  const [guestPort, peerPort] = [await freeUdpPort(), await freeUdpPort()];
  const outside = arpResponder(peerPort, guestPort, [10, 0, 2, 2], [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]);
  const seqs: number[] = [];
  outside.on('message', (frame: Buffer) => { const q = echoRequestSeq(frame); if (q !== undefined) seqs.push(q); });
  const pair = await startFtPair({
    observerPort: await observer.ready,
    common: ['--net', `udp:${guestPort}:127.0.0.1:${peerPort}`],
    primaryEnv: o.primaryEnv,
  });
  const close = () => { pair.kill(); observer.close(); outside.close(); };
  try {
    await pair.primary.waitEvent('ft-protected', 60_000);
    await observer.waitFor('console connection', 10_000, () => observer.connections[0]);
    observer.type('ping -i 0.2 10.0.2.2 >/dev/null 2>&1\n');
    await o.failPrimary(pair);
    const seenBefore = seqs.length;
    const failover = await pair.secondary.waitEvent('ft-failover', 30_000);
    const last = Math.max(...seqs);
    for (const end = Date.now() + 60_000; !seqs.some((q) => q > last + 5);) {
      if (Date.now() > end) throw new Error(`no pings from the secondary's guest: sequence numbers seen ${seqs.join(',')}\n${pair.secondary.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const seen = [...new Set(seqs)].sort((a, b) => a - b);
    const gaps = seen.filter((q, i) => i > 0 && q !== seen[i - 1] + 1).map((q) => `${seen[seen.indexOf(q) - 1]} -> ${q}`);
    return { pair, seqs, seen, gaps, seenBefore, failover, close };
  } catch (e) {
    close();
    throw e;
  }
}

describe.skipIf(!built)('FT on the Debian guest: network output across failover (UDP backend)', () => {
  it('the frames of an epoch the primary had not released when it died are re-released by the secondary: no ping is missing', async () => {
    // The primary dies after the secondary ACKed an epoch holding a ping, before releasing
    // it (the test hook). The outside world must then see every sequence number, from the
    // first on: duplicates are allowed, gaps are not.
    const r = await pingAcrossFailover({
      primaryEnv: { FTX86_TEST_CRASH: 'ack:150' },
      failPrimary: async (pair) => {
        await pair.primary.waitExit(120_000);
        expect(pair.primary.events('ft-test-crash')).toHaveLength(1);
      },
    });
    try {
      expect(r.failover.rereleasedEvents as number).toBeGreaterThan(0);
      expect(r.seenBefore, 'the guest was pinging when the primary died').toBeGreaterThanOrEqual(3);
      expect(r.gaps, `sequence numbers seen: ${r.seqs.join(',')}\n${r.pair.secondary.stderr.slice(-2500)}`).toEqual([]);
      expect(r.seen[0]).toBe(0);
    } finally {
      r.close();
    }
  }, 180_000);

  it('a failover whose network port is still held for a moment waits for it before the guest runs: no ping is missing', async () => {
    // A hung primary (SIGSTOP) holds the guest's UDP port after the secondary declared it
    // dead; it is killed 300 ms into the failover, as an operator or a fencing agent would.
    // The secondary must keep the guest stopped until it has the port: a guest running with
    // the cable out would lose the pings it sends meanwhile.
    const r = await pingAcrossFailover({
      failPrimary: async (pair) => {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        pair.primary.kill('SIGSTOP');
        await pair.secondary.waitEvent('ft-net-busy', 30_000);
        await new Promise((resolve) => setTimeout(resolve, 300));
        pair.primary.kill('SIGKILL');
      },
    });
    try {
      const attached = await r.pair.secondary.waitEvent('ft-net-attached', 30_000);
      expect(attached.time as number, 'the port was taken before the guest ran').toBeLessThanOrEqual(r.failover.time as number);
      expect(r.seenBefore, 'the guest was pinging when the primary hung').toBeGreaterThanOrEqual(3);
      expect(r.gaps, `sequence numbers seen: ${r.seqs.join(',')}\n${r.pair.secondary.stderr.slice(-2500)}`).toEqual([]);
      expect(r.seen[0]).toBe(0);
    } finally {
      r.close();
    }
  }, 180_000);
});
