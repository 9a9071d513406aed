// The x87 instruction layer (fpu.ts) driven like the dispatcher drives it: fpu_exec(op,
// modrm, seg, offset, o32) over the core's real memory and register code, with operands in
// guest RAM. Expected values come from the Intel SDM (constants, image layouts, condition
// codes, masked responses) and from JavaScript's f64 arithmetic and BigInt.
import { describe, it, expect, beforeAll, beforeEach } from 'vitest';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';

const pkgDir = fileURLToPath(new URL('..', import.meta.url));
const FAULT = new Error('core fault');

let mem: WebAssembly.Memory;
let X: Record<string, (...a: number[]) => number>;
let G: Record<string, number>;
let ferrCalls: number[] = [];
let u8: Uint8Array, dv: DataView;

beforeAll(async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'ftx86-fpu-')), 'fpu.wasm');
  const stderr: string[] = [];
  const { error } = await asc.main(
    ['assembly/test-entries/fpu-entry.ts', '-o', out, '--runtime', 'stub', '-O3', '--noAssert', '--importMemory',
      '--baseDir', pkgDir],
    { stderr: { write: (s: string) => { stderr.push(String(s)); return true; } } as never },
  );
  if (error) throw new Error(`asc failed: ${error.message}\n${stderr.join('')}`);
  mem = new WebAssembly.Memory({ initial: (32 + 2) * 16, maximum: (32 + 2) * 16 }); // RAM at 32 MiB (layout.ts)
  const { instance } = await WebAssembly.instantiate(readFileSync(out), {
    env: { memory: mem, abort: () => { throw new Error('abort'); } },
    host: {
      raise: () => { throw FAULT; },
      mmio_read: () => 0xffffffff,
      mmio_write: () => {},
      fpu_ferr: (level: number) => { ferrCalls.push(level); },
    },
  });
  const ex = instance.exports as Record<string, unknown>;
  X = ex as Record<string, (...a: number[]) => number>;
  G = {};
  for (const [k, v] of Object.entries(ex)) if (v instanceof WebAssembly.Global) G[k] = v.value as number;
  u8 = new Uint8Array(mem.buffer);
  dv = new DataView(mem.buffer);
});

// Segment registers and attributes (state.ts / memory.ts encodings).
const ES = 0, CS = 1, SS = 2, DS = 3;
const ATTR_P = 1 << 7, ATTR_S = 1 << 4, ATTR_RW = 1 << 1, ATTR_DB = 1 << 14, ATTR_VALID = 1 << 16;
const ATTR_READ_OK = 1 << 17, ATTR_WRITE_OK = 1 << 18;
const CR0_PE = 1, CR0_MP = 2, CR0_TS = 8, CR0_ET = 0x10, CR0_NE = 0x20;
const DS_BASE = 0x20000;

const cpu = (off: number) => G.CPU_STATE + off;
const fpu = (off: number) => G.CPU_STATE + G.FPU_STATE + off;
const ram = (addr: number) => G.RAM + addr;
function setSeg(s: number, sel: number, base: number, limit: number, attr: number) {
  const a = cpu(G.SEG_BASE_OFF + s * G.SEG_SIZE);
  dv.setUint32(a, sel, true); dv.setUint32(a + 4, base, true); dv.setUint32(a + 8, limit, true); dv.setUint32(a + 12, attr, true);
}
function setCr0(v: number) { dv.setUint32(cpu(G.REG_CR0), v, true); }

beforeEach(() => {
  u8.fill(0, G.CPU_STATE, G.CPU_STATE + 0x1000);
  u8.fill(0, G.TLB, G.TLB + 0x400000);
  u8.fill(0, G.RAM, G.RAM + 0x100000);
  dv.setUint32(cpu(G.RAM_SIZE), 0x100000, true);
  dv.setUint32(cpu(G.A20_MASK), 0xffffffff, true);
  setCr0(CR0_ET | CR0_NE);
  const data = ATTR_P | ATTR_S | ATTR_RW | ATTR_VALID | ATTR_READ_OK | ATTR_WRITE_OK;
  setSeg(DS, DS_BASE >> 4, DS_BASE, 0xffff, data);
  setSeg(SS, 0, 0, 0xffff, data);
  setSeg(CS, 0x1234, 0x12340, 0xffff, data | 8);
  dv.setUint32(cpu(G.EIP_START), 0x0100, true);
  ferrCalls = [];
  X.fpu_reset();
  X.fpu_init();
});

// --- instruction helpers -------------------------------------------------------------
let o32 = false;
/** Register form: op, modrm byte (mod = 3). */
function R(op: number, modrm: number) { X.fpu_exec(op, modrm, -1, 0, o32 ? 1 : 0); }
/** Memory form: op, reg field, offset in DS. ModRM is mod 00 r/m 110 ([disp16]). */
function M(op: number, reg: number, off: number) { X.fpu_exec(op, (reg << 3) | 6, DS, off, o32 ? 1 : 0); }
/** Run and return the fault vector, or -1. */
function faultOf(f: () => void): number {
  try { f(); } catch (e) { if (e !== FAULT) throw e; return dv.getUint32(cpu(G.FAULT_VECTOR), true); }
  return -1;
}

const J = 1n << 63n;
const putF64 = (off: number, x: number) => dv.setFloat64(ram(DS_BASE + off), x, true);
const getF64 = (off: number) => dv.getFloat64(ram(DS_BASE + off), true);
const getU64 = (off: number) => dv.getBigUint64(ram(DS_BASE + off), true);
const putU64 = (off: number, v: bigint) => dv.setBigUint64(ram(DS_BASE + off), v, true);
const getU16 = (off: number) => dv.getUint16(ram(DS_BASE + off), true);
const getU32 = (off: number) => dv.getUint32(ram(DS_BASE + off), true);
const putU16 = (off: number, v: number) => dv.setUint16(ram(DS_BASE + off), v, true);
const putU32 = (off: number, v: number) => dv.setUint32(ram(DS_BASE + off), v, true);
const get80 = (off: number) => `${getU16(off + 8).toString(16).padStart(4, '0')}:${getU64(off).toString(16).padStart(16, '0')}`;

const sw = () => dv.getUint16(fpu(0x82), true);
const cw = () => dv.getUint16(fpu(0x80), true);
const top = () => (sw() >> 11) & 7;
function st(i: number): string {
  const p = (top() + i) & 7;
  const a = fpu(p * 16);
  return `${dv.getUint16(a + 8, true).toString(16).padStart(4, '0')}:${dv.getBigUint64(a, true).toString(16).padStart(16, '0')}`;
}
const IE = 1, DE = 2, ZE = 4, OE = 8, UE = 0x10, PE = 0x20, SF = 0x40, ES_ = 0x80;
const C0 = 0x100, C1 = 0x200, C2 = 0x400, C3 = 0x4000, B = 0x8000;
const CC = C0 | C1 | C2 | C3;

// Common instructions.
const fld64 = (x: number, off = 0x800) => { putF64(off, x); M(0xdd, 0, off); };
const fstp64 = (off = 0x900) => { M(0xdd, 3, off); return getF64(off); };
const fldcw = (v: number) => { putU16(0x7f0, v); M(0xd9, 5, 0x7f0); };
const fnclex = () => R(0xdb, 0xe2);
const fnstswAX = () => { R(0xdf, 0xe0); return dv.getUint16(cpu(G.REG_EAX), true); };

describe('initialization', () => {
  it('FNINIT: CW 037F, SW 0, all tags empty; RESET: CW 0040, TW 5555 (SDM Vol. 3 table 9-1)', () => {
    o32 = true;
    M(0xd9, 6, 0x100); // FNSTENV
    expect(getU32(0x100) & 0xffff).toBe(0x037f);
    expect(getU32(0x104) & 0xffff).toBe(0);
    expect(getU32(0x108) & 0xffff).toBe(0xffff);
    X.fpu_reset();
    M(0xd9, 6, 0x100);
    expect(getU32(0x100) & 0xffff).toBe(0x0040);
    expect(getU32(0x108) & 0xffff).toBe(0x5555);
    o32 = false;
  });
});

describe('loads, stores and constants', () => {
  it('FLD1/FLDL2T/FLDL2E/FLDPI/FLDLG2/FLDLN2/FLDZ give the SDM bit patterns', () => {
    const want = ['3fff:8000000000000000', '4000:d49a784bcd1b8afe', '3fff:b8aa3b295c17f0bc', '4000:c90fdaa22168c235',
      '3ffd:9a209a84fbcff799', '3ffe:b17217f7d1cf79ac', '0000:0000000000000000'];
    for (let i = 0; i < 7; i++) {
      R(0xd9, 0xe8 + i);
      expect(st(0), `D9 ${(0xe8 + i).toString(16)}`).toBe(want[i]);
      M(0xdb, 7, 0x200); // FSTP m80
      expect(get80(0x200)).toBe(want[i]);
    }
    expect(sw() & 0x3f).toBe(0);
  });

  it('the constants are rounded per RC: FLDPI toward zero ends in C234, FLDL2T up in 8AFF', () => {
    fldcw(0x037f | (3 << 10));
    R(0xd9, 0xeb);
    expect(st(0)).toBe('4000:c90fdaa22168c234');
    fldcw(0x037f | (2 << 10));
    R(0xd9, 0xe9);
    expect(st(0)).toBe('4000:d49a784bcd1b8aff');
    R(0xd9, 0xeb);
    expect(st(0)).toBe('4000:c90fdaa22168c235');
  });

  it('FLD/FST m32, m64, m80 and FILD/FIST round-trip', () => {
    fld64(-1234.5);
    putU32(0x300, 0x40490fdb); // 3.14159274 as f32
    M(0xd9, 0, 0x300);
    M(0xd9, 3, 0x304); // FSTP m32
    expect(getU32(0x304)).toBe(0x40490fdb);
    M(0xdb, 7, 0x310); // FSTP m80
    M(0xdb, 5, 0x310); // FLD m80
    expect(fstp64()).toBe(-1234.5);
    for (let i = 0; i < 500; i++) {
      const v = BigInt.asIntN(64, (BigInt(Math.floor(Math.random() * 2 ** 32)) << 32n) | BigInt(Math.floor(Math.random() * 2 ** 32)));
      putU64(0x320, BigInt.asUintN(64, v));
      M(0xdf, 5, 0x320); // FILD m64
      M(0xdf, 7, 0x328); // FISTP m64
      expect(BigInt.asIntN(64, getU64(0x328))).toBe(v);
    }
    putU16(0x330, 0x8000); M(0xdf, 0, 0x330); M(0xdf, 3, 0x332); // FILD/FISTP m16
    expect(getU16(0x332)).toBe(0x8000);
    putU32(0x334, 0x7fffffff); M(0xdb, 0, 0x334); M(0xdb, 3, 0x338);
    expect(getU32(0x338)).toBe(0x7fffffff);
    expect(top()).toBe(0);
    expect(sw() & 0x3f).toBe(0);
  });

  it('FIST out of range stores the integer indefinite with IE', () => {
    fld64(40000);
    M(0xdf, 2, 0x340); // FIST m16
    expect(getU16(0x340)).toBe(0x8000);
    expect(sw() & IE).toBe(IE);
    expect(top()).toBe(7); // FIST does not pop
  });

  it('FBLD/FBSTP', () => {
    const bcd = [0x89, 0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0x00, 0x80]; // -123456789
    bcd.forEach((b, i) => (u8[ram(DS_BASE + 0x400 + i)] = b));
    M(0xdf, 4, 0x400);
    M(0xdf, 6, 0x410);
    for (let i = 0; i < 10; i++) expect(u8[ram(DS_BASE + 0x410 + i)]).toBe(bcd[i]);
    fld64(1e18);
    M(0xdf, 6, 0x420);
    expect(getU64(0x420)).toBe(0xc000000000000000n);
    expect(getU16(0x428)).toBe(0xffff);
  });
});

describe('arithmetic through memory and registers', () => {
  it('FLD/FADD/FSUB/FMUL/FDIV m64 under PC = 53 bits match JavaScript doubles', () => {
    fldcw(0x027f);
    const ops: [number, (a: number, b: number) => number][] = [
      [0, (a, b) => a + b], [1, (a, b) => a * b], [4, (a, b) => a - b], [5, (a, b) => b - a], [6, (a, b) => a / b], [7, (a, b) => b / a],
    ];
    for (let i = 0; i < 3000; i++) {
      const a = (Math.random() - 0.5) * 2 ** (Math.random() * 200 - 100);
      const b = (Math.random() - 0.5) * 2 ** (Math.random() * 200 - 100);
      const [reg, f] = ops[i % ops.length];
      fld64(a);
      putF64(0x810, b);
      M(0xdc, reg, 0x810);
      expect(fstp64(), `${reg} ${a} ${b}`).toBe(f(a, b));
    }
  });

  it('FSQRT, FRNDINT, FABS, FCHS on ST0', () => {
    fld64(2);
    R(0xd9, 0xfa);
    fldcw(0x027f);
    fld64(2); R(0xd9, 0xfa);
    expect(fstp64()).toBe(Math.SQRT2);
    fld64(-2.5); R(0xd9, 0xfc); expect(fstp64()).toBe(-2);
    fld64(-2.5); R(0xd9, 0xe1); expect(fstp64()).toBe(2.5);
    fld64(3); R(0xd9, 0xe0); expect(fstp64()).toBe(-3);
  });

  it('register forms: D8 is ST0 = ST0 op STi, DC/DE is STi = STi op ST0 with Intel FSUB/FSUBR encodings', () => {
    fld64(10); fld64(4); // ST0 = 4, ST1 = 10
    R(0xd8, 0xe1); // FSUB ST0, ST1: 4 - 10
    expect(st(0)).toBe('c001:c000000000000000'); // -6
    R(0xd8, 0xe9); // FSUBR ST0, ST1: 10 - (-6) = 16
    expect(fstp64()).toBe(16);
    fld64(4); // ST0 = 4, ST1 = 10
    R(0xdc, 0xe9); // FSUB ST1, ST0 (DC E8+i): ST1 = 10 - 4
    R(0xdc, 0xe1); // FSUBR ST1, ST0 (DC E0+i): ST1 = 4 - 6 = -2
    R(0xde, 0xf9); // FDIVP ST1, ST0 (DE F8+i): ST1 = -2 / 4, pop
    expect(fstp64()).toBe(-0.5);
    expect(top()).toBe(0);
  });

  it('division by zero: masked gives infinity and ZE; unmasked leaves ST0, sets ES and B', () => {
    fld64(1); fld64(0);
    R(0xde, 0xf9); // FDIVP ST1, ST0: 1/0
    expect(st(0)).toBe('7fff:8000000000000000');
    expect(sw() & (ZE | ES_)).toBe(ZE);
    fnclex();
    fldcw(0x037f & ~ZE);
    fld64(3); fld64(0);
    const before = st(1);
    R(0xdc, 0xf9); // FDIV ST1, ST0: 3/0, unmasked
    expect(st(1)).toBe(before);
    expect(sw() & (ZE | ES_ | B)).toBe(ZE | ES_ | B);
  });

  it('FPREM loops until C2 clears; FPREM1 is the IEEE remainder; quotient bits in C0 C3 C1', () => {
    fld64(3); fld64(2 ** 100 + 2 ** 60); // ST0 = big, ST1 = 3
    let n = 0;
    do { R(0xd9, 0xf8); n++; } while (sw() & C2);
    expect(n).toBeGreaterThan(1);
    expect(fstp64()).toBe(Number((2n ** 100n + 2n ** 60n) % 3n));
    R(0xdd, 0xd8); // FSTP ST0
    fld64(3); fld64(17); // 17 rem 3: q = 5 (101b), r = 2
    R(0xd9, 0xf8);
    expect(sw() & (C0 | C3 | C1 | C2)).toBe(C0 | C1);
    expect(fstp64()).toBe(2);
    fld64(17); R(0xd9, 0xf5); // FPREM1: q = 6 (110b), r = -1
    expect(sw() & (C0 | C3 | C1 | C2)).toBe(C0 | C3);
    expect(fstp64()).toBe(-1);
  });

  it('FSCALE and FXTRACT', () => {
    fld64(3.9); fld64(5); // ST0 = 5, ST1 = 3.9
    R(0xd9, 0xfd);
    expect(fstp64()).toBe(40);
    R(0xdd, 0xd8);
    fld64(-40);
    R(0xd9, 0xf4); // FXTRACT: ST0 = significand, ST1 = exponent
    expect(fstp64()).toBe(-1.25);
    expect(fstp64()).toBe(5);
  });

  it('FSINCOS pushes the cosine over the sine; FPTAN pushes 1.0; FPATAN/FYL2X pop', () => {
    fldcw(0x027f);
    fld64(0.5);
    R(0xd9, 0xfb);
    expect(fstp64()).toBeCloseTo(Math.cos(0.5), 15);
    expect(fstp64()).toBeCloseTo(Math.sin(0.5), 15);
    fld64(0.5);
    R(0xd9, 0xf2);
    expect(fstp64()).toBe(1);
    expect(fstp64()).toBeCloseTo(Math.tan(0.5), 15);
    fld64(1); fld64(-1); // ST1 = y = 1, ST0 = x = -1
    R(0xd9, 0xf3);
    expect(fstp64()).toBeCloseTo(3 * Math.PI / 4, 15);
    fld64(3); fld64(8); // ST1 = y = 3, ST0 = x = 8
    R(0xd9, 0xf1);
    expect(fstp64()).toBe(9);
    expect(top()).toBe(0);
  });

  it('FSIN of |x| >= 2^63 sets C2 and leaves ST0', () => {
    fld64(2 ** 63);
    R(0xd9, 0xfe);
    expect(sw() & C2).toBe(C2);
    expect(fstp64()).toBe(2 ** 63);
    fld64(1);
    R(0xd9, 0xfe);
    expect(sw() & C2).toBe(0);
  });
});

describe('stack faults (SDM Vol. 1 8.5.1.1)', () => {
  it('a ninth push overflows: IE, SF, C1 = 1 and the indefinite on top', () => {
    for (let i = 0; i < 8; i++) R(0xd9, 0xe8);
    expect(sw() & 0x7f).toBe(0);
    R(0xd9, 0xe8);
    expect(sw() & (IE | SF | C1)).toBe(IE | SF | C1);
    expect(st(0)).toBe('ffff:c000000000000000');
  });
  it('a store from an empty stack underflows: indefinite stored, C1 = 0, popped', () => {
    M(0xdd, 3, 0x500);
    expect(getU64(0x500)).toBe(0xfff8000000000000n);
    expect(sw() & (IE | SF | C1)).toBe(IE | SF);
    expect(top()).toBe(1);
  });
  it('unmasked stack underflow: nothing stored, no pop, ES set', () => {
    fldcw(0x037e);
    putU64(0x500, 0x1234n);
    M(0xdd, 3, 0x500);
    expect(getU64(0x500)).toBe(0x1234n);
    expect(top()).toBe(0);
    expect(sw() & (IE | SF | ES_)).toBe(IE | SF | ES_);
  });
  it('FXCH with an empty register exchanges the indefinite in; FFREE/FINCSTP/FDECSTP', () => {
    R(0xd9, 0xe8); // ST0 = 1
    R(0xd9, 0xc9); // FXCH ST1 (empty)
    expect(sw() & (IE | SF)).toBe(IE | SF);
    expect(st(0)).toBe('ffff:c000000000000000');
    expect(st(1)).toBe('3fff:8000000000000000');
    R(0xdd, 0xc0); // FFREE ST0
    R(0xd9, 0xf7); // FINCSTP
    expect(st(0)).toBe('3fff:8000000000000000');
    R(0xd9, 0xf6); // FDECSTP
    R(0xd9, 0xe5); // FXAM on the freed register: empty
    expect(sw() & (C3 | C2 | C0)).toBe(C3 | C0);
  });
});

describe('compares', () => {
  it('FCOM/FUCOM set C3 C2 C0; FNSTSW AX reads them', () => {
    const cases: [number, number, number][] = [[1, 2, C0], [2, 1, 0], [2, 2, C3], [NaN, 1, C0 | C2 | C3]];
    for (const [a, b, want] of cases) {
      fnclex();
      fld64(a);
      putF64(0x600, b);
      M(0xdc, 3, 0x600); // FCOMP m64
      expect(fnstswAX() & (C0 | C2 | C3 | C1)).toBe(want);
      expect(sw() & IE).toBe(Number.isNaN(a) ? IE : 0);
    }
    fnclex();
    fld64(1); fld64(NaN);
    R(0xda, 0xe9); // FUCOMPP: QNaN, no IE
    expect(sw() & (IE | C0 | C2 | C3)).toBe(C0 | C2 | C3);
    expect(top()).toBe(0);
    fld64(-0); R(0xd9, 0xe4); // FTST
    expect(sw() & (C0 | C2 | C3)).toBe(C3);
  });

  it('FCOMI/FUCOMIP set ZF PF CF in EFLAGS', () => {
    const ZF = 0x40, PF = 0x4, CF = 1;
    const cases: [number, number, number][] = [[1, 2, CF], [2, 1, 0], [2, 2, ZF], [NaN, 1, ZF | PF | CF]];
    for (const [a, b, want] of cases) {
      X.set_eflags_raw(0x2 | 0x800 | 0x80 | 0x10); // OF SF AF set: FCOMI clears them
      fld64(b); fld64(a);
      R(0xdf, 0xe9); // FUCOMIP ST0, ST1
      expect(X.get_eflags() & 0x8d5).toBe(want);
      R(0xdd, 0xd8);
    }
  });

  it('FCMOVcc moves on the EFLAGS condition', () => {
    fld64(7); fld64(1); // ST0 = 1, ST1 = 7
    X.set_eflags_raw(0x2 | 1); // CF
    R(0xda, 0xc1); // FCMOVB ST0, ST1
    expect(st(0)).toBe(st(1));
    fld64(1);
    R(0xdb, 0xc1); // FCMOVNB: not taken
    expect(fstp64()).toBe(1);
  });

  it('FXAM classifies (SDM table 3-42)', () => {
    const cls = (load: () => void) => { load(); R(0xd9, 0xe5); const v = sw() & (C3 | C2 | C1 | C0); R(0xdd, 0xd8); return v; };
    expect(cls(() => fld64(-1))).toBe(C2 | C1);
    expect(cls(() => fld64(0))).toBe(C3);
    expect(cls(() => fld64(Infinity))).toBe(C2 | C0);
    expect(cls(() => fld64(NaN))).toBe(C0);
    expect(cls(() => { putU64(0x700, 1n); putU16(0x708, 0); M(0xdb, 5, 0x700); })).toBe(C3 | C2);
    expect(cls(() => { putU64(0x700, 1n); putU16(0x708, 0x3fff); M(0xdb, 5, 0x700); })).toBe(0); // unnormal
  });
});

describe('exception reporting (SDM Vol. 1 8.7)', () => {
  it('a pending unmasked exception raises #MF at the next waiting instruction when CR0.NE = 1', () => {
    fldcw(0x037f & ~PE);
    fld64(1); putF64(0x810, 3); M(0xdc, 6, 0x810); // 1/3: inexact, PE unmasked
    expect(sw() & (PE | ES_ | B)).toBe(PE | ES_ | B);
    const t = top();
    expect(faultOf(() => fld64(2))).toBe(16);
    expect(top()).toBe(t);
    expect(faultOf(() => X.fpu_wait())).toBe(16);
    // Non-waiting instructions still run.
    expect(fnstswAX() & ES_).toBe(ES_);
    fnclex();
    expect(faultOf(() => X.fpu_wait())).toBe(-1);
    expect(faultOf(() => fld64(2))).toBe(-1);
  });

  it('with CR0.NE = 0 the error asserts FERR# instead, and FNCLEX deasserts it', () => {
    setCr0(CR0_ET);
    fldcw(0x037f & ~ZE);
    fld64(1); fld64(0); R(0xde, 0xf9);
    expect(ferrCalls).toEqual([]);
    expect(faultOf(() => fld64(2))).toBe(-1);
    expect(ferrCalls).toEqual([1]);
    fnclex();
    expect(ferrCalls).toEqual([1, 0]);
  });

  it('FLDCW unmasking a set flag makes it pending; FWAIT with MP and TS raises #NM', () => {
    fld64(1); putF64(0x810, 3); M(0xdc, 6, 0x810); // PE set, masked
    expect(sw() & ES_).toBe(0);
    fldcw(0x037f & ~PE);
    expect(sw() & ES_).toBe(ES_);
    expect(faultOf(() => R(0xd9, 0xe8))).toBe(16);
    fnclex();
    setCr0(CR0_ET | CR0_NE | CR0_MP | CR0_TS);
    expect(faultOf(() => X.fpu_wait())).toBe(7);
  });

  it('undefined encodings raise #UD (FISTTP is SSE3, not P6)', () => {
    expect(faultOf(() => M(0xdb, 1, 0))).toBe(6);
    expect(faultOf(() => M(0xdd, 1, 0))).toBe(6);
    expect(faultOf(() => R(0xd9, 0xd1))).toBe(6);
    expect(faultOf(() => R(0xdf, 0xe1))).toBe(6);
    expect(faultOf(() => R(0xd9, 0xd0))).toBe(-1); // FNOP
  });

  it('a store that faults changes nothing: FSTP m64 across the segment limit is #GP', () => {
    fld64(5);
    const before = sw();
    expect(faultOf(() => M(0xdd, 3, 0xfffc))).toBe(13);
    expect(sw()).toBe(before);
    expect(st(0)).toBe('4001:a000000000000000');
  });

  it('unmasked overflow on FST m32 stores nothing and does not pop', () => {
    fldcw(0x037f & ~OE);
    fld64(1e300);
    putU32(0x820, 0xdeadbeef);
    M(0xd9, 3, 0x820);
    expect(getU32(0x820)).toBe(0xdeadbeef);
    expect(top()).toBe(7);
    expect(sw() & (OE | ES_)).toBe(OE | ES_);
  });

  it('FSTP m64 of max80: masked, infinity with OE PE C1 and a pop; unmasked, nothing stored, no pop, PE and C1 clear', () => {
    const fldMax80 = () => { putU64(0x400, 0xffffffffffffffffn); putU16(0x408, 0x7ffe); M(0xdb, 5, 0x400); };
    fldMax80();
    M(0xdd, 3, 0x410); // FSTP m64
    expect(getU64(0x410)).toBe(0x7ff0000000000000n);
    expect(sw() & (0x3f | C1)).toBe(OE | PE | C1);
    expect(top()).toBe(0);
    fnclex();
    fldcw(0x037f & ~OE);
    fldMax80();
    putU64(0x418, 0x1122334455667788n);
    M(0xdd, 3, 0x418);
    expect(getU64(0x418)).toBe(0x1122334455667788n);
    expect(top()).toBe(7);
    expect(sw() & (0x3f | C1 | ES_)).toBe(OE | ES_);
    expect(st(0)).toBe('7ffe:ffffffffffffffff');
  });
});

describe('environment and state images (SDM Vol. 1 figures 8-9 to 8-12)', () => {
  it('32-bit protected-mode FNSTENV holds FIP, FCS:FOP, FDP, FDS and masks all exceptions', () => {
    setCr0(CR0_ET | CR0_NE | CR0_PE);
    fldcw(0x0360);
    fld64(1.5, 0x880); // FLD m64 [0x880]: DD /0, modrm 06
    o32 = true;
    M(0xd9, 6, 0x100);
    o32 = false;
    expect(getU32(0x100)).toBe((0xffff0000 | 0x0360) >>> 0);
    expect(getU32(0x104) & 0xffff).toBe(sw());
    expect(getU32(0x108) & 0xffff).toBe(0x3fff); // ST0 (physical 7) valid, others empty
    expect(getU32(0x10c)).toBe(0x100); // FIP = EIP_START
    expect(getU32(0x110)).toBe(0x1234 | (0x506 << 16)); // FCS, FOP = DD 06 -> 5 06
    expect(getU32(0x114)).toBe(0x880);
    expect(getU32(0x118) & 0xffff).toBe(DS_BASE >> 4);
    expect(cw()).toBe(0x037f);
  });

  it('16-bit real-mode FNSTENV holds 20-bit linear pointers with the opcode', () => {
    fld64(1.5, 0x880);
    M(0xd9, 6, 0x100);
    const ip = 0x12340 + 0x100, dp = DS_BASE + 0x880;
    expect(getU16(0x106)).toBe(ip & 0xffff);
    expect(getU16(0x108)).toBe(((ip >> 16) << 12) | 0x506);
    expect(getU16(0x10a)).toBe(dp & 0xffff);
    expect(getU16(0x10c)).toBe((dp >> 16) << 12);
  });

  it('FNSAVE stores the registers in stack order and reinitializes; FRSTOR brings all back', () => {
    for (const o of [false, true]) {
      o32 = o;
      X.fpu_init();
      fld64(1); fld64(2); fld64(-3);
      fldcw(0x0b7f);
      const img = o ? 28 : 14;
      M(0xdd, 6, 0x200);
      expect(get80(0x200 + img)).toBe('c000:c000000000000000'); // ST0 = -3
      expect(get80(0x200 + img + 10)).toBe('4000:8000000000000000');
      expect(cw()).toBe(0x037f);
      expect(top()).toBe(0);
      M(0xdd, 4, 0x200); // FRSTOR
      expect(cw()).toBe(0x0b7f);
      expect(st(0)).toBe('c000:c000000000000000');
      expect(st(2)).toBe('3fff:8000000000000000');
      expect(top()).toBe(5);
      M(0xd9, 4, 0x200); // FLDENV of the same image
      expect(top()).toBe(5);
      o32 = false;
    }
  });
});
