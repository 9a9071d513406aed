/**
 * Runs a test guest under QEMU, the reference the ftx86 CPU is compared against.
 *
 * The machine is the one the guests' README describes: an i686 without SSE use
 * (`-cpu pentium3`, TCG), 32 MiB, no devices but the debug console on port 0xE9
 * and the debug-exit port on 0xF4, the guest booted as a multiboot kernel. QEMU
 * must be installed (`apt-get install qemu-system-x86`); FTX86_QEMU overrides
 * the binary's name.
 */
import { spawn } from 'node:child_process';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GuestRun } from './transcript.ts';

export type { GuestRun } from './transcript.ts';

export const QEMU_BINARY = process.env.FTX86_QEMU ?? 'qemu-system-i386';
/** Each guest runs in well under 2 s; the rest is slack for a loaded machine. */
export const QEMU_TIMEOUT_MS = 30_000;

export function qemuArgs(binPath: string, debugconPath: string): string[] {
  return [
    '-M', 'pc', '-accel', 'tcg', '-cpu', 'pentium3', '-m', '32',
    '-display', 'none', '-serial', 'none', '-monitor', 'none', '-parallel', 'none',
    '-nodefaults', '-no-reboot',
    '-chardev', `file,id=debugcon,path=${debugconPath}`,
    '-device', 'isa-debugcon,chardev=debugcon,iobase=0xe9',
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
    '-kernel', binPath,
  ];
}

/**
 * Boots `binPath` under QEMU and resolves when QEMU exits, with the debug console
 * output and QEMU's exit status. QEMU exits 0 when the guest resets or triple
 * faults (-no-reboot) rather than writing to port 0xF4. Rejects if QEMU cannot be
 * started, refuses the image, is killed, or outlives the timeout.
 */
export async function runUnderQemu(binPath: string, options: { timeoutMs?: number } = {}): Promise<GuestRun> {
  const timeoutMs = options.timeoutMs ?? QEMU_TIMEOUT_MS;
  try {
    await access(binPath);
  } catch {
    throw new Error(`guest image ${binPath} does not exist (build it with guests/cpu-tests/build.sh)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'ftx86-qemu-'));
  const debugconPath = join(dir, 'debugcon.out');
  try {
    const { code, signal, stderr, timedOut } = await new Promise<{
      code: number | null;
      signal: NodeJS.Signals | null;
      stderr: string;
      timedOut: boolean;
    }>((resolve, reject) => {
      const child = spawn(QEMU_BINARY, qemuArgs(binPath, debugconPath), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      let timedOut = false;
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          err.code === 'ENOENT'
            ? new Error(`${QEMU_BINARY} not found: install QEMU (apt-get install qemu-system-x86) or set FTX86_QEMU`)
            : new Error(`cannot start ${QEMU_BINARY}: ${err.message}`),
        );
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr, timedOut });
      });
    });
    const debugOutput = await readFile(debugconPath, 'latin1').catch(() => '');
    if (timedOut) {
      throw new Error(`QEMU did not exit within ${timeoutMs} ms running ${binPath}; output so far:\n${tail(debugOutput)}`);
    }
    if (code === null) {
      throw new Error(`QEMU was killed by ${signal} running ${binPath}; stderr:\n${stderr}`);
    }
    if (debugOutput === '' && stderr.trim() !== '') {
      // QEMU refused the image (bad multiboot header, unreadable file, bad option).
      throw new Error(`QEMU failed on ${binPath} with status ${code}:\n${stderr.trim()}`);
    }
    return { debugOutput, exitCode: code };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function tail(text: string, lines = 20): string {
  return text.split('\n').slice(-lines).join('\n');
}
