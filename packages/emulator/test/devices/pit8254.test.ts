import { beforeEach, describe, expect, it } from 'vitest';
import { PIT_HZ, Pit8254, nsAtPitTick, pitTicksAt } from '../../src/devices/pit8254.ts';
import { Port61 } from '../../src/devices/port61.ts';
import { IrqRecorder, TestClock, expectRejected, expectRoundTrip } from './helpers.ts';

const CH0 = 0;
const CH2 = 2;
const MODE = 3;

describe('pit8254', () => {
  let clock: TestClock;
  let irq0: IrqRecorder;
  let pit: Pit8254;
  let port61: Port61;

  beforeEach(() => {
    clock = new TestClock();
    irq0 = new IrqRecorder(clock);
    pit = new Pit8254(irq0, clock);
    port61 = new Port61(pit, clock);
  });

  /** Put the clock on PIT tick `tick`. */
  function atTick(tick: number): void {
    clock.ns = nsAtPitTick(tick);
  }

  function writeCount(channel: number, count: number): void {
    pit.write(channel, count & 0xff, 1);
    pit.write(channel, (count >> 8) & 0xff, 1);
  }

  function readCount(channel: number): number {
    const lo = pit.read(channel, 1);
    return lo | (pit.read(channel, 1) << 8);
  }

  /** The machine's loop: run to each deadline tick() returns, until `edges` IRQ0 edges. */
  function runUntilEdges(edges: number): void {
    while (irq0.risingEdges < edges) {
      const deadline = pit.tick(clock.ns);
      expect(deadline).toBeGreaterThan(clock.ns);
      expect(deadline).toBeLessThan(Infinity);
      clock.ns = deadline;
      pit.tick(clock.ns);
    }
  }

  it('converts between PIT ticks and nanoseconds without drift', () => {
    expect(pitTicksAt(1_000_000_000)).toBe(PIT_HZ);
    expect(pitTicksAt(3600e9)).toBe(3600 * PIT_HZ);
    for (const tick of [1, 2, 11932, PIT_HZ - 1, PIT_HZ + 7, 123_456_789_012]) {
      const ns = nsAtPitTick(tick);
      expect(pitTicksAt(ns)).toBe(tick);
      expect(pitTicksAt(ns - 1)).toBe(tick - 1);
    }
  });

  it('raises no IRQ0 and asks for no tick before it is programmed', () => {
    expect(pit.tick(0)).toBe(Infinity);
    clock.advance(1e9);
    expect(pit.tick(clock.ns)).toBe(Infinity);
    expect(irq0.risingEdges).toBe(0);
  });

  for (const reload of [2, 100, 1193, 11932, 0]) {
    it(`fires IRQ0 every ${reload || 65536} ticks in mode 2 (Linux periodic, 0x34)`, () => {
      const n = reload || 0x10000;
      atTick(5000);
      pit.write(MODE, 0x34, 1);
      writeCount(CH0, reload);
      // OUT goes high as soon as mode 2 is selected (from mode 0's low): that is edge 0.
      expect(irq0.edgeTimes).toEqual([clock.ns]);
      runUntilEdges(11);
      // Loaded on the next CLK (tick 5001); OUT rises at every reload after that.
      expect(irq0.edgeTimes.slice(1)).toEqual(Array.from({ length: 10 }, (_, k) => nsAtPitTick(5001 + (k + 1) * n)));
      const periodNs = (n * 1e9) / PIT_HZ;
      for (let k = 2; k < 11; k++) {
        expect(Math.abs(irq0.edgeTimes[k] - irq0.edgeTimes[k - 1] - periodNs)).toBeLessThanOrEqual(1);
      }
    });
  }

  it('delivers every period to a machine that ticks only once a millisecond', () => {
    pit.write(MODE, 0x34, 1);
    writeCount(CH0, 11932); // LATCH for HZ=100
    for (let ms = 1; ms <= 1000; ms++) {
      clock.ns = ms * 1e6;
      pit.tick(clock.ns);
    }
    // The mode write, then one per period: 99 periods of 11932 ticks end within the second.
    expect(irq0.risingEdges).toBe(1 + Math.floor((pitTicksAt(1e9) - 1) / 11932));
    expect(irq0.risingEdges).toBe(100);
  });

  it('fires one IRQ0 edge delta+1 ticks after a mode 4 oneshot (Linux pit_next_event)', () => {
    pit.write(MODE, 0x38, 1);
    atTick(1000);
    writeCount(CH0, 500);
    const deadline = pit.tick(clock.ns);
    expect(deadline).toBe(nsAtPitTick(1001 + 500 + 1));
    clock.ns = deadline - 1;
    pit.tick(clock.ns);
    expect(irq0.risingEdges).toBe(1); // OUT went high when the mode was set
    clock.ns = deadline;
    expect(pit.tick(clock.ns)).toBe(Infinity);
    expect(irq0.risingEdges).toBe(2);
    expect(irq0.edgeTimes[1]).toBe(deadline);
  });

  it('raises OUT at terminal count in mode 0 and keeps it high while the counter wraps', () => {
    pit.write(MODE, 0x30, 1);
    atTick(10);
    writeCount(CH0, 100);
    expect(pit.tick(clock.ns)).toBe(nsAtPitTick(111));
    atTick(111);
    expect(pit.tick(clock.ns)).toBe(Infinity);
    expect(irq0.level).toBe(true);
    atTick(111 + 0x10000 + 5);
    pit.tick(clock.ns);
    expect(irq0.level).toBe(true);
    expect(irq0.risingEdges).toBe(1);
  });

  it('lets a pit_calibrate_tsc loop on port 0x61 see OUT2 rise after latch+1 ticks', () => {
    // arch/x86/kernel/tsc.c: pit_calibrate_tsc(latch = PIT_TICK_RATE / (1000 / 10), 10, 1000)
    const latch = Math.floor(PIT_HZ / 100);
    clock.ns = 123_456_789;
    port61.write(0, (port61.read(0, 1) & ~0x02) | 0x01, 1);
    pit.write(MODE, 0xb0, 1);
    pit.write(CH2, latch & 0xff, 1);
    pit.write(CH2, latch >> 8, 1);
    const writeTick = pitTicksAt(clock.ns);
    const start = clock.ns;
    let loops = 0;
    // Each inb(0x61) costs 1 us of guest time here.
    while ((port61.read(0, 1) & 0x20) === 0) {
      clock.advance(1000);
      loops++;
    }
    const elapsed = clock.ns - start;
    const expected = nsAtPitTick(writeTick + 1 + latch) - start;
    expect(elapsed).toBeGreaterThanOrEqual(expected);
    expect(elapsed - expected).toBeLessThan(1000);
    expect(Math.abs(elapsed - 10e6)).toBeLessThan(5000);
    expect(loops).toBeGreaterThanOrEqual(1000);
    expect(port61.read(0, 1) & 0x01).toBe(1);
  });

  it('counts down the MSB the way pit_expect_msb reads it (mode 0, unlatched reads)', () => {
    port61.write(0, 0x01, 1);
    atTick(700);
    pit.write(MODE, 0xb0, 1);
    writeCount(CH2, 0xffff);
    for (let k = 0; k < 200; k++) {
      atTick(701 + 256 * k + 128);
      const lsb = pit.read(CH2, 1);
      const msb = pit.read(CH2, 1);
      expect(msb).toBe(0xff - k);
      expect(lsb).toBe(0x7f);
    }
  });

  it('returns a latched count until it has been read, and ignores a second latch', () => {
    pit.write(MODE, 0x34, 1);
    atTick(0);
    writeCount(CH0, 1000);
    atTick(1 + 300);
    pit.write(MODE, 0x00, 1); // latch channel 0
    atTick(1 + 400);
    pit.write(MODE, 0x00, 1); // ignored: the first latch is unread
    expect(readCount(CH0)).toBe(700);
    expect(readCount(CH0)).toBe(600); // live again
  });

  it('reports status and counts through the read-back command', () => {
    pit.write(MODE, 0x34, 1);
    atTick(0);
    writeCount(CH0, 1000);
    pit.write(MODE, 0xe2, 1); // read back status of channel 0
    expect(pit.read(CH0, 1)).toBe(0x80 | 0x40 | 0x30 | 0x04); // OUT high, null count
    atTick(1 + 250);
    pit.write(MODE, 0xc2, 1); // status and count
    expect(pit.read(CH0, 1)).toBe(0xb4);
    expect(readCount(CH0)).toBe(750);
  });

  it('counts in BCD', () => {
    pit.write(MODE, 0x35, 1); // channel 0, lo/hi, mode 2, BCD
    atTick(0);
    writeCount(CH0, 0x1000); // 1000 decimal
    atTick(2);
    expect(readCount(CH0)).toBe(0x0999);
    atTick(1 + 1000 + 1);
    expect(readCount(CH0)).toBe(0x0999);
  });

  it('supports LSB-only and MSB-only access', () => {
    pit.write(MODE, 0x14, 1); // LSB only, mode 2
    atTick(0);
    pit.write(CH0, 50, 1);
    atTick(11);
    expect(pit.read(CH0, 1)).toBe(40);
    pit.write(MODE, 0x24, 1); // MSB only
    pit.write(CH0, 0x02, 1);
    atTick(11 + 1 + 6);
    expect(pit.read(CH0, 1)).toBe(0x01); // 0x200 - 6 = 0x1FA
  });

  it('generates a square wave on OUT2 in mode 3 while the gate is high', () => {
    port61.write(0, 0x03, 1); // gate on, speaker on
    atTick(100);
    pit.write(MODE, 0xb6, 1);
    writeCount(CH2, 10);
    const levels: number[] = [];
    for (let t = 101; t < 121; t++) {
      atTick(t);
      levels.push((port61.read(0, 1) >> 5) & 1);
    }
    expect(levels).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    // Gate low forces OUT high.
    atTick(126);
    port61.write(0, 0x02, 1);
    expect(port61.read(0, 1) & 0x21).toBe(0x20);
  });

  it('triggers a mode 1 one-shot on OUT2 with a rising gate', () => {
    port61.write(0, 0x00, 1);
    atTick(50);
    pit.write(MODE, 0xb2, 1);
    writeCount(CH2, 40);
    atTick(60);
    expect(pit.channel2Out()).toBe(true); // waiting for a trigger
    port61.write(0, 0x01, 1);
    atTick(61);
    expect(pit.channel2Out()).toBe(false);
    atTick(61 + 39);
    expect(pit.channel2Out()).toBe(false);
    atTick(61 + 40);
    expect(pit.channel2Out()).toBe(true);
  });

  it('suspends mode 0 counting while the gate is low', () => {
    port61.write(0, 0x01, 1);
    atTick(0);
    pit.write(MODE, 0xb0, 1);
    writeCount(CH2, 100);
    atTick(31); // 30 counted
    port61.write(0, 0x00, 1);
    atTick(5000);
    expect(readCount(CH2)).toBe(70);
    port61.write(0, 0x01, 1);
    atTick(5000 + 69);
    expect(pit.channel2Out()).toBe(false);
    atTick(5000 + 70);
    expect(pit.channel2Out()).toBe(true);
  });

  it('loads a new mode 2 count at the end of the current period', () => {
    pit.write(MODE, 0x34, 1);
    atTick(0);
    writeCount(CH0, 100);
    runUntilEdges(2);
    atTick(1 + 150);
    writeCount(CH0, 40);
    runUntilEdges(5);
    expect(irq0.edgeTimes).toEqual([0, nsAtPitTick(101), nsAtPitTick(201), nsAtPitTick(241), nsAtPitTick(281)]);
  });

  it('toggles the refresh bit of port 0x61 every 18 PIT ticks', () => {
    atTick(0);
    const a = port61.read(0, 1) & 0x10;
    atTick(18);
    const b = port61.read(0, 1) & 0x10;
    atTick(36);
    expect(a).not.toBe(b);
    expect(port61.read(0, 1) & 0x10).toBe(a);
  });

  it('round-trips its state', () => {
    pit.write(MODE, 0x34, 1);
    writeCount(CH0, 11932);
    port61.write(0, 0x03, 1);
    pit.write(MODE, 0xb6, 1);
    writeCount(CH2, 1234);
    clock.advance(5e6);
    pit.tick(clock.ns);
    expectRoundTrip(pit, () => {
      pit.write(MODE, 0x00, 1);
      pit.write(MODE, 0x38, 1);
      pit.write(CH0, 7, 1);
      port61.write(0, 0x00, 1);
      clock.advance(3e6);
      pit.tick(clock.ns);
    });
    expectRoundTrip(port61, () => port61.write(0, 0x0e, 1));
  });

  it('refuses a malformed state without applying any of it', () => {
    const good = pit.saveState();
    expectRejected(pit, { ...good, channels: good.channels.slice(0, 2) }, /channels must be an array of 3/);
    expectRejected(
      pit,
      { ...good, channels: [good.channels[0], good.channels[1], { ...good.channels[2], mode: 6 }] },
      /channels\[2\]\.mode/,
    );
    expectRejected(port61, { speakerDataEnable: 1 }, /speakerDataEnable/);
  });
});
