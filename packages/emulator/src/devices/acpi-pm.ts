/**
 * The ACPI fixed-hardware PM block (ACPI 6.4, 4.8 "ACPI Hardware Specification"), laid out
 * as PIIX4's power management function lays it out from PMBASE:
 *
 *   +0  PM1a_STS  (16 bits, write 1 to clear)   PM1a_EVT_BLK, PM1_EVT_LEN = 4
 *   +2  PM1a_EN   (16 bits)
 *   +4  PM1a_CNT  (16 bits)                      PM1a_CNT_BLK, PM1_CNT_LEN = 2
 *   +8  PM_TMR    (24 or 32 bits, read-only)     PM_TMR_BLK,   PM_TMR_LEN = 4
 *
 * The FADT (acpi-tables.ts) sets SMI_CMD = 0, so the machine is always in ACPI mode and
 * SCI_EN reads 1 (ACPI 4.8.2.5 / ACPICA hwacpi.c acpi_hw_get_mode: no SMI_CMD means ACPI
 * mode). The SCI is level triggered: it is asserted while any status bit whose enable bit
 * is set is set ("PM1 Event Grouping", 4.8.4.1).
 *
 * The PM timer runs at 3.579545 MHz from the injected Clock. Linux uses it as the acpi_pm
 * clocksource (drivers/clocksource/acpi_pm.c, 24-bit mask) and to calibrate the TSC, so it is
 * a closed-form function of machine time: monotonic, exact, and continuous across save and
 * restore (the machine restores its clock). TMR_STS sets each time the counter's top bit
 * toggles (TMR_STS in table 4.11, "Power Management Timer"); with TMR_EN set that raises the SCI, and
 * tick() asks the machine for a deadline at the next carry.
 *
 * Sleep: writing SLP_EN with SLP_TYP = SLP_TYP_S5 (the value \_S5 in the DSDT names) calls
 * the injected powerOff(). Other sleep types are not implemented: the platform offers no
 * \_S1-\_S4, and a guest that tries one anyway wakes at once with WAK_STS set, so ACPICA's
 * wait for WAK_STS in acpi_hw_legacy_sleep ends.
 */
import type { AccessSize, Clock, IrqLine, PortDevice, Persistent, TimedDevice } from '../device.ts';
import { StateFields } from './state-fields.ts';

/** The ACPI PM timer frequency (ACPI "Power Management Timer"): 3.579545 MHz, three times the PIT's clock. */
export const PM_TIMER_HZ = 3_579_545;
const NS_PER_S = 1_000_000_000;

/** Register offsets inside the block, and the block lengths the FADT reports. */
export const PM1_STS_OFFSET = 0;
export const PM1_EN_OFFSET = 2;
export const PM1_CNT_OFFSET = 4;
export const PM_TMR_OFFSET = 8;
export const PM1_EVT_LEN = 4;
export const PM1_CNT_LEN = 2;
export const PM_TMR_LEN = 4;
/** Ports the block occupies from its base. */
export const ACPI_PM_BLOCK_LENGTH = 12;

/** SLP_TYP value that means soft-off (S5): what the DSDT's \_S5 package holds. */
export const SLP_TYP_S5 = 5;

// PM1 status / enable bits (ACPI 6.4 4.8.4.1.1-2, tables 4.11 and 4.12).
export const TMR_STS = 1 << 0;
export const GBL_STS = 1 << 5;
export const PWRBTN_STS = 1 << 8;
export const SLPBTN_STS = 1 << 9;
export const RTC_STS = 1 << 10;
export const WAK_STS = 1 << 15;
export const TMR_EN = TMR_STS;
export const PWRBTN_EN = PWRBTN_STS;
/** Status bits this block can set. */
const STATUS_IMPLEMENTED = TMR_STS | PWRBTN_STS | WAK_STS;
/** Enable bits that exist (the others read 0); only TMR_EN and PWRBTN_EN have events behind them. */
const ENABLE_WRITABLE = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

// PM1 control bits (ACPI 6.4 4.8.4.2.1, table 4.13).
export const SCI_EN = 1 << 0;
const BM_RLD = 1 << 1;
const SLP_TYP_SHIFT = 10;
const SLP_TYP_MASK = 7 << SLP_TYP_SHIFT;
export const SLP_EN = 1 << 13;
/** Bits that hold a value; GBL_RLS and SLP_EN are write-only and read 0, SCI_EN is fixed at 1. */
const CONTROL_STORED = BM_RLD | SLP_TYP_MASK;

/** The PM timer tick count at time `ns`: floor(ns * PM_TIMER_HZ / 1e9), exact for ns < 2^53. */
export function pmTimerTicksAt(ns: number): number {
  const t = Math.floor(ns);
  if (!(t > 0)) return 0;
  const seconds = Math.floor(t / NS_PER_S);
  const rest = t - seconds * NS_PER_S;
  // rest * PM_TIMER_HZ < 3.6e15 < 2^53: no tick is ever skipped or repeated.
  return seconds * PM_TIMER_HZ + Math.floor((rest * PM_TIMER_HZ) / NS_PER_S);
}

/** The first nanosecond at which pmTimerTicksAt() reaches `tick`. */
export function nsAtPmTimerTick(tick: number): number {
  const seconds = Math.floor(tick / PM_TIMER_HZ);
  const rest = tick - seconds * PM_TIMER_HZ;
  return seconds * NS_PER_S + Math.ceil((rest * NS_PER_S) / PM_TIMER_HZ);
}

export interface AcpiPmOptions {
  /** SLP_EN with SLP_TYP_S5: the guest turned the machine off. */
  powerOff: () => void;
  /** 24 or 32; must match the FADT's TMR_VAL_EXT flag. Default 32. */
  timerBits?: 24 | 32;
}

export interface AcpiPmState {
  /** PM1_STS. */
  status: number;
  /** PM1_EN. */
  enable: number;
  /** PM1_CNT's stored bits (BM_RLD, SLP_TYP); SCI_EN always reads 1. */
  control: number;
  /** Half-periods of the PM timer (carries of its top bit) already reflected in TMR_STS. */
  timerCarries: number;
}

export class AcpiPm implements PortDevice, TimedDevice, Persistent<AcpiPmState> {
  readonly stateName = 'acpi-pm';
  readonly stateVersion = 1;

  readonly timerBits: 24 | 32;
  private readonly timerModulus: number;
  /** Ticks between two toggles of the timer's top bit. */
  private readonly carryTicks: number;

  private status = 0;
  private enable = 0;
  private control = 0;
  private timerCarries: number;
  private sciLevel = false;

  constructor(
    private readonly sci: IrqLine,
    private readonly clock: Clock,
    private readonly options: AcpiPmOptions,
  ) {
    this.timerBits = options.timerBits ?? 32;
    this.timerModulus = 2 ** this.timerBits;
    this.carryTicks = 2 ** (this.timerBits - 1);
    this.timerCarries = this.carriesAt(clock.nowNs());
  }

  /** The PM timer's counter value now. */
  timerValue(): number {
    return pmTimerTicksAt(this.clock.nowNs()) % this.timerModulus;
  }

  /** The front-panel power button was pressed: PWRBTN_STS, and an SCI if PWRBTN_EN. */
  pressPowerButton(): void {
    this.syncTimer(this.clock.nowNs());
    this.status |= PWRBTN_STS;
    this.updateSci();
  }

  read(offset: number, size: AccessSize): number {
    const now = this.clock.nowNs();
    this.syncTimer(now);
    const timer = pmTimerTicksAt(now) % this.timerModulus;
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.readByte(offset + i, timer) << (8 * i);
    this.updateSci();
    return value >>> 0;
  }

  write(offset: number, value: number, size: AccessSize): void {
    this.syncTimer(this.clock.nowNs());
    let sleepType = -1;
    for (let i = 0; i < size; i++) {
      const slp = this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
      if (slp >= 0) sleepType = slp;
    }
    this.updateSci();
    if (sleepType >= 0) this.enterSleep(sleepType);
  }

  tick(nowNs: number): number {
    this.syncTimer(nowNs);
    this.updateSci();
    if (!(this.enable & TMR_EN)) return Infinity;
    return nsAtPmTimerTick((this.timerCarries + 1) * this.carryTicks);
  }

  /** Power-on state of the registers (the timer keeps counting: it follows the machine clock). */
  reset(): void {
    this.status = 0;
    this.enable = 0;
    this.control = 0;
    this.timerCarries = this.carriesAt(this.clock.nowNs());
    this.updateSci();
  }

  saveState(): AcpiPmState {
    return { status: this.status, enable: this.enable, control: this.control, timerCarries: this.timerCarries };
  }

  loadState(state: AcpiPmState): void {
    const f = StateFields.of(this.stateName, state);
    const status = f.int('status', 0, 0xffff);
    const enable = f.int('enable', 0, 0xffff);
    const control = f.int('control', 0, 0xffff);
    const timerCarries = f.int('timerCarries', 0, Number.MAX_SAFE_INTEGER);
    if (status & ~STATUS_IMPLEMENTED) throw new Error(`${this.stateName} state: status has unimplemented bits set`);
    if (enable & ~ENABLE_WRITABLE) throw new Error(`${this.stateName} state: enable has reserved bits set`);
    if (control & ~CONTROL_STORED) throw new Error(`${this.stateName} state: control has bits that are not stored`);
    this.status = status;
    this.enable = enable;
    this.control = control;
    this.timerCarries = timerCarries;
    this.sciLevel = (status & enable) !== 0;
    this.sci.set(this.sciLevel);
  }

  private carriesAt(ns: number): number {
    return Math.floor(pmTimerTicksAt(ns) / this.carryTicks);
  }

  /** Set TMR_STS if the timer's top bit toggled since the last look (table 4.11, TMR_STS). */
  private syncTimer(ns: number): void {
    const carries = this.carriesAt(ns);
    if (carries > this.timerCarries) {
      this.timerCarries = carries;
      this.status |= TMR_STS;
    }
  }

  private updateSci(): void {
    const level = (this.status & this.enable) !== 0;
    if (level !== this.sciLevel) {
      this.sciLevel = level;
      this.sci.set(level);
    }
  }

  private readByte(offset: number, timer: number): number {
    switch (offset) {
      case PM1_STS_OFFSET: return this.status & 0xff;
      case PM1_STS_OFFSET + 1: return this.status >>> 8;
      case PM1_EN_OFFSET: return this.enable & 0xff;
      case PM1_EN_OFFSET + 1: return this.enable >>> 8;
      case PM1_CNT_OFFSET: return (this.control | SCI_EN) & 0xff;
      case PM1_CNT_OFFSET + 1: return this.control >>> 8;
      case PM_TMR_OFFSET: return timer & 0xff;
      case PM_TMR_OFFSET + 1: return (timer >>> 8) & 0xff;
      case PM_TMR_OFFSET + 2: return (timer >>> 16) & 0xff;
      // The top byte is reserved (reads 0) for a 24-bit timer: the FADT's TMR_VAL_EXT is clear.
      case PM_TMR_OFFSET + 3: return (timer >>> 24) & 0xff;
      default: return 0;
    }
  }

  /** Returns the SLP_TYP of a write that set SLP_EN, else -1. */
  private writeByte(offset: number, byte: number): number {
    switch (offset) {
      // Status bits are write-1-to-clear (table 4.11: "cleared by writing a 1").
      case PM1_STS_OFFSET: this.status &= ~byte; return -1;
      case PM1_STS_OFFSET + 1: this.status &= ~(byte << 8); return -1;
      case PM1_EN_OFFSET: this.enable = ((this.enable & 0xff00) | byte) & ENABLE_WRITABLE; return -1;
      case PM1_EN_OFFSET + 1: this.enable = ((this.enable & 0x00ff) | (byte << 8)) & ENABLE_WRITABLE; return -1;
      case PM1_CNT_OFFSET: this.control = ((this.control & 0xff00) | byte) & CONTROL_STORED; return -1;
      case PM1_CNT_OFFSET + 1: {
        const word = byte << 8;
        this.control = ((this.control & 0x00ff) | word) & CONTROL_STORED;
        // SLP_EN and SLP_TYP share this byte, so the type written with SLP_EN is the one used.
        return word & SLP_EN ? (word & SLP_TYP_MASK) >>> SLP_TYP_SHIFT : -1;
      }
      default: return -1;
    }
  }

  private enterSleep(sleepType: number): void {
    if (sleepType === SLP_TYP_S5) {
      this.options.powerOff();
      return;
    }
    // No S1-S4: wake at once, as if a wake event had arrived (table 4.11, WAK_STS).
    this.status |= WAK_STS;
    this.updateSci();
  }
}
