/**
 * event-tap: the output-commit layer between a VM and the outside world (DESIGN.md, Fault
 * tolerance 2 and 4; Kemari's event-tap).
 *
 * The board's serial ports and NIC send through a tap instead of straight to their
 * backends. With FT off the tap passes everything through. With FT on, every output of
 * epoch e (a net frame, serial bytes) is held and tagged with e, and the tap asks its owner
 * for a checkpoint; the owner cuts the epoch when it takes checkpoint e and calls
 * release(e) once the secondary has acknowledged it. Held outputs go out in the order the
 * guest produced them, never before the state that produced them is on the secondary.
 *
 * Disk writes are not outputs but replicated state: the tap records every block the guest
 * writes in the epoch (a copy: the device reuses its buffers) so the checkpoint can carry
 * them; the write itself has already reached the primary's own image.
 */
import type { MachineHooks } from '@ftx86/emulator/src/hooks.ts';
import type { NetBackend } from '@ftx86/emulator/src/net/backend.ts';
import { EventKind, type HeldEvent } from '@ftx86/ft-trans';

export { EventKind, type HeldEvent } from '@ftx86/ft-trans';

export interface DiskWrite {
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Where released outputs go: the real backends. */
export interface OutputSinks {
  net(frame: Uint8Array): void;
  serial(port: number, bytes: Uint8Array): void;
}

/** What one epoch produced, handed over when the epoch is cut. */
export interface EpochOutput {
  readonly epoch: bigint;
  readonly events: readonly HeldEvent[];
  readonly diskWrites: readonly DiskWrite[];
  /** Bytes of events. */
  readonly eventBytes: number;
}

export type TapMode = 'passthrough' | 'hold';

export interface EventTapOptions {
  sinks: OutputSinks;
  /** Start holding (FT on) or passing through. Default passthrough. */
  mode?: TapMode;
  /**
   * Called when the first output of an epoch is held: the owner should take a checkpoint
   * (at once, or after its batching delay).
   */
  onOutput?: () => void;
  /**
   * TEST ONLY (the negative control of the output-commit tests): release every output the
   * moment it is produced while still shipping it, so the tests can show they would catch
   * early release. Never set outside tests.
   */
  releaseEarly?: boolean;
}

export class EventTap {
  private mode: TapMode;
  private readonly sinks: OutputSinks;
  private onOutput: (() => void) | undefined;
  private readonly releaseEarly: boolean;
  /** The epoch outputs are produced in now. */
  private current = 1n;
  private currentEvents: HeldEvent[] = [];
  private currentBytes = 0;
  private currentDisk: DiskWrite[] = [];
  /** Cut epochs whose outputs wait for their ACK, oldest first. */
  private readonly held: { epoch: bigint; events: readonly HeldEvent[]; bytes: number }[] = [];
  private heldTotal = 0;
  /** Highest epoch whose outputs have all been released. */
  private released = 0n;
  private detach: (() => void) | undefined;

  constructor(opts: EventTapOptions) {
    this.sinks = opts.sinks;
    this.mode = opts.mode ?? 'passthrough';
    this.onOutput = opts.onOutput;
    this.releaseEarly = opts.releaseEarly ?? false;
  }

  /** Record the guest's disk writes from the machine's hooks (only while holding). */
  attach(hooks: MachineHooks): void {
    this.detach?.();
    this.detach = hooks.on('blockWrite', (offset, data) => {
      if (this.mode === 'hold') this.currentDisk.push({ offset, data: data.slice() });
    });
  }

  /** Who is asked for a checkpoint when an epoch's first output is held. */
  setOnOutput(fn: (() => void) | undefined): void { this.onOutput = fn; }

  get holding(): boolean { return this.mode === 'hold'; }
  get epoch(): bigint { return this.current; }
  /** The output watermark: every output of epochs <= this has been released. */
  get releasedUpTo(): bigint { return this.released; }
  /** Bytes of outputs waiting for an ACK (cut epochs and the current one). */
  get heldBytes(): number { return this.heldTotal + this.currentBytes; }
  /** Cut epochs waiting for their ACK. */
  get heldEpochs(): number { return this.held.length; }
  /** Whether outputs of `epoch` are held now (cut, not yet released). */
  holdsEpoch(epoch: bigint): boolean { return this.held.some((h) => h.epoch === epoch); }
  /** Outputs produced in the current epoch so far. */
  get pendingEvents(): number { return this.currentEvents.length + (this.serialRun ? 1 : 0); }

  /** A NIC backend whose send goes through the tap; frames received pass straight in. */
  netBackend(real: NetBackend): NetBackend {
    return {
      send: (frame) => this.output({ kind: EventKind.NET, port: 0, data: frame }),
      onFrame: (fn) => real.onFrame(fn),
      close: () => real.close(),
    };
  }

  /** Serial bytes the guest sent on port `port`. */
  serial(port: number, bytes: Uint8Array): void {
    this.output({ kind: EventKind.SERIAL, port, data: bytes });
  }

  /** A frame the guest's NIC sent. */
  net(frame: Uint8Array): void {
    this.output({ kind: EventKind.NET, port: 0, data: frame });
  }

  private output(e: HeldEvent): void {
    if (this.mode === 'passthrough') {
      this.emit(e);
      return;
    }
    if (this.releaseEarly) this.emit({ kind: e.kind, port: e.port, data: e.data.slice() });
    const first = this.currentEvents.length === 0 && this.serialRun === undefined;
    if (e.kind === EventKind.SERIAL) {
      // A UART sends byte by byte: consecutive bytes for one port become one event.
      if (this.serialRun && this.serialRun.port !== e.port) this.closeSerialRun();
      const run = (this.serialRun ??= { port: e.port, bytes: new Uint8Array(64), length: 0 });
      if (run.length + e.data.length > run.bytes.length) {
        const grown = new Uint8Array(Math.max(run.bytes.length * 2, run.length + e.data.length));
        grown.set(run.bytes.subarray(0, run.length));
        run.bytes = grown;
      }
      run.bytes.set(e.data, run.length);
      run.length += e.data.length;
    } else {
      this.closeSerialRun();
      this.currentEvents.push({ kind: e.kind, port: e.port, data: e.data.slice() });
    }
    this.currentBytes += e.data.length;
    if (first) this.onOutput?.();
  }

  /** Serial bytes gathered for one port, not yet an event. */
  private serialRun: { port: number; bytes: Uint8Array; length: number } | undefined;

  private closeSerialRun(): void {
    const run = this.serialRun;
    if (!run) return;
    this.serialRun = undefined;
    this.currentEvents.push({ kind: EventKind.SERIAL, port: run.port, data: run.bytes.slice(0, run.length) });
  }

  private emit(e: HeldEvent): void {
    if (e.kind === EventKind.NET) this.sinks.net(e.data);
    else this.sinks.serial(e.port, e.data);
  }

  /**
   * Close the current epoch (its checkpoint is being taken now) and start the next. Its
   * outputs stay held until release(epoch) or later; its disk writes go to the caller.
   */
  cut(): EpochOutput {
    this.closeSerialRun();
    const out: EpochOutput = { epoch: this.current, events: this.currentEvents, diskWrites: this.currentDisk, eventBytes: this.currentBytes };
    if (this.mode === 'hold' && out.events.length > 0) {
      this.held.push({ epoch: out.epoch, events: out.events, bytes: out.eventBytes });
      this.heldTotal += out.eventBytes;
    }
    this.current++;
    this.currentEvents = [];
    this.currentBytes = 0;
    this.currentDisk = [];
    return out;
  }

  /** Epoch numbering continues from `epoch` (the next epoch produced will be epoch + 1). */
  startAfter(epoch: bigint): void {
    if (this.currentEvents.length > 0 || this.serialRun || this.held.length > 0) throw new Error('EventTap.startAfter with outputs held');
    this.current = epoch + 1n;
    this.released = epoch;
    this.currentDisk = [];
  }

  /** The secondary has committed `epoch`: release the held outputs of every epoch <= it, in order. */
  release(epoch: bigint): void {
    while (this.held.length > 0 && this.held[0].epoch <= epoch) {
      const h = this.held.shift()!;
      this.heldTotal -= h.bytes;
      if (!this.releaseEarly) for (const e of h.events) this.emit(e);
    }
    if (epoch > this.released) this.released = epoch;
  }

  /** Start holding outputs (FT protection begins with the epoch after `epoch`). */
  hold(epoch: bigint): void {
    this.startAfter(epoch);
    this.mode = 'hold';
  }

  /**
   * Stop holding: release everything held so far, in order, and pass outputs through from
   * now on. Only for a VM that is alone (its peer is gone and it was told so) or shutting FT
   * down in order.
   */
  passThrough(): void {
    for (const h of this.held) if (!this.releaseEarly) for (const e of h.events) this.emit(e);
    this.closeSerialRun();
    if (!this.releaseEarly) for (const e of this.currentEvents) this.emit(e);
    this.held.length = 0;
    this.heldTotal = 0;
    this.currentEvents = [];
    this.currentBytes = 0;
    this.currentDisk = [];
    this.mode = 'passthrough';
  }
}
