/**
 * The PC's two cascaded Intel 8259A programmable interrupt controllers, plus the PIIX-style
 * ELCR (edge/level control registers) that chooses the trigger mode of each ISA IRQ.
 *
 * Port map (the bus hands each sub-device the offset inside its range):
 *   pic.master  0x20-0x21   pic.slave  0xA0-0xA1   pic.elcr  0x4D0-0x4D1
 *
 * References: Intel 8259A datasheet (231468), Intel 82371AB PIIX4 datasheet 4.1.18 (ELCR),
 * Linux arch/x86/kernel/i8259.c, QEMU hw/intc/i8259.c.
 */
import type { IrqLine, PortDevice, Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';

/** The saved state of one 8259A. */
export interface I8259ChipState {
  /** Interrupt request register. */
  irr: number;
  /** In-service register. */
  isr: number;
  /** Interrupt mask register (OCW1). */
  imr: number;
  /** Current levels of the IR0-7 input pins, as driven by the devices. */
  inputLevels: number;
  /** ELCR bits for this chip's inputs: 1 = level triggered. */
  elcr: number;
  /** The IR level that currently has the highest priority (rotation base). */
  lowestPriorityPlusOne: number;
  /** OCW3 RR/RIS: reads of the command port return ISR (true) or IRR (false). */
  readIsr: boolean;
  /** OCW3 P: the next read is a poll. */
  pollPending: boolean;
  /** OCW3 SMM. */
  specialMask: boolean;
  /** 0 = initialised; 1, 2, 3 = waiting for ICW2, ICW3, ICW4. */
  initStep: number;
  /** ICW1 IC4. */
  icw4Needed: boolean;
  /** ICW1 SNGL. */
  singleMode: boolean;
  /** ICW1 LTIM: every input level triggered. */
  levelTriggeredAll: boolean;
  /** ICW2 T7-T3. */
  vectorBase: number;
  /** ICW3 as written (master: slave bitmap; slave: its ID). */
  cascade: number;
  /** ICW4 AEOI. */
  autoEoi: boolean;
  /** OCW2 rotate in automatic EOI mode. */
  rotateOnAutoEoi: boolean;
  /** ICW4 SFNM. */
  specialFullyNested: boolean;
}

/** One device's connection to an IRQ input, in the order the board created them. */
export interface IrqSourceState {
  irq: number;
  level: boolean;
}

export interface Pic8259State {
  master: I8259ChipState;
  slave: I8259ChipState;
  /** Every line handed out by irq(), with the level its device drives. */
  sources: IrqSourceState[];
  /** The master's INT output as last reported through onIntrChange. */
  intr: boolean;
}

/** A combined, 16-bit view of both chips (bit n = ISA IRQ n). */
export interface PicRegisters {
  irr: number;
  isr: number;
  imr: number;
  elcr: number;
  /** The INTR level seen by the CPU. */
  intr: boolean;
}

/** The master's IR input the slave's INT output is wired to on every PC/AT. */
const CASCADE_IRQ = 2;

/**
 * PIIX ELCR1/ELCR2 reserved bits: IRQ0, 1, 2, 8 and 13 are always edge triggered
 * (PIIX4 datasheet 4.1.18; QEMU uses the same masks).
 */
const ELCR_WRITABLE_MASTER = 0xf8;
const ELCR_WRITABLE_SLAVE = 0xde;

/** One 8259A: register state and the priority resolver, with no knowledge of its neighbour. */
class I8259Chip {
  irr = 0;
  isr = 0;
  imr = 0;
  inputLevels = 0;
  elcr = 0;
  lowestPriorityPlusOne = 0;
  readIsr = false;
  pollPending = false;
  specialMask = false;
  initStep = 0;
  icw4Needed = false;
  singleMode = false;
  levelTriggeredAll = false;
  vectorBase = 0;
  cascade = 0;
  autoEoi = false;
  rotateOnAutoEoi = false;
  specialFullyNested = false;

  /**
   * @param isMaster the master's IR2 follows the slave's INT output as a level, so a
   *   slave request that outlives one INTA cycle is still seen by the master.
   */
  constructor(private readonly isMaster: boolean) {}

  private levelMask(): number {
    if (this.levelTriggeredAll) return 0xff;
    return this.elcr | (this.isMaster ? 1 << CASCADE_IRQ : 0);
  }

  setInput(n: number, level: boolean): void {
    const bit = 1 << n;
    const wasHigh = (this.inputLevels & bit) !== 0;
    this.inputLevels = level ? this.inputLevels | bit : this.inputLevels & ~bit;
    if (this.levelMask() & bit) {
      // Level mode: IRR follows the pin (8259A datasheet, "Level triggered mode").
      this.irr = level ? this.irr | bit : this.irr & ~bit;
    } else if (level && !wasHigh) {
      // Edge mode: the request latches on the rising edge and stays until INTA.
      this.irr |= bit;
    }
  }

  /** Re-derive level-mode IRR bits after ELCR or LTIM changed. */
  resyncLevelInputs(): void {
    const lm = this.levelMask();
    this.irr = (this.irr & ~lm) | (this.inputLevels & lm);
  }

  /** Priority of the highest-priority set bit in `mask`, 0 = highest, 8 = none. */
  private priorityOf(mask: number): number {
    if (mask === 0) return 8;
    let p = 0;
    while ((mask & (1 << ((p + this.lowestPriorityPlusOne) & 7))) === 0) p++;
    return p;
  }

  /** The IR level the chip would present at INTA, or -1 if INT is low. */
  highestRequest(): number {
    const requestPriority = this.priorityOf(this.irr & ~this.imr);
    if (requestPriority === 8) return -1;
    let inService = this.isr;
    // Special mask mode: a masked level in service no longer holds off lower levels,
    // which is how a handler lets lower priorities in (datasheet, "Special Mask Mode").
    if (this.specialMask) inService &= ~this.imr;
    // Special fully nested mode: the master lets a higher-priority slave request through
    // while the cascade level is already in service.
    if (this.specialFullyNested && this.isMaster) inService &= ~(1 << CASCADE_IRQ);
    return requestPriority < this.priorityOf(inService) ? (requestPriority + this.lowestPriorityPlusOne) & 7 : -1;
  }

  /** The INTA (or poll) side effects for level `n`. */
  acknowledge(n: number): void {
    const bit = 1 << n;
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.lowestPriorityPlusOne = (n + 1) & 7;
    } else {
      this.isr |= bit;
    }
    // A level-mode request stays while its pin is high; the ISR bit holds it off until EOI.
    if ((this.levelMask() & bit) === 0) this.irr &= ~bit;
  }

  /** The OCW3 poll read: acknowledges the highest request and returns its level with bit 7. */
  pollRead(): number {
    const n = this.highestRequest();
    if (n < 0) return 0;
    this.acknowledge(n);
    return 0x80 | n;
  }

  writeCommand(value: number): void {
    if (value & 0x10) {
      this.initialize(value);
    } else if (value & 0x08) {
      // OCW3
      if (value & 0x04) this.pollPending = true;
      if (value & 0x02) this.readIsr = (value & 0x01) !== 0;
      if (value & 0x40) this.specialMask = (value & 0x20) !== 0;
    } else {
      this.writeOcw2(value);
    }
  }

  private initialize(icw1: number): void {
    // ICW1 clears IMR and ISR, resets priorities, selects IRR for reads and clears the
    // edge-sense latches (datasheet, "Initialization Command Words"). ICW4 functions are
    // zero unless ICW4 follows.
    this.levelTriggeredAll = (icw1 & 0x08) !== 0;
    this.irr &= this.levelMask();
    this.resyncLevelInputs();
    this.isr = 0;
    this.imr = 0;
    this.lowestPriorityPlusOne = 0;
    this.readIsr = false;
    this.pollPending = false;
    this.specialMask = false;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.specialFullyNested = false;
    this.icw4Needed = (icw1 & 0x01) !== 0;
    this.singleMode = (icw1 & 0x02) !== 0;
    this.initStep = 1;
  }

  private writeOcw2(value: number): void {
    const command = value >> 5;
    switch (command) {
      case 0: // rotate in automatic EOI mode (clear)
      case 4: // rotate in automatic EOI mode (set)
        this.rotateOnAutoEoi = command === 4;
        break;
      case 1: // non-specific EOI
      case 5: {
        // rotate on non-specific EOI
        const p = this.priorityOf(this.isr);
        if (p !== 8) {
          const n = (p + this.lowestPriorityPlusOne) & 7;
          this.isr &= ~(1 << n);
          if (command === 5) this.lowestPriorityPlusOne = (n + 1) & 7;
        }
        break;
      }
      case 3: // specific EOI: Linux's mask_and_ack_8259A sends 0x60 + irq
        this.isr &= ~(1 << (value & 7));
        break;
      case 6: // set priority: the given level becomes the lowest
        this.lowestPriorityPlusOne = (value + 1) & 7;
        break;
      case 7: {
        // rotate on specific EOI
        const n = value & 7;
        this.isr &= ~(1 << n);
        this.lowestPriorityPlusOne = (n + 1) & 7;
        break;
      }
      default: // 2: no operation
        break;
    }
  }

  writeData(value: number): void {
    switch (this.initStep) {
      case 1: // ICW2
        this.vectorBase = value & 0xf8;
        this.initStep = this.singleMode ? (this.icw4Needed ? 3 : 0) : 2;
        break;
      case 2: // ICW3
        this.cascade = value;
        this.initStep = this.icw4Needed ? 3 : 0;
        break;
      case 3: // ICW4: uPM (8086 mode) and BUF/M-S do not change behaviour on a PC
        this.autoEoi = (value & 0x02) !== 0;
        this.specialFullyNested = (value & 0x10) !== 0;
        this.initStep = 0;
        break;
      default: // OCW1
        this.imr = value;
        break;
    }
  }

  readCommand(): number {
    if (this.pollPending) {
      this.pollPending = false;
      return this.pollRead();
    }
    return this.readIsr ? this.isr : this.irr;
  }

  readData(): number {
    if (this.pollPending) {
      this.pollPending = false;
      return this.pollRead();
    }
    return this.imr;
  }

  /** The state a PC BIOS leaves behind (ICW4 8086 mode, normal EOI), with the given setup. */
  reset(vectorBase: number, cascade: number, imr: number): void {
    this.irr = 0;
    this.isr = 0;
    this.imr = imr;
    this.inputLevels = 0;
    this.elcr = 0;
    this.lowestPriorityPlusOne = 0;
    this.readIsr = false;
    this.pollPending = false;
    this.specialMask = false;
    this.initStep = 0;
    this.icw4Needed = true;
    this.singleMode = false;
    this.levelTriggeredAll = false;
    this.vectorBase = vectorBase;
    this.cascade = cascade;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.specialFullyNested = false;
  }

  save(): I8259ChipState {
    return {
      irr: this.irr,
      isr: this.isr,
      imr: this.imr,
      inputLevels: this.inputLevels,
      elcr: this.elcr,
      lowestPriorityPlusOne: this.lowestPriorityPlusOne,
      readIsr: this.readIsr,
      pollPending: this.pollPending,
      specialMask: this.specialMask,
      initStep: this.initStep,
      icw4Needed: this.icw4Needed,
      singleMode: this.singleMode,
      levelTriggeredAll: this.levelTriggeredAll,
      vectorBase: this.vectorBase,
      cascade: this.cascade,
      autoEoi: this.autoEoi,
      rotateOnAutoEoi: this.rotateOnAutoEoi,
      specialFullyNested: this.specialFullyNested,
    };
  }

  static check(f: StateFields): I8259ChipState {
    return {
      irr: f.int('irr', 0, 0xff),
      isr: f.int('isr', 0, 0xff),
      imr: f.int('imr', 0, 0xff),
      inputLevels: f.int('inputLevels', 0, 0xff),
      elcr: f.int('elcr', 0, 0xff),
      lowestPriorityPlusOne: f.int('lowestPriorityPlusOne', 0, 7),
      readIsr: f.bool('readIsr'),
      pollPending: f.bool('pollPending'),
      specialMask: f.bool('specialMask'),
      initStep: f.int('initStep', 0, 3),
      icw4Needed: f.bool('icw4Needed'),
      singleMode: f.bool('singleMode'),
      levelTriggeredAll: f.bool('levelTriggeredAll'),
      vectorBase: f.int('vectorBase', 0, 0xf8),
      cascade: f.int('cascade', 0, 0xff),
      autoEoi: f.bool('autoEoi'),
      rotateOnAutoEoi: f.bool('rotateOnAutoEoi'),
      specialFullyNested: f.bool('specialFullyNested'),
    };
  }

  load(s: I8259ChipState): void {
    Object.assign(this, s);
  }
}

/**
 * The master/slave 8259A pair as wired on a PC/AT: slave INT to master IR2, ISA IRQ n to
 * master IR n (n < 8) or slave IR n-8.
 */
export class Pic8259 implements Persistent<Pic8259State> {
  readonly stateName = 'pic8259';
  readonly stateVersion = 1;

  /** Ports 0x20 (command/ISR/IRR/poll) and 0x21 (data/IMR). */
  readonly master: PortDevice;
  /** Ports 0xA0 and 0xA1. */
  readonly slave: PortDevice;
  /** Ports 0x4D0 (IRQ0-7) and 0x4D1 (IRQ8-15). */
  readonly elcr: PortDevice;

  private readonly masterChip = new I8259Chip(true);
  private readonly slaveChip = new I8259Chip(false);
  private readonly sources: IrqSourceState[] = [];
  private intr = false;

  /** @param onIntrChange called whenever the INTR output to the CPU changes level. */
  constructor(private readonly onIntrChange: (level: boolean) => void = () => {}) {
    this.master = this.chipPorts(this.masterChip);
    this.slave = this.chipPorts(this.slaveChip);
    this.elcr = {
      read: (offset: number): number => (offset & 1 ? this.slaveChip.elcr : this.masterChip.elcr),
      write: (offset: number, value: number): void => {
        const chip = offset & 1 ? this.slaveChip : this.masterChip;
        chip.elcr = value & (offset & 1 ? ELCR_WRITABLE_SLAVE : ELCR_WRITABLE_MASTER);
        chip.resyncLevelInputs();
        this.update();
      },
    };
    this.resetChips();
  }

  /**
   * A new connection to ISA IRQ `n` (0-15) for one device. Devices sharing an IRQ (COM1 and
   * COM3, PCI INTx routed to one IRQ) each get their own line and the input is their
   * wired-OR, so one device lowering its line never hides another's request. IRQ2 is the
   * cascade: on an AT the ISA bus's IRQ2 pin is routed to IRQ9.
   */
  irq(n: number): IrqLine {
    if (!Number.isInteger(n) || n < 0 || n > 15) throw new Error(`pic8259: no IRQ ${n}`);
    if (n === CASCADE_IRQ) throw new Error('pic8259: IRQ2 is the cascade input; ISA IRQ2 devices use IRQ9');
    const source: IrqSourceState = { irq: n, level: false };
    this.sources.push(source);
    return {
      set: (level: boolean) => {
        source.level = level;
        this.setIrq(n, level || this.sources.some((s) => s.irq === n && s.level));
      },
    };
  }

  /** The INTR output: an unmasked request is waiting that the CPU takes when IF=1. */
  hasInterrupt(): boolean {
    return this.intr;
  }

  /**
   * The INTA cycle: returns the vector and updates IRR/ISR. With nothing left to deliver
   * (a request withdrawn before INTA) the 8259A answers with its IR7 vector and sets no ISR
   * bit: the spurious IRQ7/IRQ15 that Linux's mask_and_ack_8259A checks ISR for.
   */
  acknowledge(): number {
    const m = this.masterChip;
    const s = this.slaveChip;
    const n = m.highestRequest();
    let vector: number;
    if (n < 0) {
      vector = m.vectorBase + 7;
    } else if (n === CASCADE_IRQ && this.slaveOnIr2()) {
      const sn = s.highestRequest();
      if (sn < 0) {
        vector = s.vectorBase + 7;
      } else {
        s.acknowledge(sn);
        vector = s.vectorBase + sn;
      }
      this.propagateSlave();
      m.acknowledge(CASCADE_IRQ);
    } else {
      m.acknowledge(n);
      vector = m.vectorBase + n;
    }
    this.update();
    return vector;
  }

  /** Both chips' registers as 16-bit values (bit n = IRQ n), plus INTR. */
  registers(): PicRegisters {
    const m = this.masterChip;
    const s = this.slaveChip;
    return {
      irr: m.irr | (s.irr << 8),
      isr: m.isr | (s.isr << 8),
      imr: m.imr | (s.imr << 8),
      elcr: m.elcr | (s.elcr << 8),
      intr: this.intr,
    };
  }

  /**
   * Power-on state as a PC BIOS leaves it (vectors 0x08/0x70, cascade on IR2, everything but
   * the cascade masked), since a directly booted kernel runs without a BIOS. Input pin
   * levels are kept: they belong to the devices driving them.
   */
  reset(): void {
    const masterLevels = this.masterChip.inputLevels;
    const slaveLevels = this.slaveChip.inputLevels;
    this.resetChips();
    this.masterChip.inputLevels = masterLevels;
    this.slaveChip.inputLevels = slaveLevels;
    this.update();
  }

  saveState(): Pic8259State {
    return {
      master: this.masterChip.save(),
      slave: this.slaveChip.save(),
      sources: this.sources.map((s) => ({ ...s })),
      intr: this.intr,
    };
  }

  loadState(state: Pic8259State): void {
    const f = StateFields.of(this.stateName, state);
    const master = I8259Chip.check(f.object('master'));
    const slave = I8259Chip.check(f.object('slave'));
    const sources = f
      .objectList('sources', this.sources.length)
      .map((s) => ({ irq: s.int('irq', 0, 15), level: s.bool('level') }));
    sources.forEach((s, i) => {
      if (s.irq !== this.sources[i].irq) {
        throw new Error(`${this.stateName} state: sources[${i}] is IRQ ${s.irq}, but this board wires IRQ ${this.sources[i].irq}`);
      }
    });
    const intr = f.bool('intr');
    this.masterChip.load(master);
    this.slaveChip.load(slave);
    sources.forEach((s, i) => (this.sources[i].level = s.level));
    this.intr = intr;
    // The restored machine's CPU INTR pin must match the restored PIC.
    this.onIntrChange(this.intr);
  }

  private resetChips(): void {
    this.masterChip.reset(0x08, 1 << CASCADE_IRQ, 0xff & ~(1 << CASCADE_IRQ));
    this.slaveChip.reset(0x70, CASCADE_IRQ, 0xff);
  }

  private chipPorts(chip: I8259Chip): PortDevice {
    return {
      read: (offset: number): number => {
        const value = offset & 1 ? chip.readData() : chip.readCommand();
        this.update(); // a poll read acknowledges
        return value;
      },
      write: (offset: number, value: number): void => {
        if (offset & 1) chip.writeData(value & 0xff);
        else chip.writeCommand(value & 0xff);
        this.update();
      },
    };
  }

  private slaveOnIr2(): boolean {
    return !this.masterChip.singleMode && (this.masterChip.cascade & (1 << CASCADE_IRQ)) !== 0;
  }

  private setIrq(n: number, level: boolean): void {
    if (n < 8) this.masterChip.setInput(n, level);
    else this.slaveChip.setInput(n - 8, level);
    this.update();
  }

  private propagateSlave(): void {
    this.masterChip.setInput(CASCADE_IRQ, this.slaveChip.highestRequest() >= 0);
  }

  private update(): void {
    this.propagateSlave();
    const intr = this.masterChip.highestRequest() >= 0;
    if (intr !== this.intr) {
      this.intr = intr;
      this.onIntrChange(intr);
    }
  }
}
