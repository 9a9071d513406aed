import { describe, expect, it } from 'vitest';
import { MachineHooks } from '@ftx86/emulator/src/hooks.ts';
import { EventTap, EventKind } from '../src/index.ts';

function sinkLog() {
  const out: string[] = [];
  return {
    out,
    sinks: {
      net: (f: Uint8Array) => out.push(`net:${Buffer.from(f).toString()}`),
      serial: (port: number, b: Uint8Array) => out.push(`com${port + 1}:${Buffer.from(b).toString()}`),
    },
  };
}
const bytes = (s: string) => Uint8Array.from(Buffer.from(s));

describe('event-tap', () => {
  it('passes outputs straight through when FT is off', () => {
    const { out, sinks } = sinkLog();
    const tap = new EventTap({ sinks });
    tap.serial(0, bytes('a'));
    tap.net(bytes('f1'));
    expect(out).toEqual(['com1:a', 'net:f1']);
    expect(tap.heldBytes).toBe(0);
  });

  it('holds outputs per epoch and releases them in order only up to the acknowledged epoch', () => {
    const { out, sinks } = sinkLog();
    let asked = 0;
    const tap = new EventTap({ sinks, onOutput: () => asked++ });
    tap.hold(0n);
    tap.serial(0, bytes('a'));
    tap.net(bytes('f1'));
    expect(asked).toBe(1); // once per epoch, at its first output
    const e1 = tap.cut();
    expect(e1.epoch).toBe(1n);
    expect(e1.events.map((e) => e.kind)).toEqual([EventKind.SERIAL, EventKind.NET]);
    tap.serial(1, bytes('b'));
    expect(asked).toBe(2);
    tap.cut(); // epoch 2
    tap.net(bytes('f3')); // epoch 3, not cut yet
    expect(out).toEqual([]);
    expect(tap.heldEpochs).toBe(2);
    tap.release(1n);
    expect(out).toEqual(['com1:a', 'net:f1']);
    expect(tap.releasedUpTo).toBe(1n);
    tap.release(2n);
    expect(out).toEqual(['com1:a', 'net:f1', 'com2:b']);
    // The current epoch's output waits for its own checkpoint.
    expect(tap.heldBytes).toBe(2);
    tap.cut();
    tap.release(3n);
    expect(out.at(-1)).toBe('net:f3');
  });

  it('gathers a UART\'s byte-by-byte output into one event per run, in order with frames', () => {
    const { out, sinks } = sinkLog();
    const tap = new EventTap({ sinks });
    tap.hold(0n);
    for (const c of 'hello') tap.serial(0, bytes(c));
    tap.net(bytes('f'));
    tap.serial(0, bytes('!'));
    tap.serial(1, bytes('?'));
    const e = tap.cut();
    expect(e.events.map((x) => `${x.kind}/${x.port}/${Buffer.from(x.data).toString()}`)).toEqual([
      `${EventKind.SERIAL}/0/hello`, `${EventKind.NET}/0/f`, `${EventKind.SERIAL}/0/!`, `${EventKind.SERIAL}/1/?`,
    ]);
    expect(e.eventBytes).toBe(8);
    tap.release(1n);
    expect(out).toEqual(['com1:hello', 'net:f', 'com1:!', 'com2:?']);
    // A long run grows past its first buffer.
    const long = 'x'.repeat(1000);
    for (const c of long) tap.serial(0, bytes(c));
    expect(Buffer.from(tap.cut().events[0].data).toString()).toBe(long);
  });

  it('keeps its own copy: a device reusing its buffer does not change held output', () => {
    const { out, sinks } = sinkLog();
    const tap = new EventTap({ sinks });
    tap.hold(0n);
    const buf = bytes('xy');
    tap.net(buf);
    buf[0] = 0x41;
    tap.cut();
    tap.release(1n);
    expect(out).toEqual(['net:xy']);
  });

  it('records disk writes (copied) only while holding, and hands them over with the epoch', () => {
    const { sinks } = sinkLog();
    const hooks = new MachineHooks();
    const tap = new EventTap({ sinks });
    tap.attach(hooks);
    hooks.emit('blockWrite', 0, bytes('before'));
    tap.hold(0n);
    const data = bytes('data');
    hooks.emit('blockWrite', 512, data);
    data.fill(0);
    const e = tap.cut();
    expect(e.diskWrites.map((w) => [w.offset, Buffer.from(w.data).toString()])).toEqual([[512, 'data']]);
    expect(tap.cut().diskWrites).toEqual([]);
  });

  it('passThrough releases everything held, in order, and stops holding', () => {
    const { out, sinks } = sinkLog();
    const tap = new EventTap({ sinks });
    tap.hold(5n);
    tap.serial(0, bytes('1'));
    expect(tap.cut().epoch).toBe(6n);
    tap.serial(0, bytes('2'));
    tap.passThrough();
    expect(out).toEqual(['com1:1', 'com1:2']);
    tap.serial(0, bytes('3'));
    expect(out.at(-1)).toBe('com1:3');
    expect(tap.holding).toBe(false);
  });

  it('the test-only early release emits at once and never twice', () => {
    const { out, sinks } = sinkLog();
    const tap = new EventTap({ sinks, releaseEarly: true });
    tap.hold(0n);
    tap.serial(0, bytes('a'));
    expect(out).toEqual(['com1:a']);
    const e = tap.cut();
    expect(e.events.length).toBe(1); // still shipped to the secondary
    tap.release(1n);
    tap.passThrough();
    expect(out).toEqual(['com1:a']);
  });
});
