/** Test doubles for the machine side of the device contracts: a settable clock and IRQ recorders. */
import { expect } from 'vitest';
import type { Clock, IrqLine, Persistent } from '../../src/device.ts';

export class TestClock implements Clock {
  ns = 0;
  constructor(readonly rtcBaseMs = 0) {}
  nowNs(): number {
    return this.ns;
  }
  advance(ns: number): void {
    this.ns += ns;
  }
}

/** Records what a device drives onto an interrupt line. */
export class IrqRecorder implements IrqLine {
  level = false;
  risingEdges = 0;
  /** Clock times of the rising edges, when a clock is given. */
  readonly edgeTimes: number[] = [];
  constructor(private readonly clock?: Clock) {}
  set(level: boolean): void {
    if (level && !this.level) {
      this.risingEdges++;
      if (this.clock) this.edgeTimes.push(this.clock.nowNs());
    }
    this.level = level;
  }
}

/**
 * The round trip every device gets (crosvm's suspendable_tests!): save, drive the device,
 * restore the saved state, save again, and the two saves are equal.
 */
export function expectRoundTrip<S>(device: Persistent<S>, mutate: () => void): void {
  const saved = device.saveState();
  const copy = structuredClone(saved);
  mutate();
  expect(device.saveState(), 'mutation should change the state').not.toEqual(copy);
  device.loadState(saved);
  expect(device.saveState()).toEqual(copy);
}

/** A malformed state is refused with an Error and nothing of it is applied. */
export function expectRejected<S>(device: Persistent<S>, malformed: unknown, message: RegExp): void {
  const before = device.saveState();
  expect(() => device.loadState(malformed as S)).toThrow(message);
  expect(device.saveState()).toEqual(before);
}
