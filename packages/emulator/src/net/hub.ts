/**
 * An in-process Ethernet hub for tests: every frame one port sends reaches every other
 * port, asynchronously (as a real link would), in send order.
 */
import type { NetBackend } from './backend.ts';

export class NetHub {
  private readonly ports = new Set<HubPort>();
  connect(): NetBackend {
    const p = new HubPort(this);
    this.ports.add(p);
    return p;
  }
  /** @internal */
  forward(from: HubPort, frame: Uint8Array): void {
    for (const p of this.ports) if (p !== from) p.deliver(frame);
  }
  /** @internal */
  remove(p: HubPort): void { this.ports.delete(p); }
}

class HubPort implements NetBackend {
  private receiver: ((frame: Uint8Array) => void) | undefined;
  constructor(private readonly hub: NetHub) {}
  send(frame: Uint8Array): void {
    const copy = frame.slice();
    queueMicrotask(() => this.hub.forward(this, copy));
  }
  deliver(frame: Uint8Array): void { this.receiver?.(frame.slice()); }
  onFrame(fn: (frame: Uint8Array) => void): void { this.receiver = fn; }
  close(): void { this.hub.remove(this); }
}
