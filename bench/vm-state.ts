/**
 * Whole-PC save and restore of a 256 MiB guest: `npx tsx bench/vm-state.ts`.
 *
 * Two guests:
 *   hello     hello.bin run to its power-off: a real guest's state, RAM mostly untouched
 *             (zero pages are elided, so the file is small and save time is the zero scan)
 *   pattern   every RAM page filled with non-zero noise: the worst case, all 256 MiB stored
 * For each: save (saveVm: capture, encode, CRC-32C), write the file, read it back, restore
 * (decodeVm: checksum and checks, then restoreVm into a fresh PC: every section checked,
 * then applied), building that fresh PC (what a restoring process does first), and the
 * state digest (SHA-256 of the decoded state). A 256 MiB memcpy in the same run is the
 * yardstick. Medians of REPS runs after one warm-up.
 *
 * Results go to bench/results/vm-state.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pc } from '../packages/emulator/src/pc.ts';
import { loadMultiboot } from '../packages/emulator/src/loaders/multiboot.ts';
import { cpuCacheFields } from '../packages/emulator/src/snapshot/index.ts';
import { decodeVm, digestVmState, restoreVm, saveVm } from '../packages/emulator/src/vm-state.ts';

const MiB = 1024 * 1024;
const RAM_BYTES = 256 * MiB;
const REPS = 5;
const RTC_BASE = Date.UTC(2024, 0, 1);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function time(fn: () => void, reps = REPS): number {
  fn();
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

const newPc = () => new Pc({ memoryBytes: RAM_BYTES, clock: 'virtual', rtcBaseMs: RTC_BASE });

function helloGuest(): Pc {
  const pc = newPc();
  loadMultiboot(pc.machine.cpu, new Uint8Array(readFileSync(fileURLToPath(new URL('../guests/hello/hello.bin', import.meta.url)))));
  const outcome = pc.machine.runSync(100_000_000);
  if (outcome.kind !== 'poweroff') throw new Error(`hello.bin ended ${outcome.kind}`);
  return pc;
}

function patternGuest(): Pc {
  const pc = helloGuest();
  const words = new Uint32Array(pc.machine.cpu.ram.buffer, pc.machine.cpu.ram.byteOffset, RAM_BYTES / 4);
  let x = 0x2545f491;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x | 1;
  }
  return pc;
}

const dir = mkdtempSync(join(tmpdir(), 'ftx86-bench-vmstate-'));
const yardstick = new Uint8Array(RAM_BYTES).fill(1);
const target = new Uint8Array(RAM_BYTES);
const memcpyMs = time(() => target.set(yardstick));

console.log(`VM state save/restore, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, node ${process.version}, ` +
  `guest RAM ${RAM_BYTES / MiB} MiB, load average ${loadavg()[0].toFixed(1)}; medians of ${REPS}\n`);
console.log(`memcpy of 256 MiB: ${memcpyMs.toFixed(1)} ms (${(RAM_BYTES / MiB / (memcpyMs / 1000)).toFixed(0)} MiB/s)\n`);

const cases = [];
for (const [name, make] of [['hello', helloGuest], ['pattern', patternGuest]] as const) {
  const pc = make();
  let bytes = saveVm(pc);
  const saveMs = time(() => { bytes = saveVm(pc); });
  const file = join(dir, `${name}.state`);
  const writeMs = time(() => writeFileSync(file, bytes));
  let read = new Uint8Array(0);
  const readMs = time(() => { read = readFileSync(file); });
  const decoded = decodeVm(read);
  const fresh = newPc();
  const restoreMs = time(() => restoreVm(fresh, decodeVm(read)));
  const decodeMs = time(() => decodeVm(read));
  const buildPcMs = time(() => { newPc(); }, 3);
  const digestMs = time(() => digestVmState(decodeVm(read).state, cpuCacheFields(fresh.machine.cpu)), 3);
  if (Buffer.compare(fresh.machine.cpu.ram, pc.machine.cpu.ram) !== 0) throw new Error('restored RAM differs');
  const r = {
    guest: name,
    stateBytes: bytes.length,
    storedPages: decoded.state.ram!.kind === 'full' && decoded.state.ram!.storedPages ? decoded.state.ram!.storedPages.length : RAM_BYTES / 4096,
    saveMs, writeMs, readMs, decodeMs, restoreMs, buildPcMs, digestMs,
    saveMBps: bytes.length / MiB / (saveMs / 1000),
    restoreMBps: bytes.length / MiB / (restoreMs / 1000),
  };
  cases.push(r);
  console.log(`${name.padEnd(8)} state ${(bytes.length / MiB).toFixed(1).padStart(6)} MiB (${r.storedPages} pages stored)  ` +
    `save ${saveMs.toFixed(1)} ms, write ${writeMs.toFixed(1)} ms, read ${readMs.toFixed(1)} ms, ` +
    `restore ${restoreMs.toFixed(1)} ms (decode alone ${decodeMs.toFixed(1)} ms) + new PC ${buildPcMs.toFixed(1)} ms, digest ${digestMs.toFixed(1)} ms`);
}
rmSync(dir, { recursive: true, force: true });

const results = {
  bench: 'vm-state',
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  loadAverage: loadavg()[0],
  ramBytes: RAM_BYTES,
  reps: REPS,
  memcpyMs,
  cases,
};
const out = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(out, { recursive: true });
writeFileSync(`${out}vm-state.json`, `${JSON.stringify(results, null, 2)}\n`);
