/**
 * The PC platform: which chips sit at which ports and IRQs (see layout.ts), wired to one
 * Machine. Devices never see each other; this file is the board.
 */
import { Machine, type MachineOptions } from './machine.ts';
import type { IrqLine } from './device.ts';
import { Pic8259 } from './devices/pic8259.ts';
import { Pit8254 } from './devices/pit8254.ts';
import { Port61 } from './devices/port61.ts';
import { RtcMc146818 } from './devices/rtc-mc146818.ts';
import { Uart16550 } from './devices/uart16550.ts';
import { I8042 } from './devices/i8042.ts';
import { Port92 } from './devices/port92.ts';
import { DebugConsole, DebugExit } from './devices/debug-ports.ts';
import * as L from './layout.ts';

export interface PcOptions extends MachineOptions {
  /** Where each COM port's transmitted bytes go (index 0 = COM1). Missing: discarded. */
  serialOut?: ((bytes: Uint8Array) => void)[];
  /** Where the 0xE9 debug console's bytes go. Default: discarded. */
  debugConsole?: (byte: number) => void;
}

export class Pc {
  readonly machine: Machine;
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly port61: Port61;
  readonly rtc: RtcMc146818;
  readonly uarts: Uart16550[] = [];
  readonly i8042: I8042;
  readonly port92: Port92;
  /** Bytes typed into each COM port that its receive FIFO could not take yet. */
  private readonly serialBacklog: number[][] = [[], [], [], []];

  constructor(readonly opts: PcOptions) {
    const m = new Machine(opts);
    this.machine = m;
    const clock = m.clock;

    this.pic = new Pic8259((level) => m.setIntr(level));
    m.setInterruptController(this.pic);
    m.ports.register(L.PIC_MASTER_PORT, 2, this.pic.master, 'pic-master');
    m.ports.register(L.PIC_SLAVE_PORT, 2, this.pic.slave, 'pic-slave');
    m.ports.register(L.ELCR_PORT, 2, this.pic.elcr, 'elcr');

    this.pit = new Pit8254(this.pic.irq(L.IRQ_PIT), clock);
    m.ports.register(L.PIT_PORT, 4, this.pit, 'pit');
    m.addTimedDevice(this.pit);
    this.port61 = new Port61(this.pit, clock);
    m.ports.register(L.PORT61, 1, this.port61, 'port61');

    this.rtc = new RtcMc146818(this.pic.irq(L.IRQ_RTC), clock, {
      onNmiMaskChange: () => {},
    });
    this.rtc.setMemorySize(opts.memoryBytes);
    m.ports.register(L.RTC_PORT, 2, this.rtc, 'rtc');
    m.addTimedDevice(this.rtc);

    L.COM_PORTS.forEach((base, i) => {
      const sink = opts.serialOut?.[i];
      const uart = new Uart16550(this.pic.irq(L.COM_IRQS[i]), (b: number) => {
        const bytes = Uint8Array.of(b);
        m.hooks.emit('serialOut', i, bytes);
        sink?.(bytes);
      }, { onRxSpace: () => this.pumpSerial(i) });
      this.uarts.push(uart);
      m.ports.register(base, 8, uart, `com${i + 1}`);
    });

    this.i8042 = new I8042({
      keyboardIrq: this.pic.irq(L.IRQ_KEYBOARD),
      mouseIrq: this.pic.irq(L.IRQ_MOUSE),
      setA20: (on) => { m.cpu.state.a20 = on; },
      requestReset: () => m.requestReset(),
    });
    m.ports.register(L.I8042_DATA_PORT, 1, this.i8042.data, 'i8042-data');
    m.ports.register(L.I8042_CMD_PORT, 1, this.i8042.control, 'i8042-control');
    this.port92 = new Port92({ setA20: (on) => { m.cpu.state.a20 = on; }, requestReset: () => m.requestReset() });
    m.ports.register(L.PORT92, 1, this.port92, 'port92');

    const debug = opts.debugConsole;
    m.ports.register(L.DEBUG_CONSOLE_PORT, 1, new DebugConsole((b) => debug?.(b)), 'debugcon');
    m.ports.register(L.DEBUG_EXIT_PORT, 4, new DebugExit((status) => m.requestStop({ kind: 'exit', status })), 'debug-exit');

    m.onReset(() => this.resetDevices());
  }

  irq(n: number): IrqLine { return this.pic.irq(n); }

  /** Type bytes into COM port `port`; what the FIFO cannot take waits in a backlog. */
  serialIn(port: number, bytes: Uint8Array): void {
    const q = this.serialBacklog[port];
    for (const b of bytes) q.push(b);
    this.pumpSerial(port);
    this.machine.kick();
  }

  private pumpSerial(port: number): void {
    const q = this.serialBacklog[port];
    const uart = this.uarts[port];
    const n = Math.min(q.length, uart.rxSpace());
    if (n > 0) uart.receive(Uint8Array.from(q.splice(0, n)));
  }

  private resetDevices(): void {
    this.pic.reset();
    this.pit.reset();
    this.port61.reset();
    this.rtc.reset();
    for (const u of this.uarts) u.reset();
    this.i8042.reset();
    this.port92.reset();
    this.machine.cpu.state.a20 = true;
  }
}
