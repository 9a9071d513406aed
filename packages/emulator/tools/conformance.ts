/**
 * Runs single-instruction CPU conformance vectors (the format described in
 * test/data/conformance/80286-real/README.md) against the core.
 *
 *   pnpm conformance <dir> [--exclusions FILE] [--verbose]
 *
 * Prints per-file counts, then a total line "N passed, N failed". Tests listed by hash in
 * the exclusion file (JSON: { "<hash>": "<reason>" }) are reported as excluded, not run.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, basename } from 'node:path';
import { Cpu, StopReason } from '../src/cpu.ts';
import type { RegisterName } from '../src/cpu-state.ts';

export interface VectorRegs { [name: string]: number }
export interface Vector {
  name: string;
  bytes: number[];
  initial: { regs: VectorRegs; ram: [number, number][] };
  final: { regs: VectorRegs; ram: [number, number][] };
  flags_mask: number;
  exception?: { number: number; flag_address: number };
  idx: number;
  hash: string;
}

export interface FileResult { file: string; passed: number; failed: number; excluded: number; failures: string[] }

const REGS: RegisterName[] = ['eax', 'ebx', 'ecx', 'edx', 'esi', 'edi', 'ebp', 'esp', 'eip', 'eflags',
  'cs', 'ds', 'es', 'fs', 'gs', 'ss'];
const STEP_CAP = 1000;

export class ConformanceRunner {
  private readonly cpu: Cpu;

  constructor() {
    // 18 MiB: real-mode addresses reach 0x10FFEF with A20 enabled.
    this.cpu = new Cpu({
      ramBytes: 18 * 1024 * 1024,
      bus: {
        ioRead: (_p, size) => (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff),
        ioWrite: () => {},
        mmioRead: () => 0xffffffff,
        mmioWrite: () => {},
        interruptAcknowledge: () => -1,
      },
    });
  }

  /** Leave RAM clean for the next vector: only the bytes a test names matter. */
  private clear(v: Vector): void {
    for (const [addr] of v.initial.ram) this.cpu.ram[addr] = 0;
    for (const [addr] of v.final.ram) this.cpu.ram[addr] = 0;
  }

  /** Run one vector; returns a description of the first mismatch, or null when it passes. */
  runVector(v: Vector): string | null {
    const cpu = this.cpu;
    cpu.reset();
    const ram = cpu.ram;
    for (const [addr, byte] of v.initial.ram) ram[addr] = byte;
    const st = cpu.state;
    st.set('cr0', v.initial.regs.cr0 ?? 0x10);
    for (const r of REGS) {
      const val = v.initial.regs[r];
      if (val !== undefined) st.set(r, val);
    }
    let stop: StopReason;
    try {
      stop = cpu.run(STEP_CAP);
    } catch (e) {
      this.clear(v);
      throw e;
    }
    const problems: string[] = [];
    if (stop !== StopReason.Halt) problems.push(`did not reach HLT (stop ${StopReason[stop]})`);
    for (const r of REGS) {
      const expected = v.final.regs[r] ?? v.initial.regs[r];
      if (expected === undefined) continue;
      const actual = st.get(r);
      if (r === 'eflags') {
        if (((actual ^ expected) & v.flags_mask) >>> 0 !== 0) {
          problems.push(`eflags ${hex(actual)} != ${hex(expected)} (mask ${hex(v.flags_mask)})`);
        }
      } else if (actual !== expected) {
        problems.push(`${r} ${hex(actual)} != ${hex(expected)}`);
      }
    }
    const flagAddr = v.exception?.flag_address;
    for (const [addr, byte] of v.final.ram) {
      let mask = 0xff;
      if (flagAddr !== undefined && addr === flagAddr) mask = v.flags_mask & 0xff;
      if (flagAddr !== undefined && addr === flagAddr + 1) mask = (v.flags_mask >>> 8) & 0xff;
      if (((ram[addr] ^ byte) & mask) !== 0) problems.push(`ram[${hex(addr)}] ${hex(ram[addr])} != ${hex(byte)}`);
    }
    this.clear(v);
    return problems.length ? problems.join('; ') : null;
  }
}

function hex(n: number): string { return '0x' + (n >>> 0).toString(16); }

export function readVectors(file: string): Vector[] {
  const text = gunzipSync(readFileSync(file)).toString('utf8');
  const out: Vector[] = [];
  let line = 0;
  for (const l of text.split('\n')) {
    line++;
    if (!l.trim()) continue;
    try {
      out.push(JSON.parse(l) as Vector);
    } catch (e) {
      throw new Error(`${file}:${line}: malformed vector: ${(e as Error).message}`);
    }
  }
  return out;
}

export function loadExclusions(file: string | undefined): Map<string, string> {
  const m = new Map<string, string>();
  if (!file || !existsSync(file)) return m;
  const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  for (const [hash, reason] of Object.entries(data)) m.set(hash, reason);
  return m;
}

export function runConformanceDir(dir: string, exclusions: Map<string, string>): FileResult[] {
  if (!existsSync(dir)) throw new Error(`no such directory: ${dir}`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl.gz') || f.endsWith('.jsonl')).sort();
  if (files.length === 0) throw new Error(`no vector files (*.jsonl.gz) in ${dir}`);
  const runner = new ConformanceRunner();
  const results: FileResult[] = [];
  for (const f of files) {
    const r: FileResult = { file: f, passed: 0, failed: 0, excluded: 0, failures: [] };
    for (const v of readVectors(join(dir, f))) {
      if (exclusions.has(v.hash)) { r.excluded++; continue; }
      let problem: string | null;
      try {
        problem = runner.runVector(v);
      } catch (e) {
        problem = `host error: ${(e as Error).message}`;
      }
      if (problem) { r.failed++; r.failures.push(`${v.hash.slice(0, 12)} ${v.name}: ${problem}`); } else r.passed++;
    }
    results.push(r);
  }
  return results;
}

function main(argv: string[]): number {
  let dir: string | undefined;
  let exclusionsFile: string | undefined;
  let verbose = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--exclusions') exclusionsFile = argv[++i];
    else if (a === '--verbose' || a === '-v') verbose = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: pnpm conformance <dir> [--exclusions FILE] [--verbose]');
      return 0;
    } else if (a.startsWith('-')) { console.error(`conformance: unknown option ${a}`); return 2; }
    else dir = a;
  }
  if (!dir) { console.error('usage: pnpm conformance <dir> [--exclusions FILE] [--verbose]'); return 2; }
  if (!exclusionsFile) {
    const beside = join(dir, '..', `${basename(dir)}.exclusions.json`);
    if (existsSync(beside)) exclusionsFile = beside;
  }
  let results: FileResult[];
  try {
    results = runConformanceDir(dir, loadExclusions(exclusionsFile));
  } catch (e) {
    console.error(`conformance: ${(e as Error).message}`);
    return 2;
  }
  let passed = 0, failed = 0, excluded = 0;
  for (const r of results) {
    passed += r.passed; failed += r.failed; excluded += r.excluded;
    console.log(`${r.file.padEnd(20)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(4)} failed` +
      (r.excluded ? ` ${r.excluded} excluded` : ''));
    if (verbose) for (const f of r.failures) console.log(`    ${f}`);
  }
  if (excluded) console.log(`(${excluded} excluded by ${exclusionsFile})`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && process.argv[1].endsWith('conformance.ts')) {
  process.exitCode = main(process.argv.slice(2));
}
