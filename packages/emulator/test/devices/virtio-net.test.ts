import { beforeEach, describe, expect, it } from 'vitest';
import { MAX_PENDING_RX_FRAMES, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VirtioNet } from '../../src/devices/virtio-net.ts';
import { DriverVring, IO_WINDOW, TestPlatform, VP, irqFor, linuxVirtioBringUp } from './pci-platform.ts';
import { expectRejected, expectRoundTrip } from './helpers.ts';

const SLOT = 2;
const IRQ = irqFor(SLOT, 1);
const RX_RING = 0x10000;
const TX_RING = 0x14000;
const TX_HDR = 0x50000;
const TX_DATA = 0x51000;
const RX_BUFS = 0x60000;
/** add_recvbuf_small: vi->hdr_len + GOOD_PACKET_LEN (ETH_HLEN + VLAN_HLEN + ETH_DATA_LEN). */
const RX_BUF_LEN = 10 + 1518;
const MAC = '52:54:00:12:34:56';

/** An Ethernet frame: broadcast destination, the given source, ethertype 0x88b5, a tagged payload. */
function frame(tag: number, payloadLen = 46): Uint8Array {
  const f = new Uint8Array(14 + payloadLen);
  f.fill(0xff, 0, 6);
  f.set([0x52, 0x54, 0x00, 0xab, 0xcd, tag & 0xff], 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < f.length; i++) f[i] = (tag + i) & 0xff;
  return f;
}

describe('virtio-net', () => {
  let p: TestPlatform;
  let net: VirtioNet;
  let sent: Uint8Array[];
  let io: number;
  let rx: DriverVring;
  let tx: DriverVring;

  beforeEach(() => {
    p = new TestPlatform();
    sent = [];
    net = new VirtioNet({ mem: p.mem, irq: p.pci.intxLine(SLOT, 0), mac: MAC, send: (f) => sent.push(f) });
    p.pci.plug(SLOT, 0, net);
    p.pci.assignResources({ ...IO_WINDOW, irqFor });
    io = p.ioBar0(SLOT);
  });

  function bringUp(): void {
    [rx, tx] = linuxVirtioBringUp(p, io, [RX_RING, TX_RING], 0xffffffff);
  }

  /** try_fill_recv: post `n` small receive buffers and kick the RX queue. */
  function postRxBuffers(n: number, len = RX_BUF_LEN): void {
    for (let i = 0; i < n; i++) {
      p.cpu.ram.fill(0xee, RX_BUFS + i * 0x800, RX_BUFS + i * 0x800 + len);
      rx.add([], [{ addr: RX_BUFS + i * 0x800, len }]);
    }
    p.outw(io + VP.QUEUE_NOTIFY, 0);
  }

  function rxBuffer(id: number, len: number): Uint8Array {
    return p.bytes(RX_BUFS + id * 0x800, len);
  }

  it('offers MAC and STATUS but no checksum, GSO or mergeable buffers, and shows the MAC and link up', () => {
    const host = p.inl(io + VP.HOST_FEATURES);
    expect((host >>> VIRTIO_NET_F_MAC) & 1).toBe(1);
    expect((host >>> VIRTIO_NET_F_STATUS) & 1).toBe(1);
    // CSUM, GUEST_CSUM, GSO, GUEST_TSO4/6, GUEST_ECN, GUEST_UFO, HOST_TSO4/6, HOST_ECN, HOST_UFO, MRG_RXBUF, CTRL_VQ, MQ.
    for (const bit of [0, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 22]) expect((host >>> bit) & 1).toBe(0);
    const mac = Array.from({ length: 6 }, (_, i) => p.inb(io + VP.CONFIG + i));
    expect(mac).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(p.inw(io + VP.CONFIG + 6)).toBe(1);
    bringUp();
    p.outw(io + VP.QUEUE_SEL, 2);
    expect(p.inw(io + VP.QUEUE_NUM)).toBe(0);
  });

  it('transmits a frame with the header in its own descriptor: send gets the frame without the header', () => {
    bringUp();
    const f = frame(1);
    p.fill(TX_HDR, new Uint8Array(10));
    p.fill(TX_DATA, f);
    tx.add([{ addr: TX_HDR, len: 10 }, { addr: TX_DATA, len: f.length }], []);
    p.outw(io + VP.QUEUE_NOTIFY, 1);
    expect(sent).toEqual([f]);
    expect(tx.takeUsed()).toEqual([{ id: 0, len: 0 }]);
    expect(p.irqLevel(IRQ)).toBe(true);
    expect(p.inb(io + VP.ISR)).toBe(1);
    expect(p.irqLevel(IRQ)).toBe(false);
  });

  it('transmits frames with the header pushed in front of the data (ANY_LAYOUT), several per kick', () => {
    bringUp();
    const frames = [frame(2), frame(3, 1486), frame(4)];
    frames.forEach((f, i) => {
      const at = TX_DATA + i * 0x1000;
      p.fill(at, new Uint8Array(10));
      p.fill(at + 10, f);
      tx.add([{ addr: at, len: 10 + f.length }], []);
    });
    p.outw(io + VP.QUEUE_NOTIFY, 1);
    expect(sent).toEqual(frames);
    expect(tx.takeUsed().length).toBe(3);
  });

  it('receives a frame into a posted buffer: zeroed header, the bytes, the used ring and INTx', () => {
    bringUp();
    postRxBuffers(4);
    expect(p.irqLevel(IRQ)).toBe(false);
    const f = frame(5);
    net.receive(f);
    expect(rx.takeUsed()).toEqual([{ id: 0, len: 10 + f.length }]);
    expect(rxBuffer(0, 10)).toEqual(new Uint8Array(10));
    expect(rxBuffer(0, 10 + f.length).subarray(10)).toEqual(f);
    expect(rxBuffer(0, 10 + f.length + 1)[10 + f.length]).toBe(0xee);
    expect(p.irqLevel(IRQ)).toBe(true);
    expect(p.inb(io + VP.ISR)).toBe(1);
    expect(net.pendingFrames).toBe(0);
  });

  it('holds frames that arrive with no buffer posted and delivers them when the driver posts and kicks', () => {
    bringUp();
    const a = frame(6);
    const b = frame(7);
    net.receive(a);
    net.receive(b);
    expect(net.pendingFrames).toBe(2);
    expect(p.irqLevel(IRQ)).toBe(false);
    // With EVENT_IDX the device asked to be kicked at the very next buffer.
    expect(rx.availEvent).toBe(0);
    postRxBuffers(1);
    expect(net.pendingFrames).toBe(1);
    expect(rx.takeUsed()).toEqual([{ id: 0, len: 10 + a.length }]);
    expect(rxBuffer(0, 10 + a.length).subarray(10)).toEqual(a);
    expect(rx.availEvent).toBe(1);
    // A buffer posted without a kick is still used by deliverPending.
    p.cpu.ram.fill(0, RX_BUFS + 0x800, RX_BUFS + 0x800 + RX_BUF_LEN);
    rx.add([], [{ addr: RX_BUFS + 0x800, len: RX_BUF_LEN }]);
    net.deliverPending();
    expect(net.pendingFrames).toBe(0);
    expect(rxBuffer(1, 10 + b.length).subarray(10)).toEqual(b);
  });

  it('holds received frames until DRIVER_OK, and drops what it held at a reset', () => {
    net.receive(frame(99));
    expect(net.pendingFrames).toBe(1);
    p.outb(io + VP.STATUS, 0);
    expect(net.pendingFrames).toBe(0);
    p.outb(io + VP.STATUS, 3);
    net.receive(frame(8));
    p.outl(io + VP.GUEST_FEATURES, 1 << VIRTIO_NET_F_MAC);
    p.outw(io + VP.QUEUE_SEL, 0);
    rx = new DriverVring(p, RX_RING, p.inw(io + VP.QUEUE_NUM));
    p.outl(io + VP.QUEUE_PFN, RX_RING >>> 12);
    net.receive(frame(9));
    postRxBuffers(2);
    expect(net.pendingFrames).toBe(2);
    p.outb(io + VP.STATUS, 7);
    expect(net.pendingFrames).toBe(0);
    expect(rx.takeUsed().map((u) => u.id)).toEqual([0, 1]);
    expect(rxBuffer(0, 24)[10 + 11]).toBe(8);
    expect(rxBuffer(1, 24)[10 + 11]).toBe(9);
  });

  it('keeps at most 256 pending frames, dropping the oldest', () => {
    bringUp();
    for (let i = 0; i < MAX_PENDING_RX_FRAMES + 44; i++) net.receive(frame(i));
    expect(net.pendingFrames).toBe(MAX_PENDING_RX_FRAMES);
    expect(net.droppedFrames).toBe(44);
    const pending = net.saveState().pendingRx;
    expect(pending[0]).toEqual(frame(44));
    expect(pending[MAX_PENDING_RX_FRAMES - 1]).toEqual(frame(MAX_PENDING_RX_FRAMES + 43));
  });

  it('drops a frame too big for the posted buffer and keeps the buffer for the next one', () => {
    bringUp();
    postRxBuffers(1, 10 + 100);
    net.receive(frame(10, 200));
    expect(net.droppedFrames).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
    const small = frame(11, 60);
    net.receive(small);
    expect(rx.takeUsed()).toEqual([{ id: 0, len: 10 + small.length }]);
  });

  it('raises the configuration interrupt when the link goes down, and reports it in status', () => {
    bringUp();
    net.setLinkUp(false);
    expect(p.irqLevel(IRQ)).toBe(true);
    expect(p.inb(io + VP.ISR)).toBe(2);
    expect(p.inw(io + VP.CONFIG + 6)).toBe(0);
    net.setLinkUp(true);
    expect(p.inb(io + VP.ISR)).toBe(2);
    expect(p.inw(io + VP.CONFIG + 6)).toBe(1);
  });

  it('takes a new MAC written into the config by a legacy driver (virtnet_set_mac_address)', () => {
    bringUp();
    [0x02, 0, 0, 0, 0, 0x99].forEach((b, i) => p.outb(io + VP.CONFIG + i, b));
    expect(net.saveState().mac).toEqual(Uint8Array.of(0x02, 0, 0, 0, 0, 0x99));
    p.outb(io + VP.CONFIG + 6, 0);
    expect(p.inw(io + VP.CONFIG + 6)).toBe(1);
  });

  it('survives a malformed TX ring: no throw, no send, DEVICE_NEEDS_RESET, and receive stays safe', () => {
    bringUp();
    tx.writeDesc(tx.desc, 0, TX_HDR, 10, 1, 0); // a descriptor that chains to itself
    tx.publish(0);
    expect(() => p.outw(io + VP.QUEUE_NOTIFY, 1)).not.toThrow();
    expect(sent).toEqual([]);
    expect(p.inb(io + VP.STATUS) & 0x40).toBe(0x40);
    expect(net.lastError).toMatch(/loops/);
    postRxBuffers(1);
    expect(() => net.receive(frame(12))).not.toThrow();
    expect(rx.takeUsed()).toEqual([]);
  });

  it('survives an RX buffer outside RAM', () => {
    bringUp();
    rx.add([], [{ addr: 0xfffff00, len: RX_BUF_LEN }]);
    p.outw(io + VP.QUEUE_NOTIFY, 0);
    expect(() => net.receive(frame(13))).not.toThrow();
    expect(p.inb(io + VP.STATUS) & 0x40).toBe(0x40);
    expect(net.lastError).toMatch(/outside RAM/);
  });

  it('marks the pages its RX DMA writes dirty', () => {
    bringUp();
    postRxBuffers(1);
    p.cpu.exports.dirty_reset();
    net.receive(frame(14));
    const dirty = Array.from(p.cpu.state.dirtyPages()).sort((a, b) => a - b);
    expect(dirty).toEqual([rx.used >>> 12, RX_BUFS >>> 12].sort((a, b) => a - b));
  });

  it('round-trips its state, pending frames included', () => {
    bringUp();
    net.receive(frame(15));
    expectRoundTrip(net, () => {
      net.receive(frame(16));
      postRxBuffers(1);
      net.setLinkUp(false);
    });
    expect(net.pendingFrames).toBe(1);
    postRxBuffers(1);
    expect(rxBuffer(0, 24)[10 + 11]).toBe(15);
  });

  it('refuses a malformed state and applies nothing', () => {
    bringUp();
    net.receive(frame(17));
    const good = net.saveState();
    expectRejected(net, { ...good, pendingRx: 'x' }, /pendingRx must be an array/);
    expectRejected(net, { ...good, pendingRx: [new Uint8Array(3)] }, /pendingRx\[0\]/);
    expectRejected(net, { ...good, pendingRx: new Array(257).fill(frame(1)) }, /at most 256/);
    expectRejected(net, { ...good, mac: new Uint8Array(5) }, /mac/);
    expectRejected(net, { ...good, linkUp: 1 }, /linkUp/);
    expectRejected(net, { ...good, transport: { ...good.transport, queues: good.transport.queues.slice(1) } }, /queues/);
  });
});
