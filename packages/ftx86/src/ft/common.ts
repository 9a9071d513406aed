/**
 * What the FT primary and secondary share: options, the state an epoch carries, the state
 * digest verify mode compares, the network announcement a new primary sends, and the
 * test-only fault hooks.
 *
 * A checkpoint of epoch e is, on the wire (packages/ft-trans):
 *   PAGES*        the pages the guest dirtied in e, ascending, copied while it was paused
 *   DEVICE_STATE  a snapshot (emulator snapshot codec, incremental, no RAM) holding the CPU
 *                 bytes, every device's state and META { epoch, instructions, guestIp }
 *   DISK?         the blocks the guest wrote in e, in order
 *   EVENTS?       the outputs it produced in e (held on the primary until ACK e)
 *   COMMIT        how many frames came before it, the output watermark, and in verify
 *                 mode the primary's state digest
 * The full sync that starts FT is the same DEVICE_STATE plus all of RAM and the whole disk
 * as FULL_SYNC_CHUNKs, and the secondary ACKs it like a checkpoint of epoch 0 (or of the
 * epoch the primary continues from, after a re-protect). A running guest that takes a new
 * secondary (re-protect) is synced live: RAM and disk stream while it runs, then a short
 * final pause sends the pages and blocks it changed meanwhile and its device state again.
 */
import { createHash } from 'node:crypto';
import { writeSync } from 'node:fs';
import pino from 'pino';
import type { Pc } from '@ftx86/emulator/src/pc.ts';
import type { Persistent } from '@ftx86/emulator/src/device.ts';
import { pcDeviceEntries } from '@ftx86/emulator/src/vm-state.ts';
import { deviceEntryName, type DeviceEntry } from '@ftx86/emulator/src/snapshot/apply.ts';
import { captureDevices, cpuCacheFields } from '@ftx86/emulator/src/snapshot/machine-state.ts';

export { captureDevices };
import { stateDigest } from '@ftx86/emulator/src/snapshot/state-digest.ts';
import type { PlainValue } from '@ftx86/emulator/src/snapshot/value.ts';
import type { FtLogger } from '@ftx86/ft-trans';

export interface FtOptions {
  role: 'primary' | 'secondary';
  /** Primary: the secondary to connect to. */
  peer?: { host: string; port: number };
  /** Secondary: where to listen (loopback unless told otherwise). */
  listen?: { host: string; port: number };
  keyFile: string;
  /** Wait this long after the first output of an epoch before taking its checkpoint. */
  batchUs: number;
  /** Take a checkpoint at least this often while the guest runs, outputs or not. */
  intervalMs: number;
  /** Checkpoints sent and not yet acknowledged, at most; at the bound the guest waits. */
  maxUnacked: number;
  heartbeatMs: number;
  /** No heartbeat, ACK or frame for this long: the peer is declared lost. */
  timeoutMs: number;
  /** Primary, on losing its peer: hold output until told it is alone, or go on alone (unsafe). */
  peerLoss: 'hold' | 'continue';
  /** Verify mode: send the state digest with every k-th COMMIT (0 = off). */
  verifyEvery: number;
  /** The survivor (a secondary that took over, or a primary told it is alone) protects itself with a new secondary here. */
  reprotect?: { host: string; port: number };
  /** Primary: how long to keep trying to reach the secondary at start. */
  connectTimeoutMs: number;
}

export const FT_DEFAULTS = {
  // 2 ms: a burst of outputs (a TCP window, a line of console output) lands in one epoch,
  // while the added latency stays below one loopback checkpoint round trip.
  batchUs: 2000,
  intervalMs: 100,
  maxUnacked: 4,
  heartbeatMs: 250,
  timeoutMs: 3000,
  connectTimeoutMs: 30_000,
} as const;

export function ftLogger(): pino.Logger {
  return pino({ name: 'ftx86-ft', level: process.env.FTX86_LOG_LEVEL ?? 'info', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}

/** ft-trans logs through this narrow interface; pino satisfies it. */
export function channelLogger(log: pino.Logger): FtLogger {
  return log as unknown as FtLogger;
}

// ---- what a checkpoint captures ----------------------------------------------------------

/**
 * The board's devices as FT carries them: the snapshot entries of vm-state.ts, with the
 * board section replaced by one without the disk's base identity. A state file names the
 * read-only image its overlay sits on; under FT each side has its own writable image and
 * their equality is the protocol's business (full sync, then every write replicated).
 */
export function ftDeviceEntries(pc: Pc): DeviceEntry[] {
  return pcDeviceEntries(pc).map((d) => (deviceEntryName(d) === 'pc-board' ? { name: 'ft-board', device: ftBoardSection(pc) } : d));
}

function ftBoardSection(pc: Pc): Persistent<PlainValue> {
  return {
    stateName: 'ft-board',
    stateVersion: 1,
    saveState: () => ({ serialBacklog: pc.saveSerialBacklog() }),
    loadState(v) {
      const backlog = (v as { serialBacklog?: unknown } | null)?.serialBacklog;
      if (!Array.isArray(backlog) || backlog.length !== pc.uarts.length || !backlog.every((q) => q instanceof Uint8Array && q.length <= 1 << 24)) {
        throw new Error(`ft-board: serialBacklog must be ${pc.uarts.length} byte strings`);
      }
      pc.loadSerialBacklog(backlog as Uint8Array[]);
    },
  };
}

/**
 * The state digest verify mode compares (SHA-256, emulator/snapshot/state-digest.ts):
 * recomputed from RAM, the CPU bytes, every device's state and the disk blocks written
 * since FT began, read back from the image. Under the realtime clock the clock section's
 * elapsedNs is the host time of the moment it is read, which the two sides cannot share,
 * so it is hashed as 0; everything else of the clock (instructions, TSC floor) counts.
 */
export function ftDigest(pc: Pc, devices: readonly { name: string; version: number; state: PlainValue }[], writtenBlocks: ReadonlySet<number>): Buffer {
  const cpu = pc.machine.cpu;
  const blockSize = 512;
  const blockNumbers = [...writtenBlocks].sort((a, b) => a - b);
  const data = new Uint8Array(blockNumbers.length * blockSize);
  const disk = pc.opts.disk;
  if (disk) blockNumbers.forEach((b, i) => disk.read(b * blockSize, data.subarray(i * blockSize, (i + 1) * blockSize)));
  const canonical = devices.map((d) => {
    if (d.name !== 'clock' || pc.machine.clock.mode !== 'realtime') return d;
    return { ...d, state: { ...(d.state as Record<string, PlainValue>), elapsedNs: 0 } };
  });
  const hex = stateDigest({
    cpu: cpu.state.bytes(),
    cpuCacheFields: cpuCacheFields(cpu),
    ram: cpu.ram,
    devices: canonical,
    disks: disk ? [{ name: 'virtio-blk', blockSize, blockNumbers, data }] : [],
  });
  return Buffer.from(hex, 'hex');
}

/** The 512-byte blocks a write at `offset` of `length` bytes touches. */
export function addBlocks(set: Set<number>, offset: number, length: number): void {
  for (let b = Math.floor(offset / 512); b * 512 < offset + length; b++) set.add(b);
}

// ---- the guest's network position ----------------------------------------------------------

export function parseMac(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/**
 * The guest's IPv4 address as its own frames show it (sender of an ARP, source of an IPv4
 * packet from its MAC), or undefined. The primary learns it so the secondary can announce it.
 */
export function snoopGuestIp(frame: Uint8Array, mac: Uint8Array): string | undefined {
  if (frame.length < 34) return undefined;
  for (let i = 0; i < 6; i++) if (frame[6 + i] !== mac[i]) return undefined;
  const type = (frame[12] << 8) | frame[13];
  let at = -1;
  if (type === 0x0806 && frame.length >= 42) at = 28; // ARP sender protocol address
  else if (type === 0x0800 && (frame[14] >> 4) === 4) at = 26; // IPv4 source
  if (at < 0) return undefined;
  const ip = [...frame.subarray(at, at + 4)].join('.');
  return ip === '0.0.0.0' ? undefined : ip;
}

/**
 * Frames that tell the network the guest is now here: a gratuitous ARP request for its IP
 * (RFC 5227's announcement) when it is known, and a RARP broadcast for its MAC either way
 * (what QEMU announces after a migration), so switches learn the new port.
 */
export function announceFrames(mac: Uint8Array, ip: string | undefined): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const build = (ethertype: number, op: number, spa: number[], tpa: number[]) => {
    const f = new Uint8Array(60); // padded to the Ethernet minimum
    f.fill(0xff, 0, 6);
    f.set(mac, 6);
    f[12] = ethertype >> 8; f[13] = ethertype & 0xff;
    f.set([0, 1, 8, 0, 6, 4, 0, op], 14); // Ethernet, IPv4, hlen 6, plen 4, op
    f.set(mac, 22);
    f.set(spa, 28);
    f.set(op === 3 ? mac : [0, 0, 0, 0, 0, 0], 32);
    f.set(tpa, 38);
    return f;
  };
  if (ip) {
    const a = ip.split('.').map(Number);
    frames.push(build(0x0806, 1, a, a));
  }
  frames.push(build(0x8035, 3, [0, 0, 0, 0], [0, 0, 0, 0]));
  return frames;
}

// ---- test-only fault hooks -------------------------------------------------------------------

/**
 * FTX86_TEST_CRASH (tests only; never set it on a VM you care about) kills this process with
 * SIGKILL at a named protocol step, so the fault-injection tests can hit each one exactly:
 *   sync:K          primary, during the full sync, after K bytes of it were sent
 *   pages:E:K       primary, after the first K bytes of the PAGES frame of epoch E
 *   commit:E        primary, right after sending COMMIT E (before its ACK can arrive)
 *   ack:E           primary, after ACK E arrived, before releasing epoch E's outputs
 *   sec-commit:E    secondary, after COMMIT E arrived, before applying it or sending ACK
 * where "epoch E" is the first epoch numbered E or later that holds outputs (so a test can
 * aim at epochs whose outputs an observer is waiting for, whatever the checkpoint rate).
 * FTX86_TEST_CANCEL=E makes the primary send the PAGES of the first epoch >= E holding
 * outputs, then CANCEL it instead of COMMIT; its pages, disk writes and outputs go again
 * with the next epoch (the path a primary takes for an epoch it cannot complete).
 * FTX86_TEST_CORRUPT_SECONDARY=E flips one RAM byte on the secondary after it applies epoch
 * E: the negative control of verify mode.
 * FTX86_TEST_EARLY_RELEASE=1 is the negative control: outputs are released the moment the
 * guest produces them (they are still shipped), which the output-commit test must catch.
 */
export interface CrashPoint { step: 'sync' | 'pages' | 'commit' | 'ack' | 'sec-commit'; epoch: bigint; bytes: number }

export function testCrashPoint(): CrashPoint | undefined {
  const v = process.env.FTX86_TEST_CRASH;
  if (!v) return undefined;
  const m = /^(sync):(\d+)$|^(pages):(\d+):(\d+)$|^(commit|ack|sec-commit):(\d+)$/.exec(v);
  if (!m) throw new Error(`FTX86_TEST_CRASH: cannot read "${v}"`);
  if (m[1]) return { step: 'sync', epoch: 0n, bytes: Number(m[2]) };
  if (m[3]) return { step: 'pages', epoch: BigInt(m[4]), bytes: Number(m[5]) };
  return { step: m[6] as CrashPoint['step'], epoch: BigInt(m[7]), bytes: 0 };
}

/** Whether a crash point aims at this epoch (see above); `hasEvents`: the epoch holds outputs. */
export function crashHits(c: CrashPoint | undefined, step: CrashPoint['step'], epoch: bigint, hasEvents: boolean): boolean {
  return c !== undefined && c.step === step && epoch >= c.epoch && hasEvents;
}

export function testCancelEpoch(): bigint | undefined {
  const v = process.env.FTX86_TEST_CANCEL;
  return v && /^\d+$/.test(v) ? BigInt(v) : undefined;
}

export function testCorruptSecondary(): bigint | undefined {
  const v = process.env.FTX86_TEST_CORRUPT_SECONDARY;
  return v && /^\d+$/.test(v) ? BigInt(v) : undefined;
}

export function testEarlyRelease(): boolean {
  return process.env.FTX86_TEST_EARLY_RELEASE === '1';
}

export function crashNow(log: pino.Logger, what: string): never {
  log.flush();
  // Written directly: pino's buffer would die with the process.
  writeSync(2, `${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, name: 'ftx86-ft', event: 'ft-test-crash', at: what, msg: `FTX86_TEST_CRASH: killing this process at ${what}` })}\n`);
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
