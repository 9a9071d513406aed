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

export interface TestGuestOptions {
  memoryBytes?: number;
  maxInstructions?: number;
  cmdline?: string;
  /** For flat images: the load address (entry = load address). */
  flatAddress?: number;
}

export function runTestGuest(image: Uint8Array, opts: TestGuestOptions = {}): TestGuestResult {
  const m = new Machine({ memoryBytes: opts.memoryBytes ?? 32 * 1024 * 1024, clock: 'virtual', rtcBaseMs: 0, noReboot: true });
  const bytes: number[] = [];
  m.ports.register(DEBUG_CONSOLE_PORT, 1, new DebugConsole((b) => bytes.push(b)), 'debugcon');
  m.ports.register(DEBUG_EXIT_PORT, 4, new DebugExit((status) => m.requestStop({ kind: 'exit', status })), 'debug-exit');
  if (isMultiboot(image)) loadMultiboot(m.cpu, image, opts.cmdline ?? '');
  else loadFlat(m.cpu, image, opts.flatAddress ?? 0x100000);
  const outcome = m.runSync(opts.maxInstructions ?? 2_000_000_000);
  return {
    output: Buffer.from(bytes).toString('latin1'),
    exitStatus: outcome.kind === 'exit' ? outcome.status : undefined,
    outcome,
    instructions: m.cpu.instructionCount,
  };
}
