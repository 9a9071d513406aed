/**
 * National Semiconductor PC16550D UART (the "16550A" Linux's 8250 driver detects), eight
 * byte registers at offsets 0-7 (COM1 = 0x3F8, IRQ4).
 *
 * The serial line has no baud timing: a byte written to THR leaves at once through the
 * injected ByteSink, and the receiver line is idle as soon as the host has delivered its
 * bytes, so the character timeout is already due whenever the receive FIFO holds fewer
 * bytes than its trigger level. Everything is a function of register accesses and receive()
 * calls, hence deterministic.
 *
 * References: PC16550D datasheet (Table II register summary, Table IV IIR priorities,
 * "FIFO Interrupt Mode Operation"), Linux drivers/tty/serial/8250/8250_port.c (autoconfig,
 * serial8250_do_startup's THRE re-assert test, serial8250_handle_irq), QEMU hw/char/serial.c.
 */
import type { AccessSize, IrqLine, PortDevice, Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';

/** Where transmitted bytes go. */
export type ByteSink = ((byte: number) => void) | { write(byte: number): void };

export interface UartOptions {
  /**
   * Called when the guest has taken a byte out of the receiver, so the host can push more
   * of what it queued (see rxSpace()).
   */
  onRxSpace?: () => void;
}

export interface Uart16550State {
  /** Received bytes not yet read (the RBR in 16450 mode, the RX FIFO in FIFO mode). */
  rxFifo: number[];
  ier: number;
  lcr: number;
  mcr: number;
  scratch: number;
  divisorLatchLow: number;
  divisorLatchHigh: number;
  fifoEnabled: boolean;
  /** FCR bits 7-6. */
  rxTriggerSelect: number;
  /** FCR bit 3. */
  dmaModeSelect: boolean;
  /** LSR error bits: OE (0x02), PE (0x04), FE (0x08), BI (0x10). */
  lineErrors: number;
  /** The THRE interrupt is pending (cleared by an IIR read that reports it, or a THR write). */
  thrInterruptPending: boolean;
  /** MSR delta bits 0-3. */
  modemDeltas: number;
  /** MSR bits 7-4 as last seen, for computing the deltas. */
  modemLines: number;
  /** The IRQ level as last driven. */
  irqLevel: boolean;
}

const RX_FIFO_SIZE = 16;
const RX_TRIGGER_LEVELS = [1, 4, 8, 14];

const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;

const IIR_NO_INT = 0x01;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CHAR_TIMEOUT = 0x0c;
const IIR_FIFOS_ENABLED = 0xc0;

const LCR_DLAB = 0x80;

const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_ERRORS = 0x1e;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
const MSR_TERI = 0x04;

/** The host end of the line: a connected terminal asserting CTS, DSR and DCD (QEMU's default). */
const HOST_MODEM_LINES = MSR_CTS | MSR_DSR | MSR_DCD;

export class Uart16550 implements PortDevice, Persistent<Uart16550State> {
  readonly stateName = 'uart16550';
  readonly stateVersion = 1;

  private rxFifo: number[] = [];
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scratch = 0;
  private divisorLatchLow = 0x0c;
  private divisorLatchHigh = 0;
  private fifoEnabled = false;
  private rxTriggerSelect = 0;
  private dmaModeSelect = false;
  private lineErrors = 0;
  private thrInterruptPending = false;
  private modemDeltas = 0;
  private modemLines = HOST_MODEM_LINES;
  private irqLevel = false;
  private readonly emit: (byte: number) => void;

  /**
   * @param irq the COM port's ISA IRQ line
   * @param out receives every transmitted byte, synchronously with the THR write
   */
  constructor(
    private readonly irq: IrqLine,
    out: ByteSink,
    private readonly options: UartOptions = {},
  ) {
    this.emit = typeof out === 'function' ? out : (byte) => out.write(byte);
    this.reset();
  }

  /** Master reset (MR pin): registers to their datasheet reset values, FIFOs empty. */
  reset(): void {
    this.rxFifo = [];
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.fifoEnabled = false;
    this.rxTriggerSelect = 0;
    this.dmaModeSelect = false;
    this.lineErrors = 0;
    this.thrInterruptPending = false;
    this.modemDeltas = 0;
    this.modemLines = HOST_MODEM_LINES;
    this.irqLevel = false;
    this.irq.set(false);
  }

  /**
   * Bytes arriving on the serial input, as a wire delivers them: a byte that finds the
   * receiver full is lost and sets the overrun error. Hosts that must not lose input push
   * at most rxSpace() bytes and wait for onRxSpace.
   */
  receive(bytes: Uint8Array): void {
    // In loopback the serial input is disconnected from the receiver (datasheet, MCR bit 4).
    if (this.mcr & MCR_LOOP) return;
    for (const b of bytes) this.receiveByte(b);
    this.updateIrq();
  }

  /** How many bytes the receiver can take now without an overrun. */
  rxSpace(): number {
    if (this.mcr & MCR_LOOP) return 0;
    return this.rxCapacity() - this.rxFifo.length;
  }

  read(offset: number, _size: AccessSize = 1): number {
    switch (offset & 7) {
      case 0:
        return this.lcr & LCR_DLAB ? this.divisorLatchLow : this.readRbr();
      case 1:
        return this.lcr & LCR_DLAB ? this.divisorLatchHigh : this.ier;
      case 2:
        return this.readIir();
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5:
        return this.readLsr();
      case 6:
        return this.readMsr();
      default:
        return this.scratch;
    }
  }

  write(offset: number, value: number, _size: AccessSize = 1): void {
    value &= 0xff;
    switch (offset & 7) {
      case 0:
        if (this.lcr & LCR_DLAB) this.divisorLatchLow = value;
        else this.writeThr(value);
        break;
      case 1:
        if (this.lcr & LCR_DLAB) this.divisorLatchHigh = value;
        else this.writeIer(value);
        break;
      case 2:
        this.writeFcr(value);
        break;
      case 3:
        this.lcr = value;
        break;
      case 4:
        this.writeMcr(value);
        break;
      case 5:
      case 6:
        break; // LSR and MSR are read-only (factory test writes are not modelled)
      default:
        this.scratch = value;
        break;
    }
  }

  saveState(): Uart16550State {
    return {
      rxFifo: [...this.rxFifo],
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scratch: this.scratch,
      divisorLatchLow: this.divisorLatchLow,
      divisorLatchHigh: this.divisorLatchHigh,
      fifoEnabled: this.fifoEnabled,
      rxTriggerSelect: this.rxTriggerSelect,
      dmaModeSelect: this.dmaModeSelect,
      lineErrors: this.lineErrors,
      thrInterruptPending: this.thrInterruptPending,
      modemDeltas: this.modemDeltas,
      modemLines: this.modemLines,
      irqLevel: this.irqLevel,
    };
  }

  loadState(state: Uart16550State): void {
    const f = StateFields.of(this.stateName, state);
    const s: Uart16550State = {
      rxFifo: f.byteList('rxFifo', RX_FIFO_SIZE),
      ier: f.int('ier', 0, 0x0f),
      lcr: f.int('lcr', 0, 0xff),
      mcr: f.int('mcr', 0, 0x1f),
      scratch: f.int('scratch', 0, 0xff),
      divisorLatchLow: f.int('divisorLatchLow', 0, 0xff),
      divisorLatchHigh: f.int('divisorLatchHigh', 0, 0xff),
      fifoEnabled: f.bool('fifoEnabled'),
      rxTriggerSelect: f.int('rxTriggerSelect', 0, 3),
      dmaModeSelect: f.bool('dmaModeSelect'),
      lineErrors: f.int('lineErrors', 0, LSR_ERRORS),
      thrInterruptPending: f.bool('thrInterruptPending'),
      modemDeltas: f.int('modemDeltas', 0, 0x0f),
      modemLines: f.int('modemLines', 0, 0xf0),
      irqLevel: f.bool('irqLevel'),
    };
    if (!s.fifoEnabled && s.rxFifo.length > 1) {
      throw new Error(`${this.stateName} state: rxFifo holds more than one byte with FIFOs disabled`);
    }
    Object.assign(this, s);
    this.irq.set(this.irqLevel);
  }

  // ---- receiver ----------------------------------------------------------------------------

  private rxCapacity(): number {
    return this.fifoEnabled ? RX_FIFO_SIZE : 1;
  }

  private receiveByte(byte: number): void {
    const value = byte & this.wordMask();
    if (this.rxFifo.length < this.rxCapacity()) {
      this.rxFifo.push(value);
    } else if (this.fifoEnabled) {
      // FIFO full: the character in the shift register is overwritten, the FIFO is kept.
      this.lineErrors |= LSR_OE;
    } else {
      // 16450 mode: the new character replaces the unread one in RBR.
      this.rxFifo[0] = value;
      this.lineErrors |= LSR_OE;
    }
  }

  private readRbr(): number {
    const value = this.rxFifo.shift();
    this.updateIrq();
    if (value === undefined) return 0;
    if (!(this.mcr & MCR_LOOP)) this.options.onRxSpace?.();
    return value;
  }

  private wordMask(): number {
    return (1 << (5 + (this.lcr & 3))) - 1;
  }

  // ---- transmitter ------------------------------------------------------------------------

  private writeThr(value: number): void {
    // Writing THR clears the THRE interrupt; the byte leaves at once, so THR is empty again
    // and THRE re-asserts. The IRQ line drops and rises, giving the PIC a fresh edge per
    // byte as a real transmitter would at the end of each character.
    this.thrInterruptPending = false;
    this.updateIrq();
    const byte = value & this.wordMask();
    if (this.mcr & MCR_LOOP) {
      this.receiveByte(byte);
    } else {
      this.emit(byte);
    }
    this.thrInterruptPending = true;
    this.updateIrq();
  }

  private writeIer(value: number): void {
    const changed = (this.ier ^ value) & 0x0f;
    this.ier = value & 0x0f;
    if (changed & IER_THRI) {
      // Enabling ETBEI with THR empty raises THRE even if an IIR read cleared it before:
      // Linux's serial8250_do_startup toggles IER.THRI and expects the interrupt back (else
      // it flags UART_BUG_THRE), and start_tx relies on it to kick off transmission.
      this.thrInterruptPending = (this.ier & IER_THRI) !== 0;
    }
    this.updateIrq();
  }

  private writeFcr(value: number): void {
    const enable = (value & 0x01) !== 0;
    if (enable !== this.fifoEnabled) {
      // Changing FCR0 resets both FIFOs (datasheet, FCR bit 0).
      this.rxFifo = [];
      this.fifoEnabled = enable;
      this.notifyRxSpace();
    }
    // The other FCR bits are only programmed while FCR0 is set.
    if (enable) {
      if (value & 0x02) {
        this.rxFifo = [];
        this.notifyRxSpace();
      }
      this.dmaModeSelect = (value & 0x08) !== 0;
      this.rxTriggerSelect = value >> 6;
    }
    this.updateIrq();
  }

  // ---- status and modem control -------------------------------------------------------------

  private readLsr(): number {
    const value =
      (this.rxFifo.length > 0 ? LSR_DR : 0) | this.lineErrors | LSR_THRE | LSR_TEMT;
    // Reading LSR clears the error bits and with them the line-status interrupt.
    this.lineErrors = 0;
    this.updateIrq();
    return value;
  }

  private writeMcr(value: number): void {
    const wasLoop = (this.mcr & MCR_LOOP) !== 0;
    this.mcr = value & 0x1f;
    this.refreshModemLines();
    if (wasLoop && !(this.mcr & MCR_LOOP)) this.notifyRxSpace();
    this.updateIrq();
  }

  /** MSR bits 7-4: the host's lines, or in loopback OUT2->DCD, OUT1->RI, RTS->CTS, DTR->DSR. */
  private currentModemLines(): number {
    if (!(this.mcr & MCR_LOOP)) return HOST_MODEM_LINES;
    return (
      (this.mcr & MCR_RTS ? MSR_CTS : 0) |
      (this.mcr & MCR_DTR ? MSR_DSR : 0) |
      (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
      (this.mcr & MCR_OUT2 ? MSR_DCD : 0)
    );
  }

  private refreshModemLines(): void {
    const lines = this.currentModemLines();
    const changed = lines ^ this.modemLines;
    // DCTS, DDSR, DDCD flag any change; TERI flags RI going inactive.
    if (changed & MSR_CTS) this.modemDeltas |= 0x01;
    if (changed & MSR_DSR) this.modemDeltas |= 0x02;
    if (changed & MSR_RI && !(lines & MSR_RI)) this.modemDeltas |= MSR_TERI;
    if (changed & MSR_DCD) this.modemDeltas |= 0x08;
    this.modemLines = lines;
  }

  private readMsr(): number {
    const value = this.modemLines | this.modemDeltas;
    this.modemDeltas = 0;
    this.updateIrq();
    return value;
  }

  // ---- interrupts -----------------------------------------------------------------------------

  /** The highest-priority pending interrupt (PC16550D Table IV), as IIR bits 3-0. */
  private pendingInterrupt(): number {
    if (this.ier & IER_RLSI && this.lineErrors) return IIR_RLSI;
    if (this.ier & IER_RDI && this.rxFifo.length > 0) {
      if (!this.fifoEnabled || this.rxFifo.length >= RX_TRIGGER_LEVELS[this.rxTriggerSelect]) return IIR_RDI;
      return IIR_CHAR_TIMEOUT;
    }
    if (this.ier & IER_THRI && this.thrInterruptPending) return IIR_THRI;
    if (this.ier & IER_MSI && this.modemDeltas) return IIR_MSI;
    return IIR_NO_INT;
  }

  private readIir(): number {
    const pending = this.pendingInterrupt();
    // Reading IIR while it reports THRE clears that interrupt (datasheet, Table IV).
    if (pending === IIR_THRI) {
      this.thrInterruptPending = false;
      this.updateIrq();
    }
    return pending | (this.fifoEnabled ? IIR_FIFOS_ENABLED : 0);
  }

  private updateIrq(): void {
    // On a PC the INTR pin reaches the bus through a buffer enabled by OUT2, which loopback
    // forces inactive (Linux sets OUT2 in serial8250_do_startup for this reason).
    const gated = (this.mcr & (MCR_OUT2 | MCR_LOOP)) === MCR_OUT2;
    const level = gated && this.pendingInterrupt() !== IIR_NO_INT;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }

  private notifyRxSpace(): void {
    if (!(this.mcr & MCR_LOOP)) this.options.onRxSpace?.();
  }
}
