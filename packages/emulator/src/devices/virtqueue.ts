/**
 * The split virtqueue as a device walks it in guest memory (virtio 1.0 spec 2.4, legacy
 * layout of 2.4.2 with the 4096-byte alignment of the legacy PCI transport 4.1.5.1):
 *
 *   desc  = pfn * 4096            16 bytes per entry: addr u64, len u32, flags u16, next u16
 *   avail = desc + 16 * size      flags u16, idx u16, ring[size] u16, used_event u16
 *   used  = align(avail + 2 * (3 + size), 4096)
 *                                 flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16
 *
 * This is Linux's vring_init/vring_size (include/uapi/linux/virtio_ring.h). Everything the
 * guest wrote is untrusted: each access is bounds-checked against RAM, a chain is at most
 * the queue size long (a loop cannot hang us), and anything malformed throws a
 * VirtqueueError, which the transport turns into DEVICE_NEEDS_RESET.
 */
import type { GuestMemory } from '../device.ts';
import type { StateFields } from './state-fields.ts';

export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const VRING_DESC_F_INDIRECT = 4;
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** VIRTIO_PCI_VRING_ALIGN (include/uapi/linux/virtio_pci.h). */
export const VRING_ALIGN = 4096;
/** VIRTIO_PCI_QUEUE_ADDR_SHIFT: QUEUE_PFN holds the ring address in 4 KiB pages. */
export const VRING_PFN_SHIFT = 12;
/** The largest indirect table we follow (QEMU's VIRTQUEUE_MAX_SIZE). */
export const MAX_INDIRECT_DESCRIPTORS = 1024;

const DESC_SIZE = 16;

/** A guest ring or buffer the device cannot use: the queue is broken until reset. */
export class VirtqueueError extends Error {}

/** One guest-physical buffer of a chain. */
export interface BufferSegment {
  addr: number;
  len: number;
}

/** A popped descriptor chain: device-readable buffers first, then device-writable ones. */
export interface DescriptorChain {
  head: number;
  readable: BufferSegment[];
  writable: BufferSegment[];
  readableBytes: number;
  writableBytes: number;
}

export interface VirtqueueState {
  /** QUEUE_PFN: the ring's guest-physical address >> 12; 0 = not set up. */
  pfn: number;
  /** The next avail ring entry the device will consume (free-running u16). */
  lastAvailIdx: number;
  /** The device's used.idx shadow (free-running u16). */
  usedIdx: number;
  /** used.idx when the device last decided whether to interrupt (VIRTIO_RING_F_EVENT_IDX). */
  signalledUsed: number;
  /** False after reset or queue setup: the first used-buffer notification is always sent. */
  signalledUsedValid: boolean;
}

export class SplitVirtqueue {
  pfn = 0;
  lastAvailIdx = 0;
  usedIdx = 0;
  signalledUsed = 0;
  signalledUsedValid = false;

  /** @param size the queue size the device offers in QUEUE_NUM (legacy: fixed, a power of two). */
  constructor(readonly index: number, readonly size: number, private readonly mem: GuestMemory) {}

  get ready(): boolean { return this.pfn !== 0; }
  get descAddr(): number { return this.pfn * VRING_ALIGN; }
  get availAddr(): number { return this.descAddr + DESC_SIZE * this.size; }
  get usedAddr(): number {
    const availEnd = this.availAddr + 2 * (3 + this.size);
    return Math.ceil(availEnd / VRING_ALIGN) * VRING_ALIGN;
  }

  /** The driver wrote QUEUE_PFN: a freshly allocated (zeroed) ring, or 0 to tear it down. */
  setPfn(pfn: number): void {
    this.reset();
    this.pfn = pfn >>> 0;
  }

  reset(): void {
    this.pfn = 0;
    this.lastAvailIdx = 0;
    this.usedIdx = 0;
    this.signalledUsed = 0;
    this.signalledUsedValid = false;
  }

  /** How many chains the driver has made available and the device not yet consumed. */
  availableCount(): number {
    const idx = this.read16(this.availAddr + 2);
    const n = (idx - this.lastAvailIdx) & 0xffff;
    // The driver can be at most a full ring ahead (virtio 1.0, 2.4.6).
    if (n > this.size) throw new VirtqueueError(`queue ${this.index}: avail.idx ${idx} is ${n} ahead of the device (size ${this.size})`);
    return n;
  }

  /** The next available chain, without consuming it (for RX: does the frame fit?). */
  peek(): DescriptorChain | undefined {
    if (this.availableCount() === 0) return undefined;
    const head = this.read16(this.availAddr + 4 + 2 * (this.lastAvailIdx % this.size));
    return this.walk(head);
  }

  /** The next available chain, consumed. */
  pop(): DescriptorChain | undefined {
    const chain = this.peek();
    if (chain) this.advance();
    return chain;
  }

  /** Consume the chain peek() returned. */
  advance(): void {
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
  }

  /** Return a chain to the driver with `len` bytes written into its writable buffers. */
  push(head: number, len: number): void {
    const used = this.usedAddr;
    const elem = used + 4 + 8 * (this.usedIdx % this.size);
    this.write32(elem, head);
    this.write32(elem + 4, len);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.write16(used + 2, this.usedIdx);
  }

  /**
   * After pushing used entries: should the driver be interrupted? With EVENT_IDX, only if
   * used.idx moved past used_event since the last decision (vring_need_event, as in QEMU's
   * virtio_should_notify); otherwise unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
   */
  shouldNotify(eventIdx: boolean): boolean {
    if (!eventIdx) return (this.read16(this.availAddr) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
    const old = this.signalledUsed;
    const valid = this.signalledUsedValid;
    this.signalledUsed = this.usedIdx;
    this.signalledUsedValid = true;
    if (!valid) return true;
    const usedEvent = this.read16(this.availAddr + 4 + 2 * this.size);
    return ((this.usedIdx - usedEvent - 1) & 0xffff) < ((this.usedIdx - old) & 0xffff);
  }

  /**
   * With EVENT_IDX: ask the driver to notify as soon as it makes a chain available beyond
   * what the device has consumed (Linux's virtqueue_kick_prepare reads this avail_event).
   */
  publishAvailEvent(eventIdx: boolean): void {
    if (eventIdx) this.write16(this.usedAddr + 4 + 8 * this.size, this.lastAvailIdx);
  }

  /** Copy a chain's device-readable bytes [skip, skip + len) out of guest memory. */
  gather(segments: readonly BufferSegment[], skip: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    for (const s of segments) {
      if (at >= len) break;
      if (skip >= s.len) { skip -= s.len; continue; }
      const n = Math.min(s.len - skip, len - at);
      out.set(this.mem.view(s.addr + skip, n), at);
      at += n;
      skip = 0;
    }
    return out;
  }

  /** Copy `data` into a chain's device-writable buffers from byte `skip` on (DMA: marks dirty). */
  scatter(segments: readonly BufferSegment[], skip: number, data: Uint8Array): void {
    let at = 0;
    for (const s of segments) {
      if (at >= data.length) break;
      if (skip >= s.len) { skip -= s.len; continue; }
      const n = Math.min(s.len - skip, data.length - at);
      this.mem.write(s.addr + skip, data.subarray(at, at + n));
      at += n;
      skip = 0;
    }
  }

  save(): VirtqueueState {
    return {
      pfn: this.pfn,
      lastAvailIdx: this.lastAvailIdx,
      usedIdx: this.usedIdx,
      signalledUsed: this.signalledUsed,
      signalledUsedValid: this.signalledUsedValid,
    };
  }

  static check(f: StateFields): VirtqueueState {
    return {
      pfn: f.int('pfn', 0, 0xffffffff),
      lastAvailIdx: f.int('lastAvailIdx', 0, 0xffff),
      usedIdx: f.int('usedIdx', 0, 0xffff),
      signalledUsed: f.int('signalledUsed', 0, 0xffff),
      signalledUsedValid: f.bool('signalledUsedValid'),
    };
  }

  load(s: VirtqueueState): void {
    this.pfn = s.pfn;
    this.lastAvailIdx = s.lastAvailIdx;
    this.usedIdx = s.usedIdx;
    this.signalledUsed = s.signalledUsed;
    this.signalledUsedValid = s.signalledUsedValid;
  }

  /**
   * Follow the chain from `head` (virtio 1.0, 2.4.5). A direct chain visits at most `size`
   * descriptors and an indirect table at most its own length, so a loop ends in an error.
   */
  private walk(head: number): DescriptorChain {
    if (head >= this.size) throw new VirtqueueError(`queue ${this.index}: head ${head} out of range`);
    const chain: DescriptorChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let table = this.descAddr;
    let tableSize = this.size;
    let indirect = false;
    let i = head;
    let steps = 0;
    let seenWritable = false;
    for (;;) {
      if (++steps > tableSize) throw new VirtqueueError(`queue ${this.index}: descriptor chain from ${head} loops`);
      const d = this.view(table + DESC_SIZE * i, DESC_SIZE);
      const addr = (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
      const addrHigh = (d[4] | (d[5] << 8) | (d[6] << 16) | (d[7] << 24)) >>> 0;
      const len = (d[8] | (d[9] << 8) | (d[10] << 16) | (d[11] << 24)) >>> 0;
      const flags = d[12] | (d[13] << 8);
      const next = d[14] | (d[15] << 8);
      if (addrHigh !== 0) throw new VirtqueueError(`queue ${this.index}: buffer above 4 GiB`);
      this.checkRange(addr, len);
      if (flags & VRING_DESC_F_INDIRECT) {
        // 2.4.5.3.1: no nested tables, and INDIRECT excludes NEXT.
        if (indirect) throw new VirtqueueError(`queue ${this.index}: nested indirect table`);
        if (flags & VRING_DESC_F_NEXT) throw new VirtqueueError(`queue ${this.index}: indirect descriptor with NEXT`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_DESCRIPTORS) {
          throw new VirtqueueError(`queue ${this.index}: indirect table of ${len} bytes`);
        }
        indirect = true;
        table = addr;
        tableSize = len / DESC_SIZE;
        i = 0;
        steps = 0;
        continue;
      }
      if (flags & VRING_DESC_F_WRITE) {
        seenWritable = true;
        if (len > 0) chain.writable.push({ addr, len });
        chain.writableBytes += len;
      } else {
        // 2.4.4.2: device-readable buffers come before device-writable ones.
        if (seenWritable) {
          throw new VirtqueueError(`queue ${this.index}: readable buffer after a writable one`);
        }
        if (len > 0) chain.readable.push({ addr, len });
        chain.readableBytes += len;
      }
      if (!(flags & VRING_DESC_F_NEXT)) return chain;
      if (next >= tableSize) throw new VirtqueueError(`queue ${this.index}: next ${next} out of range`);
      i = next;
    }
  }

  private checkRange(addr: number, len: number): void {
    if (!(addr >= 0 && addr + len <= this.mem.size)) {
      throw new VirtqueueError(`queue ${this.index}: guest address 0x${addr.toString(16)}+${len} outside RAM`);
    }
  }

  private view(addr: number, len: number): Uint8Array {
    this.checkRange(addr, len);
    return this.mem.view(addr, len);
  }

  private read16(addr: number): number {
    this.checkRange(addr, 2);
    return this.mem.read16(addr);
  }

  private write16(addr: number, v: number): void {
    this.checkRange(addr, 2);
    this.mem.write16(addr, v);
  }

  private write32(addr: number, v: number): void {
    this.checkRange(addr, 4);
    this.mem.write32(addr, v);
  }
}
