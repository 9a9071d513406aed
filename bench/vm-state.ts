/**
 * Whole-PC save and restore of a 256 MiB guest: `npx tsx bench/vm-state.ts [--linux]`.
 *
 * Two guests (three with --linux):
 *   hello     hello.bin run to its power-off: a real guest's state, RAM mostly untouched
 *             (zero pages are elided, so the file is small and save time is the zero scan)
 *   pattern   every RAM page filled with non-zero noise: the worst case, all 256 MiB stored
 *   linux     (--linux) the Debian guest (guests/linux/build.sh) booted on the virtual clock
 *             to its idle shell, LINUX_INSTRUCTIONS instructions: a real guest's RAM
 * For each: save (saveVm: capture, encode, CRC-32C), write the file, read it back, restore
 * (decodeVm: checksum and checks, then restoreVm into a fresh PC: every section checked,
 * then applied), building that fresh PC (what a restoring process does first), and the
 * state digest (SHA-256 of the decoded state). A 256 MiB memcpy in the same run is the
 * yardstick. Medians of REPS runs after one warm-up.
 *
 * Then the checkpoint path FT takes on the same PC: N pages dirtied in an epoch (random
 * pages, in first-write order, marked by the core's dirty tracking), encoded with the CPU
 * and every device section as one incremental state (captureState 'dirty' + encodeSnapshot,
 * into a reused buffer, without and with the CRC-32C seal), against a plain copy of the
 * same pages into a ready buffer. Every repetition starts cold: a 64 MiB sweep of another
 * buffer (twice the L3) evicts the pages first, as a guest running an epoch would.
 *
 * Results go to bench/results/vm-state.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pc } from '../packages/emulator/src/pc.ts';
import { loadMultiboot } from '../packages/emulator/src/loaders/multiboot.ts';
import { loadLinux } from '../packages/emulator/src/loaders/linux.ts';
import { captureState, cpuCacheFields, encodeSnapshot } from '../packages/emulator/src/snapshot/index.ts';
import { decodeVm, digestVmState, pcDeviceEntries, restoreVm, saveVm } from '../packages/emulator/src/vm-state.ts';

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

/** Past the shell prompt of the Debian guest (about 3.4 G instructions into its boot). */
const LINUX_INSTRUCTIONS = 4_000_000_000;

function linuxGuest(): Pc {
  const out = fileURLToPath(new URL('../guests/linux/out/', import.meta.url));
  const versions = readFileSync(`${out}versions.env`, 'utf8');
  const cmdline = /KERNEL_CMDLINE="?([^"\n]*)"?/.exec(versions)?.[1] ?? 'console=ttyS0';
  let serialTail = '';
  const pc = new Pc({ memoryBytes: RAM_BYTES, clock: 'virtual', rtcBaseMs: RTC_BASE, serialOut: [(b) => { serialTail = (serialTail + Buffer.from(b).toString('latin1')).slice(-200); }] });
  loadLinux(pc.machine.cpu, new Uint8Array(readFileSync(`${out}bzImage`)), { cmdline, initrd: new Uint8Array(readFileSync(`${out}initrd.cpio.gz`)) });
  const t0 = performance.now();
  while (pc.machine.cpu.instructionCount < BigInt(LINUX_INSTRUCTIONS)) {
    const o = pc.machine.runSync(BigInt(LINUX_INSTRUCTIONS) - pc.machine.cpu.instructionCount);
    if (o.kind !== 'limit') throw new Error(`the Linux guest's run ended ${o.kind}`);
  }
  if (!serialTail.includes('~ # ')) throw new Error(`the Linux guest has no shell prompt after ${LINUX_INSTRUCTIONS} instructions: ...${serialTail}`);
  process.stderr.write(`(booted the Linux guest to its shell in ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
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
const guests: [string, () => Pc][] = [['hello', helloGuest], ['pattern', patternGuest]];
if (process.argv.includes('--linux')) guests.push(['linux', linuxGuest]);
for (const [name, make] of guests) {
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

// ---- dirty-page checkpoints of the whole PC ---------------------------------------------------
const PAGE = 4096;
const sweep = new Int32Array(64 * MiB / 4);
let sink = 0;
function evictCaches(): void {
  for (let i = 0; i < sweep.length; i += 16) { sink ^= sweep[i]; sweep[i] = i; }
}
function timeCold(fn: () => void, reps = REPS): number {
  for (let w = 0; w < 2; w++) fn();
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    evictCaches();
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1e3);
const pc = patternGuest();
const cpu = pc.machine.cpu;
const devices = pcDeviceEntries(pc);
const dirtyCases = [];
console.log('\ncheckpoint of N dirty pages of the 256 MiB PC (CPU + every device + the pages), cold caches, MB/s of page data:');
for (const n of [1_000, 10_000, 50_000]) {
  // An epoch that dirtied n random pages (the core lists them in first-write order).
  cpu.exports.dirty_reset();
  let x = 0x9e3779b9 ^ n;
  const chosen = new Uint8Array(RAM_BYTES / PAGE);
  for (let k = 0; k < n;) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    const p = x % chosen.length;
    if (p < 256 || chosen[p]) continue; // leave the guest's low memory alone
    chosen[p] = 1;
    cpu.markDirty(p * PAGE, PAGE);
    k++;
  }
  const pages = cpu.state.dirtyPages();
  if (pages.length !== n) throw new Error(`dirty tracking listed ${pages.length} pages, ${n} were marked`);
  const bytes = n * PAGE;
  // The copy lands 64 bytes into its buffer: same offset modulo 4 KiB as the source would
  // make x86 cores mispredict store-to-load aliasing (bench/snapshot.ts measures that too).
  const dest = new Uint8Array(bytes + MiB).fill(1);
  const ram = cpu.ram;
  const memcpyMs = timeCold(() => {
    for (let i = 0, t = 64; i < n; i++, t += PAGE) dest.set(ram.subarray(pages[i] * PAGE, (pages[i] + 1) * PAGE), t);
  });
  const out = new Uint8Array(bytes + n * 4 + 4 * MiB).fill(1);
  let stateBytes = 0;
  const encodeMs = timeCold(() => { stateBytes = encodeSnapshot(captureState({ cpu, devices }, 'dirty'), { buffer: out, seal: false }).length; });
  const sealedMs = timeCold(() => { encodeSnapshot(captureState({ cpu, devices }, 'dirty'), { buffer: out }); });
  const row = {
    pages: n, pageMiB: bytes / MiB, stateBytes,
    memcpyMs, encodeMs, sealedMs,
    memcpyMBps: mbps(bytes, memcpyMs), encodeMBps: mbps(bytes, encodeMs), sealedMBps: mbps(bytes, sealedMs),
    encodePagesPerS: n / (encodeMs / 1000),
  };
  dirtyCases.push(row);
  console.log(`${String(n).padStart(7)} pages (${(bytes / MiB).toFixed(1).padStart(5)} MiB): memcpy ${row.memcpyMBps.toFixed(0).padStart(5)} (${memcpyMs.toFixed(1)} ms), ` +
    `encode ${row.encodeMBps.toFixed(0).padStart(5)} (${encodeMs.toFixed(1)} ms), encode + CRC-32C seal ${row.sealedMBps.toFixed(0).padStart(5)} (${sealedMs.toFixed(1)} ms)`);
}
if (sink === 0.5) console.log(sink);

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
  dirtyCheckpoints: dirtyCases,
};
const out = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(out, { recursive: true });
writeFileSync(`${out}vm-state.json`, `${JSON.stringify(results, null, 2)}\n`);
