/**
 * Intel 8042 keyboard controller: data port 0x60 and status/command port 0x64, with the
 * PS/2 keyboard and mouse behind it reduced to their command protocol (no input events are
 * generated; the host may queue scancodes with keyboardInput()). The output port carries
 * the A20 gate and the CPU reset line.
 *
 * Port map: i8042.data at 0x60, i8042.control at 0x64 (each a one-port PortDevice, since
 * port 0x61 sits between them).
 *
 * What Linux's drivers/input/serio/i8042.c needs to probe and move on: flush by reading 0x60
 * while OBF; self test 0xAA -> 0x55; CTR read/write (0x20/0x60); AUX loopback 0xD3 answered
 * with AUXDATA set and IRQ12; 0xA7/0xA8 reflected in CTR bit 5; then atkbd/psmouse talking
 * to the devices (reset 0xFF -> FA AA, get ID 0xF2, ...).
 *
 * References: IBM PS/2 Hardware Interface Technical Reference "Keyboard/Auxiliary Device
 * Controller", Linux i8042.h/i8042.c and libps2.c, QEMU hw/input/pckbd.c and ps2.c.
 */
import type { IrqLine, PortDevice, Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';

export interface I8042Options {
  /** ISA IRQ1, raised while the output buffer holds a keyboard byte and CTR bit 0 is set. */
  keyboardIrq: IrqLine;
  /** ISA IRQ12, raised while the output buffer holds a mouse byte and CTR bit 1 is set. */
  mouseIrq: IrqLine;
  /** Output port bit 1 (and commands 0xDD/0xDF). */
  setA20: (enabled: boolean) => void;
  /** Output port bit 0 going low: pulse 0xFE, or 0xD1 with bit 0 clear. */
  requestReset: () => void;
}

export interface Ps2KeyboardState {
  /** Bytes the keyboard has to send, waiting for the controller to take them. */
  outputQueue: number[];
  /** Scanning enabled (0xF4) or disabled (0xF5). */
  scanning: boolean;
  /** The command byte waiting for its parameter (0xED, 0xF0, 0xF3), or 0. */
  pendingCommand: number;
  scancodeSet: number;
  leds: number;
  typematic: number;
  /** The last byte sent, for 0xFE resend. */
  lastSent: number;
}

export interface Ps2MouseState {
  outputQueue: number[];
  reporting: boolean;
  /** The command byte waiting for its parameter (0xE8, 0xF3), or 0. */
  pendingCommand: number;
  sampleRate: number;
  resolution: number;
  scaling2to1: boolean;
  remoteMode: boolean;
  wrapMode: boolean;
}

/** A byte the controller itself puts in the output buffer. */
export interface ControllerReply {
  value: number;
  /** Reported with AUXDATA, as the 0xD3 mouse-buffer loopback is. */
  fromMouse: boolean;
}

export interface I8042State {
  /** Controller command byte (CTR, internal RAM byte 0). */
  commandByte: number;
  /** Internal RAM bytes 1-31 (0x21-0x3F / 0x61-0x7F). */
  ram: Uint8Array;
  outputPort: number;
  /** The output buffer (port 0x60) and whether it is full (OBF). */
  outputBuffer: number;
  outputBufferFull: boolean;
  /** The byte in the output buffer came from the mouse (status AUXDATA). */
  outputFromMouse: boolean;
  /** Controller replies waiting for the output buffer, ahead of device bytes. */
  controllerQueue: ControllerReply[];
  /** The controller command waiting for its data byte on port 0x60, or 0. */
  pendingCommand: number;
  /** Status bit 3: the last write went to port 0x64. */
  lastWriteWasCommand: boolean;
  keyboardIrqLevel: boolean;
  mouseIrqLevel: boolean;
  keyboard: Ps2KeyboardState;
  mouse: Ps2MouseState;
}

const STATUS_OBF = 0x01;
const STATUS_SYS = 0x04;
const STATUS_CMD = 0x08;
const STATUS_UNLOCKED = 0x10;
const STATUS_AUXDATA = 0x20;

const CTR_KBDINT = 0x01;
const CTR_AUXINT = 0x02;
const CTR_SYS = 0x04;
const CTR_KBDDIS = 0x10;
const CTR_AUXDIS = 0x20;
const CTR_XLATE = 0x40;

const OUT_RESET = 0x01;
const OUT_A20 = 0x02;
/** Output port bits 2-3 and 6-7 read as one on PCs (QEMU KBD_OUT_ONES). */
const OUT_ONES = 0xcc;
const OUT_KBD_OBF = 0x10;
const OUT_AUX_OBF = 0x20;

const ACK = 0xfa;
const RESEND = 0xfe;
const SELF_TEST_PASSED = 0xaa;

/** A PS/2 device's own buffer (the keyboard's is 16 bytes). */
const DEVICE_QUEUE_LIMIT = 16;

export class I8042 implements Persistent<I8042State> {
  readonly stateName = 'i8042';
  readonly stateVersion = 1;

  /** Port 0x60: output buffer (read), command data or device data (write). */
  readonly data: PortDevice;
  /** Port 0x64: status register (read), controller command (write). */
  readonly control: PortDevice;

  private commandByte = 0;
  private ram = new Uint8Array(31);
  private outputPort = 0;
  private outputBuffer = 0;
  private outputBufferFull = false;
  private outputFromMouse = false;
  private controllerQueue: ControllerReply[] = [];
  private pendingCommand = 0;
  private lastWriteWasCommand = false;
  private keyboardIrqLevel = false;
  private mouseIrqLevel = false;
  private keyboard = initialKeyboard();
  private mouse = initialMouse();

  constructor(private readonly options: I8042Options) {
    this.data = {
      read: () => this.readData(),
      write: (_offset: number, value: number) => this.writeData(value & 0xff),
    };
    this.control = {
      read: () => this.readStatus(),
      write: (_offset: number, value: number) => this.writeCommand(value & 0xff),
    };
    this.reset();
  }

  /**
   * Power-on as a BIOS leaves it: keyboard interrupt on, translation on, mouse port
   * disabled, system flag set, A20 enabled, reset line high. The A20 level is not pushed
   * through setA20 here; the machine sets its initial A20 state itself.
   */
  reset(): void {
    this.commandByte = CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE;
    this.ram.fill(0);
    this.outputPort = OUT_ONES | OUT_A20 | OUT_RESET;
    this.outputBuffer = 0;
    this.outputBufferFull = false;
    this.outputFromMouse = false;
    this.controllerQueue = [];
    this.pendingCommand = 0;
    this.lastWriteWasCommand = false;
    this.keyboard = initialKeyboard();
    this.mouse = initialMouse();
    this.updateIrqs();
  }

  /**
   * Queue bytes from the keyboard (already in the scancode set the guest expects). They are
   * delivered while keyboard scanning and the keyboard port are enabled.
   */
  keyboardInput(bytes: Uint8Array): void {
    if (!this.keyboard.scanning) return;
    for (const b of bytes) this.keyboardSend(b);
    this.refill();
  }

  saveState(): I8042State {
    return {
      commandByte: this.commandByte,
      ram: new Uint8Array(this.ram),
      outputPort: this.outputPort,
      outputBuffer: this.outputBuffer,
      outputBufferFull: this.outputBufferFull,
      outputFromMouse: this.outputFromMouse,
      controllerQueue: this.controllerQueue.map((r) => ({ ...r })),
      pendingCommand: this.pendingCommand,
      lastWriteWasCommand: this.lastWriteWasCommand,
      keyboardIrqLevel: this.keyboardIrqLevel,
      mouseIrqLevel: this.mouseIrqLevel,
      keyboard: { ...this.keyboard, outputQueue: [...this.keyboard.outputQueue] },
      mouse: { ...this.mouse, outputQueue: [...this.mouse.outputQueue] },
    };
  }

  loadState(state: I8042State): void {
    const f = StateFields.of(this.stateName, state);
    const controllerQueue = f
      .objectList('controllerQueue', 0, DEVICE_QUEUE_LIMIT)
      .map((r) => ({ value: r.int('value', 0, 0xff), fromMouse: r.bool('fromMouse') }));
    const k = f.object('keyboard');
    const m = f.object('mouse');
    const s: I8042State = {
      commandByte: f.int('commandByte', 0, 0xff),
      ram: f.bytes('ram', 31),
      outputPort: f.int('outputPort', 0, 0xff),
      outputBuffer: f.int('outputBuffer', 0, 0xff),
      outputBufferFull: f.bool('outputBufferFull'),
      outputFromMouse: f.bool('outputFromMouse'),
      controllerQueue,
      pendingCommand: f.int('pendingCommand', 0, 0xff),
      lastWriteWasCommand: f.bool('lastWriteWasCommand'),
      keyboardIrqLevel: f.bool('keyboardIrqLevel'),
      mouseIrqLevel: f.bool('mouseIrqLevel'),
      keyboard: {
        outputQueue: k.byteList('outputQueue', DEVICE_QUEUE_LIMIT),
        scanning: k.bool('scanning'),
        pendingCommand: k.int('pendingCommand', 0, 0xff),
        scancodeSet: k.int('scancodeSet', 1, 3),
        leds: k.int('leds', 0, 0xff),
        typematic: k.int('typematic', 0, 0xff),
        lastSent: k.int('lastSent', 0, 0xff),
      },
      mouse: {
        outputQueue: m.byteList('outputQueue', DEVICE_QUEUE_LIMIT),
        reporting: m.bool('reporting'),
        pendingCommand: m.int('pendingCommand', 0, 0xff),
        sampleRate: m.int('sampleRate', 0, 0xff),
        resolution: m.int('resolution', 0, 3),
        scaling2to1: m.bool('scaling2to1'),
        remoteMode: m.bool('remoteMode'),
        wrapMode: m.bool('wrapMode'),
      },
    };
    Object.assign(this, s);
    this.options.keyboardIrq.set(this.keyboardIrqLevel);
    this.options.mouseIrq.set(this.mouseIrqLevel);
  }

  // ---- ports ------------------------------------------------------------------------------

  /** IBF (bit 1) never shows: every write is processed before the next instruction. */
  private readStatus(): number {
    return (
      (this.outputBufferFull ? STATUS_OBF : 0) |
      (this.commandByte & CTR_SYS ? STATUS_SYS : 0) |
      (this.lastWriteWasCommand ? STATUS_CMD : 0) |
      STATUS_UNLOCKED |
      (this.outputBufferFull && this.outputFromMouse ? STATUS_AUXDATA : 0)
    );
  }

  private readData(): number {
    // With the buffer empty a read returns the last byte again, as the 8042 does.
    const value = this.outputBuffer;
    this.outputBufferFull = false;
    // The interrupt output follows OBF, so it drops before the next byte is loaded: each
    // byte gives the (edge-triggered) PIC its own edge.
    this.updateIrqs();
    this.refill();
    return value;
  }

  private writeCommand(command: number): void {
    this.lastWriteWasCommand = true;
    this.pendingCommand = 0;
    if (command >= 0x20 && command <= 0x3f) {
      this.reply(command === 0x20 ? this.commandByte : this.ram[command - 0x21]);
      return;
    }
    if (command >= 0x60 && command <= 0x7f) {
      this.pendingCommand = command;
      return;
    }
    if (command >= 0xf0) {
      // Pulse output port bits whose command bit is 0; bit 0 is the CPU reset line.
      if ((command & 0x01) === 0) this.options.requestReset();
      return;
    }
    switch (command) {
      case 0xa4: // password installed?
        this.reply(0xf1); // no
        break;
      case 0xa7:
        this.commandByte |= CTR_AUXDIS;
        break;
      case 0xa8:
        this.commandByte &= ~CTR_AUXDIS;
        this.refill();
        break;
      case 0xa9: // mouse interface test
      case 0xab: // keyboard interface test
        this.reply(0x00);
        break;
      case 0xaa: // controller self test
        this.commandByte |= CTR_SYS;
        this.reply(0x55);
        break;
      case 0xad:
        this.commandByte |= CTR_KBDDIS;
        break;
      case 0xae:
        this.commandByte &= ~CTR_KBDDIS;
        this.refill();
        break;
      case 0xc0: // read input port: keyboard not inhibited, no jumpers
        this.reply(0x80);
        break;
      case 0xd0:
        this.reply(this.readOutputPort());
        break;
      case 0xd1: // write output port
      case 0xd2: // write keyboard output buffer
      case 0xd3: // write mouse output buffer
      case 0xd4: // write to mouse
        this.pendingCommand = command;
        break;
      case 0xdd:
        this.writeOutputPort(this.outputPort & ~OUT_A20);
        break;
      case 0xdf:
        this.writeOutputPort(this.outputPort | OUT_A20);
        break;
      case 0xe0: // read test inputs
        this.reply(0x00);
        break;
      default:
        break; // unknown commands are ignored
    }
    this.updateIrqs();
  }

  private writeData(value: number): void {
    this.lastWriteWasCommand = false;
    const command = this.pendingCommand;
    this.pendingCommand = 0;
    if (command >= 0x60 && command <= 0x7f) {
      if (command === 0x60) this.writeCommandByte(value);
      else this.ram[command - 0x61] = value;
      return;
    }
    switch (command) {
      case 0xd1:
        this.writeOutputPort(value);
        break;
      case 0xd2:
        this.reply(value);
        break;
      case 0xd3:
        this.reply(value, true);
        break;
      case 0xd4:
        this.mouseCommand(value);
        this.refill();
        break;
      default:
        // Data for the keyboard; sending to it re-enables the keyboard interface (QEMU and
        // real controllers clear the inhibit so the reply can come back).
        this.commandByte &= ~CTR_KBDDIS;
        this.keyboardCommand(value);
        this.refill();
        break;
    }
  }

  private writeCommandByte(value: number): void {
    this.commandByte = value;
    this.refill();
    this.updateIrqs();
  }

  private readOutputPort(): number {
    let value = this.outputPort & ~(OUT_KBD_OBF | OUT_AUX_OBF);
    if (this.outputBufferFull) value |= this.outputFromMouse ? OUT_AUX_OBF : OUT_KBD_OBF;
    return value;
  }

  private writeOutputPort(value: number): void {
    const previous = this.outputPort;
    this.outputPort = value & ~(OUT_KBD_OBF | OUT_AUX_OBF);
    if ((previous ^ value) & OUT_A20) this.options.setA20((value & OUT_A20) !== 0);
    // The reset line is active low: writing bit 0 = 0 resets the CPU (the "0xD1, 0xFC"
    // reboot method in Linux's reboot.c).
    if ((value & OUT_RESET) === 0) {
      this.outputPort |= OUT_RESET;
      this.options.requestReset();
    }
  }

  // ---- output buffer ----------------------------------------------------------------------

  /** A controller reply goes into the output buffer ahead of anything the devices send. */
  private reply(value: number, fromMouse = false): void {
    if (this.controllerQueue.length < DEVICE_QUEUE_LIMIT) this.controllerQueue.push({ value, fromMouse });
    this.refill();
  }

  /** Move the next byte into an empty output buffer: controller replies first, then devices. */
  private refill(): void {
    if (!this.outputBufferFull) {
      const fromController = this.controllerQueue.shift();
      if (fromController !== undefined) {
        this.load(fromController.value, fromController.fromMouse);
      } else if (!(this.commandByte & CTR_KBDDIS) && this.keyboard.outputQueue.length > 0) {
        this.load(this.keyboard.outputQueue.shift() ?? 0, false);
      } else if (!(this.commandByte & CTR_AUXDIS) && this.mouse.outputQueue.length > 0) {
        this.load(this.mouse.outputQueue.shift() ?? 0, true);
      }
    }
    this.updateIrqs();
  }

  private load(value: number, fromMouse: boolean): void {
    this.outputBuffer = value;
    this.outputBufferFull = true;
    this.outputFromMouse = fromMouse;
  }

  private updateIrqs(): void {
    const kbd = this.outputBufferFull && !this.outputFromMouse && (this.commandByte & CTR_KBDINT) !== 0;
    const aux = this.outputBufferFull && this.outputFromMouse && (this.commandByte & CTR_AUXINT) !== 0;
    if (kbd !== this.keyboardIrqLevel) {
      this.keyboardIrqLevel = kbd;
      this.options.keyboardIrq.set(kbd);
    }
    if (aux !== this.mouseIrqLevel) {
      this.mouseIrqLevel = aux;
      this.options.mouseIrq.set(aux);
    }
  }

  // ---- PS/2 keyboard (command protocol only) ----------------------------------------------------

  private keyboardSend(...bytes: number[]): void {
    for (const b of bytes) {
      if (this.keyboard.outputQueue.length >= DEVICE_QUEUE_LIMIT) return;
      this.keyboard.outputQueue.push(b);
      this.keyboard.lastSent = b;
    }
  }

  private translated(): boolean {
    return (this.commandByte & CTR_XLATE) !== 0;
  }

  private keyboardCommand(value: number): void {
    const kbd = this.keyboard;
    const parameterFor = kbd.pendingCommand;
    if (parameterFor !== 0) {
      kbd.pendingCommand = 0;
      switch (parameterFor) {
        case 0xed:
          kbd.leds = value & 7;
          this.keyboardSend(ACK);
          return;
        case 0xf3:
          kbd.typematic = value & 0x7f;
          this.keyboardSend(ACK);
          return;
        case 0xf0:
          if (value === 0) {
            // The set number goes through the controller's translation when it is on
            // (atkbd's scancode-set probe expects 0x43/0x41/0x3F then).
            const translatedSet = [0, 0x43, 0x41, 0x3f][kbd.scancodeSet];
            this.keyboardSend(ACK, this.translated() ? translatedSet : kbd.scancodeSet);
          } else if (value <= 3) {
            kbd.scancodeSet = value;
            this.keyboardSend(ACK);
          } else {
            this.keyboardSend(RESEND);
          }
          return;
        default:
          break; // not a parameter after all: treat as a command
      }
    }
    switch (value) {
      case 0xed: // set LEDs
      case 0xf0: // get/set scancode set
      case 0xf3: // set typematic rate
        kbd.pendingCommand = value;
        this.keyboardSend(ACK);
        break;
      case 0xee: // echo
        this.keyboardSend(0xee);
        break;
      case 0xf2: // identify: MF2 keyboard, AB 83 (AB 41 through translation, as atkbd accepts)
        this.keyboardSend(ACK, 0xab, this.translated() ? 0x41 : 0x83);
        break;
      case 0xf4:
        kbd.outputQueue = [];
        kbd.scanning = true;
        this.keyboardSend(ACK);
        break;
      case 0xf5: // disable scanning
        kbd.outputQueue = [];
        kbd.scanning = false;
        this.keyboardSend(ACK);
        break;
      case 0xf6: // set defaults
        kbd.scancodeSet = 2;
        kbd.typematic = 0x2b;
        this.keyboardSend(ACK);
        break;
      case 0xf7:
      case 0xf8:
      case 0xf9:
      case 0xfa:
      case 0xfb:
      case 0xfc:
      case 0xfd: // scancode-set-3 key type commands
        this.keyboardSend(ACK);
        break;
      case 0xfe: {
        const last = kbd.lastSent;
        this.keyboardSend(last);
        break;
      }
      case 0xff: // reset: ACK, then the basic assurance test result
        kbd.outputQueue = [];
        kbd.scanning = true;
        kbd.scancodeSet = 2;
        kbd.leds = 0;
        kbd.typematic = 0x2b;
        this.keyboardSend(ACK, SELF_TEST_PASSED);
        break;
      default:
        this.keyboardSend(RESEND);
        break;
    }
  }

  // ---- PS/2 mouse (command protocol only) -------------------------------------------------------

  private mouseSend(...bytes: number[]): void {
    for (const b of bytes) {
      if (this.mouse.outputQueue.length >= DEVICE_QUEUE_LIMIT) return;
      this.mouse.outputQueue.push(b);
    }
  }

  private mouseCommand(value: number): void {
    const mouse = this.mouse;
    if (mouse.wrapMode && value !== 0xec && value !== 0xff) {
      this.mouseSend(value); // wrap (echo) mode
      return;
    }
    const parameterFor = mouse.pendingCommand;
    if (parameterFor !== 0) {
      mouse.pendingCommand = 0;
      if (parameterFor === 0xf3) mouse.sampleRate = value;
      else mouse.resolution = value & 3;
      this.mouseSend(ACK);
      return;
    }
    switch (value) {
      case 0xe6:
        mouse.scaling2to1 = false;
        this.mouseSend(ACK);
        break;
      case 0xe7:
        mouse.scaling2to1 = true;
        this.mouseSend(ACK);
        break;
      case 0xe8: // set resolution
      case 0xf3: // set sample rate
        mouse.pendingCommand = value;
        this.mouseSend(ACK);
        break;
      case 0xe9: // status request
        this.mouseSend(
          ACK,
          (mouse.remoteMode ? 0x40 : 0) | (mouse.reporting ? 0x20 : 0) | (mouse.scaling2to1 ? 0x10 : 0),
          mouse.resolution,
          mouse.sampleRate,
        );
        break;
      case 0xea:
        mouse.remoteMode = false;
        this.mouseSend(ACK);
        break;
      case 0xeb: // read data: no movement, no buttons
        this.mouseSend(ACK, 0x08, 0x00, 0x00);
        break;
      case 0xec:
        mouse.wrapMode = false;
        this.mouseSend(ACK);
        break;
      case 0xee:
        mouse.wrapMode = true;
        this.mouseSend(ACK);
        break;
      case 0xf0:
        mouse.remoteMode = true;
        this.mouseSend(ACK);
        break;
      case 0xf2: // get ID: standard PS/2 mouse
        this.mouseSend(ACK, 0x00);
        break;
      case 0xf4:
        mouse.reporting = true;
        this.mouseSend(ACK);
        break;
      case 0xf5:
        mouse.reporting = false;
        this.mouseSend(ACK);
        break;
      case 0xf6:
        Object.assign(mouse, initialMouse(), { outputQueue: mouse.outputQueue });
        this.mouseSend(ACK);
        break;
      case 0xff:
        Object.assign(mouse, initialMouse());
        this.mouseSend(ACK, SELF_TEST_PASSED, 0x00);
        break;
      default:
        this.mouseSend(RESEND);
        break;
    }
  }
}

function initialKeyboard(): Ps2KeyboardState {
  return { outputQueue: [], scanning: true, pendingCommand: 0, scancodeSet: 2, leds: 0, typematic: 0x2b, lastSent: 0 };
}

function initialMouse(): Ps2MouseState {
  return {
    outputQueue: [],
    reporting: false,
    pendingCommand: 0,
    sampleRate: 100,
    resolution: 2,
    scaling2to1: false,
    remoteMode: false,
    wrapMode: false,
  };
}
