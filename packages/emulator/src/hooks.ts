/**
 * The emulator's public hooks: the points Kemari's event-tap sits on, plus the console.
 * They carry plain data and are the one sanctioned path from the emulator up to higher
 * layers; a listener never reaches back into the machine through them.
 */
import type { AccessSize } from './device.ts';

export interface MachineHookMap {
  ioportWrite: (port: number, size: AccessSize, value: number) => void;
  mmioWrite: (addr: number, size: AccessSize, value: number) => void;
  /** An Ethernet frame the guest's NIC transmits. */
  netSend: (frame: Uint8Array) => void;
  /** A block write the guest's disk controller issues: byte offset and data. */
  blockWrite: (offset: number, data: Uint8Array) => void;
  blockFlush: () => void;
  /** Bytes the guest sends on a serial port (index 0 = COM1). */
  serialOut: (port: number, bytes: Uint8Array) => void;
}

export type HookName = keyof MachineHookMap;

export class MachineHooks {
  private readonly listeners: { [K in HookName]: MachineHookMap[K][] } = {
    ioportWrite: [], mmioWrite: [], netSend: [], blockWrite: [], blockFlush: [], serialOut: [],
  };

  on<K extends HookName>(name: K, fn: MachineHookMap[K]): () => void {
    const list = this.listeners[name] as MachineHookMap[K][];
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  has(name: HookName): boolean { return this.listeners[name].length > 0; }

  emit<K extends HookName>(name: K, ...args: Parameters<MachineHookMap[K]>): void {
    for (const fn of this.listeners[name] as ((...a: Parameters<MachineHookMap[K]>) => void)[]) fn(...args);
  }
}
