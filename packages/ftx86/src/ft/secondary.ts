/**
 * The FT secondary: keeps a complete, ready-to-run copy of the primary's VM, one committed
 * epoch behind it, and takes over when the primary is gone (DESIGN.md, Fault tolerance).
 *
 * Frames of epoch e are staged as they arrive, each checked on arrival; COMMIT e applies
 * them all at once (devices and CPU first, all or nothing, then RAM pages and disk blocks,
 * which were checked beforehand and cannot fail) and is answered with ACK e. A partial
 * epoch (the link broke, or CANCEL) is dropped, never half-applied.
 *
 * Outputs of committed epochs are kept until the primary's watermark (on COMMIT and on its
 * heartbeats) says it has released them. At failover the secondary opens the serial and
 * network backends it was given (the primary's network position: the same UDP port, or a
 * TAP on the same bridge), re-releases the kept outputs in order (at least once: the
 * primary may have released some of them already), announces the guest's MAC and IP, and
 * runs the guest as an FT primary that is alone (or re-protected with --ft-reprotect).
 */
import type { BlockBackend } from '@ftx86/emulator/src/block-backend.ts';
import { Pc } from '@ftx86/emulator/src/pc.ts';
import type { NetBackend } from '@ftx86/emulator/src/net/backend.ts';
import type { RunOutcome } from '@ftx86/emulator/src/machine.ts';
import { decodeSnapshot, type VmState } from '@ftx86/emulator/src/snapshot/codec.ts';
import { applyState, type DeviceEntry } from '@ftx86/emulator/src/snapshot/apply.ts';
import { machineTarget } from '@ftx86/emulator/src/snapshot/machine-state.ts';
import type { PlainValue } from '@ftx86/emulator/src/snapshot/value.ts';
import { EventTap, EventKind, type HeldEvent } from '@ftx86/event-tap';
import {
  listen, loadKeyFile, MessageType, Role, SyncSection, ProtocolError, decodeCancel, decodeCommit, decodeDisk, decodeEvents,
  decodeFullSyncBegin, decodeFullSyncChunk, decodeFullSyncEnd, decodePages, messageTypeName,
  type DiskExtent, type FtChannel, type FtListener, type Frame,
} from '@ftx86/ft-trans';
import type pino from 'pino';
import {
  addBlocks, announceFrames, captureDevices, channelLogger, crashHits, crashNow, testCorruptSecondary, ftDeviceEntries, ftDigest, parseMac,
  testCrashPoint, type FtOptions,
} from './common.ts';
import { FtPrimary } from './primary.ts';

const PAGE = 4096;

/** What the CLI gives the secondary: how to open backends at failover, and how to boot on a reset. */
export interface SecondaryHost {
  /** The COM1 backend (opened only at failover). */
  openSerial(onInput: (b: Uint8Array) => void): { write(b: Uint8Array): void; close(): void; ready?: Promise<void> };
  /** The network backend, or undefined with no --net (opened only at failover). */
  openNet: (() => Promise<NetBackend>) | undefined;
  /** Install what a guest reset does (load the kernel the primary was booted from). */
  onReset(pc: Pc, boot: PlainValue | undefined): void;
  debugConsole: ((b: number) => void) | undefined;
  /** --memory given on the command line: the primary must agree. */
  memoryBytes: number | undefined;
}

interface Staged {
  epoch: bigint;
  frames: number;
  pages: { numbers: Uint32Array; data: Buffer }[];
  device: VmState | undefined;
  disk: DiskExtent[];
  events: HeldEvent[];
}

interface Sync {
  epoch: bigint;
  ramBytes: number;
  diskBytes: number;
  /** A device state arrived (the first builds the machine). */
  deviceSeen: boolean;
  received: number;
  chunks: number;
}

interface FtConfig {
  memoryBytes: number;
  clock: 'virtual' | 'realtime';
  rtcBaseMs: number;
  noReboot: boolean;
  net: { mac: string } | null;
  diskBytes: number | null;
}

export class FtSecondary {
  private listener: FtListener | undefined;
  private channel: FtChannel | undefined;
  private pc: Pc | undefined;
  private config: FtConfig | undefined;
  private tap: EventTap | undefined;
  /** The board's device sections, made with the board. */
  private entries: DeviceEntry[] | undefined;
  private boot: PlainValue | undefined;
  /** The last committed epoch; undefined while there is no complete state to run. */
  private committed: bigint | undefined;
  /** The epoch the next state frames belong to: committed + 1, or later after a CANCEL. */
  private next = 0n;
  private staged: Staged | undefined;
  private sync: Sync | undefined;
  /** Outputs of committed epochs the primary may not have released yet, oldest first. */
  private kept: { epoch: bigint; events: HeldEvent[] }[] = [];
  private watermark = 0n;
  private writtenBlocks = new Set<number>();
  private guestIp: string | undefined;
  private verifyMismatches = 0;
  private verified = 0;
  private commits = 0;
  private corruptAt = testCorruptSecondary();
  private readonly crash = testCrashPoint();
  private failoverStarted: number | undefined;
  private takeover: ((why: string) => void) | undefined;
  private finished: ((code: number) => void) | undefined;
  private serialSink: ((b: Uint8Array) => void) | undefined;
  private netSink: NetBackend | undefined;
  private netReceiver: ((frame: Uint8Array) => void) | undefined;
  private done = false;

  constructor(
    private readonly ft: FtOptions,
    private readonly disk: BlockBackend | undefined,
    private readonly host: SecondaryHost,
    private readonly log: pino.Logger,
  ) {}

  /** Listen, mirror the primary, and take over when it dies. Resolves with the exit code. */
  async run(): Promise<{ outcome: RunOutcome | undefined; code: number }> {
    const key = loadKeyFile(this.ft.keyFile);
    const where = this.ft.listen!;
    this.listener = await listen({
      host: where.host,
      port: where.port,
      key,
      logger: channelLogger(this.log),
      local: { role: Role.SECONDARY, memorySize: this.host.memoryBytes ?? 0, diskSize: this.disk?.size ?? 0, node: `secondary-${process.pid}` },
      heartbeatIntervalMs: this.ft.heartbeatMs,
      peerTimeoutMs: this.ft.timeoutMs,
      onChannel: (ch) => this.onChannel(ch),
    });
    this.log.info({ event: 'ft-listening', host: this.listener.host, port: this.listener.port }, `FT: secondary listening on ${this.listener.host}:${this.listener.port}`);
    const stats = setInterval(() => this.logStats(), 10_000);
    stats.unref();
    const why = await new Promise<string | number>((resolve) => {
      this.takeover = resolve;
      this.finished = resolve;
    });
    clearInterval(stats);
    this.logStats();
    await this.listener.close();
    if (typeof why === 'number') return { outcome: undefined, code: why };
    return this.failover(why);
  }

  private onChannel(ch: FtChannel): void {
    if (this.channel) {
      this.log.warn({ event: 'ft-second-primary', remote: ch.remote }, `FT: refused a second primary from ${ch.remote} while ${this.channel.remote} is connected`);
      ch.destroy(new ProtocolError('UNEXPECTED', 'this secondary already has a primary'));
      return;
    }
    this.channel = ch;
    this.log.info({ event: 'ft-primary-connected', remote: ch.remote }, `FT: primary ${ch.remote} connected`);
    ch.on('frame', (f) => {
      try {
        this.onFrame(ch, f);
      } catch (e) {
        // A frame that does not fit the protocol ends the link; nothing of its epoch was applied.
        this.log.error({ event: 'ft-frame-refused', type: messageTypeName(f.type), epoch: f.epoch }, (e as Error).message);
        this.staged = undefined;
        ch.destroy(e as Error);
      }
    });
    ch.on('heartbeat', (f) => this.advanceWatermark(f.epoch));
    ch.on('error', () => {});
    ch.on('bye', (reason) => {
      if (reason.startsWith('guest-stopped')) {
        this.log.info({ event: 'ft-primary-done', reason }, `FT: the primary's guest stopped (${reason}); nothing to take over`);
        this.finished?.(0);
      }
    });
    ch.on('close', (err) => {
      if (this.channel !== ch) return;
      this.channel = undefined;
      this.staged = undefined;
      if (err === null) return; // orderly: handled on 'bye'
      if (this.sync) {
        this.log.warn({ event: 'ft-sync-lost' }, 'FT: the primary went away during the full sync; waiting for a primary');
        this.sync = undefined;
        this.committed = undefined;
        return;
      }
      if (this.committed === undefined) {
        this.log.warn({ event: 'ft-no-state' }, 'FT: the primary went away before any state was committed; waiting for a primary');
        return;
      }
      this.failoverStarted = performance.now();
      this.takeover?.(err.message);
    });
  }

  private onFrame(ch: FtChannel, f: Frame): void {
    switch (f.type) {
      case MessageType.FULL_SYNC_BEGIN: return this.syncBegin(f);
      case MessageType.FULL_SYNC_CHUNK: return this.syncChunk(f);
      case MessageType.FULL_SYNC_END: return this.syncEnd(ch, f);
      case MessageType.PAGES: case MessageType.DEVICE_STATE: case MessageType.DISK: case MessageType.EVENTS:
        return this.stage(f);
      case MessageType.COMMIT: return this.commit(ch, f);
      case MessageType.CANCEL: {
        const why = decodeCancel(f.payload);
        if (this.committed === undefined || f.epoch !== this.next) throw new ProtocolError('UNEXPECTED', `CANCEL of epoch ${f.epoch}; the next epoch is ${this.next}`);
        // The epoch is void: what it carried comes again with the next one.
        this.staged = undefined;
        this.next = f.epoch + 1n;
        this.log.warn({ event: 'ft-cancel', epoch: f.epoch, why }, `FT: the primary cancelled epoch ${f.epoch}: ${why}`);
        return;
      }
      default:
        throw new ProtocolError('UNEXPECTED', `${messageTypeName(f.type)} has no business on a secondary`);
    }
  }

  // ---- full sync ---------------------------------------------------------------------------

  private syncBegin(f: Frame): void {
    const b = decodeFullSyncBegin(f.payload);
    if (this.host.memoryBytes !== undefined && b.ramBytes !== this.host.memoryBytes) {
      throw new ProtocolError('MISMATCH', `the primary has ${b.ramBytes} bytes of RAM, this secondary was started with --memory ${this.host.memoryBytes}`);
    }
    if (b.diskBytes !== (this.disk?.size ?? 0)) {
      throw new ProtocolError('MISMATCH', `the primary's disk is ${b.diskBytes} bytes, this secondary's --disk is ${this.disk?.size ?? 0}`);
    }
    if (b.deviceBytes > 64 << 20) throw new ProtocolError('MALFORMED', `FULL_SYNC device state of ${b.deviceBytes} bytes`);
    // Whatever was committed before is being overwritten from here on.
    this.committed = undefined;
    this.kept = [];
    this.staged = undefined;
    this.sync = { epoch: f.epoch, ramBytes: b.ramBytes, diskBytes: b.diskBytes, deviceSeen: false, received: 0, chunks: 0 };
    this.log.info({ event: 'ft-sync-start', epoch: f.epoch, ramBytes: b.ramBytes, diskBytes: b.diskBytes }, 'FT: full sync started');
  }

  private syncChunk(f: Frame): void {
    const s = this.sync;
    if (!s || f.epoch !== s.epoch) throw new ProtocolError('UNEXPECTED', 'FULL_SYNC_CHUNK outside a full sync');
    const c = decodeFullSyncChunk(f.payload);
    s.chunks++;
    s.received += c.data.length;
    switch (c.section) {
      case SyncSection.DEVICE_STATE: {
        // Each is a whole state: the first builds the machine; a later one (a live sync's
        // final pause) replaces it, on the same machine.
        if (c.offset !== 0 || c.data.length > 64 << 20) throw new ProtocolError('MALFORMED', 'FULL_SYNC device state must be one whole chunk');
        if (!s.deviceSeen) {
          this.machineFor(Buffer.from(c.data), s.ramBytes);
        } else {
          const state = decodeSnapshot(Buffer.from(c.data));
          if (JSON.stringify(state.meta?.config) !== JSON.stringify(this.config)) throw new ProtocolError('MALFORMED', 'FULL_SYNC device states disagree on the machine');
          this.stagedSyncState = state;
        }
        s.deviceSeen = true;
        return;
      }
      case SyncSection.RAM: {
        const pc = this.pc;
        if (!pc || this.config?.memoryBytes !== s.ramBytes) throw new ProtocolError('UNEXPECTED', 'FULL_SYNC RAM before the device state');
        if (c.offset + c.data.length > s.ramBytes || c.offset % PAGE !== 0) throw new ProtocolError('MALFORMED', `FULL_SYNC RAM chunk at ${c.offset} (+${c.data.length}) is outside RAM`);
        pc.machine.cpu.ram.set(c.data, c.offset);
        return;
      }
      case SyncSection.DISK: {
        if (!this.disk || c.offset + c.data.length > s.diskBytes) throw new ProtocolError('MALFORMED', `FULL_SYNC disk chunk at ${c.offset} is outside the disk`);
        this.disk.write(c.offset, c.data);
        return;
      }
    }
  }

  /** Build (or rebuild) the board the primary describes, with RAM zeroed for the sync. */
  private machineFor(deviceBytes: Buffer, ramBytes: number): void {
    const state = decodeSnapshot(deviceBytes);
    const meta = state.meta;
    const config = meta?.config as unknown as FtConfig | undefined;
    if (!meta || meta.kind !== 'ftx86-ft' || !config || typeof config !== 'object') throw new ProtocolError('MALFORMED', 'FULL_SYNC device state is not an FT state');
    if (config.memoryBytes !== ramBytes) throw new ProtocolError('MALFORMED', 'FULL_SYNC device state and RAM size disagree');
    if ((config.diskBytes ?? 0) !== (this.disk?.size ?? 0)) throw new ProtocolError('MISMATCH', 'the primary\'s disk does not match this secondary\'s');
    const same = this.config && JSON.stringify(this.config) === JSON.stringify(config);
    if (!same || !this.pc) {
      this.tap = new EventTap({
        sinks: {
          net: (frame) => this.netSink?.send(frame),
          serial: (port, bytes) => { if (port === 0) this.serialSink?.(bytes); },
        },
      });
      const tap = this.tap;
      const lateNet: NetBackend = {
        send: (frame) => tap.net(frame),
        onFrame: (fn) => { this.netReceiver = fn; },
        close: () => this.netSink?.close(),
      };
      this.pc = new Pc({
        memoryBytes: config.memoryBytes,
        clock: config.clock,
        rtcBaseMs: config.rtcBaseMs,
        noReboot: config.noReboot,
        disk: this.disk,
        net: config.net ? { backend: lateNet, mac: config.net.mac } : undefined,
        serialOut: [(bytes) => tap.serial(0, bytes)],
        debugConsole: this.host.debugConsole,
      });
      this.tap.attach(this.pc.machine.hooks);
      this.entries = ftDeviceEntries(this.pc);
      this.config = config;
    } else {
      this.pc.machine.cpu.ram.fill(0);
    }
    this.boot = meta.boot;
    this.stagedSyncState = state;
  }

  private stagedSyncState: VmState | undefined;

  private syncEnd(ch: FtChannel, f: Frame): void {
    const s = this.sync;
    if (!s || f.epoch !== s.epoch) throw new ProtocolError('UNEXPECTED', 'FULL_SYNC_END outside a full sync');
    const e = decodeFullSyncEnd(f.payload);
    if (e.chunks !== s.chunks || !this.stagedSyncState || !this.pc) {
      throw new ProtocolError('MALFORMED', `FULL_SYNC_END after ${s.chunks} chunks, the primary says ${e.chunks}`);
    }
    this.applyDevices(this.stagedSyncState);
    this.guestIp = (this.stagedSyncState.meta?.guestIp as string | null) ?? undefined;
    this.stagedSyncState = undefined;
    this.sync = undefined;
    this.writtenBlocks = new Set();
    this.committed = f.epoch;
    this.next = f.epoch + 1n;
    this.watermark = f.epoch;
    this.log.info({ event: 'ft-sync-done', epoch: f.epoch, bytes: s.received }, `FT: full sync done (${(s.received / 1048576).toFixed(1)} MiB), epoch ${f.epoch} committed`);
    ch.send(MessageType.ACK, f.epoch);
  }

  private applyDevices(state: VmState): void {
    const pc = this.pc!;
    const cpu = pc.machine.cpu;
    applyState(state, machineTarget({ cpu, devices: this.entries! }));
  }

  // ---- epochs --------------------------------------------------------------------------------

  private stage(f: Frame): void {
    if (this.committed === undefined || !this.pc) throw new ProtocolError('UNEXPECTED', `${messageTypeName(f.type)} before a full sync`);
    if (f.epoch !== this.next) throw new ProtocolError('UNEXPECTED', `${messageTypeName(f.type)} for epoch ${f.epoch}; epoch ${this.next} is next`);
    const s = (this.staged ??= { epoch: f.epoch, frames: 0, pages: [], device: undefined, disk: [], events: [] });
    s.frames++;
    switch (f.type) {
      case MessageType.PAGES: {
        const p = decodePages(f.payload);
        const limit = this.pc.machine.cpu.ramBytes / PAGE;
        for (let i = 0; i < p.pageNumbers.length; i++) {
          if (p.pageNumbers[i] >= limit) throw new ProtocolError('MALFORMED', `PAGES names page ${p.pageNumbers[i]}, RAM has ${limit}`);
        }
        s.pages.push({ numbers: p.pageNumbers, data: p.data });
        return;
      }
      case MessageType.DEVICE_STATE: {
        if (s.device) throw new ProtocolError('UNEXPECTED', `a second DEVICE_STATE for epoch ${f.epoch}`);
        const state = decodeSnapshot(f.payload);
        if (state.meta?.epoch !== f.epoch) throw new ProtocolError('MALFORMED', `DEVICE_STATE of epoch ${String(state.meta?.epoch)} in a frame of epoch ${f.epoch}`);
        if (state.ram || !state.cpu) throw new ProtocolError('MALFORMED', 'DEVICE_STATE must hold the CPU and no RAM');
        s.device = state;
        return;
      }
      case MessageType.DISK: {
        const extents = decodeDisk(f.payload);
        for (const x of extents) {
          if (!this.disk || x.offset + x.data.length > this.disk.size) throw new ProtocolError('MALFORMED', `DISK write at ${x.offset} (+${x.data.length}) is outside the disk`);
        }
        s.disk.push(...extents);
        return;
      }
      case MessageType.EVENTS:
        s.events.push(...decodeEvents(f.payload));
        return;
    }
  }

  private commit(ch: FtChannel, f: Frame): void {
    const c = decodeCommit(f.payload);
    const s = this.staged;
    if (this.committed === undefined || f.epoch !== this.next) throw new ProtocolError('UNEXPECTED', `COMMIT of epoch ${f.epoch}; epoch ${this.next} is next`);
    const frames = s?.frames ?? 0;
    if (!s || frames !== c.frames || !s.device) {
      throw new ProtocolError('MALFORMED', `COMMIT ${f.epoch} says ${c.frames} frames, ${frames} arrived${s && !s.device ? ' and no DEVICE_STATE' : ''}`);
    }
    if (crashHits(this.crash, 'sec-commit', f.epoch, s.events.length > 0)) crashNow(this.log, `COMMIT ${f.epoch} received`);
    const pc = this.pc!;
    const ram = pc.machine.cpu.ram;
    // Devices and CPU: all or nothing (applyState). The rest was checked when it arrived.
    this.applyDevices(s.device);
    for (const p of s.pages) {
      for (let i = 0; i < p.numbers.length; i++) ram.set(p.data.subarray(i * PAGE, (i + 1) * PAGE), p.numbers[i] * PAGE);
    }
    for (const x of s.disk) {
      this.disk!.write(x.offset, x.data);
      addBlocks(this.writtenBlocks, x.offset, x.data.length);
    }
    if (s.events.length > 0) this.kept.push({ epoch: f.epoch, events: s.events });
    const ip = s.device.meta?.guestIp;
    if (typeof ip === 'string') this.guestIp = ip;
    this.committed = f.epoch;
    this.next = f.epoch + 1n;
    this.staged = undefined;
    this.advanceWatermark(c.releasedUpTo);
    this.commits++;
    if (this.corruptAt !== undefined && f.epoch >= this.corruptAt) {
      this.corruptAt = undefined;
      ram[ram.length >> 1] ^= 0x5a;
      this.log.warn({ event: 'ft-test-corrupt', epoch: f.epoch }, 'FTX86_TEST_CORRUPT_SECONDARY: flipped a RAM byte');
    }
    if (c.digest) {
      this.verified++;
      const mine = ftDigest(pc, captureDevices(this.entries!), this.writtenBlocks);
      if (!mine.equals(c.digest)) {
        this.verifyMismatches++;
        this.log.error({ event: 'ft-verify-mismatch', epoch: f.epoch, primary: c.digest.toString('hex'), secondary: mine.toString('hex') },
          `FT VERIFY MISMATCH at epoch ${f.epoch}: the secondary's state differs from the primary's`);
      } else {
        this.log.debug({ event: 'ft-verify-ok', epoch: f.epoch }, 'verify ok');
      }
    }
    ch.send(MessageType.ACK, f.epoch);
  }

  private logStats(): void {
    this.log.info({ event: 'ft-secondary-stats', committed: this.committed ?? null, commits: this.commits, verified: this.verified, mismatches: this.verifyMismatches, keptEpochs: this.kept.length },
      `FT: ${this.commits} epochs committed (last ${this.committed ?? 'none'}), ${this.verified} verified, ${this.verifyMismatches} mismatches`);
  }

  private advanceWatermark(epoch: bigint): void {
    if (epoch <= this.watermark) return;
    this.watermark = epoch;
    while (this.kept.length > 0 && this.kept[0].epoch <= epoch) this.kept.shift();
  }

  // ---- failover ------------------------------------------------------------------------------

  private async failover(why: string): Promise<{ outcome: RunOutcome | undefined; code: number }> {
    const pc = this.pc!;
    const tap = this.tap!;
    const t0 = this.failoverStarted ?? performance.now();
    this.log.warn({ event: 'ft-failover-start', epoch: this.committed, why }, `FT: the primary is gone (${why}); taking over from epoch ${this.committed}`);
    const serial = this.host.openSerial((b) => { pc.serialIn(0, b); pc.machine.kick(); });
    this.serialSink = (b) => serial.write(b);
    // Re-release what the primary may not have released: at least once, in order. Frames
    // wait for the network backend, which opens asynchronously (attachNet sends them first).
    let rereleased = 0;
    const frames: Uint8Array[] = [];
    for (const k of this.kept) {
      for (const e of k.events) {
        if (e.kind === EventKind.NET) frames.push(e.data);
        else if (e.port === 0) serial.write(e.data);
        rereleased++;
      }
    }
    this.kept = [];
    // The guest's network position, before the guest runs (its first frames would be lost
    // otherwise): the primary's UDP port is free once it is dead; under a partition it may
    // still be held, so keep trying in the background (the cable is out meanwhile).
    if (this.host.openNet && pc.virtioNet) await this.attachNet(this.host.openNet, frames);
    const primary = new FtPrimary({ pc, tap, ft: this.ft, log: this.log, boot: this.boot ?? null, startAlone: true });
    primary.knownGuestIp = this.guestIp;
    tap.setOnOutput(() => primary.onOutput());
    this.host.onReset(pc, this.boot);
    pc.machine.hooks.on('netSend', (frame) => primary.observeFrame(frame));
    await primary.start();
    // The console too is the guest's position: connected before it runs (a second at most).
    if (serial.ready) await Promise.race([serial.ready, new Promise((r) => setTimeout(r, 1000).unref())]);
    try {
      // Logged as the guest is about to run its first instruction here.
      const outcome = await primary.run(() => {
        const ms = performance.now() - t0;
        this.log.warn({ event: 'ft-failover', ms: +ms.toFixed(2), epoch: this.committed, rereleasedEvents: rereleased, guestIp: this.guestIp ?? null },
          `FT: failover done in ${ms.toFixed(1)} ms: the guest runs here from epoch ${this.committed} (${rereleased} outputs re-released)`);
      });
      return { outcome, code: -1 };
    } finally {
      this.done = true;
      serial.close();
      this.netSink?.close();
    }
  }

  /**
   * Open the network backend, send `rereleased` on it, then announce the guest. A dead
   * primary's UDP port is free a moment after its link closes (the kernel tears the process
   * down socket by socket), so a busy port is tried again every NET_RETRY_FAST_MS for up to
   * NET_WAIT_MS before the guest runs: a guest running with the cable out would lose the
   * frames it sends meanwhile. Still busy after that (a partition: the primary lives and
   * holds it), the guest runs with the cable out and later attempts go on in the background.
   */
  private async attachNet(open: () => Promise<NetBackend>, rereleased: readonly Uint8Array[]): Promise<void> {
    const mac = parseMac(this.config!.net!.mac);
    const tryOpen = async (attempt: number): Promise<boolean> => {
      try {
        const net = await open();
        net.onFrame((frame) => { this.netReceiver?.(frame); });
        // Before the guest's new frames: these are older.
        for (const frame of rereleased) net.send(frame);
        this.netSink = net;
        // Tell the network the guest is here now: a few times, as a switch may miss one.
        for (const delay of [0, 50, 200]) {
          setTimeout(() => { for (const fr of announceFrames(mac, this.guestIp)) this.netSink?.send(fr); }, delay).unref();
        }
        this.log.info({ event: 'ft-net-attached', attempt }, 'FT: took over the guest\'s network position');
        return true;
      } catch (e) {
        if (attempt === 0) this.log.warn({ event: 'ft-net-busy' }, `FT: cannot attach the network yet (${(e as Error).message}); retrying`);
        return false;
      }
    };
    const deadline = performance.now() + NET_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      if (await tryOpen(attempt)) return;
      if (this.done) return;
      if (performance.now() >= deadline) {
        this.log.warn({ event: 'ft-net-detached', attempts: attempt + 1 }, `FT: the guest's network port is still busy after ${NET_WAIT_MS} ms: running with the cable out, retrying`);
        const background = (n: number): void => {
          setTimeout(() => { if (!this.done) void tryOpen(n).then((ok) => { if (!ok) background(n + 1); }); }, NET_RETRY_MS).unref();
        };
        background(attempt + 1);
        return;
      }
      await new Promise((r) => setTimeout(r, NET_RETRY_FAST_MS));
    }
  }
}

/** How long a failover waits for the guest's network port before the guest runs without it. */
const NET_WAIT_MS = 1000;
const NET_RETRY_FAST_MS = 10;
const NET_RETRY_MS = 250;
