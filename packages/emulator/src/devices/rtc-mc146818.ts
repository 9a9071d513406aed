/**
 * Motorola MC146818A real-time clock and CMOS RAM at ports 0x70 (index, bit 7 = NMI mask)
 * and 0x71 (data), interrupting on ISA IRQ8.
 *
 * Time of day is not ticked: it is the Clock's wall time (rtcBaseMs + nowNs) plus an offset
 * that the guest changes by setting the clock, so it never drifts from the Clock and an FT
 * secondary reading the same Clock reads the same time. Interrupt flags are brought up to
 * date lazily, over the interval since they were last looked at.
 *
 * References: MC146818A datasheet (register A-D, "Update Cycle"), Linux
 * drivers/rtc/mc146818-lib.c (mc146818_avoid_UIP, mc146818_set_time) and
 * drivers/rtc/rtc-cmos.c, QEMU hw/rtc/mc146818rtc.c and hw/i386/pc.c (pc_cmos_init).
 */
import type { AccessSize, Clock, IrqLine, PortDevice, Persistent, TimedDevice } from '../device.ts';
import { StateFields } from './state-fields.ts';

/** A broken-down date and time (hour 0-23, month 1-12, full year). */
export interface RtcTime {
  second: number;
  minute: number;
  hour: number;
  dayOfMonth: number;
  month: number;
  year: number;
}

export interface RtcMc146818State {
  /** Register index selected through port 0x70 (bits 0-6). */
  index: number;
  /** Port 0x70 bit 7: NMI disabled. */
  nmiMasked: boolean;
  /** Register A bits 0-6 (divider DV2-0, rate RS3-0); UIP is computed. */
  registerA: number;
  registerB: number;
  /** Register C interrupt flags PF (0x40), AF (0x20), UF (0x10); IRQF is computed. */
  interruptFlags: number;
  alarmSecond: number;
  alarmMinute: number;
  alarmHour: number;
  /** CMOS RAM, indexed by register number; bytes 0x00-0x0D are unused here. */
  ram: Uint8Array;
  /** Guest time minus Clock time: whole seconds ... */
  offsetSeconds: number;
  /** ... plus nanoseconds in [0, 1e9). */
  offsetNanos: number;
  /** The time is frozen (SET, or divider in reset) at `heldTime`. */
  held: boolean;
  heldTime: RtcTime;
  /** Clock time (ns) up to which interruptFlags account for updates, alarms and periods. */
  flagsUpdatedNs: number;
  /** The IRQ8 level as last driven (= IRQF). */
  irqLevel: boolean;
}

export interface RtcOptions {
  /** Called when the guest changes port 0x70 bit 7. */
  onNmiMaskChange?: (masked: boolean) => void;
}

const NS_PER_S = 1_000_000_000;
const SECONDS_PER_DAY = 86_400;
/** The 32.768 kHz time base of the divider chain. */
const TIME_BASE_HZ = 32_768;
/**
 * UIP is high for 244 us before the update cycle and through its 1984 us (MC146818A
 * "Update Cycle"; the old Linux get_cmos_time loop "must try at least 2.228 ms"). The time
 * registers change at the end of that window.
 */
const UIP_WINDOW_NS = 2_228_000;

const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const REG_CENTURY = 0x32;

const B_SET = 0x80;
const B_PIE = 0x40;
const B_AIE = 0x20;
const B_UIE = 0x10;
const B_DM_BINARY = 0x04;
const B_24H = 0x02;

const C_IRQF = 0x80;
const C_PF = 0x40;
const C_AF = 0x20;
const C_UF = 0x10;

/** Register D bit 7, VRT: the battery is good. */
const D_VRT = 0x80;

/** The standard AT checksum covers CMOS bytes 0x10-0x2D and sits big-endian at 0x2E. */
const CHECKSUM_FIRST = 0x10;
const CHECKSUM_LAST = 0x2d;
const CHECKSUM_HIGH = 0x2e;

export class RtcMc146818 implements PortDevice, TimedDevice, Persistent<RtcMc146818State> {
  readonly stateName = 'rtc-mc146818';
  readonly stateVersion = 1;

  private index = 0;
  private nmiMaskBit = false;
  private registerA = 0;
  private registerB = 0;
  private interruptFlags = 0;
  private alarmSecond = 0;
  private alarmMinute = 0;
  private alarmHour = 0;
  private ram = new Uint8Array(128);
  private offsetSeconds = 0;
  private offsetNanos = 0;
  private held = false;
  private heldTime: RtcTime = { second: 0, minute: 0, hour: 0, dayOfMonth: 1, month: 1, year: 2000 };
  private flagsUpdatedNs = 0;
  private irqLevel = false;

  /**
   * @param irq ISA IRQ8
   * @param clock the only source of time; the RTC reads rtcBaseMs + nowNs
   */
  constructor(
    private readonly irq: IrqLine,
    private readonly clock: Clock,
    private readonly options: RtcOptions = {},
  ) {
    this.reset();
  }

  /** Port 0x70 bit 7, for the machine's NMI delivery. */
  get nmiMasked(): boolean {
    return this.nmiMaskBit;
  }

  /** Power-on: 32.768 kHz divider, 1024 Hz rate, 24-hour BCD, no interrupts, RAM kept. */
  reset(): void {
    this.index = 0;
    this.registerA = 0x26;
    this.registerB = B_24H;
    this.interruptFlags = 0;
    this.offsetSeconds = 0;
    this.offsetNanos = 0;
    this.held = false;
    this.flagsUpdatedNs = this.now();
    this.irqLevel = false;
    this.irq.set(false);
  }

  read(offset: number, _size: AccessSize = 1): number {
    // Port 0x70 is write-only on a PC; an ISA read of it floats high.
    if ((offset & 1) === 0) return 0xff;
    return this.readRegister(this.index);
  }

  write(offset: number, value: number, _size: AccessSize = 1): void {
    value &= 0xff;
    if ((offset & 1) === 0) {
      this.index = value & 0x7f;
      const masked = (value & 0x80) !== 0;
      if (masked !== this.nmiMaskBit) {
        this.nmiMaskBit = masked;
        this.options.onNmiMaskChange?.(masked);
      }
      return;
    }
    this.writeRegister(this.index, value);
  }

  tick(nowNs: number): number {
    const now = Math.max(Math.floor(nowNs), this.flagsUpdatedNs);
    this.advance(now);
    // IRQ8 is edge triggered: while IRQF is up nothing new can reach the PIC until the
    // guest reads register C, which is a port access after which the machine re-ticks.
    if (this.irqLevel) return Infinity;
    let next = Infinity;
    const phase = this.phaseAt(now);
    const base = phase - now;
    const period = this.periodCycles();
    if (this.registerB & B_PIE && period !== 0) {
      const nextEdge = (Math.floor(cyclesAt(phase) / period) + 1) * period;
      next = Math.min(next, nsAtCycle(nextEdge) - base);
    }
    if (this.registerB & (B_UIE | B_AIE) && this.timeRunning()) {
      next = Math.min(next, (Math.floor(phase / NS_PER_S) + 1) * NS_PER_S - base);
    }
    return next;
  }

  /** Set a CMOS RAM byte (0x0E-0x7F) from the machine, keeping the AT checksum valid. */
  setCmosByte(index: number, value: number): void {
    if (!Number.isInteger(index) || index < 0x0e || index > 0x7f) {
      throw new Error(`rtc-mc146818: CMOS index ${index} is not RAM`);
    }
    this.ram[index] = value & 0xff;
    if (index >= CHECKSUM_FIRST && index <= CHECKSUM_LAST) {
      let sum = 0;
      for (let i = CHECKSUM_FIRST; i <= CHECKSUM_LAST; i++) sum += this.ram[i];
      this.ram[CHECKSUM_HIGH] = (sum >> 8) & 0xff;
      this.ram[CHECKSUM_HIGH + 1] = sum & 0xff;
    }
  }

  /** A CMOS byte as the guest would read it. */
  cmosByte(index: number): number {
    return this.readRegisterQuietly(index & 0x7f);
  }

  /**
   * Fill the memory-size bytes the way a PC BIOS (and QEMU's pc_cmos_init) does:
   * 0x15-0x16 base KiB, 0x17-0x18 and 0x30-0x31 KiB above 1 MiB (max 65535),
   * 0x34-0x35 64 KiB blocks above 16 MiB (max 65535), 0x5B-0x5D 64 KiB blocks above 4 GiB.
   */
  setMemorySize(belowFourGiBBytes: number, aboveFourGiBBytes = 0): void {
    const KiB = 1024;
    const MiB = 1024 * KiB;
    const base = Math.min(Math.floor(belowFourGiBBytes / KiB), 640);
    const extended = Math.min(belowFourGiBBytes > MiB ? Math.floor((belowFourGiBBytes - MiB) / KiB) : 0, 0xffff);
    const above16M = Math.min(
      belowFourGiBBytes > 16 * MiB ? Math.floor((belowFourGiBBytes - 16 * MiB) / (64 * KiB)) : 0,
      0xffff,
    );
    const above4G = Math.min(Math.floor(aboveFourGiBBytes / (64 * KiB)), 0xffffff);
    this.setCmosByte(0x15, base);
    this.setCmosByte(0x16, base >> 8);
    this.setCmosByte(0x17, extended);
    this.setCmosByte(0x18, extended >> 8);
    this.setCmosByte(0x30, extended);
    this.setCmosByte(0x31, extended >> 8);
    this.setCmosByte(0x34, above16M);
    this.setCmosByte(0x35, above16M >> 8);
    this.setCmosByte(0x5b, above4G);
    this.setCmosByte(0x5c, above4G >> 8);
    this.setCmosByte(0x5d, above4G >> 16);
  }

  /** The guest's current date and time as the RTC holds it. */
  currentTime(): RtcTime {
    return this.held ? { ...this.heldTime } : timeOf(this.secondsAt(this.now()));
  }

  saveState(): RtcMc146818State {
    return {
      index: this.index,
      nmiMasked: this.nmiMaskBit,
      registerA: this.registerA,
      registerB: this.registerB,
      interruptFlags: this.interruptFlags,
      alarmSecond: this.alarmSecond,
      alarmMinute: this.alarmMinute,
      alarmHour: this.alarmHour,
      ram: new Uint8Array(this.ram),
      offsetSeconds: this.offsetSeconds,
      offsetNanos: this.offsetNanos,
      held: this.held,
      heldTime: { ...this.heldTime },
      flagsUpdatedNs: this.flagsUpdatedNs,
      irqLevel: this.irqLevel,
    };
  }

  loadState(state: RtcMc146818State): void {
    const f = StateFields.of(this.stateName, state);
    const t = f.object('heldTime');
    const s: RtcMc146818State = {
      index: f.int('index', 0, 0x7f),
      nmiMasked: f.bool('nmiMasked'),
      registerA: f.int('registerA', 0, 0x7f),
      registerB: f.int('registerB', 0, 0xff),
      interruptFlags: f.int('interruptFlags', 0, 0x70),
      alarmSecond: f.int('alarmSecond', 0, 0xff),
      alarmMinute: f.int('alarmMinute', 0, 0xff),
      alarmHour: f.int('alarmHour', 0, 0xff),
      ram: f.bytes('ram', 128),
      offsetSeconds: f.int('offsetSeconds', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
      offsetNanos: f.int('offsetNanos', 0, NS_PER_S - 1),
      held: f.bool('held'),
      heldTime: {
        second: t.int('second', 0, 0xff),
        minute: t.int('minute', 0, 0xff),
        hour: t.int('hour', 0, 0xff),
        dayOfMonth: t.int('dayOfMonth', 0, 0xff),
        month: t.int('month', 0, 0xff),
        year: t.int('year', 0, 99_999),
      },
      flagsUpdatedNs: f.int('flagsUpdatedNs', 0, Number.MAX_SAFE_INTEGER),
      irqLevel: f.bool('irqLevel'),
    };
    if ((s.interruptFlags & ~(C_PF | C_AF | C_UF)) !== 0) {
      throw new Error(`${this.stateName} state: interruptFlags must only hold PF, AF and UF`);
    }
    Object.assign(this, {
      index: s.index,
      nmiMaskBit: s.nmiMasked,
      registerA: s.registerA,
      registerB: s.registerB,
      interruptFlags: s.interruptFlags,
      alarmSecond: s.alarmSecond,
      alarmMinute: s.alarmMinute,
      alarmHour: s.alarmHour,
      ram: s.ram,
      offsetSeconds: s.offsetSeconds,
      offsetNanos: s.offsetNanos,
      held: s.held,
      heldTime: s.heldTime,
      flagsUpdatedNs: s.flagsUpdatedNs,
      irqLevel: s.irqLevel,
    });
    this.irq.set(this.irqLevel);
  }

  private now(): number {
    return Math.floor(this.clock.nowNs());
  }

  // ---- time keeping ----------------------------------------------------------------------

  /** The Clock's wall time split as whole seconds and nanoseconds, without float rounding. */
  private clockBase(): { seconds: number; nanos: number } {
    const ms = this.clock.rtcBaseMs;
    let seconds = Math.floor(ms / 1000);
    let nanos = Math.round((ms - seconds * 1000) * 1e6);
    if (nanos >= NS_PER_S) {
      seconds += 1;
      nanos -= NS_PER_S;
    }
    return { seconds, nanos };
  }

  /**
   * The divider-chain phase in ns at Clock time `now`: whole multiples of 1e9 are the update
   * cycles. Only differences and remainders are used, so the large seconds part stays out.
   */
  private phaseAt(now: number): number {
    return this.clockBase().nanos + this.offsetNanos + now;
  }

  /** Guest time in whole seconds since 1970 at Clock time `now`. */
  private secondsAt(now: number): number {
    return this.secondsOfPhase(this.phaseAt(now));
  }

  private secondsOfPhase(phase: number): number {
    return this.clockBase().seconds + this.offsetSeconds + Math.floor(phase / NS_PER_S);
  }

  private dividerRunning(): boolean {
    // DV2-0 = 000/001/010 run; 11x holds the divider in reset (and 011-101 are test modes).
    return ((this.registerA >> 4) & 7) <= 2;
  }

  private timeRunning(): boolean {
    return !this.held;
  }

  /** The periodic-interrupt period in 32.768 kHz cycles, or 0 if RS = 0 or the divider is stopped. */
  private periodCycles(): number {
    const rs = this.registerA & 0x0f;
    if (rs === 0 || !this.dividerRunning()) return 0;
    // RS 1 and 2 select the 256 Hz and 128 Hz taps (datasheet Table 5).
    return rs <= 2 ? 1 << (rs + 6) : 1 << (rs - 1);
  }

  private updateInProgress(): boolean {
    if (!this.timeRunning()) return false;
    const phase = this.phaseAt(this.now());
    return phase % NS_PER_S >= NS_PER_S - UIP_WINDOW_NS;
  }

  /** Freeze the time (SET, divider reset): registers read and write `heldTime`. */
  private hold(now: number): void {
    if (this.held) return;
    this.heldTime = timeOf(this.secondsAt(now));
    this.held = true;
  }

  /**
   * Restart from `heldTime` with the divider chain `fractionNs` into the second: 0 after SET
   * clears, 500 ms after the divider leaves reset ("the first update cycle begins one-half
   * second later").
   */
  private resume(now: number, fractionNs: number): void {
    if (!this.held) return;
    const target = secondsOf(this.heldTime);
    const base = this.clockBase();
    const x = base.nanos + now;
    this.offsetNanos = mod(fractionNs - x, NS_PER_S);
    const carry = (x + this.offsetNanos - fractionNs) / NS_PER_S;
    this.offsetSeconds = target - base.seconds - carry;
    this.held = false;
  }

  /** Bring the interrupt flags up to Clock time `now` and drive IRQ8. */
  private advance(now: number): void {
    const from = this.flagsUpdatedNs;
    if (now > from) {
      const phaseFrom = this.phaseAt(from);
      const phaseNow = this.phaseAt(now);
      if (this.timeRunning()) {
        const secondFrom = Math.floor(phaseFrom / NS_PER_S);
        const secondNow = Math.floor(phaseNow / NS_PER_S);
        if (secondNow > secondFrom) {
          this.interruptFlags |= C_UF;
          if (this.alarmMatchedIn(secondFrom, secondNow)) this.interruptFlags |= C_AF;
        }
      }
      const period = this.periodCycles();
      if (period !== 0 && Math.floor(cyclesAt(phaseNow) / period) > Math.floor(cyclesAt(phaseFrom) / period)) {
        this.interruptFlags |= C_PF;
      }
      this.flagsUpdatedNs = now;
    }
    this.updateIrq();
  }

  /** Whether an update cycle in phase-seconds (from, to] hit the alarm time. */
  private alarmMatchedIn(from: number, to: number): boolean {
    const base = this.clockBase().seconds + this.offsetSeconds;
    // The alarm compares hours, minutes and seconds only, so one day of updates covers all.
    const first = Math.max(from + 1, to - SECONDS_PER_DAY + 1);
    for (let s = first; s <= to; s++) {
      const daySeconds = mod(base + s, SECONDS_PER_DAY);
      const hour = Math.floor(daySeconds / 3600);
      const minute = Math.floor(daySeconds / 60) % 60;
      const second = daySeconds % 60;
      if (
        alarmMatches(this.alarmSecond, this.encode(second)) &&
        alarmMatches(this.alarmMinute, this.encode(minute)) &&
        alarmMatches(this.alarmHour, this.encodeHour(hour))
      ) {
        return true;
      }
    }
    return false;
  }

  private updateIrq(): void {
    const level = (this.interruptFlags & this.registerB & (C_PF | C_AF | C_UF)) !== 0;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }

  // ---- registers -------------------------------------------------------------------------

  private readRegister(index: number): number {
    if (index === REG_C) {
      // Reading C returns and clears the flags, dropping IRQ8 (datasheet, Register C).
      this.advance(this.now());
      const value = this.interruptFlags | (this.irqLevel ? C_IRQF : 0);
      this.interruptFlags = 0;
      this.updateIrq();
      return value;
    }
    return this.readRegisterQuietly(index);
  }

  private readRegisterQuietly(index: number): number {
    switch (index) {
      case 0x00:
        return this.encode(this.currentTime().second);
      case 0x01:
        return this.alarmSecond;
      case 0x02:
        return this.encode(this.currentTime().minute);
      case 0x03:
        return this.alarmMinute;
      case 0x04:
        return this.encodeHour(this.currentTime().hour);
      case 0x05:
        return this.alarmHour;
      case 0x06:
        return this.encode(dayOfWeek(this.currentTime()));
      case 0x07:
        return this.encode(this.currentTime().dayOfMonth);
      case 0x08:
        return this.encode(this.currentTime().month);
      case 0x09:
        return this.encode(mod(this.currentTime().year, 100));
      case REG_A:
        return this.registerA | (this.updateInProgress() ? 0x80 : 0);
      case REG_B:
        return this.registerB;
      case REG_C:
        return this.interruptFlags | (this.irqLevel ? C_IRQF : 0);
      case REG_D:
        return D_VRT;
      case REG_CENTURY:
        return this.encode(Math.floor(this.currentTime().year / 100) % 100);
      default:
        return this.ram[index];
    }
  }

  private writeRegister(index: number, value: number): void {
    const now = this.now();
    switch (index) {
      case 0x00:
      case 0x02:
      case 0x04:
      case 0x07:
      case 0x08:
      case 0x09:
      case REG_CENTURY:
        this.advance(now);
        this.writeTime(index, value, now);
        break;
      case 0x06:
        // Day of week is derived from the date; a guest-written value is not kept.
        break;
      case 0x01:
        this.alarmSecond = value;
        break;
      case 0x03:
        this.alarmMinute = value;
        break;
      case 0x05:
        this.alarmHour = value;
        break;
      case REG_A: {
        this.advance(now);
        const wasRunning = this.dividerRunning();
        this.registerA = value & 0x7f; // UIP is read-only
        const running = this.dividerRunning();
        if (wasRunning && !running) this.hold(now);
        else if (!wasRunning && running && !(this.registerB & B_SET)) this.resume(now, NS_PER_S / 2);
        this.advance(now);
        break;
      }
      case REG_B: {
        this.advance(now);
        const wasSet = (this.registerB & B_SET) !== 0;
        // Setting SET clears UIE and stops updates (QEMU does the same; Linux sets SET around
        // its time writes in mc146818_set_time).
        if (value & B_SET) value &= ~B_UIE;
        this.registerB = value;
        if (!wasSet && value & B_SET) this.hold(now);
        else if (wasSet && !(value & B_SET) && this.dividerRunning()) this.resume(now, 0);
        this.advance(now);
        break;
      }
      case REG_C:
      case REG_D:
        break; // read-only
      default:
        this.ram[index] = value;
        break;
    }
  }

  private writeTime(index: number, value: number, now: number): void {
    const before = this.currentTime();
    const t = { ...before };
    switch (index) {
      case 0x00:
        t.second = this.decode(value);
        break;
      case 0x02:
        t.minute = this.decode(value);
        break;
      case 0x04:
        t.hour = this.decodeHour(value);
        break;
      case 0x07:
        t.dayOfMonth = this.decode(value);
        break;
      case 0x08:
        t.month = this.decode(value);
        break;
      case 0x09:
        t.year = Math.floor(t.year / 100) * 100 + this.decode(value);
        break;
      default:
        t.year = this.decode(value) * 100 + mod(t.year, 100);
        break;
    }
    if (this.held) {
      // Out-of-range fields are kept as written (e.g. mc146818_set_time writes the month
      // before the day) and only normalised when the clock restarts.
      this.heldTime = t;
    } else {
      // A write while running moves the time and keeps the divider phase.
      this.offsetSeconds += secondsOf(t) - secondsOf(before);
    }
    this.flagsUpdatedNs = Math.max(this.flagsUpdatedNs, now);
  }

  private binaryMode(): boolean {
    return (this.registerB & B_DM_BINARY) !== 0;
  }

  private encode(value: number): number {
    return this.binaryMode() ? value & 0xff : toBcd(value);
  }

  private decode(raw: number): number {
    return this.binaryMode() ? raw : (raw >> 4) * 10 + (raw & 0x0f);
  }

  /** 12-hour mode: 1-12 with bit 7 = PM (datasheet, "Hours"). */
  private encodeHour(hour: number): number {
    if (this.registerB & B_24H) return this.encode(hour);
    const h12 = hour % 12 === 0 ? 12 : hour % 12;
    return this.encode(h12) | (hour >= 12 ? 0x80 : 0);
  }

  private decodeHour(raw: number): number {
    if (this.registerB & B_24H) return this.decode(raw);
    const h12 = this.decode(raw & 0x7f);
    return (h12 % 12) + (raw & 0x80 ? 12 : 0);
  }
}

/** Alarm bytes 0xC0-0xFF are "don't care" (datasheet, "Alarm"). */
function alarmMatches(alarm: number, current: number): boolean {
  return (alarm & 0xc0) === 0xc0 || alarm === current;
}

function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

function toBcd(value: number): number {
  const v = mod(value, 100);
  return ((Math.floor(v / 10) << 4) | v % 10) & 0xff;
}

/** 32.768 kHz cycles in `ns` nanoseconds, exact for ns < 2^53. */
function cyclesAt(ns: number): number {
  const seconds = Math.floor(ns / NS_PER_S);
  const rest = ns - seconds * NS_PER_S;
  return seconds * TIME_BASE_HZ + Math.floor((rest * TIME_BASE_HZ) / NS_PER_S);
}

/** The first nanosecond at which cyclesAt() reaches `cycle`. */
function nsAtCycle(cycle: number): number {
  const seconds = Math.floor(cycle / TIME_BASE_HZ);
  const rest = cycle - seconds * TIME_BASE_HZ;
  return seconds * NS_PER_S + Math.ceil((rest * NS_PER_S) / TIME_BASE_HZ);
}

function timeOf(seconds: number): RtcTime {
  const d = new Date(seconds * 1000);
  return {
    second: d.getUTCSeconds(),
    minute: d.getUTCMinutes(),
    hour: d.getUTCHours(),
    dayOfMonth: d.getUTCDate(),
    month: d.getUTCMonth() + 1,
    year: d.getUTCFullYear(),
  };
}

/** Seconds since 1970 of a broken-down time, normalising out-of-range fields like mktime. */
function secondsOf(t: RtcTime): number {
  const d = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  d.setUTCFullYear(t.year, t.month - 1, t.dayOfMonth);
  d.setUTCHours(t.hour, t.minute, t.second, 0);
  const ms = d.getTime();
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
}

/** Register 6: 1 = Sunday. */
function dayOfWeek(t: RtcTime): number {
  return Math.floor(mod(Math.floor(secondsOf(t) / SECONDS_PER_DAY) + 4, 7)) + 1;
}
