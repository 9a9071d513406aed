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
import { AcpiPm } from './devices/acpi-pm.ts';
import { PiixResetControl } from './devices/piix-reset-control.ts';
import { installAcpiTables, type AcpiTables } from './acpi-tables.ts';
import { PciBus } from './pci.ts';
import { VirtioBlk } from './devices/virtio-blk.ts';
import { VirtioNet } from './devices/virtio-net.ts';
import type { BlockBackend } from './block-backend.ts';
import type { NetBackend } from './net/backend.ts';
import { CpuGuestMemory } from './guest-memory.ts';
import { Rom, checkRomImage } from './devices/rom.ts';
import * as L from './layout.ts';

export interface PcOptions extends MachineOptions {
  /** Where each COM port's transmitted bytes go (index 0 = COM1). Missing: discarded. */
  serialOut?: ((bytes: Uint8Array) => void)[];
  /** Where the 0xE9 debug console's bytes go. Default: discarded. */
  debugConsole?: (byte: number) => void;
  /** A disk on virtio-blk (PCI slot 3). */
  disk?: BlockBackend;
  /** A NIC on virtio-net (PCI slot 2), with its backend. */
  net?: { backend: NetBackend; mac?: string };
  /**
   * A firmware image: mapped at the top of 4 GiB, its last 128 KiB (or all of a smaller one)
   * aliased below 1 MiB, and the CPU left at the reset vector. The firmware then owns the
   * area 0xE0000-0xFFFFF, so the platform's own ACPI tables are not installed.
   */
  bios?: Uint8Array;
}

/** PCI slots and the ISA IRQs their INTA# lines are wired to (level-triggered in ELCR). */
const NET_SLOT = 2;
const DISK_SLOT = 3;
const PCI_IRQS = [10, 11] as const;
/** The default MAC: QEMU's locally administered prefix 52:54:00. */
export const DEFAULT_MAC = '52:54:00:12:34:56';

export class Pc {
  readonly machine: Machine;
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly port61: Port61;
  readonly rtc: RtcMc146818;
  readonly uarts: Uart16550[] = [];
  readonly i8042: I8042;
  readonly port92: Port92;
  readonly acpi: AcpiPm;
  readonly resetControl: PiixResetControl;
  readonly acpiTables: AcpiTables | undefined;
  readonly pci: PciBus;
  readonly virtioBlk: VirtioBlk | undefined;
  readonly virtioNet: VirtioNet | undefined;
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

    // ACPI: the PM block (power-off through S5, the PM timer clocksource) and the tables
    // Linux finds by scanning 0xE0000-0xFFFFF for the RSDP.
    this.acpi = new AcpiPm(this.pic.irq(L.IRQ_ACPI_SCI), clock, { powerOff: () => m.requestStop({ kind: 'poweroff' }) });
    m.ports.register(L.ACPI_PM_PORT, 12, this.acpi, 'acpi-pm');
    m.addTimedDevice(this.acpi);
    if (opts.bios) {
      checkRomImage(opts.bios);
      const rom = opts.bios;
      m.mmio.register(2 ** 32 - rom.length, rom.length, new Rom(rom), 'bios');
      const alias = rom.subarray(Math.max(0, rom.length - 0x20000));
      m.cpu.writePhysical(0x100000 - alias.length, alias);
      this.acpiTables = undefined;
    } else {
      this.acpiTables = installAcpiTables(m.cpu, { ramBytes: opts.memoryBytes });
    }

    // PCI: host bridge and ISA bridge, then the virtio functions; the platform assigns their
    // BARs and IRQs itself since there is no firmware to do it.
    this.pci = new PciBus({ ports: m.ports, mmio: m.mmio, irq: (n) => this.pic.irq(n) });
    m.ports.register(0xcf8, 1, this.pci.configAddress, 'pci-config-address');
    this.resetControl = new PiixResetControl(() => m.requestReset());
    m.ports.register(L.RESET_CONTROL_PORT, 1, this.resetControl, 'reset-control');
    m.ports.register(0xcfc, 4, this.pci.configData, 'pci-config-data');
    const mem = new CpuGuestMemory(m.cpu);
    if (opts.net) {
      const backend = opts.net.backend;
      const nic = new VirtioNet({
        mem,
        irq: this.pci.intxLine(NET_SLOT, 0),
        mac: opts.net.mac ?? DEFAULT_MAC,
        send: (frame) => { m.hooks.emit('netSend', frame); backend.send(frame); },
      });
      backend.onFrame((frame) => { nic.receive(frame); m.kick(); });
      this.pci.plug(NET_SLOT, 0, nic);
      this.virtioNet = nic;
    }
    if (opts.disk) {
      const blk = new VirtioBlk({
        mem,
        irq: this.pci.intxLine(DISK_SLOT, 0),
        backend: opts.disk,
        blockWrite: (o, d) => m.hooks.emit('blockWrite', o, d),
        blockFlush: () => m.hooks.emit('blockFlush'),
      });
      this.pci.plug(DISK_SLOT, 0, blk);
      this.virtioBlk = blk;
    }
    this.pci.assignResources({
      ioBase: 0xc000,
      ioLimit: 0xfeff,
      mmioBase: Math.max(opts.memoryBytes, 0xe0000000),
      mmioLimit: L.PCI_MMIO_END - 1,
      irqFor: (slot, pin) => PCI_IRQS[(slot + pin - 1) & 1],
    });
    // PCI interrupts are level-triggered: say so in the ELCR, as a BIOS would.
    const elcr = (1 << L.IRQ_ACPI_SCI) | (1 << PCI_IRQS[0]) | (1 << PCI_IRQS[1]);
    this.pic.elcr.write(0, elcr & 0xff, 1);
    this.pic.elcr.write(1, elcr >> 8, 1);

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

  /** The bytes waiting for each COM port's receive FIFO, for a snapshot (vm-state.ts). */
  saveSerialBacklog(): Uint8Array[] {
    return this.serialBacklog.map((q) => Uint8Array.from(q));
  }

  /** Replace the serial backlog with a snapshot's (one list per COM port). */
  loadSerialBacklog(queues: readonly Uint8Array[]): void {
    if (queues.length !== this.serialBacklog.length) throw new Error(`serial backlog: ${queues.length} ports, this board has ${this.serialBacklog.length}`);
    queues.forEach((q, i) => { this.serialBacklog[i] = Array.from(q); });
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
    this.acpi.reset();
    this.resetControl.reset();
    this.virtioBlk?.reset();
    this.virtioNet?.reset();
    this.machine.cpu.state.a20 = true;
  }
}
