/**
 * The smallest machine a purpose-built test guest needs: RAM, the 0xE9 debug console and
 * the 0xF4 exit port, a Multiboot (or flat) image, the virtual clock. Used by the CPU test
 * guests and by `ftx86 run` for images that are not Linux kernels.
 */
import { Machine, type RunOutcome } from './machine.ts';
import { DebugConsole, DebugExit } from './devices/debug-ports.ts';
import { loadMultiboot, loadFlat, isMultiboot } from './loaders/multiboot.ts';
import { DEBUG_CONSOLE_PORT, DEBUG_EXIT_PORT } from './layout.ts';

export interface TestGuestResult {
  output: string;
  /** The debug-exit status ((v << 1) | 1), or undefined if the guest ended otherwise. */
  exitStatus: number | undefined;
  outcome: RunOutcome;
  instructions: bigint;
}

/**
 * Dirty-tracking verification: a shadow copy of RAM is compared with RAM every `interval`
 * instructions, and every page whose bytes changed must be in the core's dirty list for that
 * interval. A page that changed without being listed is exactly what an FT secondary would
 * silently miss, so it fails the run.
 */
export class DirtyTrackingError extends Error {}

export class DirtyVerifier {
  private readonly shadow: Uint8Array;
  checks = 0;
  pagesSeen = 0;
  constructor(private readonly machine: Machine) {
    const cpu = machine.cpu;
    this.shadow = cpu.ram.slice();
    cpu.exports.dirty_reset();
  }

  /** Compare RAM against the shadow; throw if a changed page is missing from the dirty list. */
  check(): void {
    const cpu = this.machine.cpu;
    const dirty = new Set(cpu.state.dirtyPages());
    const ram = cpu.ram;
    const pages = ram.length >>> 12;
    const a = new Uint32Array(ram.buffer, ram.byteOffset, ram.length >>> 2);
    const b = new Uint32Array(this.shadow.buffer, 0, this.shadow.length >>> 2);
    for (let p = 0; p < pages; p++) {
      const base = p << 10;
      let changed = false;
      for (let i = base; i < base + 1024; i++) if (a[i] !== b[i]) { changed = true; break; }
      if (!changed) continue;
      if (!dirty.has(p)) {
        throw new DirtyTrackingError(`page 0x${p.toString(16)} (physical 0x${(p << 12).toString(16)}) changed but is not in the dirty list (at instruction ${cpu.instructionCount})`);
      }
      this.shadow.set(ram.subarray(p << 12, (p + 1) << 12), p << 12);
    }
    this.pagesSeen += dirty.size;
    this.checks++;
    cpu.exports.dirty_reset();
  }
}

export interface TestGuestOptions {
  /** Verify dirty tracking against a shadow copy of RAM every this many instructions. */
  verifyDirtyEvery?: number;
  memoryBytes?: number;
  maxInstructions?: number;
  cmdline?: string;
  /** For flat images: the load address (entry = load address). */
  flatAddress?: number;
  /** The block compiler's threshold (MachineOptions.jitThreshold). */
  jitThreshold?: number;
}

export function runTestGuest(image: Uint8Array, opts: TestGuestOptions = {}): TestGuestResult {
  const m = new Machine({
    memoryBytes: opts.memoryBytes ?? 32 * 1024 * 1024, clock: 'virtual', rtcBaseMs: 0, noReboot: true, jitThreshold: opts.jitThreshold,
  });
  const bytes: number[] = [];
  m.ports.register(DEBUG_CONSOLE_PORT, 1, new DebugConsole((b) => bytes.push(b)), 'debugcon');
  m.ports.register(DEBUG_EXIT_PORT, 4, new DebugExit((status) => m.requestStop({ kind: 'exit', status })), 'debug-exit');
  if (isMultiboot(image)) loadMultiboot(m.cpu, image, opts.cmdline ?? '');
  else loadFlat(m.cpu, image, opts.flatAddress ?? 0x100000);
  let outcome: RunOutcome;
  if (opts.verifyDirtyEvery) {
    const verifier = new DirtyVerifier(m);
    const limit = BigInt(opts.maxInstructions ?? 2_000_000_000);
    for (;;) {
      outcome = m.runSync(opts.verifyDirtyEvery);
      verifier.check();
      if (outcome.kind !== 'limit' || m.cpu.instructionCount >= limit) break;
    }
  } else {
    outcome = m.runSync(opts.maxInstructions ?? 2_000_000_000);
  }
  return {
    output: Buffer.from(bytes).toString('latin1'),
    exitStatus: outcome.kind === 'exit' ? outcome.status : undefined,
    outcome,
    instructions: m.cpu.instructionCount,
  };
}
