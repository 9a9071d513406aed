/**
 * /bench.sh phase by phase from a saved post-boot state: `npx tsx bench/cpu-phases.ts
 * [--phases N]`, with `FTX86_JIT=off` in front for the interpreter alone.
 *
 * The first run boots the Debian guest (guests/linux/out) to its shell on the virtual clock
 * and saves the whole PC (saveVm) in the system's temporary directory, keyed by the core's
 * build; later runs restore it and time the first N phases of /bench.sh (default all five)
 * in wall and process CPU time, so an A/B pair of builds takes ~25 s instead of a minute.
 * The compiler starts empty after a restore: compare builds in alternating runs, best of 3
 * or more (the machine's speed swings by up to 30 % within minutes).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pc } from '../packages/emulator/src/pc.ts';
import { loadLinux } from '../packages/emulator/src/loaders/linux.ts';
import { saveVm, restoreVm } from '../packages/emulator/src/vm-state.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const linuxDir = join(root, 'guests/linux/out');
const args = process.argv.slice(2);
const phasesArg = args.indexOf('--phases');
const phases = phasesArg >= 0 ? Number(args[phasesArg + 1]) : 5;
if (!Number.isInteger(phases) || phases < 1 || phases > 5) throw new Error('--phases must be 1 to 5');
if (!existsSync(join(linuxDir, 'bzImage'))) throw new Error('guests/linux/out/bzImage missing: run guests/linux/build.sh');

const versions = readFileSync(join(linuxDir, 'versions.env'), 'utf8');
const cmdline = `${/KERNEL_CMDLINE="?([^"\n]*)"?/.exec(versions)?.[1] ?? 'console=ttyS0'} ftx86.run=/bench.sh`;
const key = createHash('sha256')
  .update(readFileSync(join(root, 'packages/emulator/build/core.wasm')))
  .update(readFileSync(join(linuxDir, 'bzImage'))).update(readFileSync(join(linuxDir, 'initrd.cpio.gz')))
  .update(cmdline).digest('hex').slice(0, 16);
const statePath = join(tmpdir(), `ftx86-cpu-phases-${key}.state`);

const serial: number[] = [];
const pc = new Pc({ memoryBytes: 128 * 1024 * 1024, clock: 'virtual', rtcBaseMs: 0, noReboot: true, serialOut: [(b) => { for (const x of b) serial.push(x); }] });
const m = pc.machine;
const text = () => Buffer.from(serial).toString('latin1');

if (!existsSync(statePath)) {
  process.stderr.write('cpu-phases: booting the Debian guest to its shell once, to save its state\n');
  loadLinux(m.cpu, new Uint8Array(readFileSync(join(linuxDir, 'bzImage'))), {
    cmdline, initrd: new Uint8Array(readFileSync(join(linuxDir, 'initrd.cpio.gz'))),
  });
  while (!text().includes('FTX86-READY')) {
    if (m.runSync(5_000_000).kind !== 'limit') throw new Error(`the guest stopped before its shell:\n${text().slice(-2000)}`);
  }
  writeFileSync(statePath, saveVm(pc));
  process.stderr.write(`cpu-phases: saved at instruction ${m.cpu.instructionCount}; run again to time the phases\n`);
  process.exit(0);
}

restoreVm(pc, new Uint8Array(readFileSync(statePath)));
serial.length = 0;
const cpuS = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; };
let c0 = cpuS(), w0 = performance.now(), i0 = Number(m.cpu.instructionCount);
let seen = 0;
let j0 = { ...(m.cpu.jit?.stats ?? { blocks: 0, regionBlocks: 0, bytes: 0, compileMs: 0, engineMs: 0 }) };
console.log('phase             M instr   CPU s   wall s   M instr/wall-s');
while (seen < phases) {
  const r = m.runSync(5_000_000);
  const lines = [...text().matchAll(/^bench: (\S+)/gm)];
  if (lines.length > seen) {
    seen = lines.length;
    const n = Number(m.cpu.instructionCount) - i0, c = cpuS() - c0, w = (performance.now() - w0) / 1e3;
    console.log(`${lines.at(-1)![1].padEnd(16)} ${(n / 1e6).toFixed(0).padStart(8)} ${c.toFixed(2).padStart(7)} ${w.toFixed(2).padStart(8)} ${(n / w / 1e6).toFixed(1).padStart(16)}`);
    const jit = m.cpu.jit;
    if (jit) {
      const s = jit.stats;
      console.log(`  compiled ${s.blocks - j0.blocks} functions (${s.regionBlocks - j0.regionBlocks} blocks, ${((s.bytes - j0.bytes) / 1e6).toFixed(1)} MB): ${(s.compileMs - j0.compileMs).toFixed(0)} ms on the main thread, ${(s.engineMs - j0.engineMs).toFixed(0)} of it in the engine`);
      j0 = { ...s };
    }
    c0 = cpuS(); w0 = performance.now(); i0 = Number(m.cpu.instructionCount);
  }
  if (r.kind !== 'limit') throw new Error(`the guest stopped (${r.kind}) before /bench.sh's phase ${seen + 1}`);
}
const jit = m.cpu.jit;
if (jit) console.log(`block compiler: ${jit.stats.blocks} functions (${jit.stats.regionBlocks} blocks), ${(jit.stats.bytes / 1e6).toFixed(1)} MB of WASM, ${jit.stats.compileMs.toFixed(0)} ms on the main thread`);
