/**
 * A machine: the CPU core, the port and MMIO buses, the clock and the devices' timers, and
 * the run loop that ties them together. Platform wiring (which chips sit where) is done by
 * pc.ts; this file knows no particular device.
 */
import { Cpu, StopReason } from './cpu.ts';
import { PortBus, MmioBus } from './bus.ts';
import type { AccessSize, TimedDevice } from './device.ts';
import { MachineHooks } from './hooks.ts';
import { VirtualClock, RealtimeClock, type MachineClock, type ClockMode } from './clock.ts';

/** How a run ended. */
export type RunOutcome =
  | { kind: 'exit'; status: number }       // debug-exit port, QEMU isa-debug-exit convention
  | { kind: 'poweroff' }                    // ACPI S5 (or the platform's power-off)
  | { kind: 'reset' }                       // guest-requested reset with no-reboot, or a triple fault
  | { kind: 'dead' }                        // HLT with interrupts off and nothing that can wake it
  | { kind: 'limit' }                       // the instruction budget ran out
  | { kind: 'idle' }                        // virtual clock: halted with no timer armed (waiting for input)
  | { kind: 'stopped' }                     // stop() was called
  | { kind: 'pause' };                      // pause() was called: the host wants the CPU at an
                                            // instruction boundary (an FT checkpoint), then runs on

/** The interrupt controller as the CPU sees it: the INTA cycle. */
export interface InterruptController {
  acknowledge(): number;
}

export interface MachineOptions {
  /** Guest RAM in bytes. */
  memoryBytes: number;
  clock?: ClockMode;
  /** Wall-clock time (ms since 1970) the guest's RTC starts from. Default: the host's now. */
  rtcBaseMs?: number;
  /** A guest-requested reset or triple fault stops the machine instead of rebooting. */
  noReboot?: boolean;
  /** The block compiler's threshold (CpuOptions.jitThreshold); 0 = off. */
  jitThreshold?: number;
}

/**
 * The machine's own time bookkeeping, as a snapshot holds it (vm-state.ts): the clock and
 * the TSC's monotonic floor. Device timers hold absolute guest nanoseconds, so restoring
 * this makes them, the TSC and the PM timer continue where they were.
 */
export interface MachineTimeState {
  mode: ClockMode;
  /** Guest nanoseconds since power-on at the save. */
  elapsedNs: number;
  /** Retired instructions at the save (the CPU state holds the counter itself). */
  instructions: bigint;
  /** Virtual clock: time skipped over halts, exactly (VirtualClock.skippedNs). 0 in realtime. */
  skippedNs: number;
  /** The last TSC value handed out: the guest's TSC never goes below it. */
  lastTsc: bigint;
  /** Realtime: TSC minus host-derived nanoseconds after a guest WRMSR to the TSC. */
  tscAdjust: bigint;
}

/** A busy run() yields to the host's event loop at least this often (ms). */
const YIELD_MS = 4;

/** Instructions per slice: devices tick between slices, so this bounds timer latency. */
const SLICE = 200_000;

export class Machine {
  readonly cpu: Cpu;
  readonly ports = new PortBus();
  readonly mmio = new MmioBus();
  readonly hooks = new MachineHooks();
  readonly clock: MachineClock;
  readonly noReboot: boolean;
  private readonly timed: TimedDevice[] = [];
  private readonly resetHandlers: (() => void)[] = [];
  private interruptController: InterruptController | undefined;
  private pending: RunOutcome | undefined;
  private nextDeadline = Infinity;
  private lastTsc = 0n;
  private tscAdjust = 0n;
  /** Wakes an async run() waiting in HLT (input arrived, stop requested). */
  private wake: (() => void) | undefined;

  constructor(opts: MachineOptions) {
    const mode = opts.clock ?? 'realtime';
    const rtcBase = opts.rtcBaseMs ?? Date.now();
    this.noReboot = opts.noReboot ?? false;
    this.cpu = new Cpu({
      ramBytes: opts.memoryBytes,
      jitThreshold: opts.jitThreshold,
      bus: {
        ioRead: (port, size) => this.ports.read(port, size as AccessSize),
        ioWrite: (port, size, value) => {
          this.hooks.emit('ioportWrite', port, size as AccessSize, value);
          this.ports.write(port, size as AccessSize, value);
        },
        mmioRead: (addr, size) => this.mmio.read(addr, size as AccessSize),
        mmioWrite: (addr, size, value) => {
          this.hooks.emit('mmioWrite', addr, size as AccessSize, value);
          this.mmio.write(addr, size as AccessSize, value);
        },
        interruptAcknowledge: () => (this.interruptController ? this.interruptController.acknowledge() : -1),
        readTsc: () => this.liveTsc(),
        writeTsc: (v) => { this.tscAdjust = v - BigInt(Math.floor(this.clock.nowNs())); this.lastTsc = 0n; },
      },
    });
    this.clock = mode === 'virtual'
      ? new VirtualClock(rtcBase, () => this.cpu.instructionCount)
      : new RealtimeClock(rtcBase);
    // Realtime: the TSC is host time read live at RDTSC, so the guest's calibration against
    // the PIT and PM timer (also host time) agrees, and TSC-based clocks run at real speed.
    this.cpu.state.tscLive = mode === 'realtime';
    this.cpu.onReset = () => { this.cpu.state.tscLive = mode === 'realtime'; };
  }

  /** Guest TSC under the realtime clock: nanoseconds at 1 GHz, never going backwards. */
  private liveTsc(): bigint {
    let t = BigInt(Math.floor(this.clock.nowNs())) + this.tscAdjust;
    if (t < this.lastTsc) t = this.lastTsc;
    this.lastTsc = t;
    return t;
  }

  /** The clock and TSC bookkeeping, for a snapshot (call between runs). */
  saveTime(): MachineTimeState {
    const clock = this.clock;
    return {
      mode: clock.mode,
      elapsedNs: clock.elapsedNs(),
      instructions: this.cpu.instructionCount,
      skippedNs: clock instanceof VirtualClock ? clock.skippedNs : 0,
      lastTsc: this.lastTsc,
      tscAdjust: this.tscAdjust,
    };
  }

  /**
   * Continue from a snapshot's time. `instructions` is the counter the CPU state being
   * restored holds: the virtual clock derives time from it, so it is right once the CPU
   * bytes are loaded too. Throws if the state is for the other clock mode.
   */
  restoreTime(s: MachineTimeState): void {
    if (s.mode !== this.clock.mode) throw new Error(`the state runs on the ${s.mode} clock, this machine on the ${this.clock.mode} clock`);
    if (this.clock instanceof VirtualClock) this.clock.skippedNs = s.skippedNs;
    else this.clock.restore(s.elapsedNs, s.instructions);
    this.lastTsc = s.lastTsc;
    this.tscAdjust = s.tscAdjust;
    this.nextDeadline = Infinity;
  }

  /**
   * Virtual clock: let guest time pass up to `ns` as it passes over a halted CPU in run(),
   * deadline by deadline, without retiring an instruction. This replays an input that was
   * recorded while the guest slept: run() takes input only between slices, so an input is
   * stamped by the instruction count and the guest time it arrived at, and a halted guest
   * sees time pass at one instruction count. Returns false, leaving time where it got to,
   * if the CPU is not halted or an interrupt would wake it first (the replay diverged).
   */
  idleUntil(ns: number): boolean {
    if (this.clock.mode !== 'virtual') throw new Error('idleUntil needs the virtual clock');
    for (;;) {
      if (this.clock.nowNs() >= ns) return true;
      if (!this.cpu.state.halted) return false;
      this.tickDevices();
      // As run() does: a raised line wakes the CPU, and with no timer armed time stands still.
      if (this.cpu.state.intrLine || this.nextDeadline === Infinity) return false;
      this.clock.skipTo(Math.min(this.nextDeadline, ns));
    }
  }

  addTimedDevice(d: TimedDevice): void { this.timed.push(d); }
  onReset(fn: () => void): void { this.resetHandlers.push(fn); }
  setInterruptController(ic: InterruptController): void { this.interruptController = ic; }

  /** The INTR line into the CPU (driven by the interrupt controller's output). */
  setIntr(level: boolean): void { this.cpu.state.intrLine = level; }

  /** End the current run with `outcome` at the next instruction boundary. */
  requestStop(outcome: RunOutcome): void {
    if (!this.pending) this.pending = outcome;
    this.cpu.state.hostRequest = true;
    this.wake?.();
  }

  /** Something external happened (input arrived): a halted async run re-checks its devices. */
  kick(): void { this.wake?.(); }

  /** Guest-requested reset (i8042 pulse, port 0x92, triple fault). */
  requestReset(): void {
    if (this.noReboot) { this.requestStop({ kind: 'reset' }); return; }
    this.cpu.reset();
    for (const fn of this.resetHandlers) fn();
  }

  /** Bring devices up to the current time; returns the earliest deadline. */
  private tickDevices(): number {
    this.clock.sync(this.cpu.instructionCount);
    const now = this.clock.nowNs();
    let next = Infinity;
    for (const d of this.timed) {
      const t = d.tick(now);
      if (t < next) next = t;
    }
    this.nextDeadline = next;
    this.updateTsc(now);
    return now;
  }

  /** Virtual clock: keep the guest TSC equal to machine time (1 GHz), never going backwards. */
  private updateTsc(now: number): void {
    if (this.clock.mode !== 'virtual') return;
    const count = this.cpu.instructionCount;
    const st = this.cpu.state;
    let tsc = BigInt(Math.floor(now));
    const current = count + st.tscOffset;
    if (tsc < current) tsc = current;
    if (tsc < this.lastTsc) tsc = this.lastTsc;
    st.tscOffset = tsc - count;
    this.lastTsc = tsc;
  }

  /**
   * One slice: tick devices, run the CPU up to the next deadline (virtual clock) or a fixed
   * slice, and handle what stopped it. Returns an outcome when the run must end, 'halt'
   * when the CPU waits for an interrupt, or undefined to go on.
   */
  private slice(budget: bigint): RunOutcome | 'halt' | undefined {
    const now = this.tickDevices();
    let n = BigInt(SLICE);
    if (this.clock.mode === 'virtual' && this.nextDeadline !== Infinity) {
      const until = BigInt(Math.max(1, Math.ceil(this.nextDeadline - now)));
      if (until < n) n = until;
    }
    if (budget < n) n = budget;
    const stop = this.cpu.run(n);
    if (this.pending) return this.takePending();
    switch (stop) {
      case StopReason.Shutdown:
        // Triple fault: the CPU shuts down and the board resets it (SDM Vol. 3, 6.15).
        this.cpu.state.shutdown = false;
        this.requestReset();
        return this.pending ? this.takePending() : undefined;
      case StopReason.Halt: {
        const st = this.cpu.state;
        if (!st.interruptsEnabled) return { kind: 'dead' };
        return 'halt';
      }
      default:
        return undefined;
    }
  }

  private takePending(): RunOutcome {
    const o = this.pending!;
    this.pending = undefined;
    this.cpu.state.hostRequest = false;
    return o;
  }

  /**
   * Run synchronously for at most `maxInstructions` retired instructions. With the virtual
   * clock a halted CPU jumps to the next timer deadline; with no deadline the run ends
   * 'idle'. With the realtime clock a halt ends the call as 'idle' too (use run()).
   */
  runSync(maxInstructions: number | bigint): RunOutcome {
    const end = this.cpu.instructionCount + BigInt(maxInstructions);
    for (;;) {
      const left = end - this.cpu.instructionCount;
      if (left <= 0n) return { kind: 'limit' };
      const r = this.slice(left);
      if (r === undefined) continue;
      if (r !== 'halt') return r;
      if (this.clock.mode !== 'virtual') return { kind: 'idle' };
      this.tickDevices();
      if (this.cpu.state.intrLine) continue;
      if (this.nextDeadline === Infinity) return { kind: 'idle' };
      this.clock.skipTo(this.nextDeadline);
    }
  }

  /**
   * Run until an outcome other than 'limit' (or until `maxInstructions`), yielding to the
   * event loop between slices so I/O and timers of the host make progress. A halted CPU
   * sleeps until its next timer deadline (realtime) or until kick() (input).
   */
  async run(maxInstructions: number | bigint = Number.MAX_SAFE_INTEGER): Promise<RunOutcome> {
    const end = this.cpu.instructionCount + BigInt(maxInstructions);
    let slices = 0;
    let lastYield = performance.now();
    for (;;) {
      const left = end - this.cpu.instructionCount;
      if (left <= 0n) return { kind: 'limit' };
      const r = this.slice(left);
      if (r !== undefined && r !== 'halt') return r;
      if (r === 'halt') {
        this.tickDevices();
        if (this.cpu.state.intrLine) continue;
        if (this.clock.mode === 'virtual') {
          if (this.nextDeadline !== Infinity) {
            this.clock.skipTo(this.nextDeadline);
            // A guest idling on a timer (Linux's idle loop) never leaves this path: yield
            // now and then all the same, or stdin, sockets and SIGINT would never be heard.
            if (++slices % 8 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
            if (this.pending) return this.takePending();
            continue;
          }
          await this.sleep(Infinity);
        } else {
          await this.sleep(this.nextDeadline - this.clock.nowNs());
        }
        if (this.pending) return this.takePending();
        continue;
      }
      // Let the host's event loop run now and then (sockets, stdin, timers): every 8 slices,
      // or sooner when slices are slow, so a host timer (an FT checkpoint's batching delay,
      // a heartbeat) or an ACK waits at most YIELD_MS behind a busy guest.
      if (++slices % 8 === 0 || performance.now() - lastYield >= YIELD_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
      if (this.pending) return this.takePending();
    }
  }

  private sleep(ns: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      if (Number.isFinite(ns)) timer = setTimeout(done, Math.max(0, Math.min(ns / 1e6, 1000)));
    });
  }

  stop(): void { this.requestStop({ kind: 'stopped' }); }

  /** End the current run() at the next instruction boundary with 'pause' (unless it is ending anyway). */
  pause(): void { this.requestStop({ kind: 'pause' }); }
}
