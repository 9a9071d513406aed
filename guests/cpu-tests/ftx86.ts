/**
 * Runs a test guest on ftx86, for the comparison with QEMU in guests/test/cpu-tests.test.ts:
 * Multiboot entry at 1 MiB, 32 MiB of RAM, port 0xE9 to debugOutput, a write of v to port
 * 0xF4 ends the run with exit code (v << 1) | 1, and the virtual clock so runs repeat.
 */
import { readFileSync } from 'node:fs';
import { runTestGuest } from '@ftx86/emulator';
import type { GuestRun } from './transcript.ts';

export const ftx86Ready = true;

/** `jitThreshold`: the block compiler's (default: off, so the interpreter is what is compared). */
export async function runUnderFtx86(binPath: string, jitThreshold = 0): Promise<GuestRun> {
  const r = runTestGuest(new Uint8Array(readFileSync(binPath)), {
    memoryBytes: 32 * 1024 * 1024,
    jitThreshold,
    maxInstructions: 500_000_000,
    // Every test guest also checks dirty tracking: a page changed but not reported fails the run.
    verifyDirtyEvery: 1_000_000,
  });
  // A guest that ended any other way than the exit port: report it like a crashed QEMU would.
  const exitCode = r.exitStatus ?? (r.outcome.kind === 'reset' ? 0 : -1);
  return { debugOutput: r.output + (r.exitStatus === undefined ? `\n[ftx86: run ended: ${r.outcome.kind}]\n` : ''), exitCode };
}
