import { beforeEach, describe, expect, it } from 'vitest';
import {
  AcpiPm,
  PM1_CNT_OFFSET,
  PM1_EN_OFFSET,
  PM1_STS_OFFSET,
  PM_TIMER_HZ,
  PM_TMR_OFFSET,
  PWRBTN_EN,
  PWRBTN_STS,
  SCI_EN,
  SLP_EN,
  SLP_TYP_S5,
  TMR_EN,
  TMR_STS,
  WAK_STS,
  nsAtPmTimerTick,
  pmTimerTicksAt,
} from '../../src/devices/acpi-pm.ts';
import { PiixResetControl } from '../../src/devices/piix-reset-control.ts';
import { IrqRecorder, TestClock, expectRejected, expectRoundTrip } from './helpers.ts';

describe('acpi-pm', () => {
  let clock: TestClock;
  let sci: IrqRecorder;
  let powerOffs: number;
  let pm: AcpiPm;

  beforeEach(() => {
    clock = new TestClock();
    sci = new IrqRecorder(clock);
    powerOffs = 0;
    pm = new AcpiPm(sci, clock, { powerOff: () => powerOffs++ });
  });

  /** SLP_TYP in PM1_CNT bits 10-12 (ACPI 4.8.3.2.1). */
  const slpTyp = (t: number) => t << 10;

  it('converts between PM timer ticks and nanoseconds without drift', () => {
    expect(pmTimerTicksAt(1e9)).toBe(PM_TIMER_HZ);
    expect(pmTimerTicksAt(3600e9)).toBe(3600 * PM_TIMER_HZ);
    for (const tick of [1, 2, 3, PM_TIMER_HZ - 1, PM_TIMER_HZ + 1, 2 ** 24, 2 ** 31, 2 ** 40 + 12345]) {
      const ns = nsAtPmTimerTick(tick);
      expect(pmTimerTicksAt(ns)).toBe(tick);
      expect(pmTimerTicksAt(ns - 1)).toBe(tick - 1);
    }
  });

  it('counts at 3.579545 MHz from the clock, monotonic between reads', () => {
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(0);
    clock.ns = 1_000_000; // 1 ms
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(3579);
    clock.ns = 1e9;
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(PM_TIMER_HZ);
    // Linux's acpi_pm clocksource reads it back to back and needs it never to go backwards.
    let last = pm.read(PM_TMR_OFFSET, 4);
    for (let i = 0; i < 1000; i++) {
      clock.advance(137);
      const v = pm.read(PM_TMR_OFFSET, 4);
      expect(v).toBeGreaterThanOrEqual(last);
      last = v;
    }
    expect(last).toBe(pmTimerTicksAt(1e9 + 137_000));
  });

  it('wraps a 32-bit timer at 2^32 and a 24-bit one at 2^24', () => {
    clock.ns = nsAtPmTimerTick(2 ** 32 - 1);
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(0xffffffff);
    clock.ns = nsAtPmTimerTick(2 ** 32 + 5);
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(5);

    const pm24 = new AcpiPm(sci, clock, { powerOff: () => {}, timerBits: 24 });
    clock.ns = nsAtPmTimerTick(2 ** 24 - 1);
    expect(pm24.read(PM_TMR_OFFSET, 4)).toBe(0xffffff);
    expect(pm24.read(PM_TMR_OFFSET + 3, 1)).toBe(0); // TMR_VAL_EXT clear: the top byte is reserved
    clock.ns = nsAtPmTimerTick(2 ** 24 + 7);
    expect(pm24.read(PM_TMR_OFFSET, 4)).toBe(7);
  });

  it('reads the timer byte by byte and word by word consistently', () => {
    clock.ns = nsAtPmTimerTick(0x12345678);
    expect(pm.read(PM_TMR_OFFSET, 2)).toBe(0x5678);
    expect(pm.read(PM_TMR_OFFSET + 2, 2)).toBe(0x1234);
    expect([0, 1, 2, 3].map((i) => pm.read(PM_TMR_OFFSET + i, 1))).toEqual([0x78, 0x56, 0x34, 0x12]);
  });

  it('sets TMR_STS on each carry of the top bit and raises the SCI only with TMR_EN', () => {
    const pm24 = new AcpiPm(sci, clock, { powerOff: () => {}, timerBits: 24 });
    expect(pm24.tick(0)).toBe(Infinity); // no TMR_EN: no deadline to ask for
    pm24.write(PM1_EN_OFFSET, TMR_EN, 2);
    const carry = nsAtPmTimerTick(2 ** 23); // 2.34 s: the top bit of a 24-bit counter sets
    expect(pm24.tick(0)).toBe(carry);
    clock.ns = carry - 1;
    expect(pm24.tick(clock.ns)).toBe(carry);
    expect(sci.level).toBe(false);
    clock.ns = carry;
    expect(pm24.tick(clock.ns)).toBe(nsAtPmTimerTick(2 ** 24)); // next: the top bit clears at the wrap
    expect(pm24.read(PM1_STS_OFFSET, 2) & TMR_STS).toBe(TMR_STS);
    expect(sci.level).toBe(true);
    expect(sci.edgeTimes).toEqual([carry]);
    // Write 1 to clear, then the line drops.
    pm24.write(PM1_STS_OFFSET, TMR_STS, 2);
    expect(pm24.read(PM1_STS_OFFSET, 2) & TMR_STS).toBe(0);
    expect(sci.level).toBe(false);
  });

  it('latches TMR_STS while TMR_EN is clear, and raises the SCI when it is enabled later', () => {
    clock.ns = nsAtPmTimerTick(2 ** 31) + 10;
    expect(pm.read(PM1_STS_OFFSET, 2)).toBe(TMR_STS);
    expect(sci.level).toBe(false);
    pm.write(PM1_EN_OFFSET, TMR_EN, 2);
    expect(sci.level).toBe(true);
    pm.write(PM1_EN_OFFSET, 0, 2);
    expect(sci.level).toBe(false);
  });

  it('drives the SCI from status & enable: the power button', () => {
    pm.pressPowerButton();
    expect(pm.read(PM1_STS_OFFSET, 2)).toBe(PWRBTN_STS);
    expect(sci.level).toBe(false);
    pm.write(PM1_EN_OFFSET, PWRBTN_EN, 2);
    expect(sci.level).toBe(true);
    // Writing 0s or other bits clears nothing (write-1-to-clear).
    pm.write(PM1_STS_OFFSET, TMR_STS, 2);
    expect(sci.level).toBe(true);
    // ACPICA clears PM1 status with one 16-bit write of all the fixed status bits.
    pm.write(PM1_STS_OFFSET, 0xffff, 2);
    expect(pm.read(PM1_STS_OFFSET, 2)).toBe(0);
    expect(sci.level).toBe(false);
    expect(sci.risingEdges).toBe(1);
  });

  it('takes a 32-bit access to status and enable together', () => {
    pm.pressPowerButton();
    pm.write(PM1_STS_OFFSET, PWRBTN_EN << 16, 4);
    expect(pm.read(PM1_STS_OFFSET, 4)).toBe((PWRBTN_EN << 16) | PWRBTN_STS);
    expect(sci.level).toBe(true);
  });

  it('always reads SCI_EN as set: SMI_CMD is 0, so the machine is always in ACPI mode', () => {
    expect(pm.read(PM1_CNT_OFFSET, 2) & SCI_EN).toBe(SCI_EN);
    pm.write(PM1_CNT_OFFSET, 0, 2);
    expect(pm.read(PM1_CNT_OFFSET, 2) & SCI_EN).toBe(SCI_EN);
  });

  it('powers off on SLP_EN with SLP_TYP = S5, the way ACPICA writes it', () => {
    // acpi_hw_legacy_sleep: SLP_TYP first without SLP_EN, then SLP_TYP | SLP_EN.
    const cnt = pm.read(PM1_CNT_OFFSET, 2);
    pm.write(PM1_CNT_OFFSET, cnt | slpTyp(SLP_TYP_S5), 2);
    expect(powerOffs).toBe(0);
    expect((pm.read(PM1_CNT_OFFSET, 2) >> 10) & 7).toBe(SLP_TYP_S5);
    pm.write(PM1_CNT_OFFSET, cnt | slpTyp(SLP_TYP_S5) | SLP_EN, 2);
    expect(powerOffs).toBe(1);
    expect(pm.read(PM1_CNT_OFFSET, 2) & SLP_EN).toBe(0); // write-only
  });

  it('powers off on a byte write of the high half of PM1_CNT too', () => {
    pm.write(PM1_CNT_OFFSET + 1, (slpTyp(SLP_TYP_S5) | SLP_EN) >> 8, 1);
    expect(powerOffs).toBe(1);
  });

  it('wakes at once with WAK_STS from a sleep state it does not implement', () => {
    pm.write(PM1_CNT_OFFSET, slpTyp(1) | SLP_EN, 2);
    expect(powerOffs).toBe(0);
    expect(pm.read(PM1_STS_OFFSET, 2) & WAK_STS).toBe(WAK_STS);
    expect(sci.level).toBe(false); // WAK_STS has no enable bit and raises no SCI
  });

  it('returns to its power-on registers on reset, the timer still counting', () => {
    clock.ns = 5e9;
    pm.write(PM1_EN_OFFSET, TMR_EN | PWRBTN_EN, 2);
    pm.pressPowerButton();
    expect(sci.level).toBe(true);
    pm.reset();
    expect(pm.read(PM1_STS_OFFSET, 4)).toBe(0);
    expect(sci.level).toBe(false);
    expect(pm.read(PM_TMR_OFFSET, 4)).toBe(pmTimerTicksAt(5e9));
  });

  it('round-trips its state', () => {
    pm.write(PM1_EN_OFFSET, PWRBTN_EN, 2);
    expectRoundTrip(pm, () => {
      pm.pressPowerButton();
      pm.write(PM1_CNT_OFFSET, slpTyp(3), 2);
      clock.ns = nsAtPmTimerTick(2 ** 31);
      pm.tick(clock.ns);
    });
  });

  it('drives the SCI to the restored level on load', () => {
    pm.write(PM1_EN_OFFSET, PWRBTN_EN, 2);
    pm.pressPowerButton();
    const saved = pm.saveState();
    const other = new IrqRecorder();
    const restored = new AcpiPm(other, clock, { powerOff: () => {} });
    restored.loadState(saved);
    expect(other.level).toBe(true);
    expect(restored.read(PM1_STS_OFFSET, 4)).toBe(pm.read(PM1_STS_OFFSET, 4));
  });

  it('refuses malformed states without applying any of them', () => {
    const good = pm.saveState();
    expectRejected(pm, { ...good, status: 0x10000 }, /status/);
    expectRejected(pm, { ...good, enable: 1 << 15 }, /enable/);
    expectRejected(pm, { ...good, control: SLP_EN }, /control/);
    expectRejected(pm, { ...good, timerCarries: -1 }, /timerCarries/);
    expectRejected(pm, null, /state must be an object/);
  });
});

describe('piix-reset-control', () => {
  it('resets on 0x06 and on 0x0E, as Linux reboot=pci and the FADT reset register write', () => {
    let resets = 0;
    const rc = new PiixResetControl(() => resets++);
    rc.write(0, 0x02, 1);
    expect(resets).toBe(0);
    expect(rc.read()).toBe(0x02);
    rc.write(0, 0x06, 1);
    expect(resets).toBe(1);
    rc.write(0, 0x0e, 1);
    expect(resets).toBe(2);
    expect(rc.read() & 0x04).toBe(0); // RST_CPU never reads back set
  });

  it('round-trips its state and refuses a malformed one', () => {
    const rc = new PiixResetControl(() => {});
    expectRoundTrip(rc, () => rc.write(0, 0x0a, 1));
    expectRejected(rc, { value: 0x04 }, /value/);
    expectRejected(rc, { value: 'x' }, /value/);
  });
});
