import { beforeEach, describe, expect, it } from 'vitest';
import type { IrqLine } from '../../src/device.ts';
import { Pic8259 } from '../../src/devices/pic8259.ts';
import { expectRejected, expectRoundTrip } from './helpers.ts';

const MASTER_CMD = 0;
const MASTER_IMR = 1;

/** arch/x86/kernel/i8259.c init_8259A(0), with ISA_IRQ_VECTOR(0) = 0x30. */
function linuxInit8259A(pic: Pic8259, masterMask = 0xfb, slaveMask = 0xff): void {
  pic.master.write(MASTER_IMR, 0xff, 1);
  pic.master.write(MASTER_CMD, 0x11, 1); // ICW1: edge, cascade, ICW4 needed
  pic.master.write(MASTER_IMR, 0x30, 1); // ICW2
  pic.master.write(MASTER_IMR, 0x04, 1); // ICW3: slave on IR2
  pic.master.write(MASTER_IMR, 0x01, 1); // ICW4: 8086, normal EOI
  pic.slave.write(0, 0x11, 1);
  pic.slave.write(1, 0x38, 1);
  pic.slave.write(1, 0x02, 1); // slave ID 2
  pic.slave.write(1, 0x01, 1);
  pic.master.write(MASTER_IMR, masterMask, 1);
  pic.slave.write(1, slaveMask, 1);
}

/** mask_and_ack_8259A's EOI: a specific EOI to the slave, then to the master's cascade. */
function linuxEoi(pic: Pic8259, irq: number): void {
  if (irq & 8) {
    pic.slave.write(0, 0x60 + (irq & 7), 1);
    pic.master.write(MASTER_CMD, 0x62, 1);
  } else {
    pic.master.write(MASTER_CMD, 0x60 + irq, 1);
  }
}

describe('pic8259', () => {
  let intrChanges: boolean[];
  let pic: Pic8259;
  let lines: Map<number, IrqLine>;

  beforeEach(() => {
    intrChanges = [];
    pic = new Pic8259((level) => intrChanges.push(level));
    // The board wires one device to each IRQ once.
    lines = new Map();
    for (let n = 0; n < 16; n++) if (n !== 2) lines.set(n, pic.irq(n));
  });

  /** The device line on ISA IRQ n. */
  function line(n: number): IrqLine {
    const l = lines.get(n);
    if (!l) throw new Error(`no line ${n}`);
    return l;
  }

  it('passes Linux probe_8259A: the master IMR reads back what was written', () => {
    pic.slave.write(1, 0xff, 1);
    pic.master.write(MASTER_IMR, 0xfb, 1);
    expect(pic.master.read(MASTER_IMR, 1)).toBe(0xfb);
  });

  it('delivers IRQ0 at vector 0x30 after the init_8259A sequence and clears it on specific EOI', () => {
    linuxInit8259A(pic, 0xfa);
    const timer = line(0);
    timer.set(true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(intrChanges).toEqual([true]);
    expect(pic.acknowledge()).toBe(0x30);
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.registers().isr).toBe(0x0001);
    timer.set(false);
    linuxEoi(pic, 0);
    expect(pic.registers().isr).toBe(0);
    expect(intrChanges).toEqual([true, false]);
  });

  it('holds a masked IRQ in IRR until it is unmasked', () => {
    linuxInit8259A(pic, 0xfb);
    line(1).set(true);
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.registers().irr & 0x02).toBe(0x02);
    pic.master.write(MASTER_IMR, 0xf9, 1);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x31);
  });

  it('resolves fixed priority, nests a higher IRQ and holds a lower one until EOI', () => {
    linuxInit8259A(pic, 0x00);
    line(3).set(true);
    line(1).set(true);
    expect(pic.acknowledge()).toBe(0x31);
    // IRQ3 is lower than IRQ1 in service: held off.
    expect(pic.hasInterrupt()).toBe(false);
    // IRQ0 is higher: it nests.
    line(0).set(true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x30);
    expect(pic.registers().isr).toBe(0x03);
    // A non-specific EOI ends the highest-priority in-service level first.
    pic.master.write(MASTER_CMD, 0x20, 1);
    expect(pic.registers().isr).toBe(0x02);
    expect(pic.hasInterrupt()).toBe(false);
    pic.master.write(MASTER_CMD, 0x20, 1);
    expect(pic.acknowledge()).toBe(0x33);
  });

  it('latches edge-triggered requests on the rising edge only', () => {
    linuxInit8259A(pic, 0x00);
    const serial = line(4);
    serial.set(true);
    expect(pic.acknowledge()).toBe(0x34);
    linuxEoi(pic, 4);
    // Still high, but no new edge: nothing pending.
    expect(pic.hasInterrupt()).toBe(false);
    serial.set(false);
    serial.set(true);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it('cascades a slave IRQ through master IR2 and needs EOI on both chips', () => {
    linuxInit8259A(pic, 0xfb, 0xef);
    line(12).set(true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x3c);
    const r = pic.registers();
    expect(r.isr).toBe((1 << 12) | (1 << 2));
    expect(pic.hasInterrupt()).toBe(false);
    // Fully nested (not SFNM): with IR2 in service even a higher slave IRQ waits.
    pic.slave.write(1, 0xed, 1);
    line(9).set(true);
    expect(pic.hasInterrupt()).toBe(false);
    line(9).set(false);
    line(12).set(false);
    linuxEoi(pic, 12);
    expect(pic.registers().isr).toBe(0);
  });

  it('keeps a level-triggered (ELCR) line asserting after EOI until the device drops it', () => {
    linuxInit8259A(pic, 0xfb, 0x00);
    pic.elcr.write(1, 0x04, 1); // IRQ10 level triggered
    expect(pic.elcr.read(1, 1)).toBe(0x04);
    const nic = line(10);
    nic.set(true);
    expect(pic.acknowledge()).toBe(0x3a);
    expect(pic.hasInterrupt()).toBe(false);
    linuxEoi(pic, 10);
    // The device has not been serviced: the request is back.
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x3a);
    nic.set(false);
    linuxEoi(pic, 10);
    expect(pic.hasInterrupt()).toBe(false);
  });

  it('keeps the reserved ELCR bits (IRQ0, 1, 2, 8, 13) edge triggered', () => {
    pic.elcr.write(0, 0xff, 1);
    pic.elcr.write(1, 0xff, 1);
    expect(pic.registers().elcr).toBe(0xdef8);
  });

  it('answers a request withdrawn before INTA with spurious IRQ7, setting no ISR bit', () => {
    linuxInit8259A(pic, 0x00, 0x00);
    pic.elcr.write(0, 0x20, 1); // IRQ5 level
    line(5).set(true);
    expect(pic.hasInterrupt()).toBe(true);
    line(5).set(false);
    expect(pic.acknowledge()).toBe(0x37);
    expect(pic.registers().isr).toBe(0);
    // Linux's i8259A_irq_real reads ISR through OCW3 to tell it was spurious.
    pic.master.write(MASTER_CMD, 0x0b, 1);
    expect(pic.master.read(MASTER_CMD, 1) & 0x80).toBe(0);
    pic.master.write(MASTER_CMD, 0x0a, 1);
  });

  it('answers a withdrawn slave request with spurious IRQ15 and the cascade in service', () => {
    linuxInit8259A(pic, 0x00, 0x00);
    pic.elcr.write(1, 0x08, 1); // IRQ11 level
    line(11).set(true);
    line(11).set(false);
    // The master's IR2 followed the slave output down, so the master has nothing: IRQ7.
    expect(pic.acknowledge()).toBe(0x37);
  });

  it('reads IRR and ISR through OCW3', () => {
    linuxInit8259A(pic, 0xff);
    line(6).set(true);
    pic.master.write(MASTER_CMD, 0x0a, 1);
    expect(pic.master.read(MASTER_CMD, 1)).toBe(0x40);
    pic.master.write(MASTER_CMD, 0x0b, 1);
    expect(pic.master.read(MASTER_CMD, 1)).toBe(0x00);
    expect(pic.master.read(MASTER_IMR, 1)).toBe(0xff);
  });

  it('answers a poll command with the highest request and acknowledges it', () => {
    linuxInit8259A(pic, 0x00);
    line(3).set(true);
    line(5).set(true);
    pic.master.write(MASTER_CMD, 0x0c, 1); // OCW3 poll
    expect(pic.master.read(MASTER_CMD, 1)).toBe(0x83);
    expect(pic.registers().isr).toBe(0x08);
    // The poll is one-shot: the next read is IRR again.
    expect(pic.master.read(MASTER_CMD, 1)).toBe(0x20);
    pic.master.write(MASTER_CMD, 0x0c, 1);
    expect(pic.master.read(MASTER_CMD, 1)).toBe(0x00); // IRQ5 is below IRQ3 in service
  });

  it('does not set ISR in automatic EOI mode (init_8259A(1))', () => {
    pic.master.write(MASTER_CMD, 0x11, 1);
    pic.master.write(MASTER_IMR, 0x30, 1);
    pic.master.write(MASTER_IMR, 0x04, 1);
    pic.master.write(MASTER_IMR, 0x03, 1); // ICW4: AEOI
    pic.master.write(MASTER_IMR, 0x00, 1);
    line(1).set(true);
    expect(pic.acknowledge()).toBe(0x31);
    expect(pic.registers().isr).toBe(0);
    line(3).set(true);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it('rotates priorities on rotate-on-EOI and set-priority commands', () => {
    linuxInit8259A(pic, 0x00);
    line(1).set(true);
    line(4).set(true);
    expect(pic.acknowledge()).toBe(0x31);
    pic.master.write(MASTER_CMD, 0xa0, 1); // rotate on non-specific EOI: IRQ1 becomes lowest
    line(1).set(false);
    line(1).set(true);
    // IRQ4 now outranks IRQ1.
    expect(pic.acknowledge()).toBe(0x34);
    pic.master.write(MASTER_CMD, 0x64, 1);
    // Set priority: IRQ0 lowest, so IRQ1 is the highest again.
    pic.master.write(MASTER_CMD, 0xc0, 1);
    line(7).set(true);
    expect(pic.acknowledge()).toBe(0x31);
  });

  it('lets lower priorities in under special mask mode', () => {
    linuxInit8259A(pic, 0x00);
    line(2 + 1).set(true);
    expect(pic.acknowledge()).toBe(0x33);
    line(6).set(true);
    expect(pic.hasInterrupt()).toBe(false);
    pic.master.write(MASTER_IMR, 0x08, 1); // mask the level in service
    pic.master.write(MASTER_CMD, 0x68, 1); // OCW3: set special mask
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x36);
    pic.master.write(MASTER_CMD, 0x48, 1); // reset special mask
    pic.master.write(MASTER_CMD, 0x66, 1);
    pic.master.write(MASTER_CMD, 0x63, 1);
    expect(pic.registers().isr).toBe(0);
  });

  it('lets a higher slave IRQ through in special fully nested mode', () => {
    pic.master.write(MASTER_CMD, 0x11, 1);
    pic.master.write(MASTER_IMR, 0x30, 1);
    pic.master.write(MASTER_IMR, 0x04, 1);
    pic.master.write(MASTER_IMR, 0x11, 1); // ICW4: SFNM
    pic.master.write(MASTER_IMR, 0x00, 1);
    pic.slave.write(1, 0x00, 1); // the slave keeps the BIOS vectors at 0x70
    line(12).set(true);
    expect(pic.acknowledge()).toBe(0x74);
    line(9).set(true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x71);
  });

  it('ORs the lines of devices sharing an IRQ, as COM1 and COM3 share IRQ4', () => {
    linuxInit8259A(pic, 0x00);
    pic.elcr.write(0, 0x10, 1); // level, so the OR is visible after EOI
    const com3 = pic.irq(4);
    line(4).set(true);
    com3.set(true);
    line(4).set(false);
    expect(pic.acknowledge()).toBe(0x34);
    linuxEoi(pic, 4);
    expect(pic.hasInterrupt()).toBe(true); // COM3 still asserts
    com3.set(false);
    expect(pic.hasInterrupt()).toBe(false);
  });

  it('refuses IRQ numbers that are not ISA inputs', () => {
    expect(() => pic.irq(16)).toThrow(/no IRQ 16/);
    expect(() => pic.irq(2)).toThrow(/cascade/);
  });

  it('round-trips its state', () => {
    linuxInit8259A(pic, 0x00, 0x00);
    pic.elcr.write(1, 0x04, 1);
    line(10).set(true);
    line(3).set(true);
    expectRoundTrip(pic, () => {
      pic.acknowledge();
      line(4).set(true);
      pic.master.write(MASTER_CMD, 0x0b, 1);
      pic.slave.write(0, 0x11, 1);
    });
    expect(pic.acknowledge()).toBe(0x3a);
  });

  it('refuses a malformed state without applying any of it', () => {
    linuxInit8259A(pic);
    const good = pic.saveState();
    expectRejected(pic, { ...good, slave: { ...good.slave, initStep: 9 } }, /slave\.initStep/);
    expectRejected(pic, { ...good, master: undefined }, /master must be an object/);
    expectRejected(pic, null, /state must be an object/);
    expectRejected(pic, { ...good, sources: good.sources.slice(1) }, /sources must be an array of 15/);
    const rewired = good.sources.map((s, i) => (i === 0 ? { ...s, irq: 5 } : s));
    expectRejected(pic, { ...good, sources: rewired }, /sources\[0\] is IRQ 5, but this board wires IRQ 0/);
  });
});
