/**
 * The FT primary: runs the guest, takes checkpoints, ships them to the secondary and
 * releases the outputs of each epoch once the secondary has acknowledged it (DESIGN.md,
 * Fault tolerance; Kemari).
 *
 * States:
 *   protected  a secondary holds a committed copy; outputs wait for ACKs
 *   peer-lost  the link failed; outputs are held (nothing more is released) until the
 *              operator says this VM is alone (SIGUSR2, or `--ft-peer-loss continue`)
 *   alone      no secondary; outputs pass straight through. With --ft-reprotect, the
 *              primary keeps trying to reach a new secondary there and syncs to it.
 *
 * A checkpoint pauses the guest at an instruction boundary (Machine.pause), copies the
 * dirty pages and captures CPU and device state into buffers, cuts the event-tap epoch, and
 * resumes the guest; the frames go out afterwards, so the pause costs the copy, not the
 * network. Checkpoints overlap: up to maxUnacked are in flight, and at the bound the guest
 * waits for an ACK rather than letting the held output grow.
 */
import type pino from 'pino';
import { DEFAULT_MAC, type Pc } from '@ftx86/emulator/src/pc.ts';
import type { DeviceEntry } from '@ftx86/emulator/src/snapshot/apply.ts';
import type { RunOutcome } from '@ftx86/emulator/src/machine.ts';
import { encodeSnapshot } from '@ftx86/emulator/src/snapshot/codec.ts';
import { cpuLayoutId } from '@ftx86/emulator/src/snapshot/machine-state.ts';
import type { PlainValue } from '@ftx86/emulator/src/snapshot/value.ts';
import type { DiskWrite, EventTap, HeldEvent } from '@ftx86/event-tap';
import {
  connect, loadKeyFile, MessageType, Role, SyncSection, encodeBye, encodeCommit, encodeDisk, encodeEvents,
  encodeFullSyncBegin, encodeFullSyncChunk, encodeFullSyncEnd, encodePages, encodeCancel, type FtChannel, type Frame,
} from '@ftx86/ft-trans';
import {
  addBlocks, captureDevices, channelLogger, crashHits, crashNow, ftDeviceEntries, ftDigest, parseMac, snoopGuestIp,
  testCancelEpoch, testCrashPoint, type CrashPoint, type FtOptions,
} from './common.ts';

const PAGE = 4096;
/** Full-sync chunk size: big enough to stream, small enough to show progress. */
const SYNC_CHUNK = 4 << 20;
/** Output held while the peer is lost, at most; then the guest waits. */
const MAX_HELD_BYTES = 64 << 20;

type State = 'protected' | 'peer-lost' | 'alone' | 'syncing';

export interface PrimaryStats {
  checkpoints: number;
  /** Per checkpoint: guest pause (ms), dirty pages, bytes sent. */
  pauseMs: number[];
  pages: number[];
  bytes: number[];
}

export interface FtPrimaryOptions {
  pc: Pc;
  tap: EventTap;
  ft: FtOptions;
  log: pino.Logger;
  /** What the guest was loaded from: the secondary loads it again on a guest reset. */
  boot: PlainValue;
  /** Start alone (a secondary that has just taken over), not by connecting to ft.peer. */
  startAlone?: boolean;
}

export class FtPrimary {
  readonly stats: PrimaryStats = { checkpoints: 0, pauseMs: [], pages: [], bytes: [] };
  private state: State = 'alone';
  private channel: FtChannel | undefined;
  private readonly inFlight: bigint[] = [];
  private checkpointWanted = false;
  private syncWanted: FtChannel | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private wakers: (() => void)[] = [];
  /** 512-byte blocks the guest wrote since FT (this sync) began: verify mode hashes them. */
  private writtenBlocks = new Set<number>();
  private guestIp: string | undefined;
  private readonly mac: Uint8Array | undefined;
  private readonly crash: CrashPoint | undefined;
  private sendChain: Promise<void> = Promise.resolve();
  /** What a cancelled epoch carried, to go with the next checkpoint. */
  private carry: { pages: Uint32Array; diskWrites: readonly DiskWrite[]; events: readonly HeldEvent[]; eventBytes: number } | undefined;
  private cancelAt = testCancelEpoch();
  private reprotecting = false;
  private stopped = false;
  private readonly key;
  /** The board's device sections, made once: every checkpoint captures them. */
  private readonly entries: DeviceEntry[];

  constructor(private readonly o: FtPrimaryOptions) {
    this.key = loadKeyFile(o.ft.keyFile);
    this.crash = testCrashPoint();
    this.entries = ftDeviceEntries(o.pc);
    const nicMac = o.pc.virtioNet ? (o.pc.opts.net?.mac ?? DEFAULT_MAC) : undefined;
    this.mac = nicMac ? parseMac(nicMac) : undefined;
  }

  get mode(): State { return this.state; }

  /** The tap calls this when an epoch's first output is held. */
  onOutput(): void {
    if (this.state !== 'protected') return;
    const us = this.o.ft.batchUs;
    if (us <= 0) { this.want(); return; }
    this.batchTimer ??= setTimeout(() => { this.batchTimer = undefined; this.want(); }, us / 1000);
  }

  /** Learn the guest's IP from what it sends (the secondary announces it on takeover). */
  observeFrame(frame: Uint8Array): void {
    if (!this.mac) return;
    const ip = snoopGuestIp(frame, this.mac);
    if (ip) this.guestIp = ip;
  }

  set knownGuestIp(ip: string | undefined) { this.guestIp = ip; }

  private want(): void {
    if (this.state !== 'protected') return;
    this.checkpointWanted = true;
    this.o.pc.machine.pause();
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  private waitForChange(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  /** The operator (SIGUSR2) says this VM is alone: release what is held and go on unprotected. */
  declareAlone(why: string): void {
    if (this.state === 'alone') return;
    const held = this.o.tap.heldBytes;
    this.o.log.warn({ event: 'ft-alone', why, releasedBytes: held }, `FT: running alone (${why}); releasing ${held} bytes of held output`);
    this.channel?.destroy();
    this.channel = undefined;
    this.inFlight.length = 0;
    this.state = 'alone';
    this.o.tap.passThrough();
    this.wake();
    this.startReprotect();
  }

  /** Connect to ft.peer (retrying until connectTimeoutMs) and sync the guest to it. */
  async start(): Promise<void> {
    if (this.o.startAlone) {
      this.state = 'alone';
      this.startReprotect();
      return;
    }
    const peer = this.o.ft.peer!;
    const deadline = Date.now() + this.o.ft.connectTimeoutMs;
    let ch: FtChannel | undefined;
    let lastErr: Error | undefined;
    while (!ch && Date.now() < deadline) {
      try {
        ch = await this.connectTo(peer);
      } catch (e) {
        lastErr = e as Error;
        if (['AUTH', 'BAD_VERSION', 'REPLAY', 'PEER_ERROR'].includes((e as { code?: string }).code ?? '')) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    if (!ch) throw new Error(`cannot reach the secondary at ${peer.host}:${peer.port}: ${lastErr?.message ?? 'timed out'}`);
    await this.fullSync(ch);
  }

  private connectTo(peer: { host: string; port: number }): Promise<FtChannel> {
    const cpu = this.o.pc.machine.cpu;
    return connect({
      host: peer.host,
      port: peer.port,
      key: this.key,
      logger: channelLogger(this.o.log),
      local: { role: Role.PRIMARY, memorySize: cpu.ramBytes, diskSize: this.o.pc.opts.disk?.size ?? 0, node: `primary-${process.pid}` },
      heartbeatIntervalMs: this.o.ft.heartbeatMs,
      peerTimeoutMs: this.o.ft.timeoutMs,
      heartbeatEpoch: () => this.o.tap.releasedUpTo,
    });
  }

  /** Keep trying to reach ft.reprotect; once connected, the run loop syncs to it. */
  private startReprotect(): void {
    const target = this.o.ft.reprotect;
    if (!target || this.reprotecting) return;
    this.reprotecting = true;
    void (async () => {
      while (!this.stopped && this.state === 'alone') {
        try {
          const ch = await this.connectTo(target);
          this.syncWanted = ch;
          this.o.pc.machine.pause(); // the run loop starts the live sync
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      this.reprotecting = false;
    })();
  }

  /**
   * Send the whole VM (RAM, devices, disk) with the guest stopped, and wait for the
   * secondary to commit it. Then outputs are held from the next epoch on.
   */
  private async fullSync(ch: FtChannel, live = false): Promise<void> {
    const { pc, tap, log } = this.o;
    const m = pc.machine;
    const cpu = m.cpu;
    this.state = 'syncing';
    // Live (a running guest taking a new secondary): the guest runs while RAM and disk
    // stream; what it changes meanwhile goes again in a short final pause.
    let diskTouched: Set<number> | undefined;
    let untrack: (() => void) | undefined;
    if (live) {
      cpu.exports.dirty_reset();
      diskTouched = new Set();
      const touched = diskTouched;
      untrack = m.hooks.on('blockWrite', (offset, data) => addBlocks(touched, offset, data.length));
      ch.on('close', () => { if (this.state === 'syncing') this.syncAborted = true; });
    }
    const epoch = tap.epoch - 1n; // what the secondary will have committed: everything so far
    const t0 = performance.now();
    this.crashOnSyncBytes = this.crash?.step === 'sync' ? this.crash.bytes : -1;
    this.syncSent = 0;
    const devState = this.deviceState(epoch, true);
    const disk = pc.opts.disk;
    const diskBytes = disk?.size ?? 0;
    let total = devState.length + cpu.ramBytes + diskBytes;
    log.info({ event: 'ft-sync-start', epoch, ramBytes: cpu.ramBytes, diskBytes, peer: ch.remote }, `FT: full sync to ${ch.remote}: ${(total / 1048576).toFixed(1)} MiB`);
    ch.send(MessageType.FULL_SYNC_BEGIN, epoch, [encodeFullSyncBegin({ ramBytes: cpu.ramBytes, deviceBytes: devState.length, diskBytes })]);
    let chunks = 0;
    let done = 0;
    let lastShown = 0;
    const send = async (section: SyncSection, offset: number, data: Uint8Array) => {
      done += data.length;
      chunks++;
      const parts = encodeFullSyncChunk({ section, offset, doneBytes: done, totalBytes: total }, [data]);
      this.countSyncBytes(ch, MessageType.FULL_SYNC_CHUNK, epoch, parts);
      if (!ch.send(MessageType.FULL_SYNC_CHUNK, epoch, parts)) await ch.whenWritable();
      if (done - lastShown >= total / 10 || done === total) {
        lastShown = done;
        log.info({ event: 'ft-sync-progress', doneBytes: done, totalBytes: total }, `FT: full sync ${Math.round((100 * done) / total)}%`);
      }
    };
    await send(SyncSection.DEVICE_STATE, 0, devState);
    // RAM: zero chunks are skipped (the secondary starts from zeros), as most of a fresh guest's are.
    const ram = cpu.ram;
    for (let off = 0; off < ram.length; off += SYNC_CHUNK) {
      if (this.syncAborted) break;
      const chunk = ram.subarray(off, Math.min(off + SYNC_CHUNK, ram.length));
      if (isZero(chunk)) { done += chunk.length; continue; }
      // A live sync copies: the guest runs on while the socket still holds the chunk.
      await send(SyncSection.RAM, off, live ? Buffer.from(chunk) : chunk);
    }
    if (disk) {
      for (let off = 0; off < diskBytes && !this.syncAborted; off += SYNC_CHUNK) {
        const chunk = new Uint8Array(Math.min(SYNC_CHUNK, diskBytes - off));
        disk.read(off, chunk);
        await send(SyncSection.DISK, off, chunk);
      }
    }
    if (live) {
      // The final pause: stop the guest at an instruction boundary, then send what it
      // changed during the stream and its state as of now.
      await new Promise<void>((resolve) => { this.syncFinal = resolve; m.pause(); });
      untrack!();
      if (this.syncAborted || ch.closed) {
        this.syncAborted = false;
        throw new Error(`the new secondary ${ch.remote} went away during the full sync`);
      }
      const pages = cpu.state.dirtyPages().sort();
      const finalState = this.deviceState(epoch, true);
      total = done + pages.length * PAGE + diskTouched!.size * 512 + finalState.length;
      // Runs of consecutive pages go as one chunk each, copied (the guest runs on after).
      for (let i = 0; i < pages.length;) {
        let j = i + 1;
        while (j < pages.length && pages[j] === pages[j - 1] + 1 && (j - i) * PAGE < SYNC_CHUNK) j++;
        await send(SyncSection.RAM, pages[i] * PAGE, Buffer.from(ram.subarray(pages[i] * PAGE, pages[j - 1] * PAGE + PAGE)));
        i = j;
      }
      for (const b of [...diskTouched!].sort((x, y) => x - y)) {
        const block = new Uint8Array(512);
        disk!.read(b * 512, block);
        await send(SyncSection.DISK, b * 512, block);
      }
      await send(SyncSection.DEVICE_STATE, 0, finalState);
      log.info({ event: 'ft-sync-final', pages: pages.length, diskBlocks: diskTouched!.size }, `FT: full sync final pause: ${pages.length} pages, ${diskTouched!.size} disk blocks`);
    }
    ch.send(MessageType.FULL_SYNC_END, epoch, [encodeFullSyncEnd({ totalBytes: total, chunks })]);
    // From here the secondary has the state as of now: track what changes after it.
    cpu.exports.dirty_reset();
    this.writtenBlocks = new Set();
    this.attach(ch);
    this.inFlight.push(epoch);
    tap.hold(epoch);
    this.state = 'protected';
    const protectedNow = () => {
      log.info({ event: 'ft-protected', epoch, live, ms: Math.round(performance.now() - t0), bytes: total }, `FT: protected by ${ch.remote} (full sync ${Math.round(performance.now() - t0)} ms)`);
      this.armInterval();
    };
    if (live) {
      // The guest runs on at once: its outputs are held from here, and the sync's ACK
      // releases nothing it has not already released while alone.
      protectedNow();
      return;
    }
    await this.waitAcked(epoch);
    if (this.state !== 'protected') throw new Error('the secondary went away during the full sync');
    protectedNow();
  }

  /**
   * Checkpoint copies go into buffers kept from earlier checkpoints: a fresh multi-MB
   * allocation per checkpoint costs its page faults inside the pause (bench/ft.ts measured
   * 2.5x the copy itself). A buffer is reused once its epoch is acknowledged: the secondary
   * has then read every byte the socket was given from it.
   */
  private readonly bufferPool: Buffer[] = [];
  private readonly buffersInUse = new Map<bigint, Buffer>();

  private pageBuffer(epoch: bigint, bytes: number): Buffer {
    if (bytes === 0) return Buffer.alloc(0);
    let best = -1;
    for (let i = 0; i < this.bufferPool.length; i++) {
      const b = this.bufferPool[i];
      if (b.length >= bytes && (best < 0 || b.length < this.bufferPool[best].length)) best = i;
    }
    const buf = best >= 0 ? this.bufferPool.splice(best, 1)[0] : Buffer.allocUnsafeSlow(bufferSize(bytes));
    this.buffersInUse.set(epoch, buf);
    return buf.subarray(0, bytes);
  }

  private recycleBuffers(acked: bigint): void {
    for (const [epoch, buf] of this.buffersInUse) {
      if (epoch > acked) continue;
      this.buffersInUse.delete(epoch);
      this.bufferPool.push(buf);
    }
    // Keep as many as can be in flight, plus one; the largest serve every size.
    this.bufferPool.sort((a, b) => b.length - a.length);
    this.bufferPool.length = Math.min(this.bufferPool.length, this.o.ft.maxUnacked + 1);
  }

  /** A live full sync is running, and set when it waits for its final pause. */
  private liveSync: Promise<void> | undefined;
  private syncFinal: (() => void) | undefined;
  private syncAborted = false;

  private crashOnSyncBytes = -1;
  private syncSent = 0;

  private countSyncBytes(ch: FtChannel, type: MessageType, epoch: bigint, parts: Uint8Array[]): void {
    if (this.crashOnSyncBytes < 0) return;
    const n = parts.reduce((a, p) => a + p.length, 0);
    if (this.syncSent + n >= this.crashOnSyncBytes) {
      ch.testSendPartial(type, epoch, parts, this.crashOnSyncBytes - this.syncSent);
      crashNow(this.o.log, `full sync byte ${this.crashOnSyncBytes}`);
    }
    this.syncSent += n;
  }

  private armInterval(): void {
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.intervalTimer = setInterval(() => this.want(), this.o.ft.intervalMs);
    this.intervalTimer.unref();
  }

  private attach(ch: FtChannel): void {
    this.channel = ch;
    ch.on('frame', (f) => this.onFrame(ch, f));
    ch.on('error', () => {}); // logged by the channel; 'close' follows
    ch.on('close', (err) => { if (this.channel === ch) this.onPeerLost(err); });
  }

  private onFrame(ch: FtChannel, f: Frame): void {
    if (f.type !== MessageType.ACK) {
      ch.destroy(new Error(`unexpected ${f.type} from the secondary`));
      return;
    }
    const expected = this.inFlight[0];
    if (expected === undefined || f.epoch !== expected) {
      ch.destroy(new Error(`ACK for epoch ${f.epoch}, expected ${expected ?? 'none'}`));
      return;
    }
    this.inFlight.shift();
    this.recycleBuffers(f.epoch);
    if (crashHits(this.crash, 'ack', f.epoch, this.o.tap.holdsEpoch(f.epoch))) crashNow(this.o.log, `ACK ${f.epoch} before release`);
    this.o.tap.release(f.epoch);
    this.o.log.debug({ event: 'ft-ack', epoch: f.epoch }, 'ack');
    this.wake();
  }

  private onPeerLost(err: Error | null): void {
    this.channel = undefined;
    this.buffersInUse.clear(); // the dead socket may still hold them: let them go
    if (this.state === 'syncing' && this.liveSync) { this.syncAborted = true; return; }
    if (this.state !== 'protected' && this.state !== 'syncing') return;
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.state = 'peer-lost';
    const held = this.o.tap.heldBytes;
    this.o.log.error(
      { event: 'ft-peer-lost', reason: err?.message ?? 'closed', unacked: this.inFlight.length, heldBytes: held },
      `FT: lost the secondary (${err?.message ?? 'closed'}); ${this.o.ft.peerLoss === 'continue' ? 'going on alone (--ft-peer-loss continue)' : 'holding output until told this VM is alone (SIGUSR2)'}`,
    );
    this.inFlight.length = 0;
    this.wake();
    if (this.o.ft.peerLoss === 'continue') this.declareAlone('--ft-peer-loss continue');
  }

  private waitAcked(epoch: bigint): Promise<void> {
    return (async () => {
      while (this.state === 'protected' && this.inFlight.includes(epoch)) await this.waitForChange();
    })();
  }

  /**
   * The DEVICE_STATE snapshot: CPU bytes, every device, and what the secondary needs to
   * know besides (epoch, the guest's IP; with `full`, the machine configuration and boot).
   */
  private deviceState(epoch: bigint, full: boolean, devices = captureDevices(this.entries)): Uint8Array {
    const { pc } = this.o;
    const cpu = pc.machine.cpu;
    const meta: Record<string, unknown> = { kind: 'ftx86-ft', epoch, instructions: cpu.instructionCount, guestIp: this.guestIp ?? null };
    if (full) {
      meta.config = {
        memoryBytes: pc.opts.memoryBytes,
        clock: pc.machine.clock.mode,
        rtcBaseMs: pc.machine.clock.rtcBaseMs,
        noReboot: pc.machine.noReboot,
        net: pc.virtioNet ? { mac: pc.opts.net?.mac ?? DEFAULT_MAC } : null,
        diskBytes: pc.opts.disk?.size ?? null,
      };
      meta.boot = this.o.boot;
    }
    return encodeSnapshot({
      meta,
      cpu: { layoutId: cpuLayoutId(cpu), bytes: cpu.state.bytes() },
      devices,
      incremental: true,
    });
  }

  /** Take checkpoint of the epoch now ending. Call between runs (the CPU is at an instruction boundary). */
  private checkpoint(): void {
    const { pc, tap, ft } = this.o;
    const cpu = pc.machine.cpu;
    const t0 = performance.now();
    const carry = this.carry;
    this.carry = undefined;
    const pages = mergePages(cpu.state.dirtyPages(), carry?.pages);
    const cut = tap.cut();
    const epoch = cut.epoch;
    const data = this.pageBuffer(epoch, pages.length * PAGE);
    for (let i = 0; i < pages.length; i++) data.set(cpu.ram.subarray(pages[i] * PAGE, (pages[i] + 1) * PAGE), i * PAGE);
    cpu.exports.dirty_reset();
    // A cancelled epoch's writes and outputs ride on this one (see cancelHits below).
    const out: { events: readonly HeldEvent[]; diskWrites: readonly DiskWrite[]; eventBytes: number } = carry
      ? { events: [...carry.events, ...cut.events], diskWrites: [...carry.diskWrites, ...cut.diskWrites], eventBytes: carry.eventBytes + cut.eventBytes }
      : cut;
    for (const w of cut.diskWrites) addBlocks(this.writtenBlocks, w.offset, w.data.length);
    const cancelled = this.cancelAt !== undefined && epoch >= this.cancelAt && out.events.length > 0;
    if (cancelled) {
      // CANCEL: this epoch is void on the secondary, and everything it carried goes again
      // with the next one (its pages re-read from RAM then, which is at least as new).
      this.cancelAt = undefined;
      this.carry = { pages, diskWrites: out.diskWrites, events: out.events, eventBytes: out.eventBytes };
    }
    const devicesNow = captureDevices(this.entries);
    const devState = this.deviceState(epoch, false, devicesNow);
    const digest = !cancelled && ft.verifyEvery > 0 && epoch % BigInt(ft.verifyEvery) === 0n ? ftDigest(pc, devicesNow, this.writtenBlocks) : undefined;
    const pauseMs = performance.now() - t0;
    if (!cancelled) this.inFlight.push(epoch);
    this.checkpointWanted = false;
    if (this.batchTimer) { clearTimeout(this.batchTimer); this.batchTimer = undefined; }

    const ch = this.channel!;
    const maxPages = Math.max(1, Math.floor((ch.peer.maxPayload - 64) / (PAGE + 4)));
    // Sent once the guest runs again (setImmediate), in checkpoint order.
    this.sendChain = this.sendChain.then(() => new Promise<void>((resolve) => setImmediate(() => {
      try {
        if (this.channel !== ch || ch.closed) return;
        let frames = 0;
        let bytes = 0;
        for (let i = 0; i < pages.length; i += maxPages) {
          const j = Math.min(pages.length, i + maxPages);
          const parts = encodePages(pages.subarray(i, j), [data.subarray(i * PAGE, j * PAGE)]);
          if (crashHits(this.crash, 'pages', epoch, out.events.length > 0)) {
            ch.testSendPartial(MessageType.PAGES, epoch, parts, this.crash!.bytes);
            crashNow(this.o.log, `epoch ${epoch} PAGES byte ${this.crash!.bytes}`);
          }
          ch.send(MessageType.PAGES, epoch, parts);
          frames++;
          bytes += (j - i) * (PAGE + 4);
        }
        if (cancelled) {
          ch.send(MessageType.CANCEL, epoch, [encodeCancel('FTX86_TEST_CANCEL: this epoch goes again with the next')]);
          this.o.log.info({ event: 'ft-cancel', epoch }, `FT: cancelled epoch ${epoch}; it rides on epoch ${epoch + 1n}`);
          return;
        }
        ch.send(MessageType.DEVICE_STATE, epoch, [devState]);
        frames++;
        bytes += devState.length;
        if (out.diskWrites.length > 0) {
          ch.send(MessageType.DISK, epoch, encodeDisk(out.diskWrites));
          frames++;
          bytes += out.diskWrites.reduce((a, w) => a + w.data.length + 12, 0);
        }
        if (out.events.length > 0) {
          ch.send(MessageType.EVENTS, epoch, encodeEvents(out.events));
          frames++;
          bytes += out.eventBytes;
        }
        ch.send(MessageType.COMMIT, epoch, [encodeCommit({ frames, releasedUpTo: tap.releasedUpTo, digest })]);
        if (crashHits(this.crash, 'commit', epoch, out.events.length > 0)) crashNow(this.o.log, `COMMIT ${epoch} sent`);
        this.stats.checkpoints++;
        this.stats.pauseMs.push(pauseMs);
        this.stats.pages.push(pages.length);
        this.stats.bytes.push(bytes);
        this.o.log.debug({ event: 'ft-checkpoint', epoch, instructions: Number(cpu.instructionCount), pauseMs: +pauseMs.toFixed(3), pages: pages.length, events: out.events.length, diskWrites: out.diskWrites.length, bytes }, 'checkpoint');
      } catch (e) {
        this.o.log.error({ event: 'ft-send-failed', epoch }, (e as Error).message);
      } finally {
        resolve();
      }
    })));
  }

  /**
   * Run the guest under FT until it stops (power-off, exit, reset with --no-reboot) or is
   * interrupted; the last epoch is committed before the outcome is returned.
   */
  async run(onRunning?: () => void): Promise<RunOutcome> {
    const { pc, tap, log } = this.o;
    const m = pc.machine;
    const onUsr2 = () => this.declareAlone('SIGUSR2');
    process.on('SIGUSR2', onUsr2);
    const statsTimer = setInterval(() => this.logStats(), 10_000);
    statsTimer.unref();
    try {
      for (;;) {
        if (this.syncWanted && !this.liveSync) {
          const ch = this.syncWanted;
          this.syncWanted = undefined;
          // The guest keeps running while the new secondary gets its copy.
          this.liveSync = this.fullSync(ch, true)
            .catch((e: unknown) => {
              log.error({ event: 'ft-sync-failed' }, `FT: full sync failed: ${(e as Error).message}`);
              ch.destroy();
              this.channel = undefined;
              this.state = 'alone';
              this.startReprotect();
            })
            .finally(() => { this.liveSync = undefined; });
        }
        if (this.syncFinal) {
          // The live sync's final pause: the guest is stopped here until it is done.
          const go = this.syncFinal;
          this.syncFinal = undefined;
          go();
          await this.liveSync;
          continue;
        }
        if (this.checkpointWanted && this.state === 'protected') {
          if (this.inFlight.length >= this.o.ft.maxUnacked) {
            await this.waitForChange(); // the guest waits for an ACK
            continue;
          }
          this.checkpoint();
        }
        if (this.state === 'peer-lost' && tap.heldBytes > MAX_HELD_BYTES) {
          log.warn({ event: 'ft-held-full', heldBytes: tap.heldBytes }, 'FT: held output is at its bound; the guest waits until this VM is declared alone');
          while (this.state === 'peer-lost') await this.waitForChange();
          continue;
        }
        if (onRunning) { onRunning(); onRunning = undefined; }
        const outcome = await m.run();
        if (outcome.kind === 'pause') continue;
        await this.finish(outcome);
        return outcome;
      }
    } finally {
      this.stopped = true;
      process.off('SIGUSR2', onUsr2);
      clearInterval(statsTimer);
      if (this.intervalTimer) clearInterval(this.intervalTimer);
      if (this.batchTimer) clearTimeout(this.batchTimer);
    }
  }

  /** The guest stopped: commit its last epoch so its last outputs are released, then part. */
  private async finish(outcome: RunOutcome): Promise<void> {
    const { tap, log } = this.o;
    if (this.state === 'protected') {
      this.checkpoint();
      const last = this.inFlight[this.inFlight.length - 1];
      await this.waitAcked(last);
      await this.sendChain;
    }
    const ch = this.channel;
    if (ch && this.state === 'protected') {
      this.channel = undefined;
      await ch.close(`guest-stopped:${outcome.kind}`);
    }
    if (tap.holding && tap.heldBytes > 0) {
      log.warn({ event: 'ft-withheld', heldBytes: tap.heldBytes }, `FT: ${tap.heldBytes} bytes of output were never acknowledged and are withheld`);
    }
    this.logStats();
  }

  logStats(): void {
    const s = this.stats;
    if (s.checkpoints === 0) return;
    const sorted = [...s.pauseMs].sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    this.o.log.info({
      event: 'ft-stats', checkpoints: s.checkpoints, pauseMedianMs: +q(0.5).toFixed(3), pauseP99Ms: +q(0.99).toFixed(3),
      pagesMean: Math.round(s.pages.reduce((a, b) => a + b, 0) / s.pages.length),
      bytesTotal: s.bytes.reduce((a, b) => a + b, 0), state: this.state,
    }, `FT: ${s.checkpoints} checkpoints, pause median ${q(0.5).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms`);
  }
}

/** Dirty pages plus those a cancelled epoch carried, ascending and each once. */
/**
 * The size of a new checkpoint buffer for `bytes`: at least 1 MiB, rounded up to a multiple
 * of an eighth of the next power of two (less than a quarter over). Sized exactly, a buffer is outgrown by the
 * next checkpoint a few pages larger, which then allocates again and copies into fresh
 * memory: 2.1 us a page against 0.45 into a used buffer (bench/ft.ts's reference copies).
 * (The memory workload's rare 20-55 ms pauses are not this: they come and go with the same
 * code, and an instrumented run put one in the device-state capture of a 178-page
 * checkpoint, as a garbage collection would.)
 */
export function bufferSize(bytes: number): number {
  if (bytes <= 1 << 20) return 1 << 20;
  const step = 2 ** Math.ceil(Math.log2(bytes)) / 8;
  return Math.ceil(bytes / step) * step;
}

function mergePages(dirty: Uint32Array, carried: Uint32Array | undefined): Uint32Array {
  if (!carried) return dirty.sort();
  return Uint32Array.from(new Set([...dirty, ...carried])).sort();
}

const ZERO_CHUNK = Buffer.alloc(SYNC_CHUNK);

function isZero(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.length).equals(ZERO_CHUNK.subarray(0, b.length));
}
