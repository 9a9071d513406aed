import { beforeEach, describe, expect, it } from 'vitest';
import { RtcMc146818 } from '../../src/devices/rtc-mc146818.ts';
import { IrqRecorder, TestClock, expectRejected, expectRoundTrip } from './helpers.ts';

/** 2024-02-29 23:59:58.500 UTC, a Thursday. */
const BASE_MS = Date.UTC(2024, 1, 29, 23, 59, 58, 500);
const MS = 1_000_000;
const S = 1_000_000_000;

describe('rtc-mc146818', () => {
  let clock: TestClock;
  let irq8: IrqRecorder;
  let nmiChanges: boolean[];
  let rtc: RtcMc146818;

  beforeEach(() => {
    clock = new TestClock(BASE_MS);
    irq8 = new IrqRecorder(clock);
    nmiChanges = [];
    rtc = new RtcMc146818(irq8, clock, { onNmiMaskChange: (m) => nmiChanges.push(m) });
  });

  function cmosRead(index: number): number {
    rtc.write(0, index, 1);
    return rtc.read(1, 1);
  }

  function cmosWrite(index: number, value: number): void {
    rtc.write(0, index, 1);
    rtc.write(1, value, 1);
  }

  /** Registers 0, 2, 4, 6, 7, 8, 9 and the century byte. */
  function readClock(): number[] {
    return [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(cmosRead);
  }

  /** The machine's loop plus a Linux-style handler that reads register C on every IRQ8. */
  function runFor(ns: number): number[] {
    const end = clock.ns + ns;
    const flags: number[] = [];
    for (;;) {
      const deadline = rtc.tick(clock.ns);
      if (deadline > end) break;
      clock.ns = deadline;
      rtc.tick(clock.ns);
      if (irq8.level) flags.push(cmosRead(0x0c));
    }
    clock.ns = end;
    return flags;
  }

  it('reads the time of day in BCD, 24-hour mode by default', () => {
    expect(readClock()).toEqual([0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20]);
    clock.advance(2 * S); // across midnight into March
    expect(readClock()).toEqual([0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]);
  });

  it('reads the time of day in binary and in 12-hour mode', () => {
    cmosWrite(0x0b, 0x06); // binary, 24 h
    expect(readClock()).toEqual([58, 59, 23, 5, 29, 2, 24, 20]);
    cmosWrite(0x0b, 0x00); // BCD, 12 h
    expect(cmosRead(0x04)).toBe(0x80 | 0x11); // 11 PM
    clock.advance(2 * S);
    expect(cmosRead(0x04)).toBe(0x12); // 12 AM
    cmosWrite(0x0b, 0x04); // binary, 12 h
    expect(cmosRead(0x04)).toBe(12);
  });

  it('raises UIP for the 2.228 ms before the seconds change', () => {
    const boundary = 500 * MS; // the base is half a second into a second
    clock.ns = boundary - 2_228_000 - 1;
    expect(cmosRead(0x0a)).toBe(0x26);
    clock.ns = boundary - 2_228_000;
    expect(cmosRead(0x0a)).toBe(0xa6);
    clock.ns = boundary - 1;
    expect(cmosRead(0x0a) & 0x80).toBe(0x80);
    expect(cmosRead(0x00)).toBe(0x58);
    clock.ns = boundary;
    expect(cmosRead(0x0a) & 0x80).toBe(0);
    expect(cmosRead(0x00)).toBe(0x59);
  });

  it('gives a consistent reading to a loop like mc146818_avoid_UIP', () => {
    clock.ns = 500 * MS - 1 * MS; // in the middle of UIP
    let seconds = -1;
    for (let i = 0; i < 100; i++) {
      const s = cmosRead(0x00);
      clock.advance(2000);
      if (cmosRead(0x0a) & 0x80) {
        clock.advance(100_000); // udelay(UIP_RECHECK_DELAY)
        continue;
      }
      if (s !== cmosRead(0x00)) continue;
      seconds = s;
      break;
    }
    expect(seconds).toBe(0x59);
  });

  it('interrupts at the periodic rate selected in register A', () => {
    cmosWrite(0x0b, 0x42); // PIE, 24 h
    const flags = runFor(1 * S);
    expect(flags.length).toBe(1024); // RS = 6 after reset
    expect(flags[0]).toBe(0xc0); // IRQF | PF
    cmosWrite(0x0a, 0x2f); // RS = 15: 2 Hz
    expect(runFor(10 * S).length).toBe(20);
    cmosWrite(0x0a, 0x23); // RS = 3: 8192 Hz
    expect(runFor(S / 4).length).toBe(2048);
    cmosWrite(0x0a, 0x20); // RS = 0: off
    expect(runFor(S)).toEqual([]);
  });

  it('sets PF without PIE and does not interrupt until PIE is enabled', () => {
    clock.advance(10 * MS);
    expect(rtc.tick(clock.ns)).toBe(Infinity);
    expect(irq8.level).toBe(false);
    cmosWrite(0x0b, 0x42);
    // The pending PF raises IRQF as soon as PIE is set.
    expect(irq8.level).toBe(true);
    expect(cmosRead(0x0c)).toBe(0xc0);
    expect(irq8.level).toBe(false);
    expect(cmosRead(0x0c)).toBe(0);
  });

  it('raises update-ended interrupts once a second', () => {
    cmosWrite(0x0a, 0x20); // no periodic rate, so PF stays clear
    cmosWrite(0x01, 0x30); // an alarm that does not match
    cmosWrite(0x0b, 0x12); // UIE
    const flags = runFor(5 * S);
    expect(flags).toEqual([0x90, 0x90, 0x90, 0x90, 0x90]);
    expect(irq8.edgeTimes[0]).toBe(500 * MS);
  });

  it('raises the alarm interrupt when hours, minutes and seconds match', () => {
    cmosWrite(0x01, 0x03); // 00:00:03
    cmosWrite(0x03, 0x00);
    cmosWrite(0x05, 0x00);
    cmosWrite(0x0a, 0x20);
    cmosWrite(0x0b, 0x22); // AIE
    const flags = runFor(10 * S);
    expect(flags).toEqual([0xa0 | 0x10]);
    expect(irq8.edgeTimes).toEqual([500 * MS + 4 * S]);
    cmosWrite(0x01, 0xff); // don't care: every second
    expect(runFor(3 * S).length).toBe(3);
  });

  it('keeps a time set by the guest the way mc146818_set_time does it', () => {
    clock.ns = 1234 * MS;
    const control = cmosRead(0x0b);
    cmosWrite(0x0b, control | 0x80); // SET
    const freq = cmosRead(0x0a);
    cmosWrite(0x0a, freq | 0x70); // divider reset
    cmosWrite(0x09, 0x31);
    cmosWrite(0x08, 0x12);
    cmosWrite(0x07, 0x31);
    cmosWrite(0x04, 0x23);
    cmosWrite(0x02, 0x59);
    cmosWrite(0x00, 0x59);
    clock.advance(3 * S); // held while SET and the divider reset are on
    cmosWrite(0x0b, control);
    cmosWrite(0x0a, freq);
    expect(readClock()).toEqual([0x59, 0x59, 0x23, 0x04, 0x31, 0x12, 0x31, 0x20]);
    // The first update comes half a second after the divider restarts.
    clock.advance(500 * MS - 1);
    expect(cmosRead(0x00)).toBe(0x59);
    clock.advance(1);
    expect(readClock()).toEqual([0x00, 0x00, 0x00, 0x05, 0x01, 0x01, 0x32, 0x20]);
    // And it keeps running from there.
    clock.advance(3600 * S);
    expect(cmosRead(0x04)).toBe(0x01);
  });

  it('starts counting one second after SET is cleared', () => {
    clock.ns = 100 * MS;
    cmosWrite(0x0b, 0x82);
    cmosWrite(0x00, 0x10);
    clock.advance(123 * MS);
    cmosWrite(0x0b, 0x02);
    clock.advance(S - 1);
    expect(cmosRead(0x00)).toBe(0x10);
    clock.advance(1);
    expect(cmosRead(0x00)).toBe(0x11);
  });

  it('moves the time without disturbing the update phase when written while running', () => {
    cmosWrite(0x02, 0x10); // minutes
    expect(readClock().slice(0, 3)).toEqual([0x58, 0x10, 0x23]);
    clock.ns = 500 * MS;
    expect(cmosRead(0x00)).toBe(0x59);
  });

  it('fills the memory-size bytes like a PC BIOS and keeps the checksum', () => {
    rtc.setMemorySize(128 * 1024 * 1024);
    expect([0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35].map(cmosRead)).toEqual([
      0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x07,
    ]);
    rtc.setMemorySize(3 * 1024 * 1024 * 1024, 2 * 1024 * 1024 * 1024);
    expect([0x5b, 0x5c, 0x5d].map(cmosRead)).toEqual([0x00, 0x80, 0x00]);
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += cmosRead(i);
    expect((cmosRead(0x2e) << 8) | cmosRead(0x2f)).toBe(sum);
    expect(() => rtc.setCmosByte(0x0a, 0)).toThrow(/not RAM/);
  });

  it('keeps guest CMOS RAM and exposes the NMI mask bit of port 0x70', () => {
    cmosWrite(0x40, 0xa5);
    expect(cmosRead(0x40)).toBe(0xa5);
    expect(rtc.nmiMasked).toBe(false);
    rtc.write(0, 0x80 | 0x0f, 1);
    expect(rtc.nmiMasked).toBe(true);
    rtc.write(0, 0x0f, 1);
    expect(nmiChanges).toEqual([true, false]);
    expect(cmosRead(0x0d)).toBe(0x80);
    expect(rtc.read(0, 1)).toBe(0xff);
  });

  it('round-trips its state', () => {
    cmosWrite(0x0b, 0x52);
    cmosWrite(0x40, 0x11);
    runFor(3 * S);
    expectRoundTrip(rtc, () => {
      cmosWrite(0x0b, 0x82);
      cmosWrite(0x09, 0x99);
      cmosWrite(0x40, 0x22);
      rtc.write(0, 0x8f, 1);
      clock.advance(2 * S);
      rtc.tick(clock.ns);
    });
  });

  it('refuses a malformed state without applying any of it', () => {
    const good = rtc.saveState();
    expectRejected(rtc, { ...good, ram: new Uint8Array(64) }, /ram must be a Uint8Array of 128 bytes/);
    expectRejected(rtc, { ...good, heldTime: { ...good.heldTime, year: 'x' } }, /heldTime\.year/);
    expectRejected(rtc, { ...good, interruptFlags: 0x01 }, /interruptFlags/);
  });
});
