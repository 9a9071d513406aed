/**
 * The virtio legacy ("0.9.5", transitional) PCI transport: vendor 0x1AF4, device IDs
 * 0x1000-0x103F, revision 0, subsystem ID = virtio device type, one I/O BAR (BAR0) holding
 * the common header and then the device-specific configuration. INTx only: with no MSI-X
 * capability the device configuration starts at 0x14.
 *
 * BAR0 layout (virtio 1.0 spec 4.1.4.8, "Legacy Interfaces: A Note on PCI Device Layout";
 * include/uapi/linux/virtio_pci.h):
 *   0x00 u32 host features (RO)     0x0C u16 queue size (RO)     0x12 u8 device status
 *   0x04 u32 guest features         0x0E u16 queue select        0x13 u8 ISR status (read clears)
 *   0x08 u32 queue PFN              0x10 u16 queue notify        0x14    device configuration
 *
 * Linux binds through drivers/virtio/virtio_pci_common.c: the modern probe finds no vendor
 * capabilities ("leaving for legacy driver") and virtio_pci_legacy.c takes over, checking
 * revision 0 and reading the virtio device ID from the subsystem ID.
 *
 * Requests complete synchronously at the queue notify, so no request is ever in flight and
 * the device state is only registers and ring indices. Nothing the guest puts in its rings
 * throws out of here: a malformed ring sets DEVICE_NEEDS_RESET (virtio 1.0, 2.1.2) and the
 * device ignores its queues until the driver resets it.
 */
import type { AccessSize, GuestMemory, IrqLine, PortDevice } from '../device.ts';
import { PciConfigSpace, type PciBar, type PciFunction } from '../pci.ts';
import type { StateFields } from './state-fields.ts';
import { SplitVirtqueue, type VirtqueueState } from './virtqueue.ts';

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** VIRTIO_PCI_ABI_VERSION: the legacy driver refuses any other PCI revision. */
export const VIRTIO_PCI_ABI_VERSION = 0;

// BAR0 registers (legacy, no MSI-X).
export const VIRTIO_PCI_HOST_FEATURES = 0x00;
export const VIRTIO_PCI_GUEST_FEATURES = 0x04;
export const VIRTIO_PCI_QUEUE_PFN = 0x08;
export const VIRTIO_PCI_QUEUE_NUM = 0x0c;
export const VIRTIO_PCI_QUEUE_SEL = 0x0e;
export const VIRTIO_PCI_QUEUE_NOTIFY = 0x10;
export const VIRTIO_PCI_STATUS = 0x12;
export const VIRTIO_PCI_ISR = 0x13;
export const VIRTIO_PCI_CONFIG = 0x14;

// Device status (virtio 1.0, 2.1).
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 0x01;
export const VIRTIO_CONFIG_S_DRIVER = 0x02;
export const VIRTIO_CONFIG_S_DRIVER_OK = 0x04;
export const VIRTIO_CONFIG_S_FEATURES_OK = 0x08;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
export const VIRTIO_CONFIG_S_FAILED = 0x80;

// ISR status bits (virtio 1.0, 4.1.4.5).
export const VIRTIO_PCI_ISR_QUEUE = 0x01;
export const VIRTIO_PCI_ISR_CONFIG = 0x02;

// Transport feature bits (virtio 1.0, 6).
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
export const VIRTIO_F_ANY_LAYOUT = 27;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;

/** What a virtio device tells the transport about itself. */
export interface VirtioPciIdentity {
  name: string;
  /** The virtio device type (1 = net, 2 = block), also the PCI subsystem ID. */
  deviceType: number;
  /** The transitional PCI device ID, 0x1000 + type - 1 for the classic types. */
  pciDeviceId: number;
  classCode: number;
  /** Feature bits 0-31 the device offers. */
  hostFeatures: number;
  /** The size of each virtqueue, as QUEUE_NUM reports it (a power of two). */
  queueSizes: readonly number[];
  /** Bytes of device-specific configuration after the header. */
  configSize: number;
}

export interface VirtioPciOptions {
  /** Guest memory for the rings and buffers (DMA marks pages dirty). */
  mem: GuestMemory;
  /** The function's INTx pin (PciBus.intxLine(slot, 0)). */
  irq: IrqLine;
}

/** The transport's part of a virtio device's saved state. */
export interface VirtioTransportState {
  guestFeatures: number;
  queueSelect: number;
  status: number;
  isr: number;
  queues: VirtqueueState[];
}

export abstract class VirtioPciDevice implements PciFunction {
  readonly name: string;
  readonly config: PciConfigSpace;
  readonly bars: readonly PciBar[];
  readonly hostFeatures: number;
  /** Why the device last set DEVICE_NEEDS_RESET (diagnostics; not part of the state). */
  lastError: string | undefined;

  protected readonly queues: SplitVirtqueue[];
  protected readonly mem: GuestMemory;
  protected guestFeatures = 0;
  protected status = 0;
  private isr = 0;
  private queueSelect = 0;
  private readonly irq: IrqLine;
  private readonly configSize: number;

  protected constructor(id: VirtioPciIdentity, options: VirtioPciOptions) {
    if (id.pciDeviceId < 0x1000 || id.pciDeviceId > 0x103f) throw new Error(`${id.name}: ${id.pciDeviceId} is not a transitional virtio device ID`);
    this.name = id.name;
    this.hostFeatures = id.hostFeatures >>> 0;
    this.mem = options.mem;
    this.irq = options.irq;
    this.configSize = id.configSize;
    this.queues = id.queueSizes.map((size, i) => {
      if (size < 1 || size > 32768 || (size & (size - 1)) !== 0) throw new Error(`${id.name}: queue ${i} size ${size} is not a power of two`);
      return new SplitVirtqueue(i, size, options.mem);
    });
    let barSize = 32;
    while (barSize < VIRTIO_PCI_CONFIG + id.configSize) barSize *= 2;
    const bar0: PortDevice = {
      read: (offset: number, size: AccessSize): number => this.barRead(offset, size),
      write: (offset: number, value: number, size: AccessSize): void => this.barWrite(offset, value, size),
    };
    this.bars = [{ kind: 'io', size: barSize, device: bar0 }];
    this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: id.pciDeviceId,
      revisionId: VIRTIO_PCI_ABI_VERSION,
      classCode: id.classCode,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: id.deviceType,
      interruptPin: 1,
    }, this.bars);
  }

  /** Device reset: what writing 0 to the status register does (virtio 1.0, 2.1.1). */
  reset(): void {
    this.guestFeatures = 0;
    this.status = 0;
    this.queueSelect = 0;
    for (const q of this.queues) q.reset();
    this.setIsr(0);
    this.lastError = undefined;
    this.resetDevice();
  }

  /** The byte at `offset` of the device-specific configuration. */
  protected abstract deviceConfigByte(offset: number): number;
  /** The driver wrote a byte of the device-specific configuration. */
  protected writeDeviceConfigByte(_offset: number, _value: number): void {}
  /** The driver notified `queue` (it is set up and the device may DMA). */
  protected abstract queueNotified(queue: SplitVirtqueue): void;
  /** Device-specific part of reset. */
  protected resetDevice(): void {}
  /** The driver set DRIVER_OK. */
  protected driverReady(): void {}

  protected hasFeature(bit: number): boolean {
    return ((this.guestFeatures >>> bit) & 1) !== 0;
  }

  /** The driver is up and the device not broken: it may use the queues on its own (RX). */
  protected get driverOk(): boolean {
    return (this.status & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET)) === VIRTIO_CONFIG_S_DRIVER_OK;
  }

  /** The device may touch guest memory: bus mastering on (Linux's pci_set_master) and not broken. */
  protected get canDma(): boolean {
    return this.config.busMasterEnabled && (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) === 0;
  }

  /** After pushing used buffers on `queue`: interrupt the driver unless it asked not to be. */
  protected usedBuffersReturned(queue: SplitVirtqueue): void {
    if (queue.shouldNotify(this.hasFeature(VIRTIO_RING_F_EVENT_IDX))) this.setIsr(this.isr | VIRTIO_PCI_ISR_QUEUE);
  }

  /** The device configuration changed (link status): the config-change interrupt. */
  protected configChanged(): void {
    this.setIsr(this.isr | VIRTIO_PCI_ISR_CONFIG);
  }

  /**
   * Run `work` that walks guest rings; whatever it throws (a malformed ring, a RAM bound)
   * breaks the device instead of escaping into the CPU loop.
   */
  protected guarded(work: () => void): void {
    try {
      work();
    } catch (e) {
      this.needsReset(e instanceof Error ? e.message : String(e));
    }
  }

  protected needsReset(reason: string): void {
    this.lastError = `${this.name}: ${reason}`;
    if (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    // 2.1.2: a device that sets DEVICE_NEEDS_RESET sends a configuration change notification.
    this.configChanged();
  }

  protected saveTransport(): VirtioTransportState {
    return {
      guestFeatures: this.guestFeatures,
      queueSelect: this.queueSelect,
      status: this.status,
      isr: this.isr,
      queues: this.queues.map((q) => q.save()),
    };
  }

  /** Check a saved transport state against this device, without applying anything. */
  protected checkTransport(f: StateFields): VirtioTransportState {
    const s: VirtioTransportState = {
      guestFeatures: f.int('guestFeatures', 0, 0xffffffff),
      queueSelect: f.int('queueSelect', 0, 0xffff),
      status: f.int('status', 0, 0xff),
      isr: f.int('isr', 0, VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG),
      queues: f.objectList('queues', this.queues.length).map((q) => SplitVirtqueue.check(q)),
    };
    if ((s.guestFeatures & ~this.hostFeatures) !== 0) {
      throw new Error(`${this.name} state: guestFeatures 0x${s.guestFeatures.toString(16)} includes features this device does not offer`);
    }
    return s;
  }

  protected applyTransport(s: VirtioTransportState): void {
    this.guestFeatures = s.guestFeatures;
    this.queueSelect = s.queueSelect;
    this.status = s.status;
    s.queues.forEach((q, i) => this.queues[i].load(q));
    this.lastError = undefined;
    // The restored INTx pin must match the restored ISR.
    this.isr = s.isr;
    this.irq.set(this.isr !== 0);
  }

  private setIsr(value: number): void {
    this.isr = value;
    this.irq.set(value !== 0);
  }

  private selectedQueue(): SplitVirtqueue | undefined {
    return this.queues[this.queueSelect];
  }

  /** Byte `offset` of BAR0, without side effects. */
  private registerByte(offset: number): number {
    let reg: number;
    let base: number;
    if (offset >= VIRTIO_PCI_CONFIG) {
      const o = offset - VIRTIO_PCI_CONFIG;
      return o < this.configSize ? this.deviceConfigByte(o) & 0xff : 0;
    } else if (offset === VIRTIO_PCI_STATUS) {
      return this.status;
    } else if (offset === VIRTIO_PCI_ISR) {
      return this.isr;
    } else if (offset >= VIRTIO_PCI_QUEUE_NOTIFY) {
      return 0;
    } else if (offset >= VIRTIO_PCI_QUEUE_SEL) {
      [reg, base] = [this.queueSelect, VIRTIO_PCI_QUEUE_SEL];
    } else if (offset >= VIRTIO_PCI_QUEUE_NUM) {
      // Size 0 ends Linux's queue discovery (virtio_pci_legacy.c setup_vq: -ENOENT).
      [reg, base] = [this.selectedQueue()?.size ?? 0, VIRTIO_PCI_QUEUE_NUM];
    } else if (offset >= VIRTIO_PCI_QUEUE_PFN) {
      [reg, base] = [this.selectedQueue()?.pfn ?? 0, VIRTIO_PCI_QUEUE_PFN];
    } else if (offset >= VIRTIO_PCI_GUEST_FEATURES) {
      [reg, base] = [this.guestFeatures, VIRTIO_PCI_GUEST_FEATURES];
    } else {
      [reg, base] = [this.hostFeatures, VIRTIO_PCI_HOST_FEATURES];
    }
    return (reg >>> (8 * (offset - base))) & 0xff;
  }

  private barRead(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.registerByte(offset + i);
    // Reading ISR acknowledges the interrupt and deasserts INTx (4.1.4.5); Linux's
    // vp_interrupt reads it once per interrupt.
    if (offset <= VIRTIO_PCI_ISR && VIRTIO_PCI_ISR < offset + size) this.setIsr(0);
    return v >>> 0;
  }

  private barWrite(offset: number, value: number, size: AccessSize): void {
    if (offset >= VIRTIO_PCI_CONFIG) {
      for (let i = 0; i < size; i++) {
        const o = offset - VIRTIO_PCI_CONFIG + i;
        if (o < this.configSize) this.writeDeviceConfigByte(o, (value >>> (8 * i)) & 0xff);
      }
      return;
    }
    // Linux accesses each register with its own width (iowrite32/16/8); other widths are ignored.
    switch (`${offset}/${size}`) {
      case `${VIRTIO_PCI_GUEST_FEATURES}/4`:
        // Features the device did not offer are dropped, as QEMU's virtio_set_features does.
        this.guestFeatures = (value & this.hostFeatures) >>> 0;
        break;
      case `${VIRTIO_PCI_QUEUE_PFN}/4`:
        this.selectedQueue()?.setPfn(value);
        break;
      case `${VIRTIO_PCI_QUEUE_SEL}/2`:
        this.queueSelect = value & 0xffff;
        break;
      case `${VIRTIO_PCI_QUEUE_NOTIFY}/2`:
        this.notify(value & 0xffff);
        break;
      case `${VIRTIO_PCI_STATUS}/1`:
        this.writeStatus(value & 0xff);
        break;
      default:
        break;
    }
  }

  private notify(index: number): void {
    const q = this.queues[index];
    // Legacy drivers may kick before DRIVER_OK (virtio 1.0, 3.1.2), so only a ring is needed.
    if (!q || !q.ready || !this.canDma) return;
    this.guarded(() => this.queueNotified(q));
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const wasOk = (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0;
    // NEEDS_RESET is the device's to set and only a reset clears it.
    this.status = (value & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (this.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    if (!wasOk && this.driverOk) this.guarded(() => this.driverReady());
  }
}
