// Boots the standard Linux test guest (guests/linux, built by build.sh) under
// QEMU's TCG and checks it over the serial console: the reference behaviour
// that ftx86 must later reproduce with the same bzImage and initrd.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerialSession } from './serial-session.ts';
import { readVersions, diskPattern } from './linux-guest.ts';

const guestDir = fileURLToPath(new URL('../linux/', import.meta.url));
const outDir = join(guestDir, 'out');
const prompt = /~ # /;
const diskSize = 1 << 20;


describe('Debian i386 Linux guest under QEMU (TCG)', () => {
  let versions: Record<string, string>;
  let workDir: string;
  let disk: Buffer;
  let guest: SerialSession;

  beforeAll(async () => {
    try {
      await promisify(execFile)('bash', [join(guestDir, 'build.sh')], { maxBuffer: 16 << 20 });
    } catch (error) {
      const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
      throw new Error(`guests/linux/build.sh failed:\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`);
    }
    versions = readVersions(outDir);
  }, 20 * 60_000);

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'ftx86-linux-qemu-'));
    disk = diskPattern(diskSize, 0x9e3779b9);
    writeFileSync(join(workDir, 'disk.img'), disk);
    const args = [
      '-accel', 'tcg', '-M', 'pc', '-m', '128',
      '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
      '-kernel', join(outDir, 'bzImage'),
      '-initrd', join(outDir, 'initrd.cpio.gz'),
      '-append', `${versions.KERNEL_CMDLINE} ftx86.ip=10.0.2.15/24 ftx86.gw=10.0.2.2`,
      '-drive', `file=${join(workDir, 'disk.img')},format=raw,if=virtio`,
      '-nic', 'user,model=virtio-net-pci',
    ];
    const started = Date.now();
    guest = SerialSession.spawn('qemu-system-i386', args, {
      name: 'qemu-system-i386',
      transcriptPath: join(workDir, 'console.log'),
    });
    await guest.expect(/^FTX86-READY$/m, 120_000);
    console.log(`booted to FTX86-READY in ${Date.now() - started} ms (QEMU TCG, wall clock)`);
    await guest.expect(prompt, 30_000);
  }, 180_000);

  afterAll(async () => {
    await guest?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('runs the kernel release that build.sh packaged', async () => {
    const { output, status } = await guest.run('uname -r', 10_000);
    expect(status).toBe(0);
    expect(output.trim()).toBe(versions.KERNEL_RELEASE);
  });

  it('binds virtio_blk to the disk and reads back the pattern the test wrote', async () => {
    const driver = await guest.run('basename "$(readlink /sys/block/vda/device/driver)"', 10_000);
    expect(driver.output.trim()).toBe('virtio_blk');
    const sectors = await guest.run('cat /sys/block/vda/size', 10_000);
    expect(Number(sectors.output.trim())).toBe(diskSize / 512);
    const head = await guest.run('dd if=/dev/vda bs=25 count=1 2>/dev/null', 10_000);
    expect(head.output).toBe('ftx86 virtio-blk pattern\n');
    const sum = await guest.run('md5sum /dev/vda', 20_000);
    expect(sum.status).toBe(0);
    expect(sum.output.split(' ')[0]).toBe(createHash('md5').update(disk).digest('hex'));
  });

  it('configures eth0 from ftx86.ip and reaches the gateway over virtio_net', async () => {
    const address = await guest.run('ip -4 -o addr show dev eth0', 10_000);
    expect(address.output).toContain('inet 10.0.2.15/24');
    const route = await guest.run('ip route show default', 10_000);
    expect(route.output).toContain('default via 10.0.2.2 dev eth0');
    // QEMU's user-mode network answers ARP for its gateway: one frame out, one in.
    const arp = await guest.run('arping -f -c 1 -w 5 -I eth0 10.0.2.2', 10_000);
    expect(arp.output).toMatch(/Received 1 response/);
  });

  it('powers off on poweroff -f and QEMU exits with status 0', async () => {
    guest.sendLine('poweroff -f');
    expect(await guest.waitForExit(30_000)).toEqual({ code: 0, signal: null });
  });
});
