// The CPU test guests (guests/cpu-tests): each is run live under QEMU, the
// reference, and - once the core is wired - on ftx86, and the two transcripts
// must match line for line. The images are the committed bin/*.bin, so this
// needs QEMU but not nasm; when nasm is there, the images are also checked to be
// the build of their sources.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { runUnderQemu } from '../cpu-tests/qemu.ts';
import {
  EXIT_PASSED,
  comparableLines,
  failedHwChecks,
  lineDiff,
  transcriptLines,
  type GuestRun,
} from '../cpu-tests/transcript.ts';

const guestDir = fileURLToPath(new URL('../cpu-tests/', import.meta.url));

// The ftx86 runner is loaded on its own, so that while the core is being wired a
// runner that does not load fails its own test and not the QEMU ones.
type Ftx86Runner = typeof import('../cpu-tests/ftx86.ts');
let ftx86: Ftx86Runner | undefined;
let ftx86LoadError: unknown;
try {
  ftx86 = await import('../cpu-tests/ftx86.ts');
} catch (error) {
  ftx86LoadError = error;
}
const ftx86Ready = ftx86?.ftx86Ready ?? false;
const GUESTS = ['alu', 'x87', 'pmode', 'paging', 'v86'] as const;

const binPath = (guest: string) => join(guestDir, 'bin', `${guest}.bin`);

// One QEMU run per guest, shared by the tests that look at it.
const qemuRuns = new Map<string, Promise<GuestRun>>();
function qemuRun(guest: string): Promise<GuestRun> {
  let run = qemuRuns.get(guest);
  if (!run) {
    run = runUnderQemu(binPath(guest));
    qemuRuns.set(guest, run);
  }
  return run;
}

/** Why a transcript is not a complete run, or '' if it is. */
function incompleteRun(run: GuestRun): string {
  const lines = transcriptLines(run.debugOutput);
  const problems: string[] = [];
  if (lines.at(-1) !== 'done') problems.push(`last line is ${JSON.stringify(lines.at(-1) ?? '')}, not "done"`);
  if (run.exitCode !== EXIT_PASSED) problems.push(`exit status ${run.exitCode}, not ${EXIT_PASSED}`);
  if (problems.length === 0) return '';
  return `${problems.join('; ')}; last lines:\n${lines.slice(-15).join('\n')}`;
}

describe.each(GUESTS)('CPU test guest %s', (guest) => {
  it('runs to "done" under QEMU and exits through port 0xF4 with code 0', async () => {
    const run = await qemuRun(guest);
    expect(incompleteRun(run)).toBe('');
    expect(transcriptLines(run.debugOutput)[0]).toBe(`guest: ${guest}`);
  });

  // The interpreter, and the block compiler taking every block in after two runs.
  it.skipIf(!ftx86Ready).each([['', 0], [' with the block compiler', 2]] as const)('prints on ftx86%s what it prints under QEMU', async (_, jit) => {
    const [reference, ours] = await Promise.all([qemuRun(guest), ftx86!.runUnderFtx86(binPath(guest), jit)]);
    const diff = lineDiff(comparableLines(reference.debugOutput), comparableLines(ours.debugOutput), {
      expected: `QEMU ${guest}`,
      actual: `ftx86 ${guest}`,
    });
    if (diff !== '') throw new Error(`ftx86 differs from QEMU on ${guest}.bin:\n${diff}`);
    const failed = failedHwChecks(ours.debugOutput);
    if (failed.length > 0) throw new Error(`ftx86 fails the guest's own checks against the SDM:\n${failed.join('\n')}`);
    expect(incompleteRun(ours)).toBe('');
  });
});

it('loads the ftx86 runner (guests/cpu-tests/ftx86.ts)', () => {
  if (ftx86LoadError !== undefined) throw ftx86LoadError;
});

describe('CPU test guest images', () => {
  let hasNasm = true;
  try {
    execFileSync('nasm', ['-v'], { stdio: 'ignore' });
  } catch {
    hasNasm = false;
  }
  const outDir = mkdtempSync(join(tmpdir(), 'ftx86-cpu-tests-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it.skipIf(!hasNasm)('are the build of their sources (build.sh is reproducible)', async () => {
    await promisify(execFile)('bash', [join(guestDir, 'build.sh'), outDir]);
    for (const guest of GUESTS) {
      const built = readFileSync(join(outDir, `${guest}.bin`));
      const committed = readFileSync(binPath(guest));
      expect(built.equals(committed), `${guest}.bin differs from a fresh build: run guests/cpu-tests/build.sh`).toBe(true);
    }
  });
});

describe('transcript line diff', () => {
  it('names the differing lines with their numbers and context', () => {
    const expected = Array.from({ length: 20 }, (_, i) => `k${i}: ${i}`);
    const actual = [...expected];
    actual[3] = 'k3: 30';
    actual.splice(15, 0, 'extra: 1');
    expect(lineDiff(expected, actual)).toBe(
      [
        '--- expected',
        '+++ actual',
        '@@ -1,7 +1,7 @@',
        ' k0: 0',
        ' k1: 1',
        ' k2: 2',
        '-k3: 3',
        '+k3: 30',
        ' k4: 4',
        ' k5: 5',
        ' k6: 6',
        '@@ -13,6 +13,7 @@',
        ' k12: 12',
        ' k13: 13',
        ' k14: 14',
        '+extra: 1',
        ' k15: 15',
        ' k16: 16',
        ' k17: 17',
      ].join('\n'),
    );
    expect(lineDiff(expected, expected)).toBe('');
  });

  it('leaves hwcheck lines out of the comparison with QEMU and reports those not ok', () => {
    const output = 'guest: pmode\nhwcheck limit: FAIL\nx: 1\nhwcheck other: ok\ndone\n';
    expect(comparableLines(output)).toEqual(['guest: pmode', 'x: 1', 'done']);
    expect(failedHwChecks(output)).toEqual(['hwcheck limit: FAIL']);
  });
});
