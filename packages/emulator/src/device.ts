/**
 * The contracts between the machine and its devices.
 *
 * A device sees register offsets, never the machine: the bus owns the address map
 * (see layout.ts) and hands each access to the device with the offset inside its
 * range. Interrupts leave a device through an injected IrqLine; time enters only
 * through an injected Clock and the machine's tick loop (never Date.now/setTimeout),
 * so the virtual clock and checkpoints need no device rewrites.
 */

export type AccessSize = 1 | 2 | 4;

/** A device on the port I/O bus. `offset` is relative to the start of its range. */
export interface PortDevice {
  read(offset: number, size: AccessSize): number;
  write(offset: number, value: number, size: AccessSize): void;
}

/** A device on the MMIO bus. `offset` is relative to the start of its range. */
export interface MmioDevice {
  read(offset: number, size: AccessSize): number;
  write(offset: number, value: number, size: AccessSize): void;
}

/** One interrupt input of an interrupt controller, as seen by the device that drives it. */
export interface IrqLine {
  /** Drive the line to a level (level-triggered devices, and edge devices raising then lowering). */
  set(level: boolean): void;
}

/** The machine's notion of time, in nanoseconds since power-on (a float64; exact to 2^53 ns). */
export interface Clock {
  nowNs(): number;
  /** Wall-clock time of the guest's RTC epoch (ms since 1970) at nowNs() == 0. */
  readonly rtcBaseMs: number;
}

/**
 * A device that has work to do at points in time. The machine calls tick(now) often
 * enough that no deadline is missed by more than one run slice, and bounds each slice
 * (and each HLT sleep, or each virtual-time jump) by the smallest returned deadline.
 */
export interface TimedDevice {
  /** Bring the device up to `nowNs`; return the next time it needs a tick, or Infinity. */
  tick(nowNs: number): number;
}

/**
 * Typed, versioned device state (Firecracker's Persist, crosvm's Suspendable). The state
 * is plain data (numbers, booleans, strings, arrays, nested objects, Uint8Array) with
 * named fields: never positional arrays. `stateVersion` bumps when the shape changes.
 */
export interface Persistent<S> {
  readonly stateName: string;
  readonly stateVersion: number;
  saveState(): S;
  loadState(state: S): void;
}

/**
 * Guest physical memory as a DMA-capable device sees it. Every write goes through here so
 * the page is marked dirty: a DMA write that skipped the dirty map would be silent
 * corruption on an FT secondary.
 */
export interface GuestMemory {
  readonly size: number;
  read(addr: number, len: number): Uint8Array;
  /** A view for reading without a copy; valid until the next call into the machine. */
  view(addr: number, len: number): Uint8Array;
  write(addr: number, data: Uint8Array): void;
  read32(addr: number): number;
  write32(addr: number, value: number): void;
  read16(addr: number): number;
  write16(addr: number, value: number): void;
}
