/**
 * Linux TAP through a socat bridge: socat owns the TAP device and relays each frame as one
 * UDP datagram to and from our UDP backend on loopback.
 *
 * Why socat rather than a native addon: no compiled code in the project, and the bridge
 * outlives the emulator process. For fault tolerance that matters: the guest's network
 * position is the bridge's UDP peer address, so after the primary dies a secondary binds the
 * same UDP port and the TAP attachment carries on, with no device to re-create.
 * socat: `TUN,tun-type=tap,tun-name=NAME,iff-up,iff-no-pi` <-> `UDP-DATAGRAM`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { NetBackend } from './backend.ts';
import { UdpNetBackend } from './udp.ts';

export interface TapBridge {
  process: ChildProcess;
  /** The UDP port the emulator binds (socat sends the TAP's frames here). */
  emulatorPort: number;
  /** The UDP port socat binds (the emulator sends frames here). */
  bridgePort: number;
  stop(): void;
}

/** Start `socat` bridging TAP device `name` to UDP ports on loopback. */
export function startTapBridge(name: string, emulatorPort: number, bridgePort: number): TapBridge {
  if (!/^[\w.-]{1,15}$/.test(name)) throw new Error(`net tap: invalid interface name "${name}"`);
  const child = spawn('socat', [
    `TUN,tun-type=tap,tun-name=${name},iff-up,iff-no-pi`,
    `UDP-DATAGRAM:127.0.0.1:${emulatorPort},bind=127.0.0.1:${bridgePort}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.on('error', () => { /* reported by the caller through exit */ });
  return {
    process: child,
    emulatorPort,
    bridgePort,
    stop: () => { child.kill('SIGTERM'); },
  };
}

/** A NetBackend on a TAP device: our UDP endpoint plus, if we own it, the socat bridge. */
export class TapNetBackend implements NetBackend {
  private readonly udp: UdpNetBackend;
  constructor(readonly bridge: TapBridge | undefined, emulatorPort: number, bridgePort: number) {
    this.udp = new UdpNetBackend({ localPort: emulatorPort, remoteHost: '127.0.0.1', remotePort: bridgePort });
  }
  get ready(): Promise<void> { return this.udp.ready; }
  send(frame: Uint8Array): void { this.udp.send(frame); }
  onFrame(fn: (frame: Uint8Array) => void): void { this.udp.onFrame(fn); }
  close(): void {
    this.udp.close();
    this.bridge?.stop();
  }
}
