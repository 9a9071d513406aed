/**
 * The seam between the codec and a running machine: capture a Cpu's and its devices'
 * state as SnapshotInput, and describe a Cpu as a SnapshotTarget. The codec itself takes
 * plain data; only this file knows the Cpu class.
 */
import type { Cpu } from '../cpu.ts';
import type { SnapshotInput } from './codec.ts';
import { crc32c } from './crc32c.ts';
import type { PlainValue } from './value.ts';
import { deviceEntryName, type DeviceEntry, type DiskTarget, type SnapshotTarget } from './apply.ts';

export interface MachineParts {
  cpu: Cpu;
  /** In load order (interrupt controllers last). */
  devices: readonly DeviceEntry[];
  disks?: readonly DiskTarget[];
}

function coreGlobal(cpu: Cpu, name: string): number {
  return (cpu.exports[name] as WebAssembly.Global).value as number;
}

const layoutIds = new WeakMap<object, number>();

/**
 * An id of the core's memory layout: a CRC-32C over the names and values of every global
 * the core exports (assembly/layout.ts exports each offset). Registers move between core
 * builds (INHIBIT_UNTIL did), and CPU state bytes loaded into another layout would be
 * silently wrong, so a restore compares ids. Never 0 (0 is "not recorded").
 */
export function cpuLayoutId(cpu: Cpu): number {
  const cached = layoutIds.get(cpu.exports);
  if (cached !== undefined) return cached;
  const entries = Object.entries(cpu.exports)
    .filter(([, v]) => v instanceof WebAssembly.Global)
    .map(([name, v]) => `${name}=${String((v as WebAssembly.Global).value)};`)
    .sort();
  const id = crc32c(new TextEncoder().encode(entries.join(''))) || 1;
  layoutIds.set(cpu.exports, id);
  return id;
}

/**
 * CPU state fields that are bookkeeping of the core's caches and dirty tracking, not guest
 * state: TLB_VALID_COUNT counts TLB fills (the TLB itself is outside CPU_STATE) and
 * DIRTY_COUNT the pages dirtied this epoch. A restored CPU has both reset (state_loaded,
 * dirty_clear_all), so state digests leave them out. Offsets are within the CPU state.
 */
export function cpuCacheFields(cpu: Cpu): { offset: number; length: number }[] {
  return [
    { offset: coreGlobal(cpu, 'TLB_VALID_COUNT'), length: 4 },
    { offset: coreGlobal(cpu, 'DIRTY_COUNT'), length: 4 },
  ];
}

/**
 * The machine's state as codec input. 'full' stores all of RAM; 'dirty' stores the pages
 * written since the last cpu.exports.dirty_reset() (an FT checkpoint or a migration round).
 * RAM is referenced, not copied: encode before the guest runs again.
 */
export function captureState(parts: MachineParts, ram: 'full' | 'dirty', meta?: Record<string, unknown>): SnapshotInput {
  const { cpu } = parts;
  return {
    meta,
    cpu: { layoutId: cpuLayoutId(cpu), bytes: cpu.state.bytes() },
    devices: captureDevices(parts.devices),
    ram: ram === 'full'
      ? { kind: 'full', ram: cpu.ram }
      : { kind: 'pages', ram: cpu.ram, pageNumbers: cpu.state.dirtyPages() },
  };
}

/** Each device's state as a snapshot section (name, version, state), in load order. */
export function captureDevices(entries: readonly DeviceEntry[]): { name: string; version: number; state: PlainValue }[] {
  return entries.map((d) => {
    const device = 'device' in d ? d.device : d;
    return { name: deviceEntryName(d), version: device.stateVersion, state: device.saveState() as PlainValue };
  });
}

/** A Cpu with its devices and disks as the target of applyState. */
export function machineTarget(parts: MachineParts): SnapshotTarget {
  const { cpu } = parts;
  const stateSize = coreGlobal(cpu, 'CPU_STATE_SIZE');
  const ramSizeOffset = coreGlobal(cpu, 'RAM_SIZE');
  return {
    cpu: {
      stateSize,
      layoutId: cpuLayoutId(cpu),
      check(bytes) {
        // The core sizes its RAM bounds from this word: a state from a machine with other
        // RAM would let the guest address past the end of this one's.
        const ramSize = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(ramSizeOffset, true);
        return ramSize === cpu.ramBytes ? undefined : `it is for ${ramSize} bytes of RAM, this CPU has ${cpu.ramBytes}`;
      },
      load: (bytes) => cpu.state.loadBytes(bytes),
    },
    ram: cpu.ram,
    devices: parts.devices,
    disks: parts.disks,
    afterApply() {
      // The loaded bytes carry the saving machine's DIRTY_COUNT, which indexes this
      // machine's dirty list: start a clean epoch (the core's own rule for restores).
      cpu.exports.dirty_clear_all();
    },
  };
}
