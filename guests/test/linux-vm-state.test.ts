// VM state on the Debian guest, with real processes, sockets and disk images:
// 1. determinism: two boots on the virtual clock (no input) print the same digests at every
//    DIGEST_EVERY instructions, through the shell prompt and on while the shell idles;
// 2. run A (one of those two boots) takes console input and ARP replies from a UDP peer,
//    both logged with --record-input, writes its disk, is saved on SIGUSR1, then writes its
//    disk again; a restored run replaying A's log reaches A's digests (received frames
//    replay bit-identically), and a restored run driven live over the console is
//    interactive, reads what A wrote before the save and none of what A wrote after;
// 3. postBootState() (linux-guest.ts): the booted guest saved once, restored with its NIC.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeVm } from '../../packages/emulator/src/vm-state.ts';
import { SerialSession } from './serial-session.ts';
import {
  FTX86, OUT_DIR, POST_BOOT_DISK, POST_BOOT_GUEST_IP, arpResponder, buildLinuxGuest, diskPattern, freeUdpPort,
  postBootState, readVersions, runFtx86,
} from './linux-guest.ts';

const prompt = /~ # /;
const DISK_BYTES = 4 << 20;
const PEER_MAC = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const PEER_IP = [10, 0, 2, 2];
const GUEST_IP = '10.0.2.15';
const DIGEST_EVERY = 250_000_000;
const VIRTUAL = ['--clock', 'virtual', '--rtc-base', '2024-01-01T00:00:00Z'];
const BOOT_MS = 20 * 60_000;
/** Sectors the tests write: before the save at PRE, after it at PRE again and at POST. */
const PRE_SECTOR = 2048;
const POST_SECTOR = 4096;

/** The "ftx86: digest at instruction N: HEX" lines of a process, as they arrive. */
class DigestLines {
  readonly byCount = new Map<number, string>();
  private text = '';
  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (d: Buffer) => {
      this.text += d.toString('utf8');
      for (const [, n, hex] of this.text.matchAll(/^ftx86: digest at instruction (\d+): ([0-9a-f]{64})$/gm)) this.byCount.set(Number(n), hex);
    });
  }
  get stderr(): string { return this.text; }
  get last(): number { return Math.max(0, ...this.byCount.keys()); }
  /** Waits until a digest at a count above `count` has been printed; returns that count. */
  async after(count: number, timeoutMs: number): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (this.last <= count) {
      if (Date.now() > end) throw new Error(`no digest after instruction ${count} within ${timeoutMs} ms; stderr:\n${this.text.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.last;
  }
}

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sha256File = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('Debian guest: VM state, determinism and restore on ftx86', { timeout: 20 * 60_000 }, () => {
  let workDir: string;
  let diskPath: string;
  let disk: Buffer;
  let diskSha: string;
  let append: string;
  let peer: Socket;
  let a: SerialSession;
  let aDigests: DigestLines;
  let twin: SerialSession;
  let twinDigests: DigestLines;
  const statePath = () => join(workDir, 'a.state');
  const logPath = () => join(workDir, 'a.input.log');
  /** Filled in by the tests in order. */
  let savedAt = 0;
  let lastCount = 0;

  beforeAll(async () => {
    await buildLinuxGuest();
    append = `${readVersions(OUT_DIR).KERNEL_CMDLINE} ftx86.ip=${GUEST_IP}/24`;
    workDir = mkdtempSync(join(tmpdir(), 'ftx86-linux-vmstate-'));
    diskPath = join(workDir, 'disk.img');
    disk = diskPattern(DISK_BYTES, 0x51ed270b);
    writeFileSync(diskPath, disk);
    diskSha = sha256File(diskPath);
    const boot = ['run', '--kernel', join(OUT_DIR, 'bzImage'), '--initrd', join(OUT_DIR, 'initrd.cpio.gz'),
      '--append', append, '--memory', '128M', '--disk', diskPath, ...VIRTUAL, '--serial', 'stdio',
      '--print-digest-every', String(DIGEST_EVERY)];
    const [aPort, peerPort, twinPort, nobody] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
    peer = arpResponder(peerPort, aPort, PEER_IP, PEER_MAC);
    // Both boots at once: on 2 cores that costs what one after the other would.
    a = SerialSession.spawn(FTX86, [...boot, '--net', `udp:${aPort}:127.0.0.1:${peerPort}`,
      '--record-input', logPath(), '--save-state', statePath(), '--save-on', 'SIGUSR1', '--after-save', 'continue',
    ], { name: 'ftx86 A', transcriptPath: join(workDir, 'a.console.log') });
    aDigests = new DigestLines(a.child.stderr!);
    twin = SerialSession.spawn(FTX86, [...boot, '--net', `udp:${twinPort}:127.0.0.1:${nobody}`], { name: 'ftx86 twin' });
    twinDigests = new DigestLines(twin.child.stderr!);
  }, BOOT_MS);

  afterAll(async () => {
    await a?.close();
    await twin?.close();
    peer?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('boots twice on the virtual clock to the same digests, at the shell prompt and on while it idles', async () => {
    const started = Date.now();
    await a.expect(/^FTX86-READY$/m, BOOT_MS);
    await a.expect(prompt, 120_000);
    const atPrompt = aDigests.last;
    console.log(`A: shell prompt after ${Date.now() - started} ms, digest ${atPrompt} last before it`);
    // The shell idles (the CPU in HLT between timer interrupts): two more digests.
    const idle = await aDigests.after(await aDigests.after(atPrompt, 300_000), 300_000);
    const counts = [...aDigests.byCount.keys()].filter((n) => n <= idle);
    await twinDigests.after(idle - 1, BOOT_MS);
    await twin.close();
    expect(counts.length).toBeGreaterThanOrEqual(10);
    expect(counts.filter((n) => n > atPrompt).length).toBeGreaterThanOrEqual(2);
    for (const n of counts) expect(twinDigests.byCount.get(n), `digest at ${n}`).toBe(aDigests.byCount.get(n));
    // A digest is of the whole state: it moves as the guest runs.
    expect(new Set(counts.map((n) => aDigests.byCount.get(n))).size).toBe(counts.length);
  });

  it('logs console input and received frames, and saves on SIGUSR1 after writing its disk', async () => {
    const pre = await a.run(`printf 'ftx86-before-save-%08d' 1 | dd of=/dev/vda bs=512 seek=${PRE_SECTOR} conv=notrunc 2>/dev/null; sync; ` +
      `arping -f -c 1 -w 10 -I eth0 ${PEER_IP.join('.')}`, 300_000);
    expect(pre.output).toMatch(/Received 1 response/);
    a.child.kill('SIGUSR1');
    const end = Date.now() + 120_000;
    let m: RegExpExecArray | null = null;
    while (!(m = /^ftx86: saved the state at instruction (\d+) to \S+a\.state \(\d+ bytes\)$/m.exec(aDigests.stderr)) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(m, aDigests.stderr.slice(-2000)).not.toBeNull();
    savedAt = Number(m![1]);

    // After the save: overwrite what was written before it, write elsewhere, talk to the peer.
    const post = await a.run(`printf 'ftx86-after-save--%08d' 2 | dd of=/dev/vda bs=512 seek=${PRE_SECTOR} conv=notrunc 2>/dev/null; ` +
      `printf 'ftx86-after-save--%08d' 3 | dd of=/dev/vda bs=512 seek=${POST_SECTOR} conv=notrunc 2>/dev/null; sync; ` +
      `arping -f -c 1 -w 10 -I eth0 ${PEER_IP.join('.')} >/dev/null && ` +
      `dd if=/dev/vda bs=512 skip=${PRE_SECTOR} count=1 iflag=direct 2>/dev/null | head -c 26`, 300_000);
    expect(post.output).toBe('ftx86-after-save--00000002');
    lastCount = await aDigests.after(await aDigests.after(aDigests.last, 300_000), 300_000);
    a.child.kill('SIGINT');
    expect((await a.waitForExit(60_000)).code).toBe(130);

    const events = readFileSync(logPath(), 'utf8').split('\n').filter((l) => /^\d/.test(l));
    const counts = events.map((l) => Number(l.split(' ')[0]));
    const frames = events.filter((l) => / net [0-9a-f]+$/.test(l));
    // ARP replies from the peer, before and after the save, each stamped like the typed input.
    expect(frames.filter((l) => Number(l.split(' ')[0]) < savedAt).length).toBeGreaterThanOrEqual(1);
    expect(frames.filter((l) => Number(l.split(' ')[0]) >= savedAt).length).toBeGreaterThanOrEqual(1);
    // To the guest's MAC, from the peer's, an ARP frame: what the NIC received, byte for byte.
    for (const f of frames) expect(f).toMatch(/^\d+ \d+(\.\d+)? net 525400123456525400abcdef0806[0-9a-f]+$/);
    expect(counts).toEqual([...counts].sort((x, y) => x - y));
    expect(Math.max(...counts)).toBeLessThan(lastCount);
    // The saver kept its writes in memory: the image is as the host wrote it.
    expect(sha256File(diskPath)).toBe(diskSha);
  });

  it('a restored run that replays A\'s log (console input and frames) reaches every digest A printed after the save', async () => {
    expect(savedAt).toBeGreaterThan(0);
    const after = [...aDigests.byCount.keys()].filter((n) => n > savedAt);
    expect(after.length).toBeGreaterThanOrEqual(2);
    // No --net: the NIC is unplugged, and the replay delivers the frames A received.
    const b = await runFtx86(['run', '--restore', statePath(), '--disk', diskPath, '--replay-input', logPath(),
      '--serial', 'none', '--max-instructions', String(lastCount), '--print-digest-at', after.join(',')], 15 * 60_000);
    expect(b.code, b.stderr).toBe(0);
    const got = new Map([...b.stderr.matchAll(/^ftx86: digest at instruction (\d+): ([0-9a-f]{64})$/gm)].map(([, n, h]) => [Number(n), h]));
    expect([...got.keys()]).toEqual(after);
    for (const n of after) expect(got.get(n), `digest at ${n}`).toBe(aDigests.byCount.get(n));
  });

  it('the restored guest is interactive: it reads its pre-save writes, and none of A\'s later ones', async () => {
    const b = SerialSession.spawn(FTX86, ['run', '--restore', statePath(), '--disk', diskPath, '--serial', 'stdio'],
      { name: 'ftx86 B', transcriptPath: join(workDir, 'b.console.log') });
    try {
      const sum = await b.run('echo $((6 * 7)); uname -m; cat /proc/sys/kernel/hostname', 120_000);
      expect(sum).toEqual({ output: '42\ni686\nftx86\n', status: 0 });
      const nope = await b.run('ls /nonexistent', 60_000);
      expect(nope.status).not.toBe(0);
      // Straight from the disk (O_DIRECT, page cache dropped), not from what the kernel cached.
      const pre = await b.run(`echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=${PRE_SECTOR} count=1 iflag=direct 2>/dev/null | head -c 26`, 120_000);
      expect(pre.output).toBe('ftx86-before-save-00000001');
      const post = await b.run(`dd if=/dev/vda bs=512 skip=${POST_SECTOR} count=1 iflag=direct 2>/dev/null | md5sum`, 120_000);
      expect(post.output.split(' ')[0]).toBe(md5(disk.subarray(POST_SECTOR * 512, POST_SECTOR * 512 + 512)));
      b.sendLine('poweroff -f');
      expect(await b.waitForExit(120_000)).toEqual({ code: 0, signal: null });
    } finally {
      await b.close();
    }
    expect(sha256File(diskPath)).toBe(diskSha);
  });

  it('postBootState() saves the booted guest once; restored, its shell and NIC work', async () => {
    const started = Date.now();
    const state = await postBootState();
    console.log(`postBootState: ${Date.now() - started} ms (instruction ${state.instructions})`);
    const mtime = statSync(state.statePath).mtimeMs;
    const again = Date.now();
    expect(await postBootState()).toEqual(state);
    expect(Date.now() - again).toBeLessThan(1000);
    expect(statSync(state.statePath).mtimeMs).toBe(mtime);
    expect(statSync(state.diskPath).size).toBe(POST_BOOT_DISK.bytes);

    // Guest time at the save, as the state holds it: the realtime clock goes on from there.
    const saved = decodeVm(readFileSync(state.statePath));
    const clock = saved.state.devices.find((d) => d.name === 'clock')!.state as { elapsedNs: number };
    const guestSecondsAtSave = saved.config.rtcBaseMs / 1000 + clock.elapsedNs / 1e9;
    const [guestPort, peerPort] = [await freeUdpPort(), await freeUdpPort()];
    const arp = arpResponder(peerPort, guestPort, PEER_IP, PEER_MAC);
    const restored = Date.now();
    const b = SerialSession.spawn(FTX86, [...state.restoreArgs, '--net', `udp:${guestPort}:127.0.0.1:${peerPort}`, '--serial', 'stdio'],
      { name: 'ftx86 post-boot', transcriptPath: join(workDir, 'post-boot.console.log') });
    try {
      const addr = await b.run('ip -4 -o addr show dev eth0', 120_000);
      expect(addr.output).toContain(`inet ${POST_BOOT_GUEST_IP}/24`);
      const ping = await b.run(`arping -f -c 1 -w 10 -I eth0 ${PEER_IP.join('.')}`, 120_000);
      expect(ping.output).toMatch(/Received 1 response/);
      const head = await b.run('dd if=/dev/vda bs=25 count=1 2>/dev/null', 60_000);
      expect(head.output).toBe('ftx86 virtio-blk pattern\n');
      // The guest's clocks neither went back nor jumped across the restore: its wall clock
      // (the RTC read at boot, carried on by the kernel's clocksource, TSC or PM timer, both
      // from the machine's time) is the time of the save plus what has passed since.
      const date = Number((await b.run('date +%s', 60_000)).output);
      console.log(`restored guest date - saved guest time = ${(date - guestSecondsAtSave).toFixed(2)} s, ${((Date.now() - restored) / 1000).toFixed(2)} s after the restore began`);
      expect(date).toBeGreaterThanOrEqual(Math.floor(guestSecondsAtSave) - 2);
      expect(date).toBeLessThanOrEqual(guestSecondsAtSave + (Date.now() - restored) / 1000 + 2);
    } finally {
      await b.close();
      arp.close();
    }
  });
});
