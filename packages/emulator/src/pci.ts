/**
 * PCI bus 0 of an i440FX/PIIX3 PC: configuration mechanism #1, the functions' configuration
 * spaces, BAR decoding onto the port and MMIO buses, INTx routing, and the platform-side
 * resource assignment a BIOS would otherwise do.
 *
 * Port map (the platform registers the two PortDevices):
 *   pci.configAddress  0xCF8        CONFIG_ADDRESS, dword accesses only. Register one port:
 *                                   the bus dispatches by the first port, and byte accesses
 *                                   to 0xCF9 belong to the PIIX reset control register.
 *   pci.configData     0xCFC-0xCFF  CONFIG_DATA (byte/word/dword at any offset)
 *
 * Linux finds the bus by probing mechanism #1 (arch/x86/pci/direct.c, pci_check_type1:
 * CONFIG_ADDRESS must read back 0x80000000) and pci_sanity_check (a host bridge class or an
 * Intel vendor ID on bus 0). With no $PIR table, and with ACPI but no _PRT, Linux keeps the
 * IRQ found in each function's Interrupt Line register (arch/x86/pci/irq.c pirq_enable_irq,
 * drivers/acpi/pci_irq.c "no GSI"), which is why assignResources writes it from the
 * platform's routing.
 *
 * References: PCI Local Bus Specification 3.0 (3.2.2.3.2 mechanism #1, 6.1 configuration
 * header, 6.2.5 base address registers), Intel 82441FX (i440FX) and 82371SB (PIIX3)
 * datasheets, QEMU hw/pci/pci.c and hw/pci-host/i440fx.c.
 */
import type { AccessSize, IrqLine, MmioDevice, Persistent, PortDevice } from './device.ts';
import type { MmioBus, PortBus } from './bus.ts';
import { StateFields } from './devices/state-fields.ts';

export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
export const PCI_CONFIG_DATA_PORT = 0xcfc;

// Configuration header offsets (PCI 3.0, 6.1).
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;

export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_PARITY = 0x0040;
export const PCI_COMMAND_SERR = 0x0100;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
export const PCI_STATUS_INTERRUPT = 0x0008;
/** Status bits 8 and 11-15 are write-one-to-clear error flags (PCI 3.0, 6.2.3). */
const PCI_STATUS_W1C = 0xf900;

export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

/** Interrupt Line value meaning "not connected" (PCI 3.0, 6.2.4; x86 convention). */
export const PCI_INTERRUPT_LINE_NONE = 0xff;

const CONFIG_SPACE_SIZE = 256;
const HEADER_END = 0x40;
const BAR_COUNT = 6;
const SLOTS = 32;
const FUNCTIONS_PER_SLOT = 8;
const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffffffff];

/**
 * Without an unregister on the buses, every range a BAR ever decoded stays claimed by this
 * bus (and reads as all ones once nothing decodes it). A guest that keeps moving BARs to
 * fresh addresses would grow the bus tables without end; past this many claims, a BAR at a
 * never-seen address stays unreachable until it moves back.
 */
const MAX_BUS_CLAIMS = 1024;

/** A base address register's resource: an I/O or 32-bit memory range and its handler. */
export type PciBar =
  | { kind: 'io'; size: number; device: PortDevice }
  | { kind: 'memory'; size: number; prefetchable?: boolean; device: MmioDevice };

/** The read-only identity of a function (PCI 3.0, 6.2.1). */
export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  revisionId: number;
  /** Base class, subclass and programming interface, as one 24-bit value (0x060000 = host bridge). */
  classCode: number;
  /** Bit 7: multi-function device (only meaningful on function 0). */
  headerType?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 0 = no INTx, 1-4 = INTA#-INTD#. */
  interruptPin?: number;
}

/**
 * 256 bytes of type 0 configuration space with per-byte write masks. The function sees its
 * own registers through `bytes`; the guest's writes go through guestWrite, which keeps
 * read-only bits, clears write-one-to-clear bits and implements BAR sizing (writing all ones
 * reads back the size mask, because the low address bits are not writable).
 */
export class PciConfigSpace {
  readonly bytes = new Uint8Array(CONFIG_SPACE_SIZE);
  readonly writeMask = new Uint8Array(CONFIG_SPACE_SIZE);
  readonly w1cMask = new Uint8Array(CONFIG_SPACE_SIZE);

  constructor(id: PciIdentity, bars: readonly (PciBar | undefined)[] = []) {
    if (bars.length > BAR_COUNT) throw new Error(`pci: a type 0 function has ${BAR_COUNT} BARs, got ${bars.length}`);
    this.set16(PCI_VENDOR_ID, id.vendorId);
    this.set16(PCI_DEVICE_ID, id.deviceId);
    this.bytes[PCI_REVISION_ID] = id.revisionId;
    this.bytes[PCI_CLASS_PROG] = id.classCode & 0xff;
    this.set16(PCI_CLASS_PROG + 1, id.classCode >>> 8);
    this.bytes[PCI_HEADER_TYPE] = id.headerType ?? 0;
    this.set16(PCI_SUBSYSTEM_VENDOR_ID, id.subsystemVendorId ?? 0);
    this.set16(PCI_SUBSYSTEM_ID, id.subsystemId ?? 0);
    this.bytes[PCI_INTERRUPT_PIN] = id.interruptPin ?? 0;
    this.bytes[PCI_INTERRUPT_LINE] = id.interruptPin ? PCI_INTERRUPT_LINE_NONE : 0;

    this.setMask16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY
      | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    this.w1cMask[PCI_STATUS] = PCI_STATUS_W1C & 0xff;
    this.w1cMask[PCI_STATUS + 1] = PCI_STATUS_W1C >>> 8;
    this.writeMask[PCI_CACHE_LINE_SIZE] = 0xff;
    this.writeMask[PCI_LATENCY_TIMER] = 0xff;
    this.writeMask[PCI_INTERRUPT_LINE] = 0xff;
    // The device-specific area is read/write unless a function says otherwise (as in
    // QEMU's pci_init_wmask): chipset registers such as the PIIX3 PIRQ routing live there.
    this.writeMask.fill(0xff, HEADER_END);

    bars.forEach((bar, i) => {
      if (!bar) return;
      checkBar(bar, i);
      const offset = PCI_BASE_ADDRESS_0 + 4 * i;
      if (bar.kind === 'io') {
        this.set32(offset, PCI_BASE_ADDRESS_SPACE_IO);
      } else if (bar.prefetchable) {
        this.set32(offset, PCI_BASE_ADDRESS_MEM_PREFETCH);
      }
      // The address bits below the size are hardwired to zero: that is what BAR sizing
      // reads back (PCI 3.0, 6.2.5.1).
      const mask = (~(bar.size - 1) & (bar.kind === 'io' ? 0xfffffffc : 0xfffffff0)) >>> 0;
      for (let b = 0; b < 4; b++) this.writeMask[offset + b] = (mask >>> (8 * b)) & 0xff;
    });
  }

  read(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.bytes[offset + i];
    return v >>> 0;
  }

  /** A configuration write of `length` bytes by the guest: read-only bits kept, RW1C bits cleared by ones. */
  guestWrite(offset: number, value: number, length: number): void {
    for (let i = 0; i < length; i++) {
      const o = offset + i;
      const b = (value >>> (8 * i)) & 0xff;
      const wm = this.writeMask[o];
      this.bytes[o] = ((this.bytes[o] & ~wm) | (b & wm)) & ~(b & this.w1cMask[o]);
    }
  }

  set16(offset: number, v: number): void {
    this.bytes[offset] = v & 0xff;
    this.bytes[offset + 1] = (v >>> 8) & 0xff;
  }

  set32(offset: number, v: number): void {
    for (let b = 0; b < 4; b++) this.bytes[offset + b] = (v >>> (8 * b)) & 0xff;
  }

  /** Make a 16-bit register writable in exactly the bits of `mask`. */
  setMask16(offset: number, mask: number): void {
    this.writeMask[offset] = mask & 0xff;
    this.writeMask[offset + 1] = (mask >>> 8) & 0xff;
  }

  get command(): number { return this.read(PCI_COMMAND, 2); }
  get busMasterEnabled(): boolean { return (this.command & PCI_COMMAND_MASTER) !== 0; }
  get interruptPin(): number { return this.bytes[PCI_INTERRUPT_PIN]; }
  barValue(index: number): number { return this.read(PCI_BASE_ADDRESS_0 + 4 * index, 4); }

  /** Status bit 3 mirrors the function's INTx output, whether or not Interrupt Disable masks it. */
  setInterruptStatus(level: boolean): void {
    const lo = this.bytes[PCI_STATUS];
    this.bytes[PCI_STATUS] = level ? lo | PCI_STATUS_INTERRUPT : lo & ~PCI_STATUS_INTERRUPT;
  }

  /**
   * Bytes the guest can never change, except status bit 3 (which follows INTx). A saved
   * configuration space must agree with the plugged function in these.
   */
  fixedMask(offset: number): number {
    const dynamic = offset === PCI_STATUS ? PCI_STATUS_INTERRUPT : 0;
    return ~(this.writeMask[offset] | this.w1cMask[offset] | dynamic) & 0xff;
  }
}

function checkBar(bar: PciBar, index: number): void {
  const min = bar.kind === 'io' ? 4 : 16;
  // PCI 3.0, 6.2.5.1: I/O BARs ask for at most 256 bytes; sizes are powers of two.
  const max = bar.kind === 'io' ? 256 : 0x80000000;
  if (!Number.isInteger(bar.size) || bar.size < min || bar.size > max || (bar.size & (bar.size - 1)) !== 0) {
    throw new Error(`pci: BAR${index} size ${bar.size} must be a power of two in [${min}, ${max}]`);
  }
}

/** A PCI function as the bus sees it: its configuration space and its BARs' handlers. */
export interface PciFunction {
  readonly name: string;
  readonly config: PciConfigSpace;
  /** BAR0-5 in order; undefined for an unimplemented BAR. Must match `config`'s masks. */
  readonly bars: readonly (PciBar | undefined)[];
  /** Side effects of a guest configuration write, after the masked write has landed. */
  configWritten?(offset: number, length: number): void;
}

/** Intel 82441FX PMC: the i440FX host bridge at 00:00.0 (datasheet 3.2; QEMU i440fx). */
export class I440fxHostBridge implements PciFunction {
  readonly name = 'i440fx';
  readonly bars = [];
  readonly config = new PciConfigSpace({ vendorId: 0x8086, deviceId: 0x1237, revisionId: 0x02, classCode: 0x060000 });

  constructor() {
    this.config.set16(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    this.config.set16(PCI_STATUS, 0x0280); // fast back-to-back, medium DEVSEL
    this.config.bytes[0x72] = 0x02; // SMRAM: C_BASE_SEG = 010b (datasheet 3.2.22)
  }
}

/** Intel 82371SB PIIX3 function 0: the PCI-to-ISA bridge at 00:01.0 (datasheet 2.2; QEMU piix3_reset). */
export class Piix3IsaBridge implements PciFunction {
  readonly name = 'piix3';
  readonly bars = [];
  // Header type 0x80: the real part is multi-function (IDE at 01.1, USB at 01.2).
  readonly config = new PciConfigSpace({ vendorId: 0x8086, deviceId: 0x7000, revisionId: 0x00, classCode: 0x060100, headerType: 0x80 });

  constructor() {
    const c = this.config;
    c.set16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    c.set16(PCI_STATUS, 0x0200);
    c.bytes[0x4c] = 0x4d; // IORT
    c.bytes[0x4e] = 0x03; // XBCS
    c.bytes.fill(0x80, 0x60, 0x64); // PIRQRC[A:D]: routing disabled until firmware sets it
    c.bytes[0x69] = 0x02; // TOM
    c.bytes[0x70] = 0x80; // MBIRQ0
    c.bytes[0x76] = 0x0c; // MBDMA
    c.bytes[0x77] = 0x0c;
    c.bytes[0x78] = 0x02; // PCSC
    c.bytes[0xa0] = 0x08; // SMICNTL
    c.bytes[0xa8] = 0x0f; // SMIEN
  }
}

export interface PciBusOptions {
  ports: PortBus;
  mmio: MmioBus;
  /**
   * A connection to ISA IRQ n (Pic8259.irq): where routed INTx lines end up. Called once per
   * IRQ the routing uses; the bus ORs the functions sharing it onto that one connection.
   */
  irq: (n: number) => IrqLine;
}

export interface PciResourceWindows {
  /** First and last port of the I/O window BARs are assigned from. */
  ioBase: number;
  ioLimit: number;
  /** First and last byte address of the 32-bit memory window. */
  mmioBase: number;
  mmioLimit: number;
  /**
   * The platform's INTx routing: the ISA IRQ (0-15) that `pin` (1-4 = INTA#-INTD#) of
   * `slot` is wired to, or undefined if it is not connected. The platform marks these IRQs
   * level triggered in the ELCR.
   */
  irqFor(slot: number, pin: number): number | undefined;
}

export interface PciFunctionState {
  slot: number;
  function: number;
  config: Uint8Array;
}

export interface PciBusState {
  /** The CONFIG_ADDRESS latch at 0xCF8. */
  configAddress: number;
  functions: PciFunctionState[];
}

interface Decoded {
  base: number;
  end: number; // exclusive
  device: PortDevice | MmioDevice;
}

interface Plugged {
  devfn: number;
  fn: PciFunction;
  /** The ISA IRQ its INTx pin is routed to, once the platform has said. */
  routedIrq: number | undefined;
}

/**
 * Bus 0. The chipset (i440FX at 00:00.0, PIIX3 at 00:01.0) is plugged by the constructor;
 * devices are plugged by the platform before assignResources.
 */
export class PciBus implements Persistent<PciBusState> {
  readonly stateName = 'pci';
  readonly stateVersion = 1;

  /** CONFIG_ADDRESS at port 0xCF8 (register one port: 0xCF9 is PIIX reset control). */
  readonly configAddress: PortDevice;
  /** CONFIG_DATA, ports 0xCFC-0xCFF. */
  readonly configData: PortDevice;

  private address = 0;
  private readonly slots: (Plugged | undefined)[] = new Array(SLOTS * FUNCTIONS_PER_SLOT).fill(undefined);
  private readonly intxLevels = new Uint8Array(SLOTS * FUNCTIONS_PER_SLOT);
  private readonly irqLevels = new Map<number, boolean>();
  /** One connection per ISA IRQ, taken from the interrupt controller once and kept. */
  private readonly irqLines = new Map<number, IrqLine>();
  private ioDecoded: Decoded[] = [];
  private mmioDecoded: Decoded[] = [];
  private readonly claimedPorts = new Uint8Array(0x10000);
  private readonly claimedMmio: { base: number; end: number }[] = [];
  private claims = 0;

  constructor(private readonly options: PciBusOptions) {
    this.configAddress = {
      // Only dword accesses reach CONFIG_ADDRESS; byte accesses to 0xCF8-0xCFB belong to
      // other PIIX registers (0xCF9 is the reset control register) and are not modelled.
      read: (offset: number, size: AccessSize): number => (offset === 0 && size === 4 ? this.address : ALL_ONES[size]),
      write: (offset: number, value: number, size: AccessSize): void => {
        // Bits 1:0 are reserved and bits 30:24 select AMD extended registers we lack.
        if (offset === 0 && size === 4) this.address = (value & 0x80fffffc) >>> 0;
      },
    };
    this.configData = {
      read: (offset: number, size: AccessSize): number => this.configDataRead(offset, size),
      write: (offset: number, value: number, size: AccessSize): void => this.configDataWrite(offset, value, size),
    };
    this.plug(0, 0, new I440fxHostBridge());
    this.plug(1, 0, new Piix3IsaBridge());
  }

  /** Put `fn` at slot:function. */
  plug(slot: number, fnNumber: number, fn: PciFunction): void {
    const devfn = devfnOf(slot, fnNumber);
    if (this.slots[devfn]) throw new Error(`pci: 00:${hex2(slot)}.${fnNumber} already holds ${this.slots[devfn]!.fn.name}`);
    this.slots[devfn] = { devfn, fn, routedIrq: undefined };
    fn.config.setInterruptStatus(this.intxLevels[devfn] !== 0);
  }

  /**
   * The INTx output of the function at slot:function, for its constructor (a device drives
   * its interrupt pin without knowing the routing). The bus mirrors it in status bit 3,
   * masks it with Interrupt Disable and ORs it with the other functions sharing the IRQ.
   */
  intxLine(slot: number, fnNumber: number): IrqLine {
    const devfn = devfnOf(slot, fnNumber);
    return {
      set: (level: boolean): void => {
        if ((this.intxLevels[devfn] !== 0) === level) return;
        this.intxLevels[devfn] = level ? 1 : 0;
        const p = this.slots[devfn];
        if (!p) return;
        p.fn.config.setInterruptStatus(level);
        this.updateIrq(p.routedIrq);
      },
    };
  }

  /**
   * What a BIOS does when there is none: give every BAR a naturally aligned address in the
   * windows, enable decoding and bus mastering, route INTx and record it in Interrupt Line.
   * Larger BARs go first so alignment wastes little.
   */
  assignResources(windows: PciResourceWindows): void {
    const { ioBase, ioLimit, mmioBase, mmioLimit } = windows;
    // Address 0 means "unassigned" to the decoder (and to Linux), so neither window starts there.
    if (!(ioBase > 0 && ioLimit <= 0xffff && ioBase <= ioLimit)) throw new RangeError(`pci: bad I/O window ${ioBase}-${ioLimit}`);
    if (!(mmioBase > 0 && mmioLimit <= 0xffffffff && mmioBase <= mmioLimit)) throw new RangeError(`pci: bad MMIO window ${mmioBase}-${mmioLimit}`);
    const plugged = this.slots.filter((p): p is Plugged => p !== undefined);
    const requests: { p: Plugged; index: number; bar: PciBar; base: number }[] = [];
    for (const p of plugged) p.fn.bars.forEach((bar, index) => { if (bar) requests.push({ p, index, bar, base: 0 }); });
    requests.sort((a, b) => b.bar.size - a.bar.size || a.p.devfn - b.p.devfn || a.index - b.index);
    // Plan everything first, so a platform error leaves the bus untouched.
    let nextIo = ioBase;
    let nextMem = mmioBase;
    for (const r of requests) {
      const io = r.bar.kind === 'io';
      r.base = alignUp(io ? nextIo : nextMem, r.bar.size);
      if (r.base + r.bar.size - 1 > (io ? ioLimit : mmioLimit)) {
        throw new Error(`pci: ${r.p.fn.name} BAR${r.index} (${r.bar.size} bytes) does not fit the ${io ? 'I/O' : 'memory'} window`);
      }
      if (io) nextIo = r.base + r.bar.size; else nextMem = r.base + r.bar.size;
    }
    const routes = new Map<Plugged, number | undefined>();
    for (const p of plugged) {
      const pin = p.fn.config.interruptPin;
      if (pin < 1 || pin > 4) continue;
      const irq = windows.irqFor(p.devfn >> 3, pin);
      if (irq !== undefined && !(Number.isInteger(irq) && irq >= 0 && irq <= 15 && irq !== 2)) {
        throw new RangeError(`pci: irqFor(${p.devfn >> 3}, ${pin}) returned ${irq}, not an ISA IRQ`);
      }
      routes.set(p, irq);
    }

    // As firmware does: the BAR write keeps the read-only type bits.
    for (const r of requests) r.p.fn.config.guestWrite(PCI_BASE_ADDRESS_0 + 4 * r.index, r.base, 4);
    for (const p of plugged) {
      const c = p.fn.config;
      const bars = p.fn.bars.filter((b): b is PciBar => b !== undefined);
      if (bars.length > 0) {
        let cmd = c.command | PCI_COMMAND_MASTER;
        if (bars.some((b) => b.kind === 'io')) cmd |= PCI_COMMAND_IO;
        if (bars.some((b) => b.kind === 'memory')) cmd |= PCI_COMMAND_MEMORY;
        c.set16(PCI_COMMAND, cmd);
      }
    }
    for (const [p, irq] of routes) {
      const previous = p.routedIrq;
      p.routedIrq = irq;
      p.fn.config.bytes[PCI_INTERRUPT_LINE] = irq ?? PCI_INTERRUPT_LINE_NONE;
      this.updateIrq(previous);
      this.updateIrq(irq);
    }
    this.refreshDecode();
  }

  /** The function at slot:function, if any (for the platform and diagnostics). */
  functionAt(slot: number, fnNumber: number): PciFunction | undefined {
    return this.slots[devfnOf(slot, fnNumber)]?.fn;
  }

  saveState(): PciBusState {
    const functions: PciFunctionState[] = [];
    for (const p of this.slots) {
      if (p) functions.push({ slot: p.devfn >> 3, function: p.devfn & 7, config: p.fn.config.bytes.slice() });
    }
    return { configAddress: this.address, functions };
  }

  loadState(state: PciBusState): void {
    const f = StateFields.of(this.stateName, state);
    const configAddress = f.int('configAddress', 0, 0xffffffff);
    if ((configAddress & ~0x80fffffc) !== 0) throw new Error('pci state: configAddress has reserved bits set');
    const plugged = this.slots.filter((p): p is Plugged => p !== undefined);
    const list = f.objectList('functions', plugged.length);
    const configs = new Map<number, Uint8Array>();
    for (const item of list) {
      const slot = item.int('slot', 0, SLOTS - 1);
      const fnNumber = item.int('function', 0, FUNCTIONS_PER_SLOT - 1);
      const devfn = devfnOf(slot, fnNumber);
      const p = this.slots[devfn];
      const where = `00:${hex2(slot)}.${fnNumber}`;
      if (!p) throw new Error(`pci state: ${where} is not plugged in this machine`);
      if (configs.has(devfn)) throw new Error(`pci state: ${where} appears twice`);
      const config = item.bytes('config', CONFIG_SPACE_SIZE);
      for (let o = 0; o < CONFIG_SPACE_SIZE; o++) {
        const fixed = p.fn.config.fixedMask(o);
        if ((config[o] ^ p.fn.config.bytes[o]) & fixed) {
          throw new Error(`pci state: ${where} config byte 0x${o.toString(16)} differs from the plugged ${p.fn.name} in read-only bits`);
        }
      }
      configs.set(devfn, config);
    }
    this.address = configAddress;
    for (const [devfn, config] of configs) {
      const p = this.slots[devfn]!;
      p.fn.config.bytes.set(config);
      this.intxLevels[devfn] = config[PCI_STATUS] & PCI_STATUS_INTERRUPT ? 1 : 0;
    }
    this.refreshDecode();
    for (const p of plugged) this.updateIrq(p.routedIrq);
  }

  private target(): Plugged | undefined {
    const a = this.address;
    // Enable bit clear: the access goes to the plain I/O ports, which nothing else claims.
    if ((a & 0x80000000) === 0) return undefined;
    // Only bus 0 exists; there are no PCI-to-PCI bridges behind which type 1 cycles go.
    if (((a >>> 16) & 0xff) !== 0) return undefined;
    return this.slots[(a >>> 8) & 0xff];
  }

  private configDataRead(offset: number, size: AccessSize): number {
    const p = this.target();
    // No function answers: master abort, all ones (the vendor ID 0xFFFF Linux scans for).
    if (!p) return ALL_ONES[size];
    const reg = (this.address & 0xfc) + offset;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      // A word at 0xCFF spills out of the data window; the spilled byte reads as open bus.
      v = (v << 8) | (offset + i < 4 ? p.fn.config.bytes[reg + i] : 0xff);
    }
    return v >>> 0;
  }

  private configDataWrite(offset: number, value: number, size: AccessSize): void {
    const p = this.target();
    if (!p) return;
    const reg = (this.address & 0xfc) + offset;
    // A write spilling past 0xCFF only reaches the bytes inside the data window.
    const n = Math.min(size, 4 - offset);
    const config = p.fn.config;
    const intxDisabledBefore = (config.command & PCI_COMMAND_INTX_DISABLE) !== 0;
    config.guestWrite(reg, value, n);
    const end = reg + n;
    // Command or a BAR changed: decoding may have moved (Linux disables decode while it sizes
    // BARs in __pci_read_base, and may reassign them in pci_assign_unassigned_resources).
    if (overlaps(reg, end, PCI_COMMAND, PCI_COMMAND + 2) || overlaps(reg, end, PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_0 + 4 * BAR_COUNT)) {
      this.refreshDecode();
    }
    if (((config.command & PCI_COMMAND_INTX_DISABLE) !== 0) !== intxDisabledBefore) this.updateIrq(p.routedIrq);
    p.fn.configWritten?.(reg, n);
  }

  /** Drive ISA IRQ `irq` with the OR of the enabled INTx outputs routed to it. */
  private updateIrq(irq: number | undefined): void {
    if (irq === undefined) return;
    let level = false;
    for (const p of this.slots) {
      if (p && p.routedIrq === irq && this.intxLevels[p.devfn] && !(p.fn.config.command & PCI_COMMAND_INTX_DISABLE)) {
        level = true;
        break;
      }
    }
    if (this.irqLevels.get(irq) === level) return;
    this.irqLevels.set(irq, level);
    let line = this.irqLines.get(irq);
    if (!line) {
      line = this.options.irq(irq);
      this.irqLines.set(irq, line);
    }
    line.set(level);
  }

  /** Rebuild the decode maps from every function's command register and BARs. */
  private refreshDecode(): void {
    const io: Decoded[] = [];
    const mmio: Decoded[] = [];
    for (const p of this.slots) {
      if (!p) continue;
      const c = p.fn.config;
      const cmd = c.command;
      p.fn.bars.forEach((bar, i) => {
        if (!bar) return;
        if (bar.kind === 'io') {
          if (!(cmd & PCI_COMMAND_IO)) return;
          const base = (c.barValue(i) & 0xfffffffc) >>> 0;
          // Address 0 is what an unassigned BAR holds; ranges past 64 KiB (a BAR still
          // holding the sizing pattern) cannot be reached by IN/OUT.
          if (base === 0 || base + bar.size > 0x10000) return;
          io.push({ base, end: base + bar.size, device: bar.device });
        } else {
          if (!(cmd & PCI_COMMAND_MEMORY)) return;
          const base = (c.barValue(i) & 0xfffffff0) >>> 0;
          // A range ending at 4 GiB is the sizing pattern, as in QEMU's pci_bar_address.
          if (base === 0 || base + bar.size >= 0x100000000) return;
          mmio.push({ base, end: base + bar.size, device: bar.device });
        }
      });
    }
    this.ioDecoded = io;
    this.mmioDecoded = mmio;
    for (const d of io) this.claimPorts(d.base, d.end);
    for (const d of mmio) this.claimMmio(d.base, d.end);
  }

  /** Register the ports of [base, end) no other device owns, once, with this bus as dispatcher. */
  private claimPorts(base: number, end: number): void {
    const bus = this.options.ports;
    let p = base;
    while (p < end) {
      if (this.claimedPorts[p] || bus.ownerName(p) !== undefined) { p++; continue; }
      let q = p;
      while (q < end && !this.claimedPorts[q] && bus.ownerName(q) === undefined) q++;
      if (this.claims >= MAX_BUS_CLAIMS) return;
      const start = p;
      bus.register(start, q - start, {
        read: (offset: number, size: AccessSize): number => this.ioRead(start + offset, size),
        write: (offset: number, value: number, size: AccessSize): void => this.ioWrite(start + offset, value, size),
      }, 'pci');
      this.claimedPorts.fill(1, start, q);
      this.claims++;
      p = q;
    }
  }

  private claimMmio(base: number, end: number): void {
    // The parts of [base, end) not yet claimed by this bus.
    let pieces = [{ base, end }];
    for (const c of this.claimedMmio) {
      pieces = pieces.flatMap((r) => {
        if (r.end <= c.base || c.end <= r.base) return [r];
        const out: { base: number; end: number }[] = [];
        if (r.base < c.base) out.push({ base: r.base, end: c.base });
        if (c.end < r.end) out.push({ base: c.end, end: r.end });
        return out;
      });
    }
    for (const r of pieces) {
      if (this.claims >= MAX_BUS_CLAIMS) return;
      try {
        this.options.mmio.register(r.base, r.end - r.base, {
          read: (offset: number, size: AccessSize): number => this.mmioRead(r.base + offset, size),
          write: (offset: number, value: number, size: AccessSize): void => this.mmioWrite(r.base + offset, value, size),
        }, 'pci');
      } catch {
        // Another device owns part of the range: it keeps it (a BAR programmed over a
        // platform device is a guest bug), and the BAR is not reachable there.
        continue;
      }
      this.claimedMmio.push(r);
      this.claims++;
    }
  }

  private ioRead(port: number, size: AccessSize): number {
    for (const d of this.ioDecoded) if (port >= d.base && port < d.end) return d.device.read(port - d.base, size);
    return ALL_ONES[size];
  }

  private ioWrite(port: number, value: number, size: AccessSize): void {
    for (const d of this.ioDecoded) if (port >= d.base && port < d.end) { d.device.write(port - d.base, value, size); return; }
  }

  private mmioRead(addr: number, size: AccessSize): number {
    for (const d of this.mmioDecoded) if (addr >= d.base && addr < d.end) return d.device.read(addr - d.base, size);
    return ALL_ONES[size];
  }

  private mmioWrite(addr: number, value: number, size: AccessSize): void {
    for (const d of this.mmioDecoded) if (addr >= d.base && addr < d.end) { d.device.write(addr - d.base, value, size); return; }
  }
}

function devfnOf(slot: number, fnNumber: number): number {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw new RangeError(`pci: no slot ${slot}`);
  if (!Number.isInteger(fnNumber) || fnNumber < 0 || fnNumber >= FUNCTIONS_PER_SLOT) throw new RangeError(`pci: no function ${fnNumber}`);
  return (slot << 3) | fnNumber;
}

function alignUp(v: number, align: number): number {
  return Math.ceil(v / align) * align;
}

function overlaps(a0: number, a1: number, b0: number, b1: number): boolean {
  return a0 < b1 && b0 < a1;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
