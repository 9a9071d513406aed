/**
 * The host side of the WASM CPU core: instantiation, the run loop that turns core faults
 * into exception delivery, and typed access to the CPU state.
 *
 * Guest RAM is part of the WASM linear memory (at the core's RAM offset), sized once at
 * creation: there is no memory.grow while running, so host views never detach.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CpuStateView } from './cpu-state.ts';
import { Jit, JIT_THRESHOLD_DEFAULT } from './jit/jit.ts';

export const CORE_WASM_PATH = fileURLToPath(new URL('../build/core.wasm', import.meta.url));

/** Why run() returned. */
export enum StopReason {
  Count = 0,
  Halt = 1,
  Host = 2,
  Shutdown = 3,
}

/** Host callbacks the core calls through its imports. */
export interface CpuBus {
  ioRead(port: number, size: number): number;
  ioWrite(port: number, size: number, value: number): void;
  mmioRead(addr: number, size: number): number;
  mmioWrite(addr: number, size: number, value: number): void;
  /** The INTA cycle: the vector of the interrupt being accepted, or -1 if none is left. */
  interruptAcknowledge(): number;
  /** The x87 FERR# output (CR0.NE = 0 error reporting: IRQ13 on a PC). */
  fpuError?(level: boolean): void;
  /** RDTSC when the state's TSC_LIVE flag is set (realtime clock). */
  readTsc?(): bigint;
  /** WRMSR to the TSC (IA32_TIME_STAMP_COUNTER) under TSC_LIVE. */
  writeTsc?(value: bigint): void;
}

/** The exports of core.wasm the host relies on (checked against the module in a test). */
export interface CoreExports {
  reset(ramBytes: number): void;
  run(): number;
  deliver_fault(): void;
  state_loaded(): void;
  dirty_clear_all(): void;
  mark_dirty_range(addr: number, len: number): void;
  dirty_reset(): void;
  tlb_flush(): void;
  translate(lin: number, write: number, user: number): number;
  get_eflags(): number;
  set_eflags_raw(v: number): void;
  /** 0 runs every instruction in the interpreter, without decoded blocks (for tests). */
  code_cache_enable(on: number): void;
  heap_base(): number;
  [name: string]: unknown;
}

export const CORE_IMPORTS = {
  host: ['raise', 'io_read', 'io_write', 'mmio_read', 'mmio_write', 'intr_ack', 'fpu_ferr', 'tsc', 'tsc_write'],
  env: ['memory'],
} as const;

const CORE_FAULT = Symbol('core fault');

const MIB = 1024 * 1024;
const WASM_PAGE = 65536;

let compiled: WebAssembly.Module | undefined;
function coreModule(): WebAssembly.Module {
  if (!compiled) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(CORE_WASM_PATH);
    } catch {
      throw new Error(`CPU core not built: ${CORE_WASM_PATH} is missing (run "pnpm build")`);
    }
    compiled = new WebAssembly.Module(new Uint8Array(bytes));
  }
  return compiled;
}

export interface CpuOptions {
  /** Guest RAM in bytes: a multiple of 4 KiB, at least 1 MiB, at most 3 GiB. */
  ramBytes: number;
  bus: CpuBus;
  /**
   * The block compiler (src/jit): the runs of a decoded block before it is compiled to
   * WASM, or 0 for none. Default: FTX86_JIT from the environment ("on", "off" or 0, or a
   * threshold), else on with JIT_THRESHOLD_DEFAULT.
   */
  jitThreshold?: number;
}

/** The block compiler's threshold from FTX86_JIT, or the default. */
export function defaultJitThreshold(): number {
  const env = process.env.FTX86_JIT;
  if (env === undefined || env === '' || env === 'on') return JIT_THRESHOLD_DEFAULT;
  if (env === 'off') return 0;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`FTX86_JIT must be "on", "off" or a threshold (a whole number of runs, 0 = off), got "${env}"`);
  }
  return n;
}

export class Cpu {
  readonly exports: CoreExports;
  readonly memory: WebAssembly.Memory;
  /** Guest physical RAM as a host view (for loaders and DMA: mark writes with markDirty). */
  readonly ram: Uint8Array;
  readonly state: CpuStateView;
  readonly ramBytes: number;
  private faultPending = false;
  /** Called for every exception the core raises, before delivery (diagnostics, tracing). */
  onFault: ((vector: number, error: number, eip: number) => void) | undefined;
  /** INSTR_COUNT and RUN_TARGET as views made once (the memory never grows, so they stay valid). */
  private readonly counter: BigUint64Array;
  private readonly target: BigUint64Array;
  /** The block compiler, when on. */
  readonly jit: Jit | undefined;

  constructor(opts: CpuOptions) {
    const { ramBytes, bus } = opts;
    if (!Number.isInteger(ramBytes) || ramBytes % 4096 !== 0 || ramBytes < MIB || ramBytes > 3072 * MIB) {
      throw new RangeError(`RAM size must be a multiple of 4 KiB between 1 MiB and 3 GiB, got ${ramBytes}`);
    }
    const mod = coreModule();
    // Guest RAM starts at the core's RAM offset (layout.ts), checked after instantiation.
    const ramBase = 32 * MIB;
    const pages = Math.ceil((ramBase + ramBytes) / WASM_PAGE);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const imports = {
      env: { memory: this.memory },
      host: {
        raise: () => { throw CORE_FAULT; },
        io_read: (port: number, size: number) => bus.ioRead(port, size) >>> 0,
        io_write: (port: number, size: number, value: number) => bus.ioWrite(port, size, value >>> 0),
        mmio_read: (addr: number, size: number) => bus.mmioRead(addr >>> 0, size) >>> 0,
        mmio_write: (addr: number, size: number, value: number) => bus.mmioWrite(addr >>> 0, size, value >>> 0),
        intr_ack: () => bus.interruptAcknowledge(),
        fpu_ferr: (level: number) => bus.fpuError?.(level !== 0),
        tsc: () => (bus.readTsc ? BigInt.asUintN(64, bus.readTsc()) : 0n),
        tsc_write: (v: bigint) => bus.writeTsc?.(BigInt.asUintN(64, v)),
      },
    };
    const instance = new WebAssembly.Instance(mod, imports);
    this.exports = instance.exports as unknown as CoreExports;
    const g = (name: string) => (this.exports[name] as WebAssembly.Global).value as number;
    if (g('RAM') !== ramBase) throw new Error(`core RAM offset ${g('RAM')} differs from the host's ${ramBase}`);
    if (this.exports.heap_base() > g('CPU_STATE')) throw new Error('core static data overlaps CPU_STATE');
    this.ramBytes = ramBytes;
    this.ram = new Uint8Array(this.memory.buffer, ramBase, ramBytes);
    this.state = new CpuStateView(this.memory, this.exports);
    this.counter = new BigUint64Array(this.memory.buffer, g('CPU_STATE') + g('INSTR_COUNT'), 1);
    this.target = new BigUint64Array(this.memory.buffer, g('CPU_STATE') + g('RUN_TARGET'), 1);
    this.exports.reset(ramBytes);
    const threshold = opts.jitThreshold ?? defaultJitThreshold();
    this.jit = threshold > 0 ? new Jit(instance.exports as Record<string, unknown>, this.memory, { threshold }) : undefined;
  }

  /** Called after every reset (the core clears CPU_STATE, host-owned flags included). */
  onReset: (() => void) | undefined;

  reset(): void {
    this.faultPending = false;
    this.exports.reset(this.ramBytes);
    this.onReset?.();
  }

  get instructionCount(): bigint {
    return this.counter[0];
  }

  /**
   * Run until `maxInstructions` more have retired (exactly), or earlier on HLT with nothing
   * to wake the CPU, a host request, or shutdown. Exceptions raised by the core unwind to
   * here and are delivered in the guest; every pass of this loop retires at least one step,
   * so it always ends.
   */
  run(maxInstructions: number | bigint): StopReason {
    const target = this.instructionCount + BigInt(maxInstructions);
    this.target[0] = target;
    for (;;) {
      try {
        if (this.faultPending) {
          this.faultPending = false;
          this.exports.deliver_fault();
        }
        const stop = this.exports.run() as StopReason;
        if (this.jit?.pending) this.compileQueued();
        return stop;
      } catch (e) {
        if (e !== CORE_FAULT) throw e;
        this.faultPending = true;
        if (this.onFault) {
          const st = this.state;
          this.onFault(st.faultVector, st.faultError, st.eipStart);
        }
      }
    }
  }

  /**
   * Compile the blocks the core queued. The compiler failing is a bug of ours, never the
   * guest's: it is reported once and the interpreter carries on alone.
   */
  private compileQueued(): void {
    try {
      this.jit!.compileQueued();
    } catch (e) {
      process.stderr.write(`ftx86: block compiler failed, running on without it: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      this.jit!.setThreshold(0);
      this.jitFailed = true;
    }
  }
  /** The block compiler failed and was turned off (see compileQueued). */
  jitFailed = false;

  /** Mark guest-physical [addr, addr+len) dirty after a host (DMA) write into `ram`. */
  markDirty(addr: number, len: number): void {
    this.exports.mark_dirty_range(addr >>> 0, len >>> 0);
  }

  /** Write bytes into guest RAM as DMA does: bounds-checked, pages marked dirty. */
  writePhysical(addr: number, bytes: Uint8Array): void {
    if (!Number.isInteger(addr) || addr < 0 || addr + bytes.length > this.ramBytes) {
      throw new RangeError(`physical write [${addr}, ${addr + bytes.length}) outside RAM of ${this.ramBytes} bytes`);
    }
    this.ram.set(bytes, addr);
    this.markDirty(addr, bytes.length);
  }

  readPhysical(addr: number, len: number): Uint8Array {
    if (!Number.isInteger(addr) || addr < 0 || addr + len > this.ramBytes) {
      throw new RangeError(`physical read [${addr}, ${addr + len}) outside RAM of ${this.ramBytes} bytes`);
    }
    return this.ram.slice(addr, addr + len);
  }
}
