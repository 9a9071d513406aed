/**
 * Fixtures for the snapshot tests: a small board of real chipset devices wired as on a PC
 * (PIT, two UARTs and the RTC into the PIC), driven through their ports, and a real Cpu.
 */
import { Cpu, type CpuBus } from '../src/cpu.ts';
import type { Clock } from '../src/device.ts';
import { Pic8259 } from '../src/devices/pic8259.ts';
import { Pit8254 } from '../src/devices/pit8254.ts';
import { Uart16550 } from '../src/devices/uart16550.ts';
import { RtcMc146818 } from '../src/devices/rtc-mc146818.ts';
import type { DeviceEntry, SnapshotTarget } from '../src/snapshot/apply.ts';
import type { VmState } from '../src/snapshot/codec.ts';
import { crc32c } from '../src/snapshot/crc32c.ts';

export class TestClock implements Clock {
  ns = 0;
  constructor(readonly rtcBaseMs = Date.UTC(2024, 1, 29, 23, 59, 58)) {}
  nowNs(): number {
    return this.ns;
  }
}

export const idleBus: CpuBus = {
  ioRead: () => 0xff,
  ioWrite: () => {},
  mmioRead: () => 0,
  mmioWrite: () => {},
  interruptAcknowledge: () => -1,
};

export class Board {
  readonly clock = new TestClock();
  intr = false;
  readonly serialOut: number[] = [];
  readonly pic = new Pic8259((level) => (this.intr = level));
  readonly pit = new Pit8254(this.pic.irq(0), this.clock);
  readonly com1 = new Uart16550(this.pic.irq(4), (b) => this.serialOut.push(b));
  readonly com2 = new Uart16550(this.pic.irq(3), (b) => this.serialOut.push(b));
  readonly rtc = new RtcMc146818(this.pic.irq(8), this.clock);

  /** Load order: the PIC last, as a board lists it (apply.ts). */
  get devices(): DeviceEntry[] {
    return [
      this.pit,
      { name: 'uart16550:com1', device: this.com1 },
      { name: 'uart16550:com2', device: this.com2 },
      this.rtc,
      this.pic,
    ];
  }

  /** Program everything roughly as Linux does at boot, then let time pass. */
  drive(): void {
    // PIC: ICW1-4 for both chips (vectors 0x30/0x38), then unmask IRQ0, 2, 3, 4, 8.
    const pic = (chip: 'master' | 'slave', offset: number, v: number) => this.pic[chip].write(offset, v, 1);
    pic('master', 0, 0x11); pic('master', 1, 0x30); pic('master', 1, 0x04); pic('master', 1, 0x01);
    pic('slave', 0, 0x11); pic('slave', 1, 0x38); pic('slave', 1, 0x02); pic('slave', 1, 0x01);
    pic('master', 1, 0xe2); pic('slave', 1, 0xfe);
    this.pic.elcr.write(1, 0x20, 1);
    // PIT channel 0: mode 2, 1193 ticks (1 kHz); channel 2 latched mid-count.
    this.pit.write(3, 0x34, 1); this.pit.write(0, 1193 & 0xff, 1); this.pit.write(0, 1193 >> 8, 1);
    this.pit.write(3, 0xb6, 1); this.pit.write(2, 0x34, 1); this.pit.write(2, 0x12, 1);
    // UARTs: 115200 8N1, FIFOs on with trigger 8, interrupts on; bytes arrive and one is read.
    for (const [u, text] of [[this.com1, 'root\n'], [this.com2, 'ok']] as const) {
      u.write(3, 0x80, 1); u.write(0, 1, 1); u.write(1, 0, 1); u.write(3, 0x03, 1);
      u.write(2, 0x87, 1); u.write(1, 0x0f, 1); u.write(4, 0x0b, 1); u.write(7, 0x5a, 1);
      u.receive(new TextEncoder().encode(text));
      u.read(0, 1);
      u.write(0, 0x41, 1);
    }
    // RTC: binary mode, periodic 64 Hz and update interrupts, an alarm, CMOS bytes.
    const cmos = (i: number, v: number) => { this.rtc.write(0, i, 1); this.rtc.write(1, v, 1); };
    cmos(0x0a, 0x2a); cmos(0x0b, 0x56); cmos(0x01, 30); cmos(0x03, 0); cmos(0x05, 0);
    for (let i = 0x40; i < 0x60; i++) cmos(i, (i * 7) & 0xff);
    for (let t = 0; t < 20; t++) {
      this.clock.ns += 3_000_000;
      this.pit.tick(this.clock.ns);
      this.rtc.tick(this.clock.ns);
      if (this.intr) this.pic.acknowledge();
      if (t % 5 === 0) this.pic.master.write(0, 0x20, 1); // EOI
    }
  }

  /** Every device's state, for "untouched" checks. */
  states(): unknown[] {
    return this.devices.map((d) => ('device' in d ? d.device : d).saveState());
  }
}

/** A CPU target without a core: a 4 KiB state buffer (for codec and fuzz tests). */
export class FakeCpu {
  readonly bytes = new Uint8Array(4096);
  readonly layoutId = 0x1234;
  target(): SnapshotTarget['cpu'] {
    return { stateSize: this.bytes.length, layoutId: this.layoutId, load: (b) => this.bytes.set(b) };
  }
}

export function newCpu(ramBytes = 16 << 20): Cpu {
  return new Cpu({ ramBytes, bus: idleBus });
}

/**
 * Real-mode code at 0x7c00 that fills 32 KiB at 0x10000 with 0x12345678 and halts:
 *   mov ax,0x1000; mov es,ax; xor di,di; mov eax,0x12345678; mov cx,0x2000; rep stosd; hlt
 */
export const FILL_PROGRAM = Uint8Array.from([
  0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x31, 0xff, 0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0xb9, 0x00, 0x20, 0xf3, 0x66, 0xab, 0xf4,
]);

export function startAt7c00(cpu: Cpu, program: Uint8Array): void {
  cpu.state.set('cs', 0);
  cpu.state.set('eip', 0x7c00);
  cpu.writePhysical(0x7c00, program);
}

/** A deterministic pseudo-random byte source (xorshift32). */
export function pseudoRandom(seed: number): (n: number) => Uint8Array {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

/** Section start offsets of an encoded file (header walk, no validation). */
export function sectionOffsets(file: Uint8Array): number[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const count = view.getUint32(12, true);
  const out: number[] = [];
  let pos = 24;
  for (let i = 0; i < count; i++) {
    out.push(pos);
    const len = view.getUint32(pos + 8, true) + view.getUint32(pos + 12, true) * 2 ** 32;
    pos += 16 + file[pos + 1] + len;
  }
  return out;
}

export function devicesOf(state: VmState): Record<string, unknown> {
  return Object.fromEntries(state.devices.map((d) => [d.name, d.state]));
}

const ALLOCATING = ['ArrayBuffer', 'Uint8Array', 'Uint16Array', 'Uint32Array', 'Int32Array', 'Float64Array', 'BigUint64Array'] as const;

/**
 * Run `fn` with the typed-array and ArrayBuffer constructors wrapped, and return the
 * largest buffer (in bytes) it asked for by length. The decoder must never allocate more
 * than its input holds: a length read from the file is checked against the bytes left
 * before it sizes anything.
 */
export function largestAllocation(fn: () => void): number {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = ALLOCATING.map((name) => g[name]);
  let largest = 0;
  ALLOCATING.forEach((name, i) => {
    const ctor = saved[i] as { new (...args: unknown[]): unknown; BYTES_PER_ELEMENT?: number };
    g[name] = new Proxy(ctor, {
      construct(target, args, newTarget) {
        if (typeof args[0] === 'number') largest = Math.max(largest, args[0] * (ctor.BYTES_PER_ELEMENT ?? 1));
        return Reflect.construct(target, args, newTarget) as object;
      },
    });
  });
  try {
    fn();
  } finally {
    ALLOCATING.forEach((name, i) => (g[name] = saved[i]));
  }
  return largest;
}

export interface ForgedSection {
  type: number;
  name: string;
  version?: number;
  payload: Uint8Array;
  /** Override the payload length field (to point past the end). */
  length?: number;
}

/**
 * A snapshot file written by hand, independently of the encoder, with a valid checksum:
 * for files the encoder refuses to write (bad lengths, unknown sections, bad values).
 */
export function forge(sections: ForgedSection[], opts: { version?: number; flags?: number } = {}): Uint8Array {
  const size = 24 + sections.reduce((n, s) => n + 16 + s.name.length + s.payload.length, 0) + 4;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode('FTX86VM\0'));
  view.setUint16(8, opts.version ?? 1, true);
  view.setUint16(10, opts.flags ?? 0, true);
  view.setUint32(12, sections.length, true);
  view.setUint32(16, size, true);
  let at = 24;
  for (const s of sections) {
    out[at] = s.type;
    out[at + 1] = s.name.length;
    view.setUint32(at + 4, s.version ?? 1, true);
    const len = s.length ?? s.payload.length;
    view.setUint32(at + 8, len % 2 ** 32, true);
    view.setUint32(at + 12, Math.floor(len / 2 ** 32), true);
    out.set(new TextEncoder().encode(s.name), at + 16);
    out.set(s.payload, at + 16 + s.name.length);
    at += 16 + s.name.length + s.payload.length;
  }
  reseal(out);
  return out;
}

/** Recompute the checksum after a deliberate edit, so the parser behind it is reached. */
export function reseal(file: Uint8Array): void {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (file.length < 28) return;
  view.setUint32(file.length - 4, crc32c(file.subarray(0, file.length - 4)), true);
}

/** Bit-at-a-time CRC-32C: the reference the table-driven one is checked against. */
export function crc32cRef(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
