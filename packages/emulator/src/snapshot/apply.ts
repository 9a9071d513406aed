/**
 * Applying a decoded VmState to a machine, all or nothing (DESIGN.md, Snapshot: "never
 * half-applied").
 *
 * Phase 1 checks every section against the target and writes nothing: the CPU state's size,
 * the RAM size, each device by name and chip, each device's version (running migrations on
 * copies), each disk's geometry. Phase 2 writes: device states first, because a device's
 * loadState is the one step that can still refuse (its own field checks); on a refusal
 * every device is put back from the state saved just before, so the machine is as it was.
 * Then the CPU bytes, RAM and disk blocks, whose sizes and bounds phase 1 checked.
 */
import type { Persistent } from '../device.ts';
import { SnapshotError, quoteName } from './errors.ts';
import { PAGE_SIZE, type DiskState, type VmState } from './codec.ts';
import { stateMigrations, type MigrationRegistry } from './migrations.ts';
import type { PlainValue } from './value.ts';

/** A device as the board names it in snapshots; a bare device is named by its stateName. */
export interface NamedDevice {
  name: string;
  device: Persistent<unknown>;
}

export type DeviceEntry = Persistent<unknown> | NamedDevice;

export interface CpuTarget {
  /** Bytes of the CPU state range. */
  readonly stateSize: number;
  /** The core's layout id (0: unknown, not checked). */
  readonly layoutId: number;
  /** A reason this CPU cannot take `bytes` (e.g. a different RAM size inside), or undefined. */
  check?(bytes: Uint8Array): string | undefined;
  load(bytes: Uint8Array): void;
}

export interface DiskTarget {
  readonly name: string;
  readonly diskBytes: number;
  readonly blockSize: number;
  /**
   * Write blocks (block i of the list is data[i * blockSize, ...)); bounds were checked.
   * Runs after the devices took their states, so it must not fail: an overlay in memory,
   * or a backend that has made sure of its space beforehand.
   */
  writeBlocks(blockNumbers: readonly number[], data: Uint8Array): void;
}

export interface SnapshotTarget {
  cpu?: CpuTarget;
  /** Guest RAM, written in place. */
  ram?: Uint8Array;
  /** In load order. Interrupt controllers go last: their state is the authority on lines. */
  devices: readonly DeviceEntry[];
  disks?: readonly DiskTarget[];
  /** Called once after every write succeeded (the Cpu adapter clears the dirty map). */
  afterApply?(state: VmState): void;
}

export interface ApplyOptions {
  migrations?: MigrationRegistry;
}

export function deviceEntryName(d: DeviceEntry): string {
  return 'device' in d ? d.name : d.stateName;
}

function entryDevice(d: DeviceEntry): Persistent<unknown> {
  return 'device' in d ? d.device : d;
}

function mismatch(message: string): SnapshotError {
  return new SnapshotError('target-mismatch', message);
}

interface PlannedDevice {
  name: string;
  device: Persistent<unknown>;
  state: PlainValue;
}

/** Phase 1: everything the target needs to take `state`, or the first reason it cannot. */
function plan(state: VmState, target: SnapshotTarget, migrations: MigrationRegistry): { devices: PlannedDevice[]; disks: [DiskState, DiskTarget][] } {
  if (!state.incremental) {
    if (target.cpu && !state.cpu) throw new SnapshotError('missing-section', 'full snapshot has no CPU section');
    if (target.ram && !state.ram) throw new SnapshotError('missing-section', 'full snapshot has no RAM section');
  }
  if (state.cpu) {
    if (!target.cpu) throw mismatch('snapshot has a CPU state, the target has no CPU');
    const { layoutId, bytes } = state.cpu;
    const hex = (id: number) => id.toString(16).padStart(8, '0');
    if (layoutId !== 0 && target.cpu.layoutId !== 0 && layoutId !== target.cpu.layoutId) {
      throw mismatch(`CPU state is in core layout ${hex(layoutId)}, this core's is ${hex(target.cpu.layoutId)}: restore with the build that saved it`);
    }
    if (bytes.length !== target.cpu.stateSize) {
      throw mismatch(`CPU state is ${bytes.length} bytes, this CPU's is ${target.cpu.stateSize} (a different core layout)`);
    }
    const why = target.cpu.check?.(bytes);
    if (why !== undefined) throw mismatch(`CPU state refused: ${why}`);
  }
  if (state.ram) {
    if (!target.ram) throw mismatch('snapshot has RAM, the target has none');
    if (state.ram.ramBytes !== target.ram.length) {
      throw mismatch(`snapshot RAM is ${state.ram.ramBytes} bytes, the target's is ${target.ram.length}`);
    }
  }

  const byName = new Map<string, Persistent<unknown>>();
  for (const d of target.devices) {
    const name = deviceEntryName(d);
    if (byName.has(name)) throw mismatch(`the target has two devices named ${quoteName(name)}`);
    byName.set(name, entryDevice(d));
  }
  const saved = new Map(state.devices.map((d) => [d.name, d]));
  for (const d of state.devices) {
    if (!byName.has(d.name)) {
      throw new SnapshotError('unknown-section', `unknown device section ${quoteName(d.name)}: this machine has ${[...byName.keys()].join(', ') || 'no devices'}`);
    }
  }
  const devices: PlannedDevice[] = [];
  for (const [name, device] of byName) {
    const s = saved.get(name);
    if (!s) throw new SnapshotError('missing-section', `snapshot has no state for device ${quoteName(name)}`);
    // "uart16550:com2" is a uart16550: the chip part must match, migrations are per chip.
    const chip = name.split(':')[0];
    if (chip !== device.stateName) {
      throw mismatch(`device section ${quoteName(name)} is a ${chip}, this machine's ${quoteName(name)} is a ${device.stateName}`);
    }
    devices.push({ name, device, state: migrations.upgrade(device.stateName, s.state, s.version, device.stateVersion, `device ${quoteName(name)}`) });
  }

  const diskTargets = new Map((target.disks ?? []).map((d) => [d.name, d]));
  const disks: [DiskState, DiskTarget][] = [];
  for (const d of state.disks) {
    const t = diskTargets.get(d.name);
    if (!t) throw new SnapshotError('unknown-section', `unknown disk section ${quoteName(d.name)}: this machine has ${[...diskTargets.keys()].join(', ') || 'no disks'}`);
    if (t.diskBytes !== d.diskBytes || t.blockSize !== d.blockSize) {
      throw mismatch(`disk ${quoteName(d.name)} is ${d.diskBytes} bytes in ${d.blockSize}-byte blocks in the snapshot, ${t.diskBytes} in ${t.blockSize}-byte blocks here`);
    }
    disks.push([d, t]);
  }
  return { devices, disks };
}

/**
 * Load `state` into `target`: all of it, or (on any SnapshotError) nothing. The state is not
 * modified, so a refused state can be retried against another target.
 */
export function applyState(state: VmState, target: SnapshotTarget, options: ApplyOptions = {}): void {
  const { devices, disks } = plan(state, target, options.migrations ?? stateMigrations);

  // Every device's state is kept before the first load, not only those loaded before a
  // refusal: a loadState drives its IRQ line, which moves the interrupt controller too.
  const before = devices.map((d) => d.device.saveState());
  for (const d of devices) {
    try {
      d.device.loadState(d.state);
    } catch (e) {
      // Put every device back in load order, so the interrupt controller (last) ends with
      // exactly its old state whatever the others drove onto its inputs meanwhile.
      devices.forEach((u, i) => u.device.loadState(before[i]));
      throw new SnapshotError(
        'device-rejected',
        `device ${quoteName(d.name)} refused its state: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
  }

  for (const [d, t] of disks) t.writeBlocks(d.blockNumbers, d.data);
  if (state.cpu && target.cpu) target.cpu.load(state.cpu.bytes);
  if (state.ram && target.ram) writeRam(target.ram, state);
  target.afterApply?.(state);
}

function writeRam(ram: Uint8Array, state: VmState): void {
  const r = state.ram!;
  if (r.kind === 'full' && r.storedPages === null) {
    ram.set(r.data);
    return;
  }
  const pages = r.kind === 'full' ? r.storedPages! : r.pageNumbers;
  if (r.kind === 'full') ram.fill(0);
  // Runs of consecutive pages are copied with one set() each.
  for (let i = 0; i < pages.length; ) {
    let j = i + 1;
    while (j < pages.length && pages[j] === pages[j - 1] + 1) j++;
    ram.set(r.data.subarray(i * PAGE_SIZE, j * PAGE_SIZE), pages[i] * PAGE_SIZE);
    i = j;
  }
}
