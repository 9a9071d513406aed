/**
 * virtio-blk (virtio 1.0 spec 5.2) on the legacy PCI transport: PCI 1AF4:1001, subsystem 2,
 * one request queue. Linux's drivers/block/virtio_blk.c drives it.
 *
 * A request is a chain: a 16-byte header (type u32, ioprio u32, sector u64) the device
 * reads, data (read for OUT, written for IN), and a status byte the device writes last. The
 * chain is treated as one byte stream, so any split of header, data and status across
 * descriptors works (VIRTIO_F_ANY_LAYOUT). Requests complete synchronously at the queue
 * notify: there is never a request in flight to snapshot.
 *
 * Legacy device configuration (struct virtio_blk_config, little-endian on x86):
 *   0x00 u64 capacity (512-byte sectors)   0x0C u32 seg_max   0x14 u32 blk_size
 *   0x08 u32 size_max                      0x10 geometry      0x18 topology, 0x20 writeback
 */
import type { Persistent } from '../device.ts';
import type { BlockBackend } from '../block-backend.ts';
import { StateFields } from './state-fields.ts';
import {
  VirtioPciDevice,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  type VirtioPciOptions,
  type VirtioTransportState,
} from './virtio-pci.ts';
import { VirtqueueError, type DescriptorChain, type SplitVirtqueue } from './virtqueue.ts';

export const VIRTIO_ID_BLOCK = 2;

// Feature bits (virtio 1.0, 5.2.3).
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;

// Request types (5.2.6; GET_ID from Linux include/uapi/linux/virtio_blk.h).
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** The serial number GET_ID returns is at most this long (VIRTIO_BLK_ID_BYTES). */
export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;

const REQUEST_HEADER_SIZE = 16;
const QUEUE_SIZE = 256;
const CONFIG_SIZE = 0x24;
/**
 * The largest data transfer one request may carry. Linux's default max_sectors_kb is
 * 1280 KiB; this bound keeps a hostile chain from making the host allocate gigabytes.
 */
export const MAX_REQUEST_BYTES = 64 << 20;

export interface VirtioBlkOptions extends VirtioPciOptions {
  backend: BlockBackend;
  /** Logical block size reported through VIRTIO_BLK_F_BLK_SIZE (default 512). */
  blockSize?: number;
  /** The serial number for GET_ID (at most 20 bytes of ASCII). */
  serial?: string;
  /** The blockWrite hook: a completed guest write, byte offset and data, before the guest sees it complete. */
  blockWrite?: (offset: number, data: Uint8Array) => void;
  /** The blockFlush hook: a completed guest flush, before the guest sees it complete. */
  blockFlush?: () => void;
}

export interface VirtioBlkState {
  transport: VirtioTransportState;
}

export class VirtioBlk extends VirtioPciDevice implements Persistent<VirtioBlkState> {
  readonly stateName = 'virtio-blk';
  readonly stateVersion = 1;

  private readonly backend: BlockBackend;
  private readonly deviceConfig = new Uint8Array(CONFIG_SIZE);
  private readonly serial: Uint8Array;
  private readonly blockWrite: (offset: number, data: Uint8Array) => void;
  private readonly blockFlush: () => void;
  private readonly capacityBytes: number;
  /** The last host-side I/O failure reported to the guest as IOERR (diagnostics; not state). */
  lastIoError: string | undefined;

  constructor(options: VirtioBlkOptions) {
    const blockSize = options.blockSize ?? SECTOR_SIZE;
    if (!(blockSize >= SECTOR_SIZE && blockSize <= 65536 && (blockSize & (blockSize - 1)) === 0)) {
      throw new Error(`virtio-blk: block size ${blockSize} must be a power of two from 512 to 65536`);
    }
    let features = (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH)
      | (1 << VIRTIO_F_ANY_LAYOUT) | (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX);
    // A read-only disk says so; Linux's virtblk_probe then calls set_disk_ro.
    if (options.backend.readOnly) features |= 1 << VIRTIO_BLK_F_RO;
    super({
      name: 'virtio-blk',
      deviceType: VIRTIO_ID_BLOCK,
      pciDeviceId: 0x1001,
      // PCI_CLASS_STORAGE_SCSI, as QEMU's virtio-blk-pci.
      classCode: 0x010000,
      hostFeatures: features,
      queueSizes: [QUEUE_SIZE],
      configSize: CONFIG_SIZE,
    }, options);
    this.backend = options.backend;
    this.blockWrite = options.blockWrite ?? (() => {});
    this.blockFlush = options.blockFlush ?? (() => {});
    const serial = new TextEncoder().encode(options.serial ?? '');
    if (serial.length > VIRTIO_BLK_ID_BYTES) throw new Error(`virtio-blk: serial "${options.serial}" is longer than ${VIRTIO_BLK_ID_BYTES} bytes`);
    this.serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.serial.set(serial);

    // An image whose size is not a whole number of sectors loses its tail, as in QEMU.
    const sectors = Math.floor(this.backend.size / SECTOR_SIZE);
    this.capacityBytes = sectors * SECTOR_SIZE;
    const dv = new DataView(this.deviceConfig.buffer);
    dv.setUint32(0x00, sectors % 0x100000000, true);
    dv.setUint32(0x04, Math.floor(sectors / 0x100000000), true);
    // seg_max: a request's data segments, leaving room for header and status in the ring
    // (QEMU reports queue size - 2 too).
    dv.setUint32(0x0c, QUEUE_SIZE - 2, true);
    dv.setUint32(0x14, blockSize, true);
  }

  saveState(): VirtioBlkState {
    return { transport: this.saveTransport() };
  }

  loadState(state: VirtioBlkState): void {
    const f = StateFields.of(this.stateName, state);
    const transport = this.checkTransport(f.object('transport'));
    this.applyTransport(transport);
  }

  protected deviceConfigByte(offset: number): number {
    return this.deviceConfig[offset];
  }

  protected queueNotified(queue: SplitVirtqueue): void {
    let completed = false;
    // availableCount is at most the queue size, and processing cannot add more: bounded.
    for (let chain = queue.pop(); chain; chain = queue.pop()) {
      queue.push(chain.head, this.execute(queue, chain));
      completed = true;
    }
    queue.publishAvailEvent(this.hasFeature(VIRTIO_RING_F_EVENT_IDX));
    if (completed) this.usedBuffersReturned(queue);
  }

  /** Carry out one request; returns the bytes written into the chain (data and status). */
  private execute(queue: SplitVirtqueue, chain: DescriptorChain): number {
    // Without a header or a status byte the request cannot even be failed (QEMU's
    // "virtio-blk missing headers" is a device error too).
    if (chain.readableBytes < REQUEST_HEADER_SIZE || chain.writableBytes < 1) {
      throw new VirtqueueError('virtio-blk: request without header or status byte');
    }
    const header = queue.gather(chain.readable, 0, REQUEST_HEADER_SIZE);
    const hv = new DataView(header.buffer);
    const type = hv.getUint32(0, true);
    const sector = hv.getUint32(8, true) + hv.getUint32(12, true) * 0x100000000;
    let status: number;
    let written = 0;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const len = chain.writableBytes - 1;
        status = this.checkTransfer(sector, len);
        if (status === VIRTIO_BLK_S_OK) {
          const data = new Uint8Array(len);
          status = this.backendCall(() => this.backend.read(sector * SECTOR_SIZE, data));
          if (status === VIRTIO_BLK_S_OK) {
            queue.scatter(chain.writable, 0, data);
            written = len;
          }
        }
        break;
      }
      case VIRTIO_BLK_T_OUT: {
        const len = chain.readableBytes - REQUEST_HEADER_SIZE;
        status = this.backend.readOnly ? VIRTIO_BLK_S_IOERR : this.checkTransfer(sector, len);
        // An empty write changes nothing: no backend call and no blockWrite hook.
        if (status === VIRTIO_BLK_S_OK && len > 0) {
          const data = queue.gather(chain.readable, REQUEST_HEADER_SIZE, len);
          const offset = sector * SECTOR_SIZE;
          status = this.backendCall(() => this.backend.write(offset, data));
          if (status === VIRTIO_BLK_S_OK) this.blockWrite(offset, data);
        }
        break;
      }
      case VIRTIO_BLK_T_FLUSH:
        status = this.backendCall(() => this.backend.flush());
        if (status === VIRTIO_BLK_S_OK) this.blockFlush();
        break;
      case VIRTIO_BLK_T_GET_ID: {
        // Linux's virtblk_get_id asks for 20 bytes; a NUL-padded serial fills them.
        const len = Math.min(chain.writableBytes - 1, VIRTIO_BLK_ID_BYTES);
        queue.scatter(chain.writable, 0, this.serial.subarray(0, len));
        written = len;
        status = VIRTIO_BLK_S_OK;
        break;
      }
      default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    // The status byte is the last byte of the writable part (5.2.6).
    queue.scatter(chain.writable, chain.writableBytes - 1, Uint8Array.of(status));
    return written + 1;
  }

  /** A data transfer must be whole sectors, inside the disk, and of a sane size. */
  private checkTransfer(sector: number, len: number): number {
    if (len % SECTOR_SIZE !== 0 || len > MAX_REQUEST_BYTES) return VIRTIO_BLK_S_IOERR;
    if (sector * SECTOR_SIZE + len > this.capacityBytes) return VIRTIO_BLK_S_IOERR;
    return VIRTIO_BLK_S_OK;
  }

  /** A failing host disk is the guest's I/O error, not a broken device. */
  private backendCall(io: () => void): number {
    try {
      io();
      return VIRTIO_BLK_S_OK;
    } catch (e) {
      this.lastIoError = e instanceof Error ? e.message : String(e);
      return VIRTIO_BLK_S_IOERR;
    }
  }
}
