/**
 * What the Debian guest tests share: the build, its versions file, known disk contents, and
 * a saved state of the booted guest that test files restore instead of booting.
 *
 *   buildLinuxGuest(): Promise<void>
 *       runs guests/linux/build.sh (a no-op when out/ is up to date)
 *   readVersions(outDir): Record<string, string>
 *   diskPattern(size, seed): Buffer
 *   freeUdpPort(): Promise<number>
 *   arpResponder(port, guestPort, peerIp, peerMac): Socket
 *       the far end of a guest's UDP NIC backend that answers ARP requests for peerIp
 *   runFtx86(args, timeoutMs): Promise<{ code, stdout, stderr }>
 *   postBootState(): Promise<PostBootState>
 *       PostBootState = { statePath, diskPath, instructions: bigint, restoreArgs: string[] }
 *       The Debian guest booted once per test run (the first call boots it, about a minute;
 *       later calls, in any test file, return the cached files at once) and saved with
 *       `ftx86 run --save-on SIGUSR1` right after its shell prompt, idle: the realtime
 *       clock, 128 MiB, a 4 MiB virtio-blk disk (POST_BOOT_DISK: diskPattern(4 MiB,
 *       seed)), a virtio-net NIC (MAC 52:54:00:12:34:56, eth0 10.0.2.15/24). Restore it in
 *       a new process with
 *         ftx86 ...restoreArgs [--net udp:LPORT:127.0.0.1:RPORT] --serial stdio
 *       (restoreArgs is `run --restore STATE --disk DISK`; without --net the NIC has no
 *       cable) and type at the `~ # ` prompt (the shell printed it before the save: send a
 *       command, or a bare newline to see a prompt). The files live in
 *       guests/linux/out/post-boot/KEY/ (gitignored), KEY a hash of the kernel, the initrd,
 *       the CPU core (core.wasm), the emulator's and the CLI's sources and the boot options:
 *       any rebuild boots afresh, and removes states more than a day older. The disk image
 *       is read-only: ftx86 keeps a restored guest's writes in memory, so every restore
 *       starts from the same disk.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SerialSession } from './serial-session.ts';

export const GUEST_DIR = fileURLToPath(new URL('../linux/', import.meta.url));
export const OUT_DIR = join(GUEST_DIR, 'out');
export const FTX86 = fileURLToPath(new URL('../../bin/ftx86', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Runs guests/linux/build.sh; it returns at once when out/ is up to date. */
export async function buildLinuxGuest(): Promise<void> {
  try {
    await promisify(execFile)('bash', [join(GUEST_DIR, 'build.sh')], { maxBuffer: 16 << 20 });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`guests/linux/build.sh failed:\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`);
  }
}

/** A UDP port on loopback that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const p = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return p;
}

/** Reads out/versions.env (KEY=VALUE lines, values optionally in double quotes). */
export function readVersions(outDir: string): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const line of readFileSync(join(outDir, 'versions.env'), 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(?:"(.*)"|(.*))$/.exec(line);
    if (match) versions[match[1]] = match[2] ?? match[3];
  }
  return versions;
}

/** A disk whose every byte is known: a text header, then an xorshift32 stream from `seed`. */
export function diskPattern(size: number, seed: number): Buffer {
  const disk = Buffer.alloc(size);
  let state = seed;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    disk[i] = state & 0xff;
  }
  disk.write('ftx86 virtio-blk pattern\n', 0, 'latin1');
  return disk;
}

/**
 * The far end of the guest's UDP network backend: answers ARP requests for `peerIp`, so a
 * guest `arping` sends a frame out and gets one back (NIC interrupts both ways).
 */
export function arpResponder(port: number, guestPort: number, peerIp: readonly number[], peerMac: readonly number[]): Socket {
  const sock = createSocket('udp4');
  sock.on('message', (frame) => {
    const isArpRequest = frame.length >= 42 && frame.readUInt16BE(12) === 0x0806 && frame.readUInt16BE(20) === 1;
    if (!isArpRequest || !frame.subarray(38, 42).equals(Buffer.from(peerIp))) return;
    const reply = Buffer.alloc(60);
    frame.copy(reply, 0, 6, 12); // destination: the requester
    Buffer.from(peerMac).copy(reply, 6);
    reply.writeUInt16BE(0x0806, 12);
    reply.writeUInt16BE(1, 14); reply.writeUInt16BE(0x0800, 16); reply[18] = 6; reply[19] = 4;
    reply.writeUInt16BE(2, 20); // ARP reply
    Buffer.from(peerMac).copy(reply, 22);
    Buffer.from(peerIp).copy(reply, 28);
    frame.copy(reply, 32, 22, 32); // target: sender hardware and protocol address
    sock.send(reply, guestPort, '127.0.0.1');
  });
  sock.bind(port, '127.0.0.1');
  return sock;
}

/** The disk postBootState's guest was saved with: diskPattern(bytes, seed). */
export const POST_BOOT_DISK = { bytes: 4 << 20, seed: 0x6d2b79f5 };
export const POST_BOOT_GUEST_IP = '10.0.2.15';
export const POST_BOOT_MAC = '52:54:00:12:34:56';

export interface PostBootState {
  /** The state file (`ftx86 run --restore`). */
  statePath: string;
  /** The disk image it was saved against: read-only, never write it. */
  diskPath: string;
  /** The guest instruction count of the save. */
  instructions: bigint;
  /** `run --restore STATE --disk DISK`: add --net, --serial and the rest. */
  restoreArgs: string[];
}

const POST_BOOT_MEMORY = '128M';
/** How long a first boot may take on a loaded 2-core machine. */
const POST_BOOT_TIMEOUT_MS = 20 * 60_000;

function hashFiles(h: ReturnType<typeof createHash>, paths: string[]): void {
  for (const p of paths) h.update(p.slice(ROOT.length)).update(readFileSync(p));
}

function tsFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFilesUnder(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The cache key: everything the saved state depends on. */
function postBootKey(append: string): string {
  const h = createHash('sha256');
  hashFiles(h, [
    join(OUT_DIR, 'bzImage'),
    join(OUT_DIR, 'initrd.cpio.gz'),
    join(ROOT, 'packages/emulator/build/core.wasm'),
    ...tsFilesUnder(join(ROOT, 'packages/emulator/src')),
    join(ROOT, 'packages/ftx86/src/cli.ts'),
  ]);
  h.update(JSON.stringify({ append, memory: POST_BOOT_MEMORY, disk: POST_BOOT_DISK, mac: POST_BOOT_MAC }));
  return h.digest('hex').slice(0, 24);
}

let postBoot: Promise<PostBootState> | undefined;

/** See the top of this file. */
export function postBootState(): Promise<PostBootState> {
  postBoot ??= makePostBootState().catch((e) => { postBoot = undefined; throw e; });
  return postBoot;
}

async function makePostBootState(): Promise<PostBootState> {
  await buildLinuxGuest();
  const versions = readVersions(OUT_DIR);
  const append = `${versions.KERNEL_CMDLINE} ftx86.ip=${POST_BOOT_GUEST_IP}/24`;
  const dir = join(OUT_DIR, 'post-boot', postBootKey(append));
  const statePath = join(dir, 'guest.state');
  const diskPath = join(dir, 'disk.img');
  const infoPath = join(dir, 'info.json');
  const result = (): PostBootState => {
    const info = JSON.parse(readFileSync(infoPath, 'utf8')) as { instructions: string };
    return { statePath, diskPath, instructions: BigInt(info.instructions), restoreArgs: ['run', '--restore', statePath, '--disk', diskPath] };
  };
  if (existsSync(infoPath)) return result();
  // Another process (a parallel test run) may be booting it: the one that makes the lock
  // directory boots, the others wait for info.json. A lock older than the boot timeout is
  // left over from a killed run.
  mkdirSync(join(OUT_DIR, 'post-boot'), { recursive: true });
  const lock = `${dir}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(infoPath)) return result();
      let age = 0;
      try { age = Date.now() - statSync(lock).mtimeMs; } catch { continue; }
      if (age > POST_BOOT_TIMEOUT_MS) { rmSync(lock, { recursive: true, force: true }); continue; }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    if (existsSync(infoPath)) return result();
    const work = `${dir}.tmp`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    writeFileSync(join(work, 'disk.img'), diskPattern(POST_BOOT_DISK.bytes, POST_BOOT_DISK.seed));
    chmodSync(join(work, 'disk.img'), 0o444);
    const instructions = await bootAndSave(append, join(work, 'disk.img'), join(work, 'guest.state'));
    writeFileSync(join(work, 'info.json'), `${JSON.stringify({ instructions: String(instructions), append, savedAt: new Date().toISOString() })}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(work, dir);
    // States of older builds (a day old: a test run of another checkout may still use one).
    const parent = join(OUT_DIR, 'post-boot');
    for (const name of readdirSync(parent)) {
      const other = join(parent, name);
      try {
        if (other !== dir && Date.now() - statSync(other).mtimeMs > 24 * 3600_000) rmSync(other, { recursive: true, force: true });
      } catch { /* gone already */ }
    }
    return result();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Boots the guest on the realtime clock and saves it once its shell is idle; returns the save's instruction count. */
async function bootAndSave(append: string, diskPath: string, statePath: string): Promise<bigint> {
  const [lport, rport] = [await freeUdpPort(), await freeUdpPort()];
  const guest = SerialSession.spawn(FTX86, [
    'run',
    '--kernel', join(OUT_DIR, 'bzImage'),
    '--initrd', join(OUT_DIR, 'initrd.cpio.gz'),
    '--append', append,
    '--memory', POST_BOOT_MEMORY,
    '--disk', diskPath,
    '--net', `udp:${lport}:127.0.0.1:${rport}`,
    '--serial', 'stdio',
    '--save-state', statePath,
    '--save-on', 'SIGUSR1',
  ], { name: 'ftx86 (post-boot state)' });
  let stderr = '';
  guest.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
  try {
    await guest.expect(/^FTX86-READY$/m, POST_BOOT_TIMEOUT_MS);
    await guest.expect(/~ # /, 120_000);
    // The shell has printed its prompt and sits in read(): let the last of its output and
    // the kernel's work of bringing eth0 up drain, then save (--after-save stop: exit 0).
    await new Promise((r) => setTimeout(r, 1000));
    guest.child.kill('SIGUSR1');
    const exit = await guest.waitForExit(120_000);
    const saved = /^ftx86: saved the state at instruction (\d+) /m.exec(stderr);
    if (exit.code !== 0 || !saved) throw new Error(`ftx86 did not save the booted guest (exit ${JSON.stringify(exit)}):\n${stderr}\n${guest.tail()}`);
    return BigInt(saved[1]);
  } finally {
    await guest.close();
  }
}

/** Spawns `bin/ftx86 args...` and collects its output (for runs without a console session). */
export function runFtx86(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(FTX86, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}
