/**
 * Machine time. Devices read time only through a Clock; the machine advances it.
 *
 * - VirtualClock: time is derived from the instruction counter (1 instruction = 1 ns, a
 *   1 GHz virtual CPU whose TSC equals nowNs), plus the time skipped while the CPU was
 *   halted. Same inputs give the same run, bit for bit.
 * - RealtimeClock: follows the host's monotonic clock; the guest TSC is kept at 1 GHz and
 *   monotonic, also across save/restore (the state carries the time already elapsed).
 */
import type { Clock } from './device.ts';

export type ClockMode = 'virtual' | 'realtime';

export interface MachineClock extends Clock {
  readonly mode: ClockMode;
  /** Called by the machine with the retired-instruction count before devices tick. */
  sync(instructions: bigint): void;
  /** Virtual mode: jump forward to `ns` (a halted CPU waiting for a timer). */
  skipTo(ns: number): void;
  /** Nanoseconds of guest time already elapsed, for snapshots. */
  elapsedNs(): number;
  /** Continue from a snapshot's elapsed time and instruction count. */
  restore(elapsedNs: number, instructions: bigint): void;
}

export class VirtualClock implements MachineClock {
  readonly mode = 'virtual';
  /**
   * Time added by halts: nowNs = instructions + skippedNs. Public so a snapshot carries it
   * exactly: it is a float (timer deadlines fall between nanoseconds), and rebuilding it as
   * elapsedNs - instructions would round it, moving every later deadline by an ulp.
   */
  skippedNs = 0;
  /**
   * @param instructions reads the live retired-instruction counter, so a device polled in a
   *   tight loop (Linux's PIT calibration on port 0x61) sees time move with every access.
   */
  constructor(readonly rtcBaseMs: number, private readonly instructions: () => bigint) {}
  sync(): void {}
  nowNs(): number { return Number(this.instructions()) + this.skippedNs; }
  skipTo(ns: number): void {
    const now = this.nowNs();
    if (ns > now) this.skippedNs += ns - now;
  }
  elapsedNs(): number { return this.nowNs(); }
  restore(elapsedNs: number, instructions: bigint): void {
    this.skippedNs = elapsedNs - Number(instructions);
  }
  /** The TSC offset that makes TSC == nowNs. */
  tscOffset(): bigint { return BigInt(this.skippedNs); }
}

export class RealtimeClock implements MachineClock {
  readonly mode = 'realtime';
  private startHr = process.hrtime.bigint();
  private baseNs = 0;
  constructor(readonly rtcBaseMs: number) {}
  sync(): void {}
  nowNs(): number { return this.baseNs + Number(process.hrtime.bigint() - this.startHr); }
  skipTo(): void {}
  elapsedNs(): number { return this.nowNs(); }
  restore(elapsedNs: number): void {
    this.startHr = process.hrtime.bigint();
    this.baseNs = elapsedNs;
  }
}
