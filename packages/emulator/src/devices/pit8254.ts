/**
 * Intel 8254 programmable interval timer at ports 0x40-0x43, clocked at 1.193182 MHz.
 * Channel 0 drives IRQ0; channel 1 is the (unused) DRAM refresh timer; channel 2's gate and
 * output are wired to port 0x61 (see port61.ts), which Linux uses to calibrate the TSC.
 *
 * Counting is not simulated clock by clock: each channel remembers the PIT clock tick at
 * which its counting element was loaded, and count and OUT are closed-form functions of the
 * tick derived from the injected Clock. Mode timings follow the Intel 8254 datasheet
 * (231164), "Mode Definitions"; tick numbering: a count written between ticks W and W+1 is
 * loaded into the counting element on tick W+1 ("the next CLK pulse").
 *
 * References: Intel 8254 datasheet, Linux drivers/clocksource/i8253.c (mode 2 periodic,
 * mode 4 oneshot via 0x34/0x38), arch/x86/kernel/tsc.c (pit_calibrate_tsc, pit_expect_msb),
 * QEMU hw/timer/i8254.c.
 */
import type { AccessSize, Clock, IrqLine, PortDevice, Persistent, TimedDevice } from '../device.ts';
import { StateFields } from './state-fields.ts';

export const PIT_HZ = 1_193_182;
const NS_PER_S = 1_000_000_000;

/** The PIT clock tick count at time `ns`: floor(ns * PIT_HZ / 1e9), exact for ns < 2^53. */
export function pitTicksAt(ns: number): number {
  const t = Math.floor(ns);
  if (!(t > 0)) return 0;
  const seconds = Math.floor(t / NS_PER_S);
  const rest = t - seconds * NS_PER_S;
  // rest * PIT_HZ < 1.2e15 stays exact in a float64, so no tick is ever skipped or repeated.
  return seconds * PIT_HZ + Math.floor((rest * PIT_HZ) / NS_PER_S);
}

/** The first nanosecond at which pitTicksAt() reaches `tick`. */
export function nsAtPitTick(tick: number): number {
  const seconds = Math.floor(tick / PIT_HZ);
  const rest = tick - seconds * PIT_HZ;
  return seconds * NS_PER_S + Math.ceil((rest * NS_PER_S) / PIT_HZ);
}

/** The saved state of one counter. Ticks are absolute PIT clock ticks since power-on. */
export interface PitChannelState {
  /** Counter mode 0-5 (modes 6 and 7 are stored as 2 and 3). */
  mode: number;
  bcd: boolean;
  /** RW field: 1 = LSB only, 2 = MSB only, 3 = LSB then MSB. */
  access: number;
  /** The count register (CR) as last written, raw 16 bits (0 = 65536 or BCD 10000). */
  countRegister: number;
  /** A count has been written since the last control word. */
  countWritten: boolean;
  /** The LSB of a two-byte count has been written; the MSB is next. */
  writeMsbNext: boolean;
  /** The LSB written first in two-byte access. */
  pendingLsb: number;
  /** Two-byte reads: the MSB is next. */
  readMsbNext: boolean;
  countLatched: boolean;
  latchedCount: number;
  statusLatched: boolean;
  latchedStatus: number;
  /** GATE input level. */
  gate: boolean;
  /** The counting element holds a count and is (or will be, from `loadTick`) counting. */
  running: boolean;
  /** Tick at which the counting element was loaded for the current cycle. */
  loadTick: number;
  /** The count loaded into the counting element (1..65536, or 1..10000 in BCD). */
  initialCount: number;
  /** Counting is suspended by GATE low (modes 0 and 4). */
  paused: boolean;
  /** Ticks counted before the suspension. */
  pausedElapsed: number;
  /** Modes 2/3: a count written while counting, loaded at the end of the current cycle (0 = none). */
  nextCount: number;
  /** Tick at which `nextCount` is loaded. */
  nextCountTick: number;
  /** The value reported while the counting element is not counting. */
  heldCount: number;
  /** Status bit 6: the count register has not been loaded into the counting element yet. */
  nullCount: boolean;
}

export interface Pit8254State {
  channels: PitChannelState[];
  /** The IRQ0 level as last driven. */
  irq0Level: boolean;
  /** The tick up to which channel 0's rising edges have been delivered to IRQ0. */
  irq0SyncedTick: number;
}

class PitChannel {
  mode = 0;
  bcd = false;
  access = 3;
  countRegister = 0;
  countWritten = false;
  writeMsbNext = false;
  pendingLsb = 0;
  readMsbNext = false;
  countLatched = false;
  latchedCount = 0;
  statusLatched = false;
  latchedStatus = 0;
  gate = true;
  running = false;
  loadTick = 0;
  initialCount = 0x10000;
  paused = false;
  pausedElapsed = 0;
  nextCount = 0;
  nextCountTick = 0;
  heldCount = 0;
  nullCount = true;

  private modulus(): number {
    return this.bcd ? 10000 : 0x10000;
  }

  /** The count register as a count: 0 means the maximum (datasheet, "Write Operations"). */
  private effectiveCount(raw: number): number {
    if (!this.bcd) return raw === 0 ? 0x10000 : raw;
    const value = fromBcd(raw);
    return value === 0 ? 10000 : value;
  }

  private elapsed(tick: number): number {
    return this.paused ? this.pausedElapsed : tick - this.loadTick;
  }

  /** Apply a count written during counting once its reload point has passed (modes 2/3). */
  settle(tick: number): void {
    if (this.nextCount !== 0 && tick >= this.nextCountTick) {
      this.loadTick = this.nextCountTick;
      this.initialCount = this.nextCount;
      this.nextCount = 0;
    }
    if (this.running && this.nextCount === 0 && this.elapsed(tick) >= 0) this.nullCount = false;
  }

  /** The counting element's value at `tick` (binary, even in BCD mode). */
  count(tick: number): number {
    if (!this.running) return this.heldCount;
    const p = this.elapsed(tick);
    if (p < 0) return this.heldCount;
    const n = this.initialCount;
    const m = this.modulus();
    switch (this.mode) {
      case 2:
        return (n - (p % n)) % m;
      case 3: {
        // Decrements by two; an odd count loads N-1 for the high half and reloads N-1 for
        // the low half (datasheet, Mode 3).
        const q = p % n;
        const highLength = Math.ceil(n / 2);
        if (n % 2 === 0) return (q < highLength ? n - 2 * q : n - 2 * (q - highLength)) % m;
        return q < highLength ? n - 1 - 2 * q : n - 1 - 2 * (q - highLength);
      }
      default:
        // Modes 0, 1, 4, 5 keep counting after terminal count, wrapping around.
        return (((n - p) % m) + m) % m;
    }
  }

  /** The OUT pin at `tick`. */
  out(tick: number): boolean {
    if (!this.running) return this.mode !== 0;
    const p = this.elapsed(tick);
    const n = this.initialCount;
    switch (this.mode) {
      case 0:
        return p >= n;
      case 1:
        return p < 0 || p >= n;
      case 2:
        return p < 0 || p % n !== n - 1;
      case 3:
        return p < 0 || p % n < Math.ceil(n / 2);
      default:
        // Modes 4 and 5: a one-clock low strobe when the count reaches zero.
        return p !== n;
    }
  }

  /** The first tick after `after` at which OUT rises, or Infinity. Call after settle(after). */
  nextRisingEdge(after: number): number {
    if (!this.running || this.paused) return Infinity;
    const n = this.initialCount;
    const from = this.loadTick;
    let edge: number;
    switch (this.mode) {
      case 0:
      case 1:
        edge = from + n;
        break;
      case 2:
      case 3: {
        // OUT rises at every reload; a count of 1 never toggles.
        if (n === 1) return Infinity;
        const k = Math.max(1, Math.floor((after - from) / n) + 1);
        return from + k * n;
      }
      default:
        edge = from + n + 1;
        break;
    }
    return edge > after ? edge : Infinity;
  }

  writeControl(value: number, tick: number): void {
    const mode = (value >> 1) & 7;
    this.heldCount = this.count(tick);
    this.mode = mode > 5 ? mode - 4 : mode;
    this.bcd = (value & 1) !== 0;
    this.access = (value >> 4) & 3;
    // "When a Control Word is written to a Counter, all Control Logic is immediately reset
    // and OUT goes to a known initial state": counting waits for a new count.
    this.writeMsbNext = false;
    this.readMsbNext = false;
    this.countLatched = false;
    this.statusLatched = false;
    this.countWritten = false;
    this.running = false;
    this.paused = false;
    this.pausedElapsed = 0;
    this.nextCount = 0;
    this.nullCount = true;
  }

  writeCount(value: number, tick: number): void {
    let raw: number;
    switch (this.access) {
      case 1:
        raw = value;
        break;
      case 2:
        raw = value << 8;
        break;
      default:
        if (!this.writeMsbNext) {
          this.pendingLsb = value;
          this.writeMsbNext = true;
          // Mode 0: "Writing the first byte disables counting. OUT is set low immediately."
          if (this.mode === 0 && this.running) {
            this.heldCount = this.count(tick);
            this.running = false;
          }
          return;
        }
        this.writeMsbNext = false;
        raw = this.pendingLsb | (value << 8);
        break;
    }
    this.loadCount(raw, tick);
  }

  private loadCount(raw: number, tick: number): void {
    this.countRegister = raw;
    this.countWritten = true;
    this.nullCount = true;
    const n = this.effectiveCount(raw);
    switch (this.mode) {
      case 0:
      case 4:
        // Loaded on the next CLK; counting (re)starts from the new count. GATE low holds it.
        this.start(tick + 1, n);
        if (!this.gate) {
          this.paused = true;
          this.pausedElapsed = 0;
        }
        break;
      case 2:
      case 3:
        if (this.running && tick >= this.loadTick) {
          // "Writing a new count while counting does not affect the current counting
          // sequence": it is loaded at the end of the current cycle. (Mode 3 on real parts
          // switches at the end of the half-cycle; a full cycle keeps OUT edges aligned.)
          const p = tick - this.loadTick;
          this.nextCount = n;
          this.nextCountTick = this.loadTick + (Math.floor(p / this.initialCount) + 1) * this.initialCount;
        } else if (this.gate) {
          this.start(tick + 1, n);
        }
        break;
      default:
        // Modes 1 and 5 wait for a GATE trigger; a running cycle finishes with its count.
        break;
    }
  }

  private start(loadTick: number, n: number): void {
    this.running = true;
    this.loadTick = loadTick;
    this.initialCount = n;
    this.paused = false;
    this.pausedElapsed = 0;
    this.nextCount = 0;
  }

  setGate(level: boolean, tick: number): void {
    if (level === this.gate) return;
    this.gate = level;
    switch (this.mode) {
      case 0:
      case 4:
        if (!this.running) break;
        if (level && this.paused) {
          this.loadTick = tick - this.pausedElapsed;
          this.paused = false;
        } else if (!level && !this.paused) {
          this.pausedElapsed = Math.max(0, tick - this.loadTick);
          this.paused = true;
        }
        break;
      case 2:
      case 3:
        if (level) {
          // A rising GATE reloads the count on the next CLK.
          if (this.countWritten) this.start(tick + 1, this.effectiveCount(this.countRegister));
        } else if (this.running) {
          // GATE low stops counting and forces OUT high.
          this.heldCount = this.count(tick);
          this.running = false;
          this.nextCount = 0;
        }
        break;
      default:
        // Modes 1 and 5: a rising GATE triggers (and retriggers) the one-shot.
        if (level && this.countWritten) this.start(tick + 1, this.effectiveCount(this.countRegister));
        break;
    }
  }

  latchCount(tick: number): void {
    // Further latch commands are ignored until the latched count is read.
    if (this.countLatched) return;
    this.countLatched = true;
    this.latchedCount = this.encode(this.count(tick));
  }

  latchStatus(tick: number): void {
    if (this.statusLatched) return;
    this.statusLatched = true;
    this.latchedStatus =
      (this.out(tick) ? 0x80 : 0) |
      (this.nullCount ? 0x40 : 0) |
      (this.access << 4) |
      (this.mode << 1) |
      (this.bcd ? 1 : 0);
  }

  read(tick: number): number {
    if (this.statusLatched) {
      this.statusLatched = false;
      return this.latchedStatus;
    }
    const latched = this.countLatched;
    const value = latched ? this.latchedCount : this.encode(this.count(tick));
    let byte: number;
    switch (this.access) {
      case 1:
        byte = value & 0xff;
        this.countLatched = false;
        break;
      case 2:
        byte = value >> 8;
        this.countLatched = false;
        break;
      default:
        if (!this.readMsbNext) {
          byte = value & 0xff;
          this.readMsbNext = true;
        } else {
          byte = value >> 8;
          this.readMsbNext = false;
          this.countLatched = false;
        }
        break;
    }
    return byte;
  }

  private encode(count: number): number {
    return this.bcd ? toBcd(count % 10000) : count & 0xffff;
  }

  save(): PitChannelState {
    return {
      mode: this.mode,
      bcd: this.bcd,
      access: this.access,
      countRegister: this.countRegister,
      countWritten: this.countWritten,
      writeMsbNext: this.writeMsbNext,
      pendingLsb: this.pendingLsb,
      readMsbNext: this.readMsbNext,
      countLatched: this.countLatched,
      latchedCount: this.latchedCount,
      statusLatched: this.statusLatched,
      latchedStatus: this.latchedStatus,
      gate: this.gate,
      running: this.running,
      loadTick: this.loadTick,
      initialCount: this.initialCount,
      paused: this.paused,
      pausedElapsed: this.pausedElapsed,
      nextCount: this.nextCount,
      nextCountTick: this.nextCountTick,
      heldCount: this.heldCount,
      nullCount: this.nullCount,
    };
  }

  static check(f: StateFields): PitChannelState {
    const maxTick = Number.MAX_SAFE_INTEGER;
    return {
      mode: f.int('mode', 0, 5),
      bcd: f.bool('bcd'),
      access: f.int('access', 1, 3),
      countRegister: f.int('countRegister', 0, 0xffff),
      countWritten: f.bool('countWritten'),
      writeMsbNext: f.bool('writeMsbNext'),
      pendingLsb: f.int('pendingLsb', 0, 0xff),
      readMsbNext: f.bool('readMsbNext'),
      countLatched: f.bool('countLatched'),
      latchedCount: f.int('latchedCount', 0, 0xffff),
      statusLatched: f.bool('statusLatched'),
      latchedStatus: f.int('latchedStatus', 0, 0xff),
      gate: f.bool('gate'),
      running: f.bool('running'),
      loadTick: f.int('loadTick', 0, maxTick),
      initialCount: f.int('initialCount', 1, 0x10000),
      paused: f.bool('paused'),
      pausedElapsed: f.int('pausedElapsed', 0, maxTick),
      nextCount: f.int('nextCount', 0, 0x10000),
      nextCountTick: f.int('nextCountTick', 0, maxTick),
      heldCount: f.int('heldCount', 0, 0xffff),
      nullCount: f.bool('nullCount'),
    };
  }

  load(s: PitChannelState): void {
    Object.assign(this, s);
  }
}

/** What port 0x61 needs from the PIT: channel 2's GATE input and OUT output. */
export interface PitSpeakerChannel {
  setChannel2Gate(level: boolean): void;
  channel2Gate(): boolean;
  channel2Out(): boolean;
}

export class Pit8254 implements PortDevice, TimedDevice, PitSpeakerChannel, Persistent<Pit8254State> {
  readonly stateName = 'pit8254';
  readonly stateVersion = 1;

  private readonly channels = [new PitChannel(), new PitChannel(), new PitChannel()];
  private irq0Level = false;
  private irq0SyncedTick = 0;

  /**
   * @param irq0 channel 0's OUT, wired to ISA IRQ0 (edge triggered at the PIC)
   * @param clock the only source of time
   */
  constructor(
    private readonly irq0: IrqLine,
    private readonly clock: Clock,
  ) {
    this.reset();
  }

  /** Power-on: every counter in mode 0 without a count, channel 2's gate low (port 0x61 = 0). */
  reset(): void {
    for (const ch of this.channels) ch.load(new PitChannel().save());
    this.channels[2].gate = false;
    this.irq0SyncedTick = pitTicksAt(this.clock.nowNs());
    this.irq0Level = false;
    this.irq0.set(false);
  }

  read(offset: number, _size: AccessSize = 1): number {
    const tick = this.advance();
    if (offset === 3) return 0xff; // the control word register is write-only
    return this.channels[offset & 3].read(tick);
  }

  write(offset: number, value: number, _size: AccessSize = 1): void {
    const tick = this.advance();
    value &= 0xff;
    if (offset === 3) {
      this.writeControl(value, tick);
    } else {
      this.channels[offset & 3].writeCount(value, tick);
    }
    this.driveIrq0(tick);
  }

  tick(nowNs: number): number {
    const tick = this.advanceTo(pitTicksAt(nowNs));
    const edge = this.channels[0].nextRisingEdge(tick);
    return edge === Infinity ? Infinity : nsAtPitTick(edge);
  }

  setChannel2Gate(level: boolean): void {
    const tick = this.advance();
    this.channels[2].setGate(level, tick);
  }

  channel2Gate(): boolean {
    return this.channels[2].gate;
  }

  channel2Out(): boolean {
    const tick = this.advance();
    return this.channels[2].out(tick);
  }

  saveState(): Pit8254State {
    return {
      channels: this.channels.map((ch) => ch.save()),
      irq0Level: this.irq0Level,
      irq0SyncedTick: this.irq0SyncedTick,
    };
  }

  loadState(state: Pit8254State): void {
    const f = StateFields.of(this.stateName, state);
    const channels = f.objectList('channels', 3).map((c) => PitChannel.check(c));
    const irq0Level = f.bool('irq0Level');
    const irq0SyncedTick = f.int('irq0SyncedTick', 0, Number.MAX_SAFE_INTEGER);
    channels.forEach((c, i) => this.channels[i].load(c));
    this.irq0Level = irq0Level;
    this.irq0SyncedTick = irq0SyncedTick;
    this.irq0.set(irq0Level);
  }

  private writeControl(value: number, tick: number): void {
    const select = value >> 6;
    if (select === 3) {
      // Read-back command (8254 only): bit 5 low latches counts, bit 4 low latches status.
      for (let c = 0; c < 3; c++) {
        if ((value & (2 << c)) === 0) continue;
        const ch = this.channels[c];
        if ((value & 0x20) === 0) ch.latchCount(tick);
        if ((value & 0x10) === 0) ch.latchStatus(tick);
      }
      return;
    }
    const ch = this.channels[select];
    if ((value & 0x30) === 0) ch.latchCount(tick);
    else ch.writeControl(value, tick);
  }

  private advance(): number {
    return this.advanceTo(pitTicksAt(this.clock.nowNs()));
  }

  /**
   * Bring every channel up to `tick`, first delivering any channel 0 rising edge since the
   * last sync: IRQ0 is edge triggered, so an edge between two ticks must still reach the PIC.
   */
  private advanceTo(tick: number): number {
    const ch0 = this.channels[0];
    if (tick > this.irq0SyncedTick) {
      const edge = ch0.nextRisingEdge(this.irq0SyncedTick);
      if (edge <= tick) {
        if (this.irq0Level) this.irq0.set(false);
        this.irq0.set(true);
        this.irq0Level = true;
      }
    }
    for (const ch of this.channels) ch.settle(tick);
    this.driveIrq0(tick);
    return tick;
  }

  private driveIrq0(tick: number): void {
    const level = this.channels[0].out(tick);
    if (level !== this.irq0Level) {
      this.irq0Level = level;
      this.irq0.set(level);
    }
    if (tick > this.irq0SyncedTick) this.irq0SyncedTick = tick;
  }
}

function fromBcd(raw: number): number {
  return ((raw >> 12) & 0xf) * 1000 + ((raw >> 8) & 0xf) * 100 + ((raw >> 4) & 0xf) * 10 + (raw & 0xf);
}

function toBcd(value: number): number {
  return (
    (Math.floor(value / 1000) % 10 << 12) |
    (Math.floor(value / 100) % 10 << 8) |
    (Math.floor(value / 10) % 10 << 4) |
    value % 10
  );
}
