import { beforeEach, describe, expect, it } from 'vitest';
import { I8042 } from '../../src/devices/i8042.ts';
import { Port92 } from '../../src/devices/port92.ts';
import { IrqRecorder, expectRejected, expectRoundTrip } from './helpers.ts';

const STR_OBF = 0x01;
const STR_AUXDATA = 0x20;

describe('i8042', () => {
  let irq1: IrqRecorder;
  let irq12: IrqRecorder;
  let a20: boolean[];
  let resets: number;
  let kbc: I8042;

  beforeEach(() => {
    irq1 = new IrqRecorder();
    irq12 = new IrqRecorder();
    a20 = [];
    resets = 0;
    kbc = new I8042({
      keyboardIrq: irq1,
      mouseIrq: irq12,
      setA20: (on) => a20.push(on),
      requestReset: () => resets++,
    });
  });

  const status = (): number => kbc.control.read(0, 1);
  const command = (c: number): void => kbc.control.write(0, c, 1);
  const writeData = (d: number): void => kbc.data.write(0, d, 1);
  const readData = (): number => kbc.data.read(0, 1);

  /** Linux's i8042_command: write the command and parameters, read the replies. */
  function i8042Command(cmd: number, params: number[] = [], replies = 0): number[] {
    command(cmd);
    for (const p of params) writeData(p);
    const out: number[] = [];
    for (let i = 0; i < replies; i++) {
      expect(status() & STR_OBF, `reply ${i} to 0x${cmd.toString(16)}`).toBe(STR_OBF);
      out.push(readData());
    }
    return out;
  }

  /** The bytes waiting in the output buffer, read the way i8042_flush does. */
  function drain(): number[] {
    const out: number[] = [];
    while (status() & STR_OBF) out.push(readData());
    return out;
  }

  it('passes the controller self test with 0x55 and raises IRQ1 for the reply', () => {
    expect(status() & STR_OBF).toBe(0);
    command(0xaa);
    expect(status() & (STR_OBF | 0x04)).toBe(STR_OBF | 0x04);
    expect(irq1.level).toBe(true);
    expect(readData()).toBe(0x55);
    expect(irq1.level).toBe(false);
    expect(i8042Command(0xab, [], 1)).toEqual([0x00]); // keyboard interface test
    expect(i8042Command(0xa9, [], 1)).toEqual([0x00]); // mouse interface test
  });

  it("gets through Linux's i8042 probe: flush, self test, CTR, AUX loop and AUX IRQ test", () => {
    drain();
    expect(i8042Command(0xaa, [], 1)).toEqual([0x55]);
    // i8042_controller_init: read CTR, disable the keyboard interrupt while probing.
    let [ctr] = i8042Command(0x20, [], 1);
    expect(ctr & 0x40).toBe(0x40); // translation on, as a BIOS leaves it
    ctr = (ctr & ~0x01) | 0x10;
    i8042Command(0x60, [ctr]);
    expect(i8042Command(0x20, [], 1)).toEqual([ctr]);
    // i8042_check_aux: internal loopback returns the byte as AUX data.
    command(0xd3);
    writeData(0x5a);
    expect(status() & (STR_OBF | STR_AUXDATA)).toBe(STR_OBF | STR_AUXDATA);
    expect(readData()).toBe(0x5a);
    // i8042_toggle_aux: CTR bit 5 follows 0xA7/0xA8.
    command(0xa7);
    expect(i8042Command(0x20, [], 1)[0] & 0x20).toBe(0x20);
    command(0xa8);
    expect(i8042Command(0x20, [], 1)[0] & 0x20).toBe(0);
    // i8042_enable_aux_port, then the AUX IRQ delivery test.
    i8042Command(0x60, [(ctr & ~0x20) | 0x02]);
    command(0xd3);
    writeData(0xa5);
    expect(irq12.level).toBe(true);
    expect(irq1.level).toBe(false);
    expect(status() & STR_AUXDATA).toBe(STR_AUXDATA);
    expect(readData()).toBe(0xa5);
    expect(irq12.level).toBe(false);
  });

  it('resets the keyboard: 0xFF answers ACK then 0xAA, one IRQ1 per byte', () => {
    writeData(0xff);
    expect(irq1.risingEdges).toBe(1);
    expect(readData()).toBe(0xfa);
    expect(irq1.risingEdges).toBe(2);
    expect(readData()).toBe(0xaa);
    expect(irq1.level).toBe(false);
    expect(status() & STR_OBF).toBe(0);
  });

  it('answers atkbd probing: identify, scancode set, LEDs, echo', () => {
    writeData(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x41]); // MF2 ID through translation
    command(0x60);
    writeData(0x05); // translation off
    writeData(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
    writeData(0xf0);
    writeData(0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x02]);
    writeData(0xed);
    writeData(0x07);
    expect(drain()).toEqual([0xfa, 0xfa]);
    writeData(0xee);
    expect(drain()).toEqual([0xee]);
    writeData(0x01);
    expect(drain()).toEqual([0xfe]);
  });

  it('talks to the PS/2 mouse through 0xD4', () => {
    command(0xa8);
    command(0x60);
    writeData(0x47); // KBDINT | AUXINT | SYS | XLATE
    command(0xd4);
    writeData(0xff);
    expect(irq12.level).toBe(true);
    expect(drain()).toEqual([0xfa, 0xaa, 0x00]);
    command(0xd4);
    writeData(0xf2);
    expect(drain()).toEqual([0xfa, 0x00]);
    for (const rate of [200, 100, 80]) {
      command(0xd4);
      writeData(0xf3);
      command(0xd4);
      writeData(rate);
    }
    expect(drain()).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa]);
    command(0xd4);
    writeData(0xe9);
    expect(drain()).toEqual([0xfa, 0x00, 0x02, 80]);
  });

  it('drives A20 and reset through the output port', () => {
    expect(i8042Command(0xd0, [], 1)[0] & 0x03).toBe(0x03);
    i8042Command(0xd1, [0xdd]); // A20 off
    expect(a20).toEqual([false]);
    expect(i8042Command(0xd0, [], 1)[0] & 0x02).toBe(0);
    i8042Command(0xd1, [0xdf]); // A20 on (Linux's enable_a20_kbc)
    expect(a20).toEqual([false, true]);
    command(0xdd);
    command(0xdf);
    expect(a20).toEqual([false, true, false, true]);
    expect(resets).toBe(0);
    command(0xfe); // pulse reset (Linux reboot=k)
    expect(resets).toBe(1);
    command(0xff); // pulse nothing
    expect(resets).toBe(1);
    i8042Command(0xd1, [0xfe]); // write the reset line low
    expect(resets).toBe(2);
  });

  it('delivers queued keyboard bytes only while the keyboard port is enabled', () => {
    command(0xad);
    kbc.keyboardInput(new Uint8Array([0x1e, 0x9e]));
    expect(status() & STR_OBF).toBe(0);
    command(0xae);
    expect(irq1.level).toBe(true);
    expect(drain()).toEqual([0x1e, 0x9e]);
  });

  it('reads and writes its internal RAM', () => {
    i8042Command(0x65, [0x42]);
    expect(i8042Command(0x25, [], 1)).toEqual([0x42]);
  });

  it('round-trips its state', () => {
    writeData(0xff);
    command(0xa8);
    expectRoundTrip(kbc, () => {
      readData();
      command(0xd4);
      writeData(0xf2);
      command(0xad);
      i8042Command(0x60, [0x03]);
      command(0xd1);
    });
    expect(drain()).toEqual([0xfa, 0xaa]);
  });

  it('refuses a malformed state without applying any of it', () => {
    const good = kbc.saveState();
    expectRejected(kbc, { ...good, controllerQueue: [{ value: 300, fromMouse: false }] }, /controllerQueue\[0\]\.value/);
    expectRejected(kbc, { ...good, keyboard: { ...good.keyboard, scancodeSet: 4 } }, /keyboard\.scancodeSet/);
  });
});

describe('port92', () => {
  it('drives A20 from bit 1 and resets on a rising bit 0', () => {
    const a20: boolean[] = [];
    let resets = 0;
    const port = new Port92({ setA20: (on) => a20.push(on), requestReset: () => resets++ });
    port.write(0, 0x02, 1); // Linux enable_a20_fast
    expect(a20).toEqual([true]);
    expect(port.read(0, 1)).toBe(0x02);
    port.write(0, 0x03, 1);
    expect(resets).toBe(1);
    port.write(0, 0x03, 1);
    expect(resets).toBe(1);
    port.write(0, 0x00, 1);
    expect(a20).toEqual([true, false]);
    expectRoundTrip(port, () => port.write(0, 0x02, 1));
    expectRejected(port, { value: 256 }, /value/);
  });
});
