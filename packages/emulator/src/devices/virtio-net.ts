/**
 * virtio-net (virtio 1.0 spec 5.1) on the legacy PCI transport: PCI 1AF4:1000, subsystem 1,
 * receive queue 0 and transmit queue 1, no control queue, no offloads. Linux's
 * drivers/net/virtio_net.c drives it.
 *
 * Every frame in either direction is preceded by the 10-byte legacy struct virtio_net_hdr
 * (flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16): 12
 * bytes only with MRG_RXBUF or VERSION_1, neither of which is offered. With no CSUM/GSO
 * features the header carries nothing: TX ignores it, RX writes it as zeros
 * (VIRTIO_NET_HDR_GSO_NONE). Without MRG_RXBUF and GUEST_TSO the driver posts "small"
 * receive buffers (add_recvbuf_small): header plus 1518 bytes, one frame per buffer.
 *
 * Legacy device configuration: 0x00 mac[6], 0x06 u16 status (VIRTIO_NET_S_LINK_UP).
 */
import type { Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';
import {
  VirtioPciDevice,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  type VirtioPciOptions,
  type VirtioTransportState,
} from './virtio-pci.ts';
import type { SplitVirtqueue } from './virtqueue.ts';

export const VIRTIO_ID_NET = 1;

// Feature bits (virtio 1.0, 5.1.3).
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_STATUS = 16;

export const VIRTIO_NET_S_LINK_UP = 1;

/** sizeof(struct virtio_net_hdr), the legacy header without num_buffers. */
export const VIRTIO_NET_HDR_SIZE = 10;
export const VIRTIO_NET_RX_QUEUE = 0;
export const VIRTIO_NET_TX_QUEUE = 1;

/** Frames received while the guest has no buffers posted wait here; beyond it, the oldest is dropped. */
export const MAX_PENDING_RX_FRAMES = 256;
/** No offloads: a frame is at most an MTU-sized one, but a backend may hand over up to 64 KiB. */
export const MAX_FRAME_BYTES = 65535;

const QUEUE_SIZE = 256;
const CONFIG_SIZE = 8;
/** Shorter than an Ethernet header: nothing a backend should deliver or the guest should send. */
const MIN_FRAME_BYTES = 14;

export interface VirtioNetOptions extends VirtioPciOptions {
  /** The MAC address the device reports (VIRTIO_NET_F_MAC), as 6 bytes or "52:54:00:12:34:56". */
  mac: Uint8Array | string;
  /** A frame the guest transmitted, without the virtio header (the platform routes it to netSend). */
  send: (frame: Uint8Array) => void;
}

export interface VirtioNetState {
  transport: VirtioTransportState;
  /** The MAC in the device configuration (a legacy driver may rewrite it). */
  mac: Uint8Array;
  linkUp: boolean;
  /** Received frames waiting for the guest to post receive buffers, oldest first. */
  pendingRx: Uint8Array[];
}

export class VirtioNet extends VirtioPciDevice implements Persistent<VirtioNetState> {
  readonly stateName = 'virtio-net';
  readonly stateVersion = 1;

  /** Frames dropped: pending queue overflow, too big for the posted buffer, or malformed. */
  droppedFrames = 0;
  /** The last error the send callback threw (diagnostics; not state). */
  lastSendError: string | undefined;

  private readonly send: (frame: Uint8Array) => void;
  private mac: Uint8Array;
  private linkUp = true;
  private pendingRx: Uint8Array[] = [];

  constructor(options: VirtioNetOptions) {
    super({
      name: 'virtio-net',
      deviceType: VIRTIO_ID_NET,
      pciDeviceId: 0x1000,
      classCode: 0x020000, // Ethernet controller
      hostFeatures: (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS) | (1 << VIRTIO_F_ANY_LAYOUT)
        | (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX),
      queueSizes: [QUEUE_SIZE, QUEUE_SIZE],
      configSize: CONFIG_SIZE,
    }, options);
    this.send = options.send;
    this.mac = parseMac(options.mac);
  }

  /** The link state in the status field; a change raises the config interrupt (Linux re-reads status). */
  setLinkUp(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    this.configChanged();
  }

  /**
   * A frame from the network. Delivered at once into a posted receive buffer if the guest
   * has one (raising the interrupt), else held, oldest dropped beyond MAX_PENDING_RX_FRAMES.
   */
  receive(frame: Uint8Array): void {
    if (frame.length < MIN_FRAME_BYTES || frame.length > MAX_FRAME_BYTES) {
      this.droppedFrames++;
      return;
    }
    this.pendingRx.push(frame.slice());
    if (this.pendingRx.length > MAX_PENDING_RX_FRAMES) {
      this.pendingRx.shift();
      this.droppedFrames++;
    }
    this.deliverPending();
  }

  /** Move held frames into the guest's posted receive buffers (also run on the RX queue notify). */
  deliverPending(): void {
    const rx = this.queues[VIRTIO_NET_RX_QUEUE];
    // QEMU's virtio_net_can_receive: a ready RX ring and DRIVER_OK.
    if (this.pendingRx.length === 0 || !rx.ready || !this.driverOk || !this.canDma) return;
    this.guarded(() => this.fillReceiveBuffers(rx));
  }

  get pendingFrames(): number {
    return this.pendingRx.length;
  }

  saveState(): VirtioNetState {
    return {
      transport: this.saveTransport(),
      mac: this.mac.slice(),
      linkUp: this.linkUp,
      pendingRx: this.pendingRx.map((f) => f.slice()),
    };
  }

  loadState(state: VirtioNetState): void {
    const f = StateFields.of(this.stateName, state);
    const transport = this.checkTransport(f.object('transport'));
    const mac = f.bytes('mac', 6);
    const linkUp = f.bool('linkUp');
    const pending = (state as { pendingRx?: unknown }).pendingRx;
    if (!Array.isArray(pending) || pending.length > MAX_PENDING_RX_FRAMES) {
      throw new Error(`${this.stateName} state: pendingRx must be an array of at most ${MAX_PENDING_RX_FRAMES} frames`);
    }
    const pendingRx = pending.map((frame: unknown, i) => {
      if (!(frame instanceof Uint8Array) || frame.length < MIN_FRAME_BYTES || frame.length > MAX_FRAME_BYTES) {
        throw new Error(`${this.stateName} state: pendingRx[${i}] must be a Uint8Array of ${MIN_FRAME_BYTES} to ${MAX_FRAME_BYTES} bytes`);
      }
      return frame.slice();
    });
    this.applyTransport(transport);
    this.mac = mac;
    this.linkUp = linkUp;
    this.pendingRx = pendingRx;
  }

  protected deviceConfigByte(offset: number): number {
    if (offset < 6) return this.mac[offset];
    const status = this.linkUp ? VIRTIO_NET_S_LINK_UP : 0;
    return offset === 6 ? status & 0xff : status >>> 8;
  }

  protected override writeDeviceConfigByte(offset: number, value: number): void {
    // Legacy drivers without VIRTIO_NET_F_CTRL_MAC_ADDR set the MAC by writing the config
    // (virtnet_set_mac_address); status is read-only.
    if (offset < 6) this.mac[offset] = value;
  }

  protected queueNotified(queue: SplitVirtqueue): void {
    if (queue.index === VIRTIO_NET_TX_QUEUE) this.transmit(queue);
    else this.deliverPending();
  }

  protected override resetDevice(): void {
    // A reset driver starts over: frames held for its old rings are stale.
    this.pendingRx = [];
  }

  protected override driverReady(): void {
    this.deliverPending();
  }

  private transmit(tx: SplitVirtqueue): void {
    let completed = false;
    for (let chain = tx.pop(); chain; chain = tx.pop()) {
      const len = chain.readableBytes - VIRTIO_NET_HDR_SIZE;
      if (len >= MIN_FRAME_BYTES && len <= MAX_FRAME_BYTES) {
        this.transmitFrame(tx.gather(chain.readable, VIRTIO_NET_HDR_SIZE, len));
      } else {
        this.droppedFrames++;
      }
      // The device writes nothing into a TX chain.
      tx.push(chain.head, 0);
      completed = true;
    }
    tx.publishAvailEvent(this.hasFeature(VIRTIO_RING_F_EVENT_IDX));
    if (completed) this.usedBuffersReturned(tx);
  }

  /** A host network error loses the frame, as a wire would; it does not break the guest's NIC. */
  private transmitFrame(frame: Uint8Array): void {
    try {
      this.send(frame);
    } catch (e) {
      this.droppedFrames++;
      this.lastSendError = e instanceof Error ? e.message : String(e);
    }
  }

  private fillReceiveBuffers(rx: SplitVirtqueue): void {
    let completed = false;
    while (this.pendingRx.length > 0) {
      const chain = rx.peek();
      if (!chain) break;
      const frame = this.pendingRx.shift()!;
      const needed = VIRTIO_NET_HDR_SIZE + frame.length;
      if (chain.writableBytes < needed) {
        // Too big for the posted buffer (no MRG_RXBUF to spread it): the frame is lost,
        // the buffer stays for the next one.
        this.droppedFrames++;
        continue;
      }
      rx.advance();
      // A zeroed header: flags 0, VIRTIO_NET_HDR_GSO_NONE.
      rx.scatter(chain.writable, 0, new Uint8Array(VIRTIO_NET_HDR_SIZE));
      rx.scatter(chain.writable, VIRTIO_NET_HDR_SIZE, frame);
      rx.push(chain.head, needed);
      completed = true;
    }
    // With EVENT_IDX, ask for a kick when the driver posts past what we consumed, so a
    // frame that waits for buffers is delivered as soon as they come.
    rx.publishAvailEvent(this.hasFeature(VIRTIO_RING_F_EVENT_IDX));
    if (completed) this.usedBuffersReturned(rx);
  }
}

function parseMac(mac: Uint8Array | string): Uint8Array {
  if (typeof mac !== 'string') {
    if (mac.length !== 6) throw new Error(`virtio-net: a MAC address has 6 bytes, got ${mac.length}`);
    return mac.slice();
  }
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`virtio-net: "${mac}" is not a MAC address like 52:54:00:12:34:56`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}
