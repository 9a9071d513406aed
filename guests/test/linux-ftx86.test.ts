// Boots the standard Linux test guest (guests/linux, built by build.sh) on ftx86 with one
// command, `ftx86 run`, and checks it over the serial console the way a user would:
// the same bzImage, initrd and command line as linux-qemu.test.ts runs under QEMU.
// One boot is shared by every check; they run in order.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerialSession } from './serial-session.ts';
import { readVersions, diskPattern, arpResponder, freeUdpPort } from './linux-guest.ts';

const guestDir = fileURLToPath(new URL('../linux/', import.meta.url));
const outDir = join(guestDir, 'out');
const ftx86 = fileURLToPath(new URL('../../bin/ftx86', import.meta.url));
const prompt = /~ # /;
const diskSize = 4 << 20;
const PEER_MAC = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const GUEST_IP = [10, 0, 2, 15];
const PEER_IP = [10, 0, 2, 2];

/** /proc/interrupts as { label: total count }, keyed by the device names in the last column. */
function parseInterrupts(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 3 || !/^\d+:$/.test(cols[0])) continue;
    m.set(`${cols[0]} ${cols.slice(3).join(' ')}`, Number(cols[1]));
  }
  return m;
}

function count(irqs: Map<string, number>, pattern: RegExp): number {
  let n = 0;
  for (const [k, v] of irqs) if (pattern.test(k)) n += v;
  return n;
}

// Guest commands run on an emulated CPU: generous per-test time (the suite's default is 2 min).
describe('Debian i386 Linux guest on ftx86', { timeout: 15 * 60_000 }, () => {
  let versions: Record<string, string>;
  let workDir: string;
  let disk: Buffer;
  let guest: SerialSession;
  let peer: Socket;

  beforeAll(async () => {
    try {
      await promisify(execFile)('bash', [join(guestDir, 'build.sh')], { maxBuffer: 16 << 20 });
    } catch (error) {
      const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
      throw new Error(`guests/linux/build.sh failed:\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`);
    }
    versions = readVersions(outDir);
    workDir = mkdtempSync(join(tmpdir(), 'ftx86-linux-'));
    disk = diskPattern(diskSize, 0x2545f491);
    writeFileSync(join(workDir, 'disk.img'), disk);
    const guestPort = await freeUdpPort();
    const peerPort = await freeUdpPort();
    peer = arpResponder(peerPort, guestPort, PEER_IP, PEER_MAC);
    const started = Date.now();
    guest = SerialSession.spawn(ftx86, [
      'run',
      '--kernel', join(outDir, 'bzImage'),
      '--initrd', join(outDir, 'initrd.cpio.gz'),
      '--append', `${versions.KERNEL_CMDLINE} ftx86.ip=${GUEST_IP.join('.')}/24`,
      '--memory', '128M',
      '--disk', join(workDir, 'disk.img'),
      '--net', `udp:${guestPort}:127.0.0.1:${peerPort}`,
      '--serial', 'stdio',
    ], { name: 'ftx86', transcriptPath: join(workDir, 'console.log') });
    await guest.expect(/^FTX86-READY$/m, 25 * 60_000);
    console.log(`booted to FTX86-READY in ${Date.now() - started} ms (ftx86, wall clock)`);
    await guest.expect(prompt, 60_000);
  }, 30 * 60_000);

  afterAll(async () => {
    await guest?.close();
    peer?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('runs the kernel release that build.sh packaged', async () => {
    const { output, status } = await guest.run('uname -r', 60_000);
    expect(status).toBe(0);
    expect(output.trim()).toBe(versions.KERNEL_RELEASE);
  });

  it('shows the host date through the RTC', async () => {
    const { output } = await guest.run('date +%s', 60_000);
    const guestTime = Number(output.trim());
    // The realtime clock follows the host: within the few minutes the test itself takes.
    expect(Math.abs(guestTime - Date.now() / 1000)).toBeLessThan(600);
  });

  it('shows the CPU ftx86 advertises in /proc/cpuinfo', async () => {
    const { output } = await guest.run('cat /proc/cpuinfo', 60_000);
    expect(output).toMatch(/vendor_id\s*: GenuineIntel/);
    expect(output).toMatch(/cpu family\s*: 6/);
    expect(output).toMatch(/model name\s*: ftx86 i686 virtual CPU/);
    const flags = /flags\s*: (.*)/.exec(output)?.[1].split(' ') ?? [];
    for (const f of ['fpu', 'tsc', 'msr', 'cx8', 'sep', 'cmov', 'pse', 'pge']) expect(flags).toContain(f);
    // Nothing is advertised that ftx86 does not implement.
    for (const f of ['pae', 'apic', 'mmx', 'sse', 'fxsr', 'vme']) expect(flags).not.toContain(f);
  });

  it('computes the md5 of a 4 MiB file the way the host does', async () => {
    const { output, status } = await guest.run('yes abcdefghij | head -c 4194304 > /tmp/f && md5sum /tmp/f', 600_000);
    expect(status).toBe(0);
    const expected = createHash('md5').update('abcdefghij\n'.repeat(400_000).slice(0, 4194304)).digest('hex');
    expect(output.split(' ')[0]).toBe(expected);
  });

  it('binds virtio_blk to the disk and reads back the pattern the host wrote', async () => {
    const driver = await guest.run('basename "$(readlink /sys/block/vda/device/driver)"', 60_000);
    expect(driver.output.trim()).toBe('virtio_blk');
    const head = await guest.run('dd if=/dev/vda bs=25 count=1 2>/dev/null', 60_000);
    expect(head.output).toBe('ftx86 virtio-blk pattern\n');
    const sum = await guest.run('md5sum /dev/vda', 300_000);
    expect(sum.output.split(' ')[0]).toBe(createHash('md5').update(disk).digest('hex'));
  });

  it('sends and receives frames through virtio_net (ARP with the host peer)', async () => {
    const addr = await guest.run('ip -4 -o addr show dev eth0', 60_000);
    expect(addr.output).toContain(`inet ${GUEST_IP.join('.')}/24`);
    const arp = await guest.run(`arping -f -c 1 -w 10 -I eth0 ${PEER_IP.join('.')}`, 120_000);
    expect(arp.output).toMatch(/Received 1 response/);
  });

  it('counts timer, serial, disk and NIC interrupts in /proc/interrupts', async () => {
    const before = parseInterrupts((await guest.run('cat /proc/interrupts', 60_000)).output);
    await guest.run('dd if=/dev/vda of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null; ' +
      `arping -c 2 -w 10 -I eth0 ${PEER_IP.join('.')} >/dev/null`, 120_000);
    const after = parseInterrupts((await guest.run('cat /proc/interrupts', 60_000)).output);
    const grew = (re: RegExp) => count(after, re) - count(before, re);
    expect(grew(/^0: .*timer/)).toBeGreaterThan(0);
    expect(grew(/^4: .*ttyS0/)).toBeGreaterThan(0);
    // The disk and the NIC each have their own line (virtioN on IRQ 10 or 11), and both count.
    const lines = [...after.keys()].filter((k) => /virtio/.test(k));
    expect(lines.length, [...after.keys()].join('\n')).toBe(2);
    for (const line of lines) expect(after.get(line)! - (before.get(line) ?? 0), line).toBeGreaterThan(0);
  });

  it('writes a pattern to the disk with dd that the host finds in the image after poweroff -f (exit code 0)', async () => {
    const w = await guest.run('printf "written-by-the-guest-%08d" 4242 | dd of=/dev/vda bs=512 seek=100 conv=notrunc 2>/dev/null; sync; echo ok', 120_000);
    expect(w.output.trim()).toBe('ok');
    guest.sendLine('poweroff -f');
    expect(await guest.waitForExit(300_000)).toEqual({ code: 0, signal: null });
    const image = readFileSync(join(workDir, 'disk.img'));
    expect(image.subarray(100 * 512, 100 * 512 + 29).toString('latin1')).toBe('written-by-the-guest-00004242');
    // Everything else is as the host wrote it.
    expect(image.subarray(0, 100 * 512).equals(disk.subarray(0, 100 * 512))).toBe(true);
  });
});
