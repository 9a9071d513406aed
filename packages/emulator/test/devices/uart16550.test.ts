import { beforeEach, describe, expect, it } from 'vitest';
import { Uart16550 } from '../../src/devices/uart16550.ts';
import { IrqRecorder, expectRejected, expectRoundTrip } from './helpers.ts';

const RBR = 0;
const THR = 0;
const IER = 1;
const IIR = 2;
const FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IIR_NONE = 0x01;
const IIR_FIFO = 0xc0;

describe('uart16550', () => {
  let irq4: IrqRecorder;
  let sent: number[];
  let spaceSignals: number;
  let uart: Uart16550;

  beforeEach(() => {
    irq4 = new IrqRecorder();
    sent = [];
    spaceSignals = 0;
    uart = new Uart16550(irq4, (b) => sent.push(b), { onRxSpace: () => spaceSignals++ });
  });

  const r = (offset: number): number => uart.read(offset, 1);
  const w = (offset: number, value: number): void => uart.write(offset, value, 1);

  /** serial8250_do_startup's set-up on a PC: 8N1, FIFOs with an 8-byte trigger, DTR|RTS|OUT2. */
  function linuxStartup(): void {
    w(LCR, 0x80);
    w(0, 0x01); // 115200 baud
    w(1, 0x00);
    w(LCR, 0x03);
    w(FCR, 0x01);
    w(FCR, 0x87);
    w(MCR, 0x0b);
  }

  it('passes the 8250 autoconfig probes as a 16550A', () => {
    // Existence test: IER reads back 0 and 0x0F.
    w(IER, 0);
    expect(r(IER) & 0x0f).toBe(0);
    w(IER, 0x0f);
    expect(r(IER) & 0x0f).toBe(0x0f);
    w(IER, 0);
    // Loopback test: LOOP | OUT2 | RTS gives DCD | CTS.
    w(MCR, 0x1a);
    expect(r(MSR) & 0xf0).toBe(0x90);
    w(MCR, 0x00);
    // Scratch register.
    w(SCR, 0x5a);
    expect(r(SCR)).toBe(0x5a);
    // FIFO check: IIR bits 7-6 both set.
    w(FCR, 0x01);
    expect(r(IIR) >> 6).toBe(3);
    // No EFR behind LCR 0xBF: IIR still reads non-zero there.
    w(LCR, 0xbf);
    expect(r(IIR)).not.toBe(0);
    w(LCR, 0);
    // Not a 16750: no 64-byte FIFO bit.
    w(FCR, 0x21);
    expect(r(IIR) & 0x20).toBe(0);
    // Not an XScale: IER bit 6 does not stick.
    w(IER, 0x40);
    expect(r(IER) & 0x40).toBe(0);
    expect(r(LSR)).toBe(0x60);
  });

  it('keeps the divisor latch behind DLAB', () => {
    w(LCR, 0x83);
    w(0, 0x0c);
    w(1, 0x00);
    expect([r(0), r(1)]).toEqual([0x0c, 0x00]);
    w(LCR, 0x03);
    w(IER, 0x05);
    expect(r(IER)).toBe(0x05);
    w(LCR, 0x83);
    expect(r(0)).toBe(0x0c);
  });

  it('transmits each THR byte at once to a function or object sink', () => {
    linuxStartup();
    for (const b of [0x68, 0x69, 0x0a]) w(THR, b);
    expect(sent).toEqual([0x68, 0x69, 0x0a]);
    const out: number[] = [];
    const other = new Uart16550(new IrqRecorder(), { write: (b: number) => out.push(b) });
    other.write(LCR, 0x02, 1); // 7 data bits
    other.write(THR, 0xff, 1);
    expect(out).toEqual([0x7f]);
  });

  it('loops transmitted bytes and modem control back in loopback mode', () => {
    w(FCR, 0x01);
    w(MCR, 0x10 | 0x01); // LOOP | DTR
    expect(r(MSR)).toBe(0x20 | 0x09); // DSR, with DCTS and DDCD: the host's CTS and DCD are gone
    for (const b of [1, 2, 3]) w(THR, b);
    expect(sent).toEqual([]);
    expect(r(LSR) & 0x01).toBe(1);
    expect([r(RBR), r(RBR), r(RBR)]).toEqual([1, 2, 3]);
    expect(r(LSR) & 0x01).toBe(0);
    w(MCR, 0x10 | 0x04); // OUT1 -> RI
    expect(r(MSR) & 0xf0).toBe(0x40);
    w(MCR, 0x10);
    expect(r(MSR) & 0x0f).toBe(0x04); // TERI: RI went inactive
    // Host input is disconnected in loopback.
    uart.receive(new Uint8Array([9]));
    expect(r(LSR) & 0x01).toBe(0);
    expect(uart.rxSpace()).toBe(0);
  });

  it('keeps 16 bytes and flags an overrun when the receive FIFO overflows', () => {
    linuxStartup();
    spaceSignals = 0;
    w(IER, 0x05); // RDI | RLSI
    uart.receive(Uint8Array.from({ length: 20 }, (_, i) => i));
    expect(uart.rxSpace()).toBe(0);
    // The line-status interrupt outranks received data.
    expect(r(IIR)).toBe(IIR_FIFO | 0x06);
    expect(irq4.level).toBe(true);
    expect(r(LSR) & 0x03).toBe(0x03);
    expect(r(LSR) & 0x02).toBe(0); // cleared by the read
    expect(r(IIR)).toBe(IIR_FIFO | 0x04);
    const got: number[] = [];
    while (r(LSR) & 0x01) got.push(r(RBR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(r(IIR)).toBe(IIR_FIFO | IIR_NONE);
    expect(irq4.level).toBe(false);
    expect(spaceSignals).toBe(16);
    expect(uart.rxSpace()).toBe(16);
  });

  it('overwrites RBR and flags an overrun in 16450 mode', () => {
    uart.receive(new Uint8Array([1, 2]));
    expect(r(LSR) & 0x03).toBe(0x03);
    expect(r(RBR)).toBe(2);
    expect(uart.rxSpace()).toBe(1);
  });

  it('reports data below the trigger level as a character timeout, at or above it as data available', () => {
    linuxStartup(); // trigger level 8
    w(IER, 0x01);
    uart.receive(new Uint8Array([1, 2, 3]));
    expect(r(IIR)).toBe(IIR_FIFO | 0x0c);
    uart.receive(new Uint8Array([4, 5, 6, 7, 8]));
    expect(r(IIR)).toBe(IIR_FIFO | 0x04);
    r(RBR);
    expect(r(IIR)).toBe(IIR_FIFO | 0x0c);
    w(FCR, 0x03); // clear the receive FIFO
    expect(r(IIR)).toBe(IIR_FIFO | IIR_NONE);
    expect(r(LSR) & 0x01).toBe(0);
  });

  it('raises THRE when THRI is enabled, clears it on an IIR read, and re-arms it on IER writes', () => {
    linuxStartup();
    // serial8250_do_startup's UART_BUG_THRE test.
    w(IER, 0x02);
    const iir1 = r(IIR);
    w(IER, 0);
    w(IER, 0x02);
    const iir2 = r(IIR);
    w(IER, 0);
    expect(iir1 & 0x0f).toBe(0x02);
    expect(iir2 & 0x0f).toBe(0x02);
    // The IIR read that reported THRE cleared it.
    w(IER, 0x02);
    expect(irq4.level).toBe(true);
    expect(r(IIR) & 0x0f).toBe(0x02);
    expect(r(IIR) & 0x0f).toBe(IIR_NONE);
    expect(irq4.level).toBe(false);
    // Each transmitted byte empties THR again: a new THRE interrupt and a new edge.
    const edges = irq4.risingEdges;
    w(THR, 0x41);
    w(THR, 0x42);
    expect(irq4.risingEdges).toBe(edges + 2);
    expect(r(IIR) & 0x0f).toBe(0x02);
    // Linux's __stop_tx drops THRI: the interrupt goes away.
    w(IER, 0x00);
    expect(irq4.level).toBe(false);
  });

  it('orders IIR by priority: line status, received data, THRE, modem status', () => {
    linuxStartup();
    w(IER, 0x0f);
    w(MCR, 0x10); // into loopback with every line off: DCTS, DDSR, DDCD
    w(MCR, 0x0b); // and back
    expect(r(IIR) & 0x0f).toBe(0x02); // THRE (armed by the IER write) outranks modem status
    expect(r(IIR) & 0x0f).toBe(0x00); // then modem status
    uart.receive(new Uint8Array(17));
    expect(r(IIR) & 0x0f).toBe(0x06);
    r(LSR);
    expect(r(IIR) & 0x0f).toBe(0x04);
    w(FCR, 0x03);
    expect(r(IIR) & 0x0f).toBe(0x00);
    r(MSR);
    expect(r(IIR) & 0x0f).toBe(IIR_NONE);
  });

  it('gates the IRQ with OUT2 like a PC serial port', () => {
    w(IER, 0x02);
    expect(r(IIR) & 0x0f).toBe(0x02);
    w(IER, 0x00);
    w(IER, 0x02);
    expect(irq4.level).toBe(false);
    w(MCR, 0x08);
    expect(irq4.level).toBe(true);
    w(MCR, 0x18); // loopback forces OUT2 inactive at the pin
    expect(irq4.level).toBe(false);
  });

  it('round-trips its state', () => {
    linuxStartup();
    w(IER, 0x0d);
    uart.receive(new Uint8Array([10, 20, 30]));
    expectRoundTrip(uart, () => {
      r(RBR);
      w(SCR, 0x77);
      w(IER, 0x0f);
      uart.receive(new Uint8Array(20));
      w(MCR, 0x1f);
    });
    expect([r(RBR), r(RBR), r(RBR)]).toEqual([10, 20, 30]);
  });

  it('refuses a malformed state without applying any of it', () => {
    const good = uart.saveState();
    expectRejected(uart, { ...good, rxFifo: new Array(17).fill(0) }, /rxFifo/);
    expectRejected(uart, { ...good, rxFifo: [1, 2] }, /more than one byte/);
    expectRejected(uart, { ...good, ier: 0x10 }, /ier/);
  });
});
