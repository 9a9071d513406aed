/**
 * Save and restore a whole PC (DESIGN.md, Snapshot): the one file `ftx86 run --save-state`
 * writes and `--restore` reads.
 *
 * A PC state is a snapshot (snapshot/codec.ts) holding
 *   META         { kind: "ftx86-pc", version, config, instructions, boot? }: what the board
 *                must be built with to take the state (RAM size, clock mode, RTC base,
 *                no-reboot, the firmware ROM's and the disk's base image's size and SHA-256,
 *                the NIC's MAC), the guest instruction count, and what the caller loaded
 *                the guest from (opaque here: the CLI reloads it on a guest reset)
 *   CPU          the core's state bytes (the instruction counter among them)
 *   DEVICE       one section per device, in load order:
 *                  clock            the machine's time: elapsed guest ns, the virtual clock's
 *                                   halt skips, the TSC floor (Machine.saveTime)
 *                  pc-board         the serial backlog, the disk's base identity
 *                  pit8254, port61, rtc-mc146818, uart16550:com1..com4, i8042, port92,
 *                  piix-reset-control, acpi-pm, pci, virtio-blk?, virtio-net?, pic8259
 *                                   (the interrupt controller last: it is the authority on
 *                                   its input lines)
 *   RAM_FULL     all of RAM (zero pages elided)
 *   DISK_BLOCKS  "virtio-blk": every block the guest wrote since the base image
 *
 * The disk is a copy-on-write overlay on a read-only base image (disk-overlay.ts explains
 * why), so a state is exact: it names the base by size and SHA-256 and carries the written
 * blocks, and restoring it refuses any other image. A board whose disk writes its image in
 * place cannot be saved.
 *
 * Restoring is all or nothing: the file is decoded and checked whole (codec), the board is
 * checked against the meta (this file), then applyState checks every section against the
 * board before writing any, and puts the devices back if one refuses its state.
 *
 * Serial and network backends, the debug console and hooks are not state: the restoring
 * process attaches its own. A state holds no wall-clock time, so saving the same machine
 * twice gives the same bytes, and the guest's RTC continues from the saved time (as a
 * paused VM's would), whatever time it is when it is restored.
 */
import { createHash } from 'node:crypto';
import type { Persistent } from './device.ts';
import type { ClockMode } from './clock.ts';
import type { MachineTimeState } from './machine.ts';
import { DEFAULT_MAC, type Pc, type PcOptions } from './pc.ts';
import { CowBlockBackend, type DiskBaseIdentity } from './disk-overlay.ts';
import { decodeSnapshot, encodeSnapshot, PAGE_SIZE, type VmState } from './snapshot/codec.ts';
import { applyState, type DeviceEntry, type DiskTarget } from './snapshot/apply.ts';
import { captureState, cpuCacheFields, machineTarget } from './snapshot/machine-state.ts';
import { stateDigest } from './snapshot/state-digest.ts';
import { SnapshotError } from './snapshot/errors.ts';
import { stateMigrations } from './snapshot/migrations.ts';
import type { PlainValue } from './snapshot/value.ts';

export const PC_STATE_KIND = 'ftx86-pc';
/** Version of the META shape below. */
export const PC_STATE_VERSION = 1;
/** The DISK_BLOCKS section of the virtio-blk disk. */
export const DISK_SECTION = 'virtio-blk';
/** A serial backlog longer than this is not something this board produces. */
const MAX_BACKLOG_BYTES = 16 * 1024 * 1024;

/** What the board must be built with to take a state. */
export interface PcStateConfig {
  memoryBytes: number;
  clock: ClockMode;
  rtcBaseMs: number;
  noReboot: boolean;
  /** The disk's base image and the overlay's block size, or null: no disk. */
  disk: (DiskBaseIdentity & { blockSize: number }) | null;
  /** The NIC, or null: no NIC. */
  net: { mac: string } | null;
  /** The firmware ROM (PcOptions.bios), or null. It is mapped, not in RAM: the restoring board needs the same one. */
  bios: { bytes: number; sha256: string } | null;
}

/** A decoded, checked PC state. Its CPU, RAM and disk bytes are views into the file. */
export interface DecodedPcState {
  state: VmState;
  config: PcStateConfig;
  /** Guest instructions retired at the save. */
  instructions: bigint;
  /** What the saver said the guest was loaded from (SaveOptions.boot), unchecked. */
  boot: PlainValue | undefined;
}

export interface SaveOptions {
  /**
   * What the guest was loaded from, kept in the state for whoever restores it (the CLI
   * records its kernel, initrd and command line, to load them again on a guest reset).
   */
  boot?: PlainValue;
}

const romHashes = new WeakMap<Uint8Array, string>();

/** SHA-256 of a ROM image, computed once per image. */
function romSha256(rom: Uint8Array): string {
  let h = romHashes.get(rom);
  if (h === undefined) {
    h = createHash('sha256').update(rom).digest('hex');
    romHashes.set(rom, h);
  }
  return h;
}

/** The board's configuration as a state records it. */
export function pcStateConfig(pc: Pc): PcStateConfig {
  const disk = pc.opts.disk;
  return {
    memoryBytes: pc.opts.memoryBytes,
    clock: pc.machine.clock.mode,
    rtcBaseMs: pc.machine.clock.rtcBaseMs,
    noReboot: pc.machine.noReboot,
    disk: disk instanceof CowBlockBackend ? { ...disk.base, blockSize: disk.blockSize } : null,
    net: pc.virtioNet ? { mac: pc.opts.net?.mac ?? DEFAULT_MAC } : null,
    bios: pc.opts.bios ? { bytes: pc.opts.bios.length, sha256: romSha256(pc.opts.bios) } : null,
  };
}

/** The PcOptions that build a board able to take a state with `config` (add backends, and the ROM if it has one). */
export function pcOptionsFor(config: PcStateConfig): Pick<PcOptions, 'memoryBytes' | 'clock' | 'rtcBaseMs' | 'noReboot'> {
  return { memoryBytes: config.memoryBytes, clock: config.clock, rtcBaseMs: config.rtcBaseMs, noReboot: config.noReboot };
}

// ---- the sections that are not a chip -----------------------------------------------------

function fail(section: string, why: string): never {
  throw new Error(`${section} state: ${why}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function bigintField(section: string, o: Record<string, unknown>, key: string, min: bigint, max: bigint): bigint {
  const v = o[key];
  if (typeof v !== 'bigint' || v < min || v > max) fail(section, `${key} must be a bigint in [${min}, ${max}]`);
  return v;
}

function numberField(section: string, o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(section, `${key} must be a finite number >= 0`);
  return v;
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

const CLOCK_STATE_VERSION = 1;

/** The machine's time (Machine.saveTime) as a device section named "clock". */
function clockSection(pc: Pc): Persistent<PlainValue> {
  const m = pc.machine;
  return {
    stateName: 'clock',
    stateVersion: CLOCK_STATE_VERSION,
    saveState: () => ({ ...m.saveTime() }) as unknown as PlainValue,
    loadState(v) {
      if (!isRecord(v)) fail('clock', 'must be an object');
      if (v.mode !== 'virtual' && v.mode !== 'realtime') fail('clock', 'mode must be "virtual" or "realtime"');
      const s: MachineTimeState = {
        mode: v.mode,
        elapsedNs: numberField('clock', v, 'elapsedNs'),
        instructions: bigintField('clock', v, 'instructions', 0n, U64_MAX),
        skippedNs: numberField('clock', v, 'skippedNs'),
        lastTsc: bigintField('clock', v, 'lastTsc', 0n, U64_MAX),
        tscAdjust: bigintField('clock', v, 'tscAdjust', I64_MIN, I64_MAX),
      };
      m.restoreTime(s);
    },
  };
}

/** What the board itself holds: the serial backlog, and the disk's base for a second check. */
function boardSection(pc: Pc): Persistent<PlainValue> {
  return {
    stateName: 'pc-board',
    stateVersion: 1,
    saveState: () => ({ serialBacklog: pc.saveSerialBacklog(), disk: pcStateConfig(pc).disk as unknown as PlainValue }),
    loadState(v) {
      if (!isRecord(v)) fail('pc-board', 'must be an object');
      const backlog = v.serialBacklog;
      if (!Array.isArray(backlog) || backlog.length !== pc.uarts.length) fail('pc-board', `serialBacklog must be an array of ${pc.uarts.length} byte strings`);
      backlog.forEach((q, i) => {
        if (!(q instanceof Uint8Array) || q.length > MAX_BACKLOG_BYTES) fail('pc-board', `serialBacklog[${i}] must be at most ${MAX_BACKLOG_BYTES} bytes`);
      });
      const mine = pcStateConfig(pc).disk;
      if (!sameDisk(readDisk(v.disk, (why) => fail('pc-board', why)), mine)) fail('pc-board', 'the disk differs from this board\'s');
      pc.loadSerialBacklog(backlog as Uint8Array[]);
    },
  };
}

/** The board's devices as snapshot sections, in load order. */
export function pcDeviceEntries(pc: Pc): DeviceEntry[] {
  const list: DeviceEntry[] = [
    { name: 'clock', device: clockSection(pc) },
    { name: 'pc-board', device: boardSection(pc) },
    pc.pit,
    pc.port61,
    pc.rtc,
    ...pc.uarts.map((device, i): DeviceEntry => ({ name: `uart16550:com${i + 1}`, device })),
    pc.i8042,
    pc.port92,
    pc.resetControl,
    pc.acpi,
    pc.pci,
  ];
  if (pc.virtioBlk) list.push(pc.virtioBlk);
  if (pc.virtioNet) list.push(pc.virtioNet);
  list.push(pc.pic);
  return list;
}

function overlayOf(pc: Pc): CowBlockBackend | undefined {
  if (!pc.virtioBlk) return undefined;
  const disk = pc.opts.disk;
  if (!(disk instanceof CowBlockBackend)) {
    throw new SnapshotError(
      'unencodable',
      'cannot save the disk: the image is written in place, so a state could not name what it holds; attach it through a CowBlockBackend (ftx86 does with --save-state)',
    );
  }
  return disk;
}

// ---- save -----------------------------------------------------------------------------

/**
 * The whole PC as state bytes. Call between runs (Machine.run/runSync returned): the CPU is
 * at an instruction boundary and no device is in the middle of an access.
 */
export function saveVm(pc: Pc, options: SaveOptions = {}): Uint8Array {
  const cpu = pc.machine.cpu;
  const overlay = overlayOf(pc);
  const meta = {
    kind: PC_STATE_KIND,
    version: PC_STATE_VERSION,
    config: pcStateConfig(pc),
    instructions: cpu.instructionCount,
    boot: options.boot,
  };
  const input = captureState({ cpu, devices: pcDeviceEntries(pc) }, 'full', meta);
  if (overlay) {
    input.disks = [{ name: DISK_SECTION, diskBytes: overlay.diskBytes, blockSize: overlay.blockSize, ...overlay.writtenBlocks() }];
  }
  return encodeSnapshot(input);
}

// ---- decode and check -----------------------------------------------------------------

function badMeta(why: string): SnapshotError {
  return new SnapshotError('section-layout', `malformed META section "meta": ${why}`);
}

function readDisk(v: unknown, failWith: (why: string) => never): PcStateConfig['disk'] {
  if (v === null) return null;
  if (!isRecord(v)) failWith('disk must be an object or null');
  const { bytes, sha256, blockSize } = v;
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) failWith('disk.bytes must be a size');
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) failWith('disk.sha256 must be 64 hex digits');
  if (typeof blockSize !== 'number' || ![512, 1024, 2048, 4096].includes(blockSize)) failWith('disk.blockSize must be 512, 1024, 2048 or 4096');
  return { bytes, sha256, blockSize };
}

function sameDisk(a: PcStateConfig['disk'], b: PcStateConfig['disk']): boolean {
  if (a === null || b === null) return a === b;
  return a.bytes === b.bytes && a.sha256 === b.sha256 && a.blockSize === b.blockSize;
}

function readConfig(v: unknown): PcStateConfig {
  if (!isRecord(v)) throw badMeta('config must be an object');
  const { memoryBytes, clock, rtcBaseMs, noReboot, net } = v;
  if (typeof memoryBytes !== 'number' || !Number.isSafeInteger(memoryBytes) || memoryBytes <= 0 || memoryBytes % PAGE_SIZE !== 0) {
    throw badMeta('config.memoryBytes must be a whole number of pages');
  }
  if (clock !== 'virtual' && clock !== 'realtime') throw badMeta('config.clock must be "virtual" or "realtime"');
  if (typeof rtcBaseMs !== 'number' || !Number.isFinite(rtcBaseMs)) throw badMeta('config.rtcBaseMs must be a number');
  if (typeof noReboot !== 'boolean') throw badMeta('config.noReboot must be a boolean');
  if (net !== null && !(isRecord(net) && typeof net.mac === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(net.mac))) {
    throw badMeta('config.net must be null or { mac: "xx:xx:xx:xx:xx:xx" }');
  }
  const disk = readDisk(v.disk, (why) => { throw badMeta(`config.${why}`); });
  const bios = v.bios;
  if (bios !== null && !(isRecord(bios) && typeof bios.bytes === 'number' && Number.isSafeInteger(bios.bytes) && typeof bios.sha256 === 'string' && /^[0-9a-f]{64}$/.test(bios.sha256))) {
    throw badMeta('config.bios must be null or { bytes, sha256 }');
  }
  return {
    memoryBytes, clock, rtcBaseMs, noReboot, disk,
    net: net === null ? null : { mac: (net as { mac: string }).mac },
    bios: bios === null ? null : { bytes: bios.bytes as number, sha256: bios.sha256 as string },
  };
}

/**
 * Decode and check a PC state file without touching any machine. Throws SnapshotError:
 * everything the codec refuses, plus a file that is not a whole PC state.
 */
export function decodeVm(bytes: Uint8Array): DecodedPcState {
  const state = decodeSnapshot(bytes);
  if (state.incremental) {
    throw new SnapshotError('section-layout', 'an incremental state (an FT checkpoint\'s dirty pages) cannot be restored on its own');
  }
  const meta = state.meta;
  if (!meta) throw new SnapshotError('missing-section', 'not a PC state: there is no META section');
  if (meta.kind !== PC_STATE_KIND) throw new SnapshotError('missing-section', `not a PC state: META kind is ${typeof meta.kind === 'string' ? JSON.stringify(meta.kind.slice(0, 64)) : `a ${typeof meta.kind}`}, expected "${PC_STATE_KIND}"`);
  if (typeof meta.version !== 'number' || !Number.isInteger(meta.version)) throw badMeta('version must be an integer');
  if (meta.version > PC_STATE_VERSION) {
    throw new SnapshotError('section-version', `PC state version ${meta.version} is newer than this build reads (up to ${PC_STATE_VERSION}): upgrade ftx86 to restore it`);
  }
  if (meta.version < PC_STATE_VERSION) throw new SnapshotError('section-version', `PC state version ${meta.version} is not a version this build knows`);
  const instructions = meta.instructions;
  if (typeof instructions !== 'bigint' || instructions < 0n) throw badMeta('instructions must be a bigint >= 0');
  const config = readConfig(meta.config);
  if (!state.cpu) throw new SnapshotError('missing-section', 'PC state has no CPU section');
  if (!state.ram) throw new SnapshotError('missing-section', 'PC state has no RAM section');
  const disk = state.disks.find((d) => d.name === DISK_SECTION);
  if (config.disk && !disk) throw new SnapshotError('missing-section', `PC state has a disk but no DISK_BLOCKS section "${DISK_SECTION}"`);
  if (!config.disk && state.disks.length > 0) throw new SnapshotError('unknown-section', `unknown disk section "${state.disks[0].name}": the state's board has no disk`);
  if (config.disk && disk && disk.blockSize !== config.disk.blockSize) {
    throw new SnapshotError('section-layout', `DISK_BLOCKS section "${DISK_SECTION}" has ${disk.blockSize}-byte blocks, the meta says ${config.disk.blockSize}`);
  }
  return { state, config, instructions, boot: meta.boot };
}

function describeDisk(d: DiskBaseIdentity): string {
  return `${d.bytes} bytes, sha256 ${d.sha256.slice(0, 16)}...`;
}

/**
 * Why `pc` cannot take a state with `config`, as a SnapshotError: the first difference, in
 * words. 'disk-mismatch' when the disk image is not the one the state was saved against.
 */
export function checkPcForState(pc: Pc, config: PcStateConfig): void {
  const mine = pcStateConfig(pc);
  const mismatch = (what: string, saved: unknown, here: unknown) =>
    new SnapshotError('target-mismatch', `the state was saved with ${what ? `${what} ` : ''}${String(saved)}, this machine has ${String(here)}`);
  if (config.memoryBytes !== mine.memoryBytes) throw mismatch('RAM of', `${config.memoryBytes} bytes`, `${mine.memoryBytes} bytes`);
  if (config.clock !== mine.clock) throw mismatch('the', `${config.clock} clock`, `the ${mine.clock} clock`);
  if (config.rtcBaseMs !== mine.rtcBaseMs) throw mismatch('RTC base', new Date(config.rtcBaseMs).toISOString(), new Date(mine.rtcBaseMs).toISOString());
  if (config.noReboot !== mine.noReboot) throw mismatch('no-reboot', config.noReboot, mine.noReboot);
  if ((config.net === null) !== (mine.net === null)) throw mismatch('', config.net ? 'a NIC' : 'no NIC', mine.net ? 'a NIC' : 'none');
  if (config.net && mine.net && config.net.mac.toLowerCase() !== mine.net.mac.toLowerCase()) throw mismatch('NIC MAC', config.net.mac, mine.net.mac);
  if ((config.bios === null) !== (mine.bios === null)) throw mismatch('', config.bios ? 'a firmware ROM' : 'no firmware ROM', mine.bios ? 'one' : 'none');
  if (config.bios && mine.bios && config.bios.sha256 !== mine.bios.sha256) {
    throw mismatch('firmware ROM sha256', config.bios.sha256, mine.bios.sha256);
  }
  if (config.disk === null) {
    if (pc.virtioBlk) throw mismatch('', 'no disk', 'a disk');
    return;
  }
  if (!pc.virtioBlk) throw new SnapshotError('disk-mismatch', `the state has a disk (${describeDisk(config.disk)}), this machine has none`);
  const d = mine.disk;
  if (d === null) throw new SnapshotError('target-mismatch', 'this machine writes its disk image in place; a state with a disk restores onto a CowBlockBackend over the image');
  if (d.bytes !== config.disk.bytes) {
    throw new SnapshotError('disk-mismatch', `disk image is ${d.bytes} bytes, the state was saved against an image of ${config.disk.bytes} bytes`);
  }
  if (d.sha256 !== config.disk.sha256) {
    throw new SnapshotError('disk-mismatch', `disk image has sha256 ${d.sha256}, the state was saved against ${config.disk.sha256}`);
  }
  if (d.blockSize !== config.disk.blockSize) throw mismatch('disk blocks of', `${config.disk.blockSize} bytes`, `${d.blockSize} bytes`);
}

// ---- restore ----------------------------------------------------------------------------

/**
 * Load a PC state into `pc`: all of it, or (on a SnapshotError) nothing. `pc` must have been
 * built with pcOptionsFor(config), a CowBlockBackend over the same base image if the state
 * has a disk, and a NIC if it has one. The guest continues at the saved instruction.
 */
export function restoreVm(pc: Pc, input: Uint8Array | DecodedPcState): void {
  const decoded = input instanceof Uint8Array ? decodeVm(input) : input;
  const { state, config, instructions } = decoded;
  checkPcForState(pc, config);
  const cpu = pc.machine.cpu;
  // The counter the virtual clock derives time from is inside the CPU bytes; the meta and
  // the clock section repeat it, and all three must agree.
  const counterAt = (cpu.exports['INSTR_COUNT'] as WebAssembly.Global).value as number;
  const cpuBytes = state.cpu!.bytes;
  if (cpuBytes.length >= counterAt + 8) {
    const inCpu = new DataView(cpuBytes.buffer, cpuBytes.byteOffset, cpuBytes.byteLength).getBigUint64(counterAt, true);
    if (inCpu !== instructions) {
      throw new SnapshotError('section-layout', `the CPU state is at instruction ${inCpu}, the meta says ${instructions}`);
    }
  }
  // The clock section as this build reads it, migrated if it is older (a section that
  // cannot be migrated is refused by applyState below, saying why).
  const clockSaved = state.devices.find((d) => d.name === 'clock');
  let clock: PlainValue | undefined;
  try {
    clock = clockSaved && stateMigrations.upgrade('clock', clockSaved.state, clockSaved.version, CLOCK_STATE_VERSION);
  } catch {
    clock = undefined;
  }
  if (isRecord(clock) && clock.instructions !== instructions) {
    throw new SnapshotError('section-layout', `the clock section is at instruction ${String(clock.instructions)}, the meta says ${instructions}`);
  }
  const overlay = overlayOf(pc);
  const disks: DiskTarget[] = overlay
    ? [{
        name: DISK_SECTION,
        diskBytes: overlay.diskBytes,
        blockSize: overlay.blockSize,
        // A full state holds every block written since the base: it replaces the overlay.
        writeBlocks: (blockNumbers, data) => overlay.replaceBlocks(blockNumbers, data),
      }]
    : [];
  applyState(state, machineTarget({ cpu, devices: pcDeviceEntries(pc), disks }));
}

// ---- digest -------------------------------------------------------------------------------

/**
 * The state digest (snapshot/state-digest.ts) of a decoded state: computed from the bytes
 * of the file, so it shows what a restore would load. `cacheFields` from cpuCacheFields.
 */
export function digestVmState(state: VmState, cacheFields: readonly { offset: number; length: number }[]): string {
  if (!state.cpu || !state.ram || state.incremental) throw new Error('a digest needs a full state');
  const r = state.ram;
  let ram: Uint8Array;
  if (r.kind === 'full' && r.storedPages === null) {
    ram = r.data;
  } else {
    ram = new Uint8Array(r.ramBytes);
    const pages = r.kind === 'full' ? r.storedPages! : r.pageNumbers;
    for (let i = 0; i < pages.length; i++) ram.set(r.data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), pages[i] * PAGE_SIZE);
  }
  return stateDigest({ cpu: state.cpu.bytes, cpuCacheFields: cacheFields, ram, devices: state.devices, disks: state.disks });
}

/** The digest of the PC's state now: saved, decoded and hashed from the bytes. */
export function digestVm(pc: Pc): string {
  return digestVmState(decodeVm(saveVm(pc)).state, cpuCacheFields(pc.machine.cpu));
}
