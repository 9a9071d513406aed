// The decoded-code cache (assembly/codecache.ts) must be invisible: a decoded block does
// what step() does on the same bytes, and a write to a page holding decoded code - by the
// CPU, through any linear alias, or by DMA, into the very block that is running - is seen
// by the next instruction. Random instruction streams are run with the cache on and off and
// must end in the same state; small guests patch their own code in each of those ways.
// The block compiler (src/jit) must be as invisible: every check also runs with it compiling
// each block after its first run (threshold 1) and the runs cut into short slices, so that
// compiled code runs from the second pass on.
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cpu, StopReason, type CpuBus } from '../src/cpu.ts';
import { loadFlat } from '../src/loaders/multiboot.ts';
import { CoreLayout } from '../src/jit/compiler.ts';

const LOAD = 0x100000;
const DATA = 0x180000;
/** The random programs' pass counter (a dword no random instruction reaches). */
const LOOPS = 0x190000;
const STACK_TOP = 0x1a0000;
const MMIO = 0xfee00000;
const RAM_BYTES = 4 * 1024 * 1024;

type Hooks = Partial<Pick<CpuBus, 'ioWrite' | 'mmioWrite'>>;

/** How a program runs: step() only, decoded blocks, or decoded blocks compiled to WASM. */
type Mode = 'interp' | 'cache' | 'jit';
const MODES: Mode[] = ['cache', 'interp', 'jit'];

function makeCpu(hooks: Hooks = {}, mode: Mode = 'cache'): Cpu {
  const bus: CpuBus = {
    ioRead: () => 0xff,
    ioWrite: (port, size, value) => hooks.ioWrite?.(port, size, value),
    mmioRead: () => 0,
    mmioWrite: (addr, size, value) => hooks.mmioWrite?.(addr, size, value),
    interruptAcknowledge: () => -1,
  };
  const cpu = new Cpu({ ramBytes: RAM_BYTES, bus, jitThreshold: mode === 'jit' ? 1 : 0 });
  cpu.exports.code_cache_enable(mode === 'interp' ? 0 : 1);
  return cpu;
}

/** Run to HLT (at most `max` instructions); with the compiler, in slices it compiles between. */
function runToHalt(cpu: Cpu, max: number): StopReason {
  if (!cpu.jit) return cpu.run(max);
  const start = cpu.instructionCount;
  for (;;) {
    const stop = cpu.run(97);
    if (stop !== StopReason.Count || cpu.instructionCount - start >= BigInt(max)) return stop;
  }
}

const GPRS = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi'] as const;

/** Everything a program can change: registers, flags, the counter, data and stack. */
function snapshot(cpu: Cpu): Record<string, unknown> {
  const st = cpu.state;
  const regs = Object.fromEntries(GPRS.map((r) => [r, st.get(r)]));
  return {
    ...regs,
    eip: st.get('eip'),
    eflags: st.get('eflags'),
    instructions: Number(cpu.instructionCount),
    data: Buffer.from(cpu.readPhysical(DATA, 256)).toString('hex'),
    stack: Buffer.from(cpu.readPhysical(STACK_TOP - 512, 512)).toString('hex'),
  };
}

function runProgram(cpu: Cpu, code: Uint8Array): Record<string, unknown> {
  cpu.reset();
  loadFlat(cpu, code, LOAD);
  cpu.writePhysical(DATA, new Uint8Array(256).map((_, i) => (i * 37 + 11) & 0xff));
  cpu.writePhysical(LOOPS, new Uint8Array([3, 0, 0, 0]));
  const stop = runToHalt(cpu, 1_000_000);
  expect(stop).toBe(StopReason.Halt);
  return snapshot(cpu);
}

// ---------------------------------------------------------------------------------------
// Random instruction streams. ESI points at the data area and is never written, ESP and
// EBP are left alone but for balanced PUSH/POP, so every memory operand stays in RAM.

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DEST32 = [0, 1, 2, 3, 7];

class Gen {
  private readonly out: number[] = [];
  private depth = 0;
  /** Set by an idiom that holds its own absolute address. */
  private positional = false;
  constructor(private readonly r: () => number) {}
  int(n: number): number { return Math.floor(this.r() * n); }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]; }
  imm32(): number[] { const v = this.pick([0, 1, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000, 0xffffffff, this.int(2 ** 32)]) >>> 0; return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]; }
  imm16(): number[] { return this.imm32().slice(0, 2); }
  imm8(): number { return this.pick([0, 1, 0x7f, 0x80, 0xff, this.int(256)]); }
  get bytes(): number[] { return this.out; }
  get length(): number { return this.out.length; }

  /** ModRM (+SIB, disp) for an r/m operand; `regField` the ModRM.reg value. */
  rm(regField: number, writeReg: boolean, byteOp: boolean): number[] {
    if (this.r() < 0.5) {
      const rm = byteOp ? this.int(8) : writeReg ? this.pick(DEST32) : this.int(8);
      return [0xc0 | (regField << 3) | rm];
    }
    const disp = this.int(30) * 4 + this.int(4);
    switch (this.int(3)) {
      case 0: return [0x40 | (regField << 3) | 6, disp]; // [esi + disp8]
      case 1: return [0x80 | (regField << 3) | 6, disp, 0, 0, 0]; // [esi + disp32]
      default: return [0x44 | (regField << 3), (this.int(4) << 6) | (4 << 3) | 6, disp]; // SIB, no index
    }
  }

  /** ModRM (+SIB, disp) for a memory operand. */
  mrm(regField: number): number[] {
    for (;;) {
      const b = this.rm(regField, false, false);
      if (b[0] >> 6 !== 3) return b;
    }
  }

  /** One random instruction (or a short idiom); returns its bytes. */
  insn(): number[] {
    const o16 = this.r() < 0.15;
    const p = o16 ? [0x66] : [];
    // No CS: the flat code segment is not writable.
    const seg = this.r() < 0.05 ? [this.pick([0x26, 0x36, 0x3e, 0x64, 0x65])] : [];
    const imm = (): number[] => (o16 ? this.imm16() : this.imm32());
    const k = this.int(8);
    switch (this.int(34)) {
      case 0: return [...seg, ...p, 0x01 + 8 * k, ...this.rm(this.int(8), true, false)];
      case 1: return [...seg, ...p, 0x03 + 8 * k, ...this.rm(this.pick(DEST32), false, false)];
      case 2: return [...seg, 0x00 + 8 * k, ...this.rm(this.int(8), true, true)];
      case 3: return [...seg, 0x02 + 8 * k, ...this.rm(this.int(8), false, true)];
      case 4: return this.pick([[0x04 + 8 * k, this.imm8()], [...p, 0x05 + 8 * k, ...imm()]]);
      case 5: return [...seg, ...p, 0x81, ...this.rm(k, true, false), ...imm()];
      case 6: return [...seg, ...p, 0x83, ...this.rm(k, true, false), this.imm8()];
      case 7: return [...seg, 0x80, ...this.rm(k, true, true), this.imm8()];
      case 8: return this.pick([[...p, 0x85, ...this.rm(this.int(8), false, false)], [0x84, ...this.rm(this.int(8), false, true)],
        [0xa8, this.imm8()], [...p, 0xa9, ...imm()], [...p, 0xf7, ...this.rm(0, false, false), ...imm()], [0xf6, ...this.rm(0, false, true), this.imm8()]]);
      case 9: return this.pick([[...seg, ...p, 0x89, ...this.rm(this.int(8), true, false)], [...seg, ...p, 0x8b, ...this.rm(this.pick(DEST32), false, false)],
        [...seg, 0x88, ...this.rm(this.int(8), true, true)], [...seg, 0x8a, ...this.rm(this.int(8), false, true)]]);
      case 10: return this.pick([[...p, 0xc7, ...this.rm(0, true, false), ...imm()], [0xc6, ...this.rm(0, true, true), this.imm8()],
        [...p, 0xb8 + this.pick(DEST32), ...imm()], [0xb0 + this.int(8), this.imm8()]]);
      case 11: {
        const a = DATA + this.int(60) * 4;
        const moffs = [a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, a >>> 24];
        return [...seg, ...p, this.pick([0xa0, 0xa1, 0xa2, 0xa3]), ...moffs];
      }
      case 12: { // LEA in any shape, with any registers: no memory is touched
        const mod = this.int(3);
        const rm = this.int(8);
        const b = [0x8d, (mod << 6) | (this.pick(DEST32) << 3) | rm];
        if (rm === 4) b.push(this.int(256));
        if (mod === 1) b.push(this.int(256));
        if (mod === 2 || (mod === 0 && (rm === 5 || (rm === 4 && (b[2] & 7) === 5)))) b.push(...this.imm32());
        return b;
      }
      case 13: return this.pick([[...p, 0x40 + this.pick(DEST32)], [...p, 0x48 + this.pick(DEST32)],
        [0xfe, ...this.rm(this.int(2), true, true)], [...seg, ...p, 0xff, ...this.rm(this.int(2), true, false)]]);
      case 14: return [0xf7, ...this.rm(2 + this.int(4), true, false)]; // NOT NEG MUL IMUL
      case 15: { // shifts and rotates, by imm8, 1 and CL
        const form = this.int(3);
        const byte = this.r() < 0.3;
        const op = (form === 0 ? 0xc0 : form === 1 ? 0xd0 : 0xd2) + (byte ? 0 : 1);
        return [...(byte ? [] : p), op, ...this.rm(k, true, byte), ...(form === 0 ? [this.int(40)] : [])];
      }
      case 16: return this.pick([[0x0f, 0xaf, ...this.rm(this.pick(DEST32), false, false)],
        [0x69, ...this.rm(this.pick(DEST32), false, false), ...this.imm32()], [0x6b, ...this.rm(this.pick(DEST32), false, false), this.imm8()]]);
      case 17: return [0x0f, this.pick([0xb6, 0xb7, 0xbe, 0xbf]), ...this.rm(this.pick(DEST32), false, false)];
      case 18: return this.pick([[0x0f, 0x90 + this.int(16), ...this.rm(0, true, true)], [0x0f, 0x40 + this.int(16), ...this.rm(this.pick(DEST32), false, false)]]);
      case 19: return this.pick([[0x87, 0xc0 | (this.pick(DEST32) << 3) | this.pick(DEST32)], [0x87, ...this.rm(this.pick(DEST32), true, false)],
        [0x90 + this.pick(DEST32)], [0x98], [0x99], [0x90]]);
      case 20: // PUSH, balanced by POPs
        if (this.depth > 0 && this.r() < 0.5) { this.depth--; return [0x58 + this.pick(DEST32)]; }
        if (this.depth > 40) return [0x90];
        this.depth++;
        return this.pick([[0x50 + this.int(8)], [0x68, ...this.imm32()], [0x6a, this.imm8()], [0xff, ...this.rm(6, false, false)]]);
      case 21: case 22: case 23: { // a flag setter, then a Jcc over the next instruction
        const setter = this.pick([[0x39, 0xc0 | (this.int(8) << 3) | this.int(8)], [0x83, 0xf8 | this.int(8), this.imm8()],
          [0x85, 0xc0 | (this.int(8) << 3) | this.int(8)], [0x48 + this.pick(DEST32)], [0x19, 0xc0 | (this.int(8) << 3) | this.pick(DEST32)],
          [0x81, 0xf8 | this.int(8), ...this.imm32()], [0xa9, ...this.imm32()], [0x29, 0xc0 | (this.int(8) << 3) | this.pick(DEST32)]]);
        const skipped = this.insnNoPush();
        const jcc = this.r() < 0.7 ? [0x70 + this.int(16), skipped.length] : [0x0f, 0x80 + this.int(16), skipped.length, 0, 0, 0];
        return [...setter, ...jcc, ...skipped];
      }
      case 26: { // a string instruction (not REP) on the data area, either direction
        const op = this.pick([0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);
        const size = this.r() < 0.2 ? [0x66] : [];
        const down = this.r() < 0.3;
        return [0x56, 0x57, 0x8d, 0x7e, 64 + this.int(32), 0x8d, 0x76, this.int(32), // push esi/edi; lea edi/esi
          ...(down ? [0xfd] : []), ...seg, ...size, op, ...(down ? [0xfc] : []), 0x5f, 0x5e];
      }
      case 27: // IN and OUT (the test bus reads 0xFF and drops writes)
        return this.pick([[0xe4, 0x80], [0xe5, 0x80], [0x66, 0xe5, 0x80], [0xe6, 0x80], [0xe7, 0x80], [0xec], [0xed], [0x66, 0xed], [0xee], [0xef],
          [0xf3, 0x90]]);
      case 28: case 29: { // bit tests, double shifts, bit scans, BSWAP, XADD, CMPXCHG, CLD/STD
        const d = this.pick(DEST32);
        // LOCK only where it is valid: on a memory destination.
        const locked = (b: number[]): number[] => (this.r() < 0.5 ? [0xf0, ...b] : b);
        // A bit number in EDX, small (either sign), so the byte stays in the data area.
        const v = this.int(512) - 128;
        const edx = [0xba, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff];
        return this.pick([
          [0x0f, this.pick([0xa3, 0xab, 0xb3, 0xbb]), 0xc0 | (this.int(8) << 3) | d],
          [...edx, 0x0f, this.pick([0xa3, 0xab, 0xb3, 0xbb]), 0x56, 64 + this.int(32)],
          [...edx, 0xf0, 0x0f, this.pick([0xab, 0xb3, 0xbb]), 0x56, 64 + this.int(32)],
          locked([0x0f, 0xba, ...this.mrm(5 + this.int(3)), this.int(256)]),
          [0x0f, 0xba, ...this.mrm(4), this.int(256)],
          [0x0f, 0xba, 0xe0 | (this.int(4) << 3) | d, this.int(256)],
          [...seg, 0x0f, this.pick([0xa4, 0xac]), ...this.rm(this.int(8), true, false), this.int(40)],
          [...seg, 0x0f, this.pick([0xa5, 0xad]), ...this.rm(this.int(8), true, false)],
          [...seg, 0x0f, this.pick([0xbc, 0xbd]), ...this.rm(d, false, false)],
          [0x0f, 0xc8 + d],
          [0x0f, 0xc1, ...this.rm(this.pick(DEST32), true, false)],
          locked([0x0f, 0xc1, ...this.mrm(this.pick(DEST32))]),
          [0x0f, 0xb1, ...this.rm(this.pick(DEST32), true, false)],
          locked([0x0f, 0xb1, ...this.mrm(this.pick(DEST32))]),
          [0x39, 0xc0 | (this.int(8) << 3) | this.int(8), 0x0f, 0xb1, ...this.rm(this.pick(DEST32), true, false)],
          [0xfd, 0xfc], [0xfc],
          locked([...p, 0x01 + 8 * this.int(7), ...this.mrm(this.int(8))]),
          locked([0x83, ...this.mrm(k === 7 ? 0 : k), this.imm8()]),
          locked([0xff, ...this.mrm(this.int(2))]),
          locked([0xf7, ...this.mrm(2 + this.int(2))]),
          locked([0x87, ...this.mrm(this.pick(DEST32))]),
        ]);
      }
      case 30: { // REP string instructions on the data area, a few iterations, either direction
        const op = this.pick([0xa4, 0xa5, 0xaa, 0xab, 0xa6, 0xa7, 0xae, 0xaf, 0xac]);
        const rep = this.pick([0xf3, 0xf2]);
        const down = this.r() < 0.3;
        return [0x56, 0x57, 0x8d, 0x7e, 64 + this.int(24) + (down ? 32 : 0), 0x8d, 0x76, this.int(24) + (down ? 32 : 0),
          0xb9, this.int(8), 0, 0, 0, // mov ecx, 0..7
          ...(down ? [0xfd] : []), ...(this.r() < 0.2 ? [0x66] : []), rep, op, ...(down ? [0xfc] : []), 0x5f, 0x5e];
      }
      case 31: // 8- and 16-bit NOT NEG MUL IMUL, flag instructions, RDTSC (the count must be exact)
        return this.pick([[0xf6, ...this.rm(2 + this.int(4), true, true)], [0x66, 0xf7, ...this.rm(2 + this.int(4), true, false)],
          [0x9e], [0x9f], [0xf5], [0xf8], [0xf9], [0x0f, 0x31]]);
      case 32: { // the x87: loads, arithmetic and stores on the data area, the status word into flags
        const at = (reg: number): number[] => this.mrm(reg);
        return this.pick([
          [0xd9, ...at(0), 0xd8, ...at(1), 0xdb, ...at(3)], // fld m32; fmul m32; fistp m32
          [0xdd, ...at(0), 0xdc, ...at(0), 0xdd, ...at(3)], // fld m64; fadd m64; fstp m64
          [0xdb, ...at(0), 0xd9, 0xe8, 0xde, 0xc1, 0xd9, ...at(3)], // fild m32; fld1; faddp; fstp m32
          [0xd9, 0xe8, 0xd9, ...at(0), 0xde, 0xd9, 0xdf, 0xe0, 0x9e], // fld1; fld m32; fcompp; fnstsw ax; sahf
          [0xdf, ...at(5), 0xdf, ...at(7)], // fild m64; fistp m64
        ]);
      }
      case 24: { // CALL to the next instruction and POP the return address; PUSH + RET
        const reg = this.pick(DEST32);
        this.positional = true;
        if (this.r() < 0.5) return [0xe8, 0, 0, 0, 0, 0x58 + reg];
        const next = LOAD + this.length + 6;
        return [0x68, next & 0xff, (next >>> 8) & 0xff, (next >>> 16) & 0xff, next >>> 24, 0xc3];
      }
      default: { // JMP or CALL through a register, to the next instruction
        const reg = this.pick(DEST32);
        this.positional = true;
        const next = LOAD + this.length + 7;
        const mov = [0xb8 + reg, next & 0xff, (next >>> 8) & 0xff, (next >>> 16) & 0xff, next >>> 24];
        return this.r() < 0.5 ? [...mov, 0xff, 0xe0 | reg] : [...mov.slice(0, 5), 0xff, 0xd0 | reg].concat([0x58 + reg]);
      }
    }
  }

  /** An instruction that leaves the stack depth as it is (for the skipped side of a Jcc). */
  insnNoPush(): number[] {
    for (;;) {
      // Not an idiom with an absolute address (it would be wrong after the Jcc), no PUSH/POP.
      const d = this.depth;
      this.positional = false;
      const b = this.insn();
      if (this.depth === d && !this.positional && b[0] !== 0xff) return b;
      this.depth = d;
    }
  }

  emit(b: number[]): void { this.out.push(...b); }
}

function randomProgram(seed: number, count: number): Uint8Array {
  const g = new Gen(rng(seed));
  g.emit([0xbe, DATA & 0xff, (DATA >>> 8) & 0xff, (DATA >>> 16) & 0xff, DATA >>> 24]); // mov esi, DATA
  g.emit([0xbc, STACK_TOP & 0xff, (STACK_TOP >>> 8) & 0xff, (STACK_TOP >>> 16) & 0xff, STACK_TOP >>> 24]); // mov esp
  for (const r of DEST32) g.emit([0xb8 + r, ...g.imm32()]);
  // The body runs three times (DEC of the counter at LOOPS, JNZ back), so that blocks run
  // again once compiled.
  const top = g.length;
  for (let i = 0; i < count; i++) g.emit(g.insn());
  g.emit([0xff, 0x0d, LOOPS & 0xff, (LOOPS >>> 8) & 0xff, (LOOPS >>> 16) & 0xff, LOOPS >>> 24]); // dec dword [LOOPS]
  const rel = top - (g.length + 6);
  g.emit([0x0f, 0x85, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, (rel >>> 24) & 0xff]); // jnz top
  g.emit([0xf4]); // hlt
  return new Uint8Array(g.bytes);
}

describe('decoded blocks', () => {
  it('end random instruction streams in the state the interpreter reaches, compiled or not', () => {
    const cached = makeCpu({}, 'cache');
    const plain = makeCpu({}, 'interp');
    const compiled = makeCpu({}, 'jit');
    for (let seed = 1; seed <= 300; seed++) {
      const code = randomProgram(seed, 120);
      const b = runProgram(plain, code);
      for (const [mode, cpu] of [['cache', cached], ['jit', compiled]] as const) {
        const a = runProgram(cpu, code);
        if (JSON.stringify(a) !== JSON.stringify(b)) {
          expect({ seed, mode, ...a }).toEqual({ seed, mode, ...b });
        }
      }
    }
    // The compiler did run most of it.
    expect(compiled.jit!.stats.blocks).toBeGreaterThan(300);
    expect(Number(compiled.jit!.retired)).toBeGreaterThan(0.5 * 300 * 120);
  });
});

// ---------------------------------------------------------------------------------------
// Code that is written while it is decoded.

let hasNasm = true;
try {
  execFileSync('nasm', ['-v'], { stdio: 'ignore' });
} catch {
  hasNasm = false;
}

function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-cc-'));
  try {
    writeFileSync(join(dir, 'guest.asm'), `bits 32\norg 0x${LOAD.toString(16)}\n${source}`);
    execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 'guest.bin'), join(dir, 'guest.asm')], { stdio: 'pipe' });
    return new Uint8Array(readFileSync(join(dir, 'guest.bin')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `source` in every mode; each must halt with EBX = `ebx`. */
function expectBoth(source: string, ebx: number, hooks: (cpu: Cpu) => Hooks = () => ({})): void {
  const code = assemble(source);
  for (const mode of MODES) {
    const h: Hooks = {};
    const cpu = makeCpu({ ioWrite: (p, s, v) => h.ioWrite?.(p, s, v), mmioWrite: (a, s, v) => h.mmioWrite?.(a, s, v) }, mode);
    Object.assign(h, hooks(cpu));
    loadFlat(cpu, code, LOAD);
    expect(runToHalt(cpu, 1_000_000), mode).toBe(StopReason.Halt);
    expect(cpu.state.get('ebx') >>> 0, mode).toBe(ebx);
  }
}

/** Runs `source` in every mode; each must halt with EBX = `ebx` after the same number of instructions. */
function expectSameCount(source: string, ebx: number): void {
  const code = assemble(source);
  const counts: Record<string, number> = {};
  for (const mode of MODES) {
    const cpu = makeCpu({}, mode);
    loadFlat(cpu, code, LOAD);
    expect(runToHalt(cpu, 1_000_000), mode).toBe(StopReason.Halt);
    expect(cpu.state.get('ebx') >>> 0, mode).toBe(ebx);
    counts[mode] = Number(cpu.instructionCount);
  }
  expect(counts.cache).toBe(counts.interp);
  expect(counts.jit).toBe(counts.interp);
}

/** The offset of `label:` in an assembled guest, found by assembling a marker after it. */
function labelAddress(source: string, label: string): number {
  const code = assemble(source.replace(`${label}:`, `${label}:\n db 0xcc, 0xfd, 0xcc, 0xfd`));
  for (let i = 0; i + 3 < code.length; i++) {
    if (code[i] === 0xcc && code[i + 1] === 0xfd && code[i + 2] === 0xcc && code[i + 3] === 0xfd) return LOAD + i;
  }
  throw new Error(`label ${label} not found`);
}

describe.skipIf(!hasNasm)('a write to decoded code', () => {
  it('is seen by the next instruction of the running block (CPU store)', () => {
    // Each pass stores CL into the immediate of the MOV right after the store, in the same
    // block: the MOV must load the new value, not the one decoded before.
    expectBoth(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, 5
    again:
      mov byte [patch + 1], cl
    patch:
      mov al, 0x11
      add bl, al
      dec ecx
      jnz again
      hlt`, 5 + 4 + 3 + 2 + 1);
  });

  it('is seen through another linear alias of the page', () => {
    // Linear 0x400000 maps the code's physical page too; the patch goes through it.
    expectBoth(String.raw`
      mov esp, 0x1a0000
      mov edi, 0x190000            ; page directory
      mov ecx, 1024
      xor eax, eax
      rep stosd
      mov edi, 0x191000            ; page table for 0-4 MiB: identity
      mov eax, 3
      mov ecx, 1024
    .map:
      stosd
      add eax, 0x1000
      loop .map
      mov dword [0x190000], 0x191003
      mov dword [0x192000 + ((code_page >> 12) & 0x3ff) * 4], code_page + 3 ; 0x400000 + ... -> code page
      mov dword [0x190004], 0x192003
      mov eax, 0x190000
      mov cr3, eax
      mov eax, cr0
      or eax, 0x80000000
      mov cr0, eax
      jmp $ + 2
      xor ebx, ebx
      mov ecx, 5
    again:
      mov byte [0x400000 + (patch + 1 - code_page) + ((code_page >> 12) & 0x3ff) * 0x1000], cl
    patch:
      mov al, 0x11
      add bl, al
      dec ecx
      jnz again
      hlt
    code_page equ 0x100000`, 5 + 4 + 3 + 2 + 1);
  });

  it('by DMA from an MMIO write in the running block is seen by the next instruction', () => {
    // The device rewrites the immediate of the MOV that follows the store to it.
    const source = String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, 5
    again:
      mov [0xfee00000], ecx
    patch:
      mov al, 0x11
      add bl, al
      dec ecx
      jnz again
      hlt`;
    const patch = labelAddress(source, 'patch');
    expectBoth(source, 5 + 4 + 3 + 2 + 1, (cpu) => ({
      mmioWrite: (addr, _size, value) => {
        if (addr === MMIO) cpu.writePhysical(patch + 1, new Uint8Array([value & 0xff]));
      },
    }));
  });

  it('by DMA from an OUT is seen by the instruction after it', () => {
    const source = String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, 5
    again:
      mov eax, ecx
      out 0x80, al
    patch:
      mov al, 0x11
      add bl, al
      dec ecx
      jnz again
      hlt`;
    const patch = labelAddress(source, 'patch');
    expectBoth(source, 5 + 4 + 3 + 2 + 1, (cpu) => ({
      ioWrite: (port, _size, value) => {
        if (port === 0x80) cpu.writePhysical(patch + 1, new Uint8Array([value & 0xff]));
      },
    }));
  });
});

describe.skipIf(!hasNasm)('REP MOVS and STOS, moved a page at a time', () => {
  it('repeat the first bytes when the destination is just above the source', () => {
    // EBX = the sum of the 64 bytes after the copy: 64 times the first byte.
    expectBoth(String.raw`
      mov esp, 0x1a0000
      mov edi, 0x180000
      mov ecx, 65
      mov al, 3
      rep stosb
      mov byte [0x180000], 7
      mov esi, 0x180000
      mov edi, 0x180001
      mov ecx, 63
      rep movsb
      xor ebx, ebx
      mov esi, 0x180000
      mov ecx, 64
    sum:
      movzx eax, byte [esi]
      add ebx, eax
      inc esi
      dec ecx
      jnz sum
      hlt`, 64 * 7);
  });

  it('fill and copy across page boundaries with unaligned ends', () => {
    // 3000 dwords from 0x180ffe: EBX = the count of dwords equal to the pattern afterwards.
    expectBoth(String.raw`
      mov esp, 0x1a0000
      mov edi, 0x180ffe
      mov ecx, 3000
      mov eax, 0x5a5aa5a5
      rep stosd
      mov esi, 0x180ffe
      mov edi, 0x184ffd
      mov ecx, 3000
      rep movsd
      xor ebx, ebx
      mov esi, 0x184ffd
      mov ecx, 3000
    count:
      cmp dword [esi], 0x5a5aa5a5
      jne .skip
      inc ebx
    .skip:
      add esi, 4
      dec ecx
      jnz count
      hlt`, 3000);
  });

  it('by a bit-test instruction is seen by the next one, with the same count in every mode', () => {
    // BTS sets bit 0 of the MOV's immediate right after it; the next pass
    // clears it again with BTR. The MOV must load what memory holds each time.
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, 6
    again:
      bts dword [patch + 1], 0
    patch:
      mov eax, 0x10
      add ebx, eax
      btr dword [patch + 1], 0
      mov edx, 0x100
      add ebx, edx
      dec ecx
      jnz again
      hlt`, 6 * 0x111);
  });

  it('by a REP STOSB is seen by the next instruction, with the same count in every mode', () => {
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov edx, 4
    again:
      mov edi, patch + 1
      mov al, dl
      mov ecx, 1
      rep stosb
    patch:
      mov al, 0x55
      add bl, al
      dec edx
      jnz again
      hlt`, 4 + 3 + 2 + 1);
  });

  it('REP chunks restart themselves with the same count, decoded, compiled or not', () => {
    // 10000 bytes is more than one chunk of step(): the REP restarts itself at its own EIP.
    // Enough passes that the loop runs compiled after the first slices.
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov edx, 40
    again:
      mov edi, 0x180000
      mov ecx, 10000
      mov al, dl
      rep stosb
      add ebx, [0x180000 + 9999]
      inc ebx
      dec edx
      jnz again
      hlt`, (40 * 41) / 2 + 40);
  });

  it('into a page of decoded code is seen by the code', () => {
    // The copy overwrites the immediate of a MOV that already ran (and was decoded).
    expectBoth(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, 2
    again:
    patch:
      mov eax, 0x11111111
      add ebx, eax
      mov esi, newimm
      mov edi, patch + 1
      push ecx
      mov ecx, 4
      rep movsb
      pop ecx
      dec ecx
      jnz again
      hlt
    newimm: dd 0x22222222`, 0x33333333);
  });
});

// ---------------------------------------------------------------------------------------
// Chaining: a compiled block goes straight on into the compiled block its exit leads to
// (through the exit site's slot), and a compiled CALL waits in its frame for the callee's
// RET to come back to the next instruction. None of it may show.

// The same programs with every function on one page: a function then holds both a CALL and
// its callee, and the callee's RET goes on in line at the instruction after the CALL when
// that is where it returns to.
for (const [what, page] of [['across pages', 'align 4096'], ['on one page', '']] as const) {
  describe.skipIf(!hasNasm)(`compiled blocks that go straight on into one another, ${what}`, () => {
    it('call and return, deeper than a chain may go, as the interpreter does', () => {
      // rec recurses 40 deep (a chain stops at 24 frames and goes on from run_cached), leaf2
      // calls leaf3; across pages, every CALL and RET leaves a compiled function.
      expectSameCount(String.raw`
        mov esp, 0x1a0000
        xor ebx, ebx
        mov edi, 30
      outer:
        mov ecx, 40
        call rec
        call leaf2
        add ebx, eax
        dec edi
        jnz outer
        hlt
        ${page}
      rec:
        add ebx, ecx
        dec ecx
        jz .done
        push ecx
        call rec
        pop ecx
      .done:
        ret
        ${page}
      leaf2:
        mov eax, 3
        call leaf3
        ret
        ${page}
      leaf3:
        add eax, 4
        ret`, 30 * (820 + 7));
    });

    it('a RET to somewhere else than after its CALL goes there', () => {
      // swap replaces its return address; one RET site sees two targets in turn.
      expectSameCount(String.raw`
        mov esp, 0x1a0000
        xor ebx, ebx
        mov edi, 20
      outer:
        call swap
        add ebx, 1000
      other:
        add ebx, 1
        call plain
        add ebx, 2
        dec edi
        jnz outer
        hlt
        ${page}
      swap:
        mov dword [esp], other
      plain:
        ret`, 20 * 3);
    });

    it('a callee that rewrites the code after its CALL is seen when it returns', () => {
      // patcher stores EDI into the immediate of the MOV the CALL returns to.
      expectSameCount(String.raw`
        mov esp, 0x1a0000
        xor ebx, ebx
        mov edi, 10
      outer:
        call patcher
      patch:
        mov al, 0x11
        add bl, al
        dec edi
        jnz outer
        hlt
        ${page}
      patcher:
        mov eax, edi
        mov byte [patch + 1], al
        ret`, 55);
    });
  });
}

// The compiler works out 8- and 16-bit ALU operations, IMUL and INC/DEC's kept CF in line
// (src/jit/compiler.ts): conditions on them must see the operands at their size.
describe.skipIf(!hasNasm)('8- and 16-bit compares, IMUL and INC after them, compiled', () => {
  it('take the branches the interpreter takes', () => {
    const N = 6000;
    // The same loop in JS: EAX runs through products of the counter, so AX and AL take
    // values near the ends of their ranges, where an operand not cut to its size would
    // give another answer.
    let ebx = 0;
    for (let ecx = N; ecx > 0; ecx--) {
      const eax = Math.imul(ecx, 0x9e3779b1) >>> 0;
      const ax = (eax ^ (eax >>> 16)) & 0xffff, al = ax & 0xff;
      if (!(ax < 0xffff)) ebx += 1;                       // cmp ax, -1 / jb
      if (!(al >= 0xfe)) ebx += 3;                        // cmp al, -2 / jae
      const sum = ax + 0x7fff;
      if (!(sum > 0xffff)) ebx += 7;                      // add ax, 0x7fff / jc
      const a8 = sum & 0xff;
      if (!(((a8 << 24) >> 24) < 5)) ebx += 11;           // cmp al, 5 / jl
      if ((((sum - 1) & 0xffff) << 16 >> 16) >= 0) ebx += 13; // dec dx / jns
      ebx = (ebx + ((sum & 0xff) < 0x10 ? 1 : 0)) >>> 0;   // cmp al, 0x10 / inc edx / adc ebx, 0
    }
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, ${N}
    next:
      imul eax, ecx, 0x9e3779b1
      mov edx, eax
      shr edx, 16
      xor eax, edx
      cmp ax, -1
      jb .l1
      add ebx, 1
    .l1:
      cmp al, -2
      jae .l2
      add ebx, 3
    .l2:
      add ax, 0x7fff
      jc .l3
      add ebx, 7
    .l3:
      cmp al, 5
      jl .l4
      add ebx, 11
    .l4:
      mov dx, ax
      dec dx
      js .l5
      add ebx, 13
    .l5:
      cmp al, 0x10
      inc edx
      adc ebx, 0
      dec ecx
      jnz next
      hlt`, ebx);
  });
});

describe.skipIf(!hasNasm)('conditions on flags an earlier block set', () => {
  it('read them as the interpreter does, for every condition after CMP, CMP of bytes and TEST', () => {
    // Each operation is followed by a JMP to the next instruction, which ends its block: the
    // condition after it reads the lazy flags in CPU_STATE (compiled: through jit_test_cc).
    // Operand pairs around equality and the signed and unsigned wrap points.
    const pairs: [number, number][] = [
      [0, 0], [1, 0], [0, 1], [5, 5], [0x7fffffff, 0x80000000], [0x80000000, 0x7fffffff],
      [0xffffffff, 0], [0, 0xffffffff], [0x80000000, 0x80000000], [0xffffffff, 0xffffffff],
      [0x80000000, 1], [1, 0x80000000], [0x7fffffff, 0xffffffff], [0xffffffff, 0x7fffffff],
      [0x12345678, 0x12345677], [0x12345677, 0x12345678], [0xfffffffe, 0xffffffff], [0x40, 0xc0],
      [0x17f, 0x280], [0x280, 0x17f], [0xff00ff00, 0x00ff00ff],
    ];
    const JCC = ['jo', 'jno', 'jb', 'jae', 'je', 'jne', 'jbe', 'ja', 'js', 'jns', 'jp', 'jnp', 'jl', 'jge', 'jle', 'jg'];
    interface F { of: boolean; cf: boolean; zf: boolean; sf: boolean; pf: boolean }
    const parity = (r: number) => { let p = true; for (let i = 0; i < 8; i++) if ((r >> i) & 1) p = !p; return p; };
    const sub = (a: number, b: number, bits: 8 | 32): F => {
      const m = bits === 8 ? 0xff : 0xffffffff, top = bits - 1;
      a = (a & m) >>> 0; b = (b & m) >>> 0;
      const r = ((a - b) & m) >>> 0;
      return { of: (((a ^ b) & (a ^ r)) >>> top & 1) === 1, cf: a < b, zf: r === 0, sf: (r >>> top & 1) === 1, pf: parity(r) };
    };
    const test = (a: number, b: number): F => {
      const r = (a & b) >>> 0;
      return { of: false, cf: false, zf: r === 0, sf: r >>> 31 === 1, pf: parity(r) };
    };
    const holds = (cc: number, f: F): boolean => {
      const base = [f.of, f.cf, f.zf, f.cf || f.zf, f.sf, f.pf, f.sf !== f.of, f.zf || f.sf !== f.of][cc >> 1]!;
      return (cc & 1) === 1 ? !base : base;
    };
    const OPS: [string, (a: number, b: number) => F][] = [
      ['cmp eax, edx', (a, b) => sub(a, b, 32)],
      ['cmp al, dl', (a, b) => sub(a, b, 8)],
      ['test eax, edx', test],
    ];
    const PASSES = 3;
    let ebx = 0;
    for (let pass = 0; pass < PASSES; pass++) {
      for (const [a, b] of pairs) {
        for (const [, flags] of OPS) {
          let mask = 0;
          for (let cc = 0; cc < 16; cc++) if (!holds(cc, flags(a, b))) mask |= 1 << cc;
          ebx = (Math.imul(ebx, 31) + mask) >>> 0;
        }
      }
    }
    const conds = OPS.map(([op], o) => `
      xor edi, edi` + JCC.map((j, cc) => `
      ${op}
      jmp short .c${o}_${cc}
    .c${o}_${cc}:
      ${j} .t${o}_${cc}
      or edi, ${1 << cc}
    .t${o}_${cc}:`).join('') + `
      imul ebx, ebx, 31
      add ebx, edi`).join('');
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ebp, ${PASSES}
    pass:
      mov esi, pairs
      mov ecx, ${pairs.length}
    pair:
      mov eax, [esi]
      mov edx, [esi + 4]
      ${conds}
      add esi, 8
      dec ecx
      jnz pair
      dec ebp
      jnz pass
      hlt
    align 4
    pairs: dd ${pairs.map(([a, b]) => `${a}, ${b}`).join(', ')}`, ebx);
  });
});

describe.skipIf(!hasNasm)('32-bit rotates by a constant, compiled', () => {
  it('leave CF and OF as the interpreter does', () => {
    const N = 3000;
    const rol = (v: number, c: number) => ((v << c) | (v >>> (32 - c))) >>> 0;
    let ebx = 0;
    let eax = 0;
    // The same loop in JS, with CF and OF as shift_op() gives them (OF for counts above 1 too).
    const flags = (r: number, left: boolean) => {
      const cf = left ? r & 1 : r >>> 31;
      const of = left ? (r >>> 31) ^ cf : (r >>> 31) ^ ((r >>> 30) & 1);
      ebx = (ebx + cf + 2 * of) >>> 0;
    };
    for (let ecx = N; ecx > 0; ecx--) {
      eax = Math.imul(ecx, 0x9e3779b1) >>> 0;
      for (const [left, c] of [[true, 1], [false, 13], [true, 31], [false, 1], [true, 7]] as const) {
        eax = left ? rol(eax, c) : rol(eax, 32 - c);
        flags(eax, left);
      }
      ebx = (ebx + eax) >>> 0;
    }
    const step = (insn: string) => `
      ${insn}
      setc dl
      seto dh
      movzx esi, dl
      add ebx, esi
      movzx esi, dh
      add ebx, esi
      add ebx, esi`;
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov ecx, ${N}
    next:
      imul eax, ecx, 0x9e3779b1
      ${step('rol eax, 1')}
      ${step('ror eax, 13')}
      ${step('rol eax, 31')}
      ${step('ror eax, 1')}
      ${step('rol eax, 7')}
      add ebx, eax
      dec ecx
      jnz next
      hlt`, ebx);
  });
});

describe.skipIf(!hasNasm)('8- and 16-bit shifts, compiled', () => {
  it('give the result and flags the interpreter gives', () => {
    const N = 2000;
    let ebx = 0;
    // The same loop in JS, with the flags of shift_fast() (CF OF ZF SF, as PUSHFD shows them).
    const shift = (sub: 'shl' | 'shr' | 'sar', a: number, c: number, sh: number, full: number, andFlags: number) => {
      const m = sh === 15 ? 0xffff : 0xff;
      a &= m;
      let r = a, flags = andFlags;
      if (c !== 0) {
        let cf: number, of: number;
        if (sub === 'shr') { r = a >>> c; cf = (a >>> (c - 1)) & 1; of = (a >>> sh) & 1; }
        else if (sub === 'sar') { const sa = (a << (31 - sh)) >> (31 - sh); r = (sa >> c) & m; cf = (sa >> (c - 1)) & 1; of = 0; }
        else { r = (a << c) & m; cf = (a >>> (sh + 1 - c)) & 1; of = ((r >>> sh) ^ cf) & 1; }
        flags = cf | (r === 0 ? 0x40 : 0) | (((r >>> sh) & 1) << 7) | (of << 11);
      }
      const edx = ((full & ~m) | r) >>> 0;
      ebx = (ebx + flags + edx) >>> 0;
    };
    // Flags after AND ECX, n: ZF alone if the count is 0.
    const z = (c: number) => (c === 0 ? 0x40 : 0);
    for (let edi = N; edi > 0; edi--) {
      const eax = Math.imul(edi, 0x9e3779b1) >>> 0;
      const c16 = edi & 15, c8 = edi & 7;
      shift('shr', eax, c16, 15, eax, z(c16));
      shift('sar', eax, c16, 15, eax, z(c16));
      shift('shl', eax, c16, 15, eax, z(c16));
      shift('shr', eax, c8, 7, eax, z(c8));
      shift('sar', eax, c8, 7, eax, z(c8));
      shift('shl', eax, 3, 7, eax, 0);
      shift('sar', eax, 9, 15, eax, 0);
      shift('shr', eax, 1, 7, eax, 0);
    }
    const capture = `
      pushfd
      pop esi
      and esi, 0x8c1
      add ebx, esi
      add ebx, edx`;
    const byCl = (mask: number, insn: string) => `
      mov ecx, edi
      and ecx, ${mask}
      mov edx, eax
      ${insn}
      ${capture}`;
    const byImm = (insn: string) => `
      xor ecx, ecx
      mov edx, eax
      ${insn}
      ${capture}`;
    expectSameCount(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov edi, ${N}
    next:
      imul eax, edi, 0x9e3779b1
      ${byCl(15, 'shr dx, cl')}
      ${byCl(15, 'sar dx, cl')}
      ${byCl(15, 'shl dx, cl')}
      ${byCl(7, 'shr dl, cl')}
      ${byCl(7, 'sar dl, cl')}
      ${byImm('shl dl, 3')}
      ${byImm('sar dx, 9')}
      ${byImm('shr dl, 1')}
      dec edi
      jnz next
      hlt`, ebx);
  });
});

// ---------------------------------------------------------------------------------------
// A block remembers the blocks the run went on to after it, and the next lookup from it
// takes one of those instead of the block hash. A remembered block is checked as a hash
// entry is (its page's generation: the chaining group's "callee that rewrites the code
// after its CALL" fails without that check) and is never read or written across a flush of
// the record arena.

describe.skipIf(!hasNasm)("a block's remembered successors", () => {
  it('go on right when the record arena fills and is flushed in the middle of a run', () => {
    // 280 000 one-instruction blocks (a short JMP to the next) take more records than the
    // arena holds, so each pass forgets all decoded code at least once, inside one run().
    const code = assemble(String.raw`
      mov esp, 0x1a0000
      xor ebx, ebx
      mov edi, 2
    outer:
      times 280000 db 0xeb, 0x00  ; jmp short to the next instruction
      add ebx, 5
      dec edi
      jnz outer
      hlt`);
    const result: Record<string, [number, number]> = {};
    for (const mode of ['interp', 'cache'] as const) {
      const cpu = makeCpu({}, mode);
      loadFlat(cpu, code, LOAD);
      const flushes = new CoreLayout(cpu.exports as never).get('JIT_FLUSHES');
      const before = new DataView(cpu.memory.buffer).getUint32(flushes, true);
      expect(cpu.run(1_000_000), mode).toBe(StopReason.Halt);
      result[mode] = [cpu.state.get('ebx') >>> 0, Number(cpu.instructionCount)];
      if (mode === 'cache') expect(new DataView(cpu.memory.buffer).getUint32(flushes, true) - before).toBeGreaterThanOrEqual(2);
    }
    expect(result.interp).toEqual([10, 3 + 2 * 280_003 + 1]);
    expect(result.cache).toEqual(result.interp);
  });
});

// ---------------------------------------------------------------------------------------
// Counting: blocks count their instructions as a whole, yet a run stops at its budget, and
// a fault or a device sees the count, exactly where the interpreter has them.

describe('the instruction count in decoded blocks', () => {
  it('stops a run at any budget, inside blocks too, compiled or not', () => {
    const cpus = MODES.map((mode) => makeCpu({}, mode));
    for (let seed = 1; seed <= 60; seed++) {
      const code = randomProgram(seed, 120);
      const r = rng(seed * 7919);
      for (const cpu of cpus) {
        cpu.reset();
        loadFlat(cpu, code, LOAD);
        cpu.writePhysical(DATA, new Uint8Array(256).map((_, i) => (i * 37 + 11) & 0xff));
        cpu.writePhysical(LOOPS, new Uint8Array([3, 0, 0, 0]));
      }
      // The same budgets for all: 1-40 instructions, up to the HLT.
      for (let stop = StopReason.Count; stop !== StopReason.Halt;) {
        const budget = 1 + Math.floor(r() * 40);
        stop = cpus[0]!.run(budget);
        const want = snapshot(cpus[0]!);
        for (let i = 1; i < cpus.length; i++) {
          expect(cpus[i]!.run(budget)).toBe(stop);
          const got = snapshot(cpus[i]!);
          if (JSON.stringify(got) !== JSON.stringify(want)) expect({ seed, mode: MODES[i], ...got }).toEqual({ seed, mode: MODES[i], ...want });
        }
      }
    }
    expect(Number(cpus[2]!.jit!.retired)).toBeGreaterThan(0);
  });
});

describe.skipIf(!hasNasm)('faults and devices in the middle of a block', () => {
  // Each pass runs one block holding a load past FS.limit (#GP), a DIV by zero (#DE) and
  // an MMIO read, then a load past DS.limit with DS made small for it (compiled code that
  // takes DS as flat must see that it is not); the handlers fix the cause and return to retry. Every handler and the
  // device record the instruction count; the handlers fold the faulting EIP and ESP into
  // EBX. Both must come out as without decoded blocks, on the passes after the first too.
  const source = String.raw`
      mov esp, 0x1a0000
      lgdt [gdtr]
      jmp 0x08:flat
    flat:
      mov ax, 0x10
      mov ds, ax
      mov es, ax
      mov ss, ax
      mov ax, 0x18
      mov fs, ax
      lidt [idtr]
      xor ebx, ebx
      mov esi, 4
    pass:
      mov edi, 0x2000
      xor ecx, ecx
      add ebx, 1
      mov eax, [fs:edi]
      add ebx, eax
      push ebx
      xor edx, edx
      mov eax, 100
      div ecx
      pop ebx
      add ebx, eax
      add ebx, [0xfee00000]
      mov ax, 0x18
      mov ds, ax
      mov edi, 0x19fff0              ; past DS.limit, in the stack's page (a TLB hit)
      add ebx, [edi]
      mov ax, 0x10
      mov ds, ax
      lea ebx, [ebx + ebx * 2]
      dec esi
      jnz pass
      hlt
    de_handler:
      out 0x80, al
      add ebx, [esp]
      add ebx, esp
      mov ecx, 7
      iret
    gp_handler:
      out 0x80, al
      add ebx, [esp + 4]
      add ebx, esp
      mov edi, 0x10
      add esp, 4
      iret
    align 8
    gdt:
      dq 0
      dq 0x00cf9a000000ffff          ; 0x08: flat code
      dq 0x00cf92000000ffff          ; 0x10: flat data
      dw 0x0fff, 0x0000              ; 0x18: data at 0x180000, limit 0xfff
      db 0x18, 0x92, 0x40, 0x00
    gdtr:
      dw gdtr - gdt - 1
      dd gdt
    idt:
      %assign v 0
      %rep 14
        %if v == 0
          dw (de_handler - $$ + 0x100000) & 0xffff, 0x08, 0x8e00, (de_handler - $$ + 0x100000) >> 16
        %elif v == 13
          dw (gp_handler - $$ + 0x100000) & 0xffff, 0x08, 0x8e00, (gp_handler - $$ + 0x100000) >> 16
        %else
          dq 0
        %endif
        %assign v v + 1
      %endrep
    idtr:
      dw idtr - idt - 1
      dd idt`;

  it('see the count, EIP and ESP the interpreter gives them', () => {
    const code = assemble(source);
    const seen: { ebx: number; counts: string[] }[] = [];
    for (const mode of MODES) {
      const counts: string[] = [];
      let cpu: Cpu | undefined;
      const bus: CpuBus = {
        ioRead: () => 0xff,
        ioWrite: (port) => { if (port === 0x80) counts.push(`fault ${cpu!.instructionCount}`); },
        mmioRead: (addr) => { counts.push(`mmio ${addr.toString(16)} ${cpu!.instructionCount}`); return 0x100; },
        mmioWrite: () => {},
        interruptAcknowledge: () => -1,
      };
      cpu = new Cpu({ ramBytes: RAM_BYTES, bus, jitThreshold: mode === 'jit' ? 1 : 0 });
      cpu.exports.code_cache_enable(mode === 'interp' ? 0 : 1);
      loadFlat(cpu, code, LOAD);
      expect(runToHalt(cpu, 1_000_000), mode).toBe(StopReason.Halt);
      counts.push(`end ${cpu.instructionCount}`);
      seen.push({ ebx: cpu.state.get('ebx') >>> 0, counts });
    }
    expect(seen[0].counts.length).toBe(4 * 4 + 1);
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[2]).toEqual(seen[0]);
  });
});
