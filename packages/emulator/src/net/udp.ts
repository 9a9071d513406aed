/**
 * Ethernet over UDP datagrams on loopback: one frame per datagram, like QEMU's
 * `-netdev dgram`. Two ftx86 processes (or a test harness) exchange frames this way, and
 * the TAP bridge (tap.ts) is a socat process speaking it, so "the guest's network position"
 * is a UDP port that a failover secondary can bind once the primary is gone.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { NetBackend } from './backend.ts';
import { MAX_FRAME } from './backend.ts';

export interface UdpBackendOptions {
  localPort: number;
  remoteHost: string;
  remotePort: number;
  /** Local address to bind; loopback unless told otherwise. */
  localHost?: string;
}

export class UdpNetBackend implements NetBackend {
  private readonly sock: Socket;
  private receiver: ((frame: Uint8Array) => void) | undefined;
  private closed = false;
  /** Resolves once the socket is bound (rejects with a clear error if the port is taken). */
  readonly ready: Promise<void>;

  constructor(private readonly opts: UdpBackendOptions) {
    this.sock = createSocket({ type: 'udp4', reuseAddr: false });
    this.ready = new Promise((resolve, reject) => {
      this.sock.once('error', (e) => reject(new Error(`net udp: cannot bind ${opts.localHost ?? '127.0.0.1'}:${opts.localPort}: ${e.message}`)));
      this.sock.bind(opts.localPort, opts.localHost ?? '127.0.0.1', () => {
        this.sock.removeAllListeners('error');
        this.sock.on('error', () => { /* ICMP port unreachable and the like: frames are lossy */ });
        resolve();
      });
    });
    this.sock.on('message', (msg) => {
      if (msg.length < 14 || msg.length > MAX_FRAME) return; // not an Ethernet frame
      this.receiver?.(new Uint8Array(msg));
    });
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.sock.send(frame, this.opts.remotePort, this.opts.remoteHost);
  }

  onFrame(fn: (frame: Uint8Array) => void): void { this.receiver = fn; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}

/** Parse `LPORT:RHOST:RPORT` (the part after `udp:`). */
export function parseUdpSpec(spec: string): UdpBackendOptions {
  const m = /^(\d+):([^:]+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`net udp: expected LPORT:RHOST:RPORT, got "${spec}"`);
  const localPort = Number(m[1]);
  const remotePort = Number(m[3]);
  for (const p of [localPort, remotePort]) if (p < 1 || p > 65535) throw new Error(`net udp: port ${p} out of range`);
  return { localPort, remoteHost: m[2], remotePort };
}
