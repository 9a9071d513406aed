// softfloat80.ts against references no one here wrote: JavaScript's IEEE f64 arithmetic
// (correctly rounded add/sub/mul/div/sqrt in round-to-nearest) under precision control 53,
// Math.fround for precision control 24, BigInt for exact 64-bit significand arithmetic and
// integer round trips, and the constant bit patterns of the Intel SDM.
import { describe, it, expect, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';

const pkgDir = fileURLToPath(new URL('..', import.meta.url));

async function compileEntry(entry: string): Promise<WebAssembly.Instance> {
  const out = join(mkdtempSync(join(tmpdir(), 'ftx86-sf-')), 'out.wasm');
  const stderr: string[] = [];
  const { error } = await asc.main(
    [entry, '-o', out, '--runtime', 'stub', '-O3', '--noAssert', '--baseDir', pkgDir],
    { stderr: { write: (s: string) => { stderr.push(String(s)); return true; } } as never },
  );
  if (error) throw new Error(`asc failed: ${error.message}\n${stderr.join('')}`);
  const { instance } = await WebAssembly.instantiate(readFileSync(out), {
    env: { abort: () => { throw new Error('abort'); } },
  });
  return instance;
}

type Fn = (...a: (number | bigint | boolean)[]) => number | bigint;
let W: Record<string, Fn>;

beforeAll(async () => {
  const inst = await compileEntry('assembly/test-entries/softfloat-entry.ts');
  W = inst.exports as unknown as Record<string, Fn>;
});

// Status word bits and control words.
const IE = 1, DE = 2, ZE = 4, OE = 8, UE = 0x10, PE = 0x20, C1 = 0x200;
const RN = 0, RD = 1, RU = 2, RZ = 3;
const cwOf = (pc: number, rc: number, masks = 0x3f) => masks | 0x40 | (pc << 8) | (rc << 10);
const PC24 = 0, PC53 = 2, PC64 = 3;

type F80 = { se: number; sig: bigint };
const J = 1n << 63n;
const M64 = (1n << 64n) - 1n;

function f64bits(x: number): bigint {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  return dv.getBigUint64(0);
}
function bitsF64(b: bigint): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, b);
  return dv.getFloat64(0);
}
function f32bits(x: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, x);
  return dv.getUint32(0);
}

/** An f64 as an exact extended value (independent of the code under test). */
function fromF64(x: number): F80 {
  const b = f64bits(x);
  const sign = Number(b >> 63n) << 15;
  const e = Number((b >> 52n) & 0x7ffn);
  const frac = b & ((1n << 52n) - 1n);
  if (e === 0x7ff) return { se: sign | 0x7fff, sig: frac === 0n ? J : J | (frac << 11n) };
  if (e === 0) {
    if (frac === 0n) return { se: sign, sig: 0n };
    let sig = frac << 11n;
    let ex = 16383 - 1022;
    while ((sig & J) === 0n) { sig <<= 1n; ex--; }
    return { se: sign | ex, sig };
  }
  return { se: sign | (e - 1023 + 16383), sig: J | (frac << 11n) };
}

/** Exact value of a finite extended as sign, integer significand and power of two. */
function exact(v: F80): { neg: boolean; m: bigint; e: number } {
  const ex = v.se & 0x7fff;
  return { neg: (v.se & 0x8000) !== 0, m: v.sig, e: (ex === 0 ? 1 : ex) - 16383 - 63 };
}

/**
 * Round the exact rational (-1)^neg * num/den * 2^e2 to an extended register value with
 * p significand bits, unbounded exponent except that results are assumed normal.
 */
function roundRef(neg: boolean, num: bigint, den: bigint, e2: number, p: number, rc: number): F80 {
  if (num === 0n) return { se: neg ? 0x8000 : 0, sig: 0n };
  // Scale so that q = floor(num/den * 2^s) has exactly p bits.
  let s = p - (num.toString(2).length - den.toString(2).length) + 1;
  const scaled = (k: number) => (k >= 0 ? (num << BigInt(k)) : num) / (k >= 0 ? den : den << BigInt(-k));
  let q = scaled(s);
  while (q >= 1n << BigInt(p)) { s--; q = scaled(s); }
  while (q < 1n << BigInt(p - 1)) { s++; q = scaled(s); }
  const rnum = (s >= 0 ? num << BigInt(s) : num) - q * (s >= 0 ? den : den << BigInt(-s));
  const rden = s >= 0 ? den : den << BigInt(-s);
  const inexact = rnum !== 0n;
  let up = false;
  if (rc === RN) up = 2n * rnum > rden || (2n * rnum === rden && (q & 1n) === 1n);
  else if (rc === RU) up = !neg && inexact;
  else if (rc === RD) up = neg && inexact;
  if (up) q++;
  if (q === 1n << BigInt(p)) { q >>= 1n; s--; }
  // value = q * 2^(e2 - s); extended: sig = q << (64-p), exponent of bit 63.
  const sig = q << BigInt(64 - p);
  const ex = e2 - s + (p - 1) + 16383;
  return { se: (neg ? 0x8000 : 0) | ex, sig };
}

function call2(name: string, cw: number, a: F80, b: F80): F80 {
  W[name](cw, a.se, a.sig, b.se, b.sig);
  return { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
}
function call1(name: string, cw: number, a: F80): F80 {
  W[name](cw, a.se, a.sig);
  return { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
}
const flags = () => Number(W.flags());
const hex = (v: F80) => `${v.se.toString(16).padStart(4, '0')}:${v.sig.toString(16).padStart(16, '0')}`;

// Deterministic random source (xorshift128+).
let s0 = 0x9e3779b97f4a7c15n, s1 = 0xbf58476d1ce4e5b9n;
function rnd64(): bigint {
  let x = s0; const y = s1;
  s0 = y; x ^= (x << 23n) & M64; x ^= x >> 17n; x ^= y ^ (y >> 26n);
  s1 = x;
  return (x + y) & M64;
}
const rndInt = (n: number) => Number(rnd64() % BigInt(n));
function rndF64(expRange = 200): number {
  const sign = rnd64() & 1n;
  const e = BigInt(1023 + rndInt(2 * expRange + 1) - expRange);
  const frac = rnd64() & ((1n << 52n) - 1n);
  // Short significands now and then, so that exact results and ties happen.
  const f = rndInt(4) === 0 ? frac & ~((1n << BigInt(rndInt(52))) - 1n) : frac;
  return bitsF64((sign << 63n) | (e << 52n) | f);
}
const boundary = [
  0, -0, 1, -1, 2, 0.5, 3, 1 + 2 ** -52, 1 - 2 ** -53, 2 ** -1022, -(2 ** -1022), 2 ** 1000, 2 ** -1000,
  Number.MAX_SAFE_INTEGER, 0.1, 1 / 3, Math.PI, -Math.E, 1.5, 2 ** 52 + 1, 6.02214076e23, 1e-300, 1e300,
];

/** Reference directed rounding of an f64 operation from its exact value (BigInt). */
function refOp(op: string, a: number, b: number, rc: number, p: number): F80 | null {
  const A = exact(fromF64(a)), B = exact(fromF64(b));
  const sa = A.neg ? -A.m : A.m, sb = B.neg ? -B.m : B.m;
  let num: bigint, den = 1n, e2: number;
  if (op === 'add' || op === 'sub') {
    const sbb = op === 'sub' ? -sb : sb;
    const e = Math.min(A.e, B.e);
    num = (sa << BigInt(A.e - e)) + (sbb << BigInt(B.e - e));
    e2 = e;
    if (num === 0n) return null;
  } else if (op === 'mul') {
    num = sa * sb; e2 = A.e + B.e;
  } else {
    num = sa; den = sb; e2 = A.e - B.e;
    if (den < 0n) { num = -num; den = -den; }
  }
  if (num === 0n) return null;
  const neg = num < 0n;
  return roundRef(neg, neg ? -num : num, den, e2, p, rc);
}

describe('add/sub/mul/div under precision control 53 match JavaScript f64 arithmetic', () => {
  const ops: [string, (a: number, b: number) => number][] = [
    ['add', (a, b) => a + b], ['sub', (a, b) => a - b], ['mul', (a, b) => a * b], ['div', (a, b) => a / b],
  ];
  for (const [name, f] of ops) {
    it(`${name}: random and boundary operands, round to nearest, PE from exactness`, () => {
      let checked = 0;
      const pairs: [number, number][] = [];
      for (const a of boundary) for (const b of boundary) pairs.push([a, b]);
      for (let i = 0; i < 20000; i++) {
        const a = rndF64();
        // Nearby exponents make cancellation and carries in add/sub likely.
        const b = rndInt(3) === 0 ? a * (1 + rndF64(2) * 2 ** -rndInt(60)) : rndF64();
        pairs.push([a, b]);
      }
      for (const [a, b] of pairs) {
        const r = f(a, b);
        // f64 denormalizes below 2^-1022 where the extended exponent range does not.
        const exactZero = r === 0 && (name === 'add' || name === 'sub' || a === 0 || (name === 'mul' && b === 0));
        if (!Number.isFinite(r) || (Math.abs(r) <= 2 ** -1022 && !exactZero)) continue;
        if (name === 'div' && b === 0) continue;
        const got = call2(name, cwOf(PC53, RN), fromF64(a), fromF64(b));
        const want = fromF64(r);
        if (hex(got) !== hex(want)) expect(`${name}(${a}, ${b}) = ${hex(got)}`).toBe(`${hex(want)}`);
        // PE exactly when the rounded result differs from the exact one.
        if (refOp(name, a, b, RN, 53) !== null) {
          expect((flags() & PE) !== 0, `${name}(${a},${b}) PE`).toBe(!isExactResult(name, a, b, r));
        }
        checked++;
      }
      expect(checked).toBeGreaterThan(15000);
    });
  }

  it('directed rounding modes agree with the BigInt-exact value of f64 operations', () => {
    for (let i = 0; i < 6000; i++) {
      const name = ['add', 'sub', 'mul', 'div'][i & 3];
      const a = rndF64(100), b = rndF64(100);
      for (const rc of [RD, RU, RZ]) {
        const ref = refOp(name, a, b, rc, 53);
        if (!ref) continue;
        const got = call2(name, cwOf(PC53, rc), fromF64(a), fromF64(b));
        if (hex(got) !== hex(ref)) expect(`${name}(${a},${b}) rc=${rc} ${hex(got)}`).toBe(hex(ref));
        // C1 says whether the magnitude was rounded up.
        const rn = refOp(name, a, b, RZ, 53)!;
        expect((flags() & C1) !== 0).toBe(hex(ref) !== hex(rn));
      }
    }
  });

  it('sqrt matches Math.sqrt, with PE exactly when the square of the root differs', () => {
    const vals = [...boundary.map(Math.abs), 4, 9, 2, 1e-10, 2 ** 600];
    for (let i = 0; i < 20000; i++) vals.push(Math.abs(rndF64(1000)));
    for (let i = 0; i < 500; i++) { const k = rndInt(2 ** 26); vals.push(k * k); }
    for (const a of vals) {
      if (a !== 0 && a < 2 ** -1022) continue;
      const got = call1('sqrt', cwOf(PC53, RN), fromF64(a));
      expect(hex(got), `sqrt(${a})`).toBe(hex(fromF64(Math.sqrt(a))));
      const r = exact(fromF64(Math.sqrt(a))), x = exact(fromF64(a));
      const sq = r.m * r.m, e2 = 2 * r.e;
      const isExact = a === 0 || (e2 <= x.e ? sq === x.m << BigInt(x.e - e2) : sq << BigInt(e2 - x.e) === x.m);
      expect((flags() & PE) !== 0, `sqrt(${a}) PE`).toBe(!isExact);
    }
  });
});

function isExactResult(name: string, a: number, b: number, r: number): boolean {
  const A = exact(fromF64(a)), B = exact(fromF64(b)), R = exact(fromF64(r));
  const v = (x: { neg: boolean; m: bigint }) => (x.neg ? -x.m : x.m);
  // Compare left = right at a common power of two.
  const eq = (l: bigint, le: number, rr: bigint, re: number) => {
    const e = Math.min(le, re);
    return (l << BigInt(le - e)) === (rr << BigInt(re - e));
  };
  if (name === 'add' || name === 'sub') {
    const e = Math.min(A.e, B.e);
    const s = (v(A) << BigInt(A.e - e)) + (name === 'sub' ? -1n : 1n) * (v(B) << BigInt(B.e - e));
    return eq(s, e, v(R), R.e);
  }
  if (name === 'mul') return eq(v(A) * v(B), A.e + B.e, v(R), R.e);
  return eq(v(R) * v(B), R.e + B.e, v(A), A.e);
}

describe('precision control 24 matches Math.fround of f64 results (f32 operands)', () => {
  it('add/sub/mul/div/sqrt', () => {
    const f32 = () => Math.fround(rndF64(60));
    for (let i = 0; i < 8000; i++) {
      const a = f32(), b = f32();
      const cases: [string, number][] = [['add', a + b], ['sub', a - b], ['mul', a * b], ['div', a / b]];
      for (const [name, r64] of cases) {
        const want = Math.fround(r64);
        if (!Number.isFinite(want) || (want !== 0 && Math.abs(want) < 2 ** -126)) continue;
        const got = call2(name, cwOf(PC24, RN), fromF64(a), fromF64(b));
        if (hex(got) !== hex(fromF64(want))) expect(`${name}(${a},${b}) ${hex(got)}`).toBe(hex(fromF64(want)));
      }
      const got = call1('sqrt', cwOf(PC24, RN), fromF64(Math.abs(a)));
      expect(hex(got)).toBe(hex(fromF64(Math.fround(Math.sqrt(Math.abs(a))))));
    }
  });
});

describe('full 64-bit precision against BigInt', () => {
  const rndSig = () => rnd64() | J;
  const rndF80 = (spread = 40): F80 => ({
    se: (rndInt(2) << 15) | (16383 + rndInt(2 * spread + 1) - spread),
    sig: rndInt(4) === 0 ? rndSig() & ~((1n << BigInt(rndInt(63))) - 1n) : rndSig(),
  });
  const val = (v: F80) => { const x = exact(v); return { s: x.neg ? -x.m : x.m, e: x.e }; };

  it('mul rounds the exact 128-bit significand product in all four modes', () => {
    for (let i = 0; i < 20000; i++) {
      const a = rndF80(), b = rndF80(), rc = i & 3;
      const A = val(a), B = val(b);
      const p = A.s * B.s;
      const want = roundRef(p < 0n, p < 0n ? -p : p, 1n, A.e + B.e, 64, rc);
      const got = call2('mul', cwOf(PC64, rc), a, b);
      if (hex(got) !== hex(want)) expect(`mul ${hex(a)} ${hex(b)} rc${rc} ${hex(got)}`).toBe(hex(want));
    }
  });

  it('products of 32-bit significands are exact (no PE)', () => {
    for (let i = 0; i < 2000; i++) {
      const a = { se: 16383 + rndInt(20), sig: (rnd64() | J) & ~0xffffffffn };
      const b = { se: 16383 - rndInt(20), sig: (rnd64() | J) & ~0xffffffffn };
      const got = call2('mul', cwOf(PC64, RN), a, b);
      expect(flags() & PE).toBe(0);
      const A = val(a), B = val(b);
      const want = roundRef(false, A.s * B.s, 1n, A.e + B.e, 64, RN);
      expect(hex(got)).toBe(hex(want));
    }
  });

  it('add, sub and div round the exact value in all four modes', () => {
    for (let i = 0; i < 20000; i++) {
      const a = rndF80(70), b = rndInt(2) ? rndF80(70) : { se: a.se ^ (rndInt(2) << 15), sig: a.sig ^ (rnd64() & 0xffffn) };
      const rc = i & 3;
      const A = val(a), B = val(b);
      const e = Math.min(A.e, B.e);
      for (const [name, sgn] of [['add', 1n], ['sub', -1n]] as const) {
        const s = (A.s << BigInt(A.e - e)) + sgn * (B.s << BigInt(B.e - e));
        const got = call2(name, cwOf(PC64, rc), a, b);
        if (s === 0n) {
          expect(hex(got)).toBe(rc === RD ? '8000:0000000000000000' : '0000:0000000000000000');
          continue;
        }
        const want = roundRef(s < 0n, s < 0n ? -s : s, 1n, e, 64, rc);
        if (hex(got) !== hex(want)) expect(`${name} ${hex(a)} ${hex(b)} rc${rc} ${hex(got)}`).toBe(hex(want));
      }
      const neg = (A.s < 0n) !== (B.s < 0n);
      const want = roundRef(neg, A.s < 0n ? -A.s : A.s, B.s < 0n ? -B.s : B.s, A.e - B.e, 64, rc);
      const got = call2('div', cwOf(PC64, rc), a, b);
      if (hex(got) !== hex(want)) expect(`div ${hex(a)} ${hex(b)} rc${rc} ${hex(got)}`).toBe(hex(want));
    }
  });

  it('sqrt is the correctly rounded square root (checked by squaring in BigInt)', () => {
    for (let i = 0; i < 5000; i++) {
      const a = { se: 16383 + rndInt(201) - 100, sig: rnd64() | J };
      const rc = i & 3;
      const r = call1('sqrt', cwOf(PC64, rc), a);
      const A = val(a), R = val(r);
      // Compare r^2 with a at a common exponent, and the neighbours of r.
      const cmp = (m: bigint, re: number) => {
        const l = m * m, le = 2 * re, e = Math.min(le, A.e);
        const L = l << BigInt(le - e), X = A.s << BigInt(A.e - e);
        return L < X ? -1 : L > X ? 1 : 0;
      };
      const c = cmp(R.s, R.e), below = cmp(R.s - 1n, R.e), above = cmp(R.s + 1n, R.e);
      if (rc === RD || rc === RZ) expect(c <= 0 && above > 0, `sqrt ${hex(a)} rc${rc} -> ${hex(r)}`).toBe(true);
      else if (rc === RU) expect(c >= 0 && below < 0, `sqrt ${hex(a)} rc${rc} -> ${hex(r)}`).toBe(true);
      else {
        // Nearest: (r - 1/2)^2 < a < (r + 1/2)^2.
        const m2 = 2n * R.s, e2 = R.e - 1;
        const lo = cmp(m2 - 1n, e2), hi = cmp(m2 + 1n, e2);
        expect(lo < 0 && hi > 0, `sqrt ${hex(a)} -> ${hex(r)}`).toBe(true);
      }
    }
  });
});

describe('integers', () => {
  it('FILD/FISTP m64 round-trips every 64-bit integer (random and boundaries)', () => {
    const vals = [0n, 1n, -1n, (1n << 63n) - 1n, -(1n << 63n), (1n << 62n) + 1n, -(1n << 53n) - 1n];
    for (let i = 0; i < 20000; i++) vals.push(BigInt.asIntN(64, rnd64() >> BigInt(rndInt(64))));
    for (const v of vals) {
      W.from_i64(cwOf(PC64, RN), v);
      const r = { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
      // The extended value is exactly v.
      const x = exact(r);
      const back = x.e >= 0 ? x.m << BigInt(x.e) : x.m >> BigInt(-x.e);
      expect(x.neg ? -back : back).toBe(v);
      if (v !== 0n) expect(r.sig & J).toBe(J);
      for (const rc of [RN, RD, RU, RZ]) {
        expect(W.to_int(cwOf(PC64, rc), r.se, r.sig, 64)).toBe(v);
        expect(flags()).toBe(0);
      }
    }
  });

  it('FIST rounds per RC and flags PE and C1; out of range gives the integer indefinite with IE', () => {
    for (let i = 0; i < 5000; i++) {
      const a = { se: (rndInt(2) << 15) | (16383 + rndInt(70) - 3), sig: rnd64() | J };
      const A = exact(a);
      for (const rc of [RN, RD, RU, RZ]) {
        for (const bits of [16, 32, 64]) {
          const got = W.to_int(cwOf(PC64, rc), a.se, a.sig, bits) as bigint;
          // Reference: floor/ceil of the exact rational in BigInt.
          let q: bigint, rem: bigint;
          if (A.e >= 0) { q = A.m << BigInt(A.e); rem = 0n; } else { q = A.m >> BigInt(-A.e); rem = A.m - (q << BigInt(-A.e)); }
          const half = A.e < 0 ? 1n << BigInt(-A.e - 1) : 0n;
          let up = false;
          if (rc === RN) up = rem > half || (rem === half && rem !== 0n && (q & 1n) === 1n);
          else if (rc === RU) up = !A.neg && rem !== 0n;
          else if (rc === RD) up = A.neg && rem !== 0n;
          const mag = q + (up ? 1n : 0n);
          const v = A.neg ? -mag : mag;
          const lim = 1n << BigInt(bits - 1);
          if (v < -lim || v >= lim) {
            expect(got).toBe(-lim);
            expect(flags()).toBe(IE);
          } else {
            expect(got).toBe(v);
            expect(flags()).toBe((rem !== 0n ? PE : 0) | (up ? C1 : 0));
          }
        }
      }
    }
    // NaN, infinity: IE and indefinite.
    expect(W.to_int(cwOf(PC64, RN), 0x7fff, J, 32)).toBe(-(1n << 31n));
    expect(flags()).toBe(IE);
    expect(W.to_int(cwOf(PC64, RN), 0xffff, 0xc000000000000000n, 16)).toBe(-(1n << 15n));
  });
});

describe('single/double conversions', () => {
  it('f64 -> extended -> f64 is the identity, denormals raise DE', () => {
    const vals = [...boundary, 5e-324, -5e-324, 2 ** -1074 * 12345, Infinity, -Infinity];
    for (let i = 0; i < 20000; i++) vals.push(rndF64(1100));
    for (const x of vals) {
      W.from_f64(cwOf(PC64, RN), f64bits(x));
      const r = { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
      const isDen = x !== 0 && Math.abs(x) < 2 ** -1022;
      expect(flags()).toBe(isDen ? DE : 0);
      expect(hex(r)).toBe(hex(fromF64(x)));
      const back = BigInt.asUintN(64, W.to_f64(cwOf(PC64, RN), r.se, r.sig) as bigint);
      expect(back).toBe(f64bits(x));
      expect(flags()).toBe(0);
    }
  });

  it('SNaN loads quietly with IE; QNaN loads silently; stores keep the payload', () => {
    W.from_f64(cwOf(PC64, RN), 0x7ff0000000000001n);
    expect(flags()).toBe(IE);
    expect(BigInt.asUintN(64, W.res_sig() as bigint)).toBe(0xc000000000000800n);
    W.from_f32(cwOf(PC64, RN), 0xff800001);
    expect(flags()).toBe(IE);
    expect(Number(W.res_se())).toBe(0xffff);
    expect(BigInt.asUintN(64, W.res_sig() as bigint)).toBe(0xc000010000000000n);
    W.from_f32(cwOf(PC64, RN), 0x7fc00000);
    expect(flags()).toBe(0);
    // Extended SNaN -> double: quieted, IE.
    expect(BigInt.asUintN(64, W.to_f64(cwOf(PC64, RN), 0x7fff, 0x8000000000000800n) as bigint)).toBe(0x7ff8000000000001n);
    expect(flags()).toBe(IE);
    expect(Number(W.to_f32(cwOf(PC64, RN), 0x7fff, 0x4000000000000000n)) >>> 0).toBe(0xffc00000); // pseudo-NaN: indefinite
    expect(flags()).toBe(IE);
  });

  it('extended -> f64 rounds per RC like BigInt, with overflow and underflow responses', () => {
    for (let i = 0; i < 20000; i++) {
      const a = { se: (rndInt(2) << 15) | (16383 + rndInt(2200) - 1100), sig: rnd64() | J };
      const rc = i & 3;
      const got = BigInt.asUintN(64, W.to_f64(cwOf(PC64, rc), a.se, a.sig) as bigint);
      const A = exact(a);
      const ref = roundRef(A.neg, A.m, 1n, A.e, 53, rc);
      const exp = (ref.se & 0x7fff) - 16383;
      if (exp > 1023) {
        expect(flags() & (OE | PE)).toBe(OE | PE);
        const toInf = rc === RN || (rc === RU && !A.neg) || (rc === RD && A.neg);
        expect(Math.abs(bitsF64(got))).toBe(toInf ? Infinity : Number.MAX_VALUE);
        continue;
      }
      if (exp < -1022) continue; // denormal range: checked below
      expect(hex(fromF64(bitsF64(got))), `${hex(a)} rc${rc}`).toBe(hex(ref));
    }
    // Denormal f64 results: JavaScript's conversion of the exact value (RN).
    for (let i = 0; i < 5000; i++) {
      const a = { se: 16383 - 1022 - 1 - rndInt(60), sig: rnd64() | J };
      const got = bitsF64(BigInt.asUintN(64, W.to_f64(cwOf(PC64, RN), a.se, a.sig) as bigint));
      const A = exact(a);
      // m * 2^e with m < 2^64: split so that JavaScript rounds once.
      const R = exact(fromF64(got));
      // |got - exact| <= half an ulp of the denormal grid 2^-1074, and ties go to even.
      const e = Math.min(R.e, A.e, -1074);
      const diff = (R.m << BigInt(R.e - e)) - (A.m << BigInt(A.e - e));
      const halfUlp = 1n << BigInt(-1074 - e - 1);
      expect(diff <= halfUlp && diff >= -halfUlp, `${hex(a)} -> ${got}`).toBe(true);
      expect((flags() & UE) !== 0).toBe(diff !== 0n);
    }
    // Unmasked underflow: UE only, no result to store.
    W.to_f64(cwOf(PC64, RN, 0x3f & ~UE), 16383 - 1030, J);
    expect(flags()).toBe(UE);
  });

  it('extended -> f32 agrees with Math.fround of the f64 value', () => {
    for (let i = 0; i < 20000; i++) {
      const x = rndF64(140);
      const a = fromF64(x);
      const got = Number(W.to_f32(cwOf(PC64, RN), a.se, a.sig)) >>> 0;
      expect(got, `${x}`).toBe(f32bits(Math.fround(x)));
    }
  });
});

/**
 * FST m32/m64 of a finite nonzero extended value by BigInt alone: the IEEE store with the
 * x87's responses (SDM Vol. 1 4.9.1.4-6, 8.5.4-5). Tininess is judged after rounding with
 * unbounded exponent; an unmasked OE or UE stores nothing and reports neither PE nor C1.
 */
function refStore(a: F80, mbits: number, bias: number, rc: number, masks: number): { bits: bigint | null; flags: number } {
  const { neg, m, e } = exact(a);
  const prec = mbits + 1;
  const signBit = neg ? 1n << BigInt(mbits === 23 ? 31 : 63) : 0n;
  // m * 2^e rounded to a multiple of 2^g: q * 2^g, and whether it was inexact / went up.
  const toGrid = (g: number) => {
    if (g <= e) return { q: m << BigInt(e - g), inexact: false, up: false };
    const sh = BigInt(g - e);
    let q = m >> sh;
    const r = m - (q << sh), half = 1n << (sh - 1n);
    const inexact = r !== 0n;
    let up = false;
    if (rc === RN) up = r > half || (r === half && (q & 1n) === 1n);
    else if (rc === RU) up = !neg && inexact;
    else if (rc === RD) up = neg && inexact;
    if (up) q++;
    return { q, inexact, up };
  };
  const k = m.toString(2).length - 1 + e; // 2^k <= |value| < 2^(k+1)
  const n = toGrid(k - mbits);
  const kr = n.q.toString(2).length - 1 + k - mbits; // exponent after rounding
  if (kr > bias) {
    if ((masks & OE) === 0) return { bits: null, flags: OE };
    const toInf = rc === RN || (rc === RU && !neg) || (rc === RD && neg);
    const maxExp = BigInt(2 * bias + 1);
    return toInf
      ? { bits: signBit | (maxExp << BigInt(mbits)), flags: OE | PE | C1 }
      : { bits: signBit | ((maxExp << BigInt(mbits)) - 1n), flags: OE | PE };
  }
  if (kr < 1 - bias) {
    if ((masks & UE) === 0) return { bits: null, flags: UE };
    const d = toGrid(1 - bias - mbits); // the denormal grid; 2^mbits is the smallest normal
    return { bits: signBit | d.q, flags: d.inexact ? UE | PE | (d.up ? C1 : 0) : 0 };
  }
  const q = n.q >> BigInt(n.q.toString(2).length - prec); // a carry leaves a trailing 0
  const biased = BigInt(kr + bias);
  return {
    bits: signBit | (biased << BigInt(mbits)) | (q - (1n << BigInt(mbits))),
    flags: n.inexact ? PE | (n.up ? C1 : 0) : 0,
  };
}

describe('FST m32/m64 overflow and underflow against BigInt (SDM Vol. 1 4.9.1.4-6, 8.5.4-5)', () => {
  const MASKED = 0x3f, NO_OE = 0x3f & ~OE, NO_UE = 0x3f & ~UE;
  const formats = [
    { name: 'm64', mbits: 52, bias: 1023, store: (cw: number, a: F80) => BigInt.asUintN(64, W.to_f64(cw, a.se, a.sig) as bigint) },
    { name: 'm32', mbits: 23, bias: 127, store: (cw: number, a: F80) => BigInt(Number(W.to_f32(cw, a.se, a.sig)) >>> 0) },
  ];
  // Extended values at exponent x with the top `prec` bits of the significand all ones and the
  // rest r: the destination's largest finite (r = 0), just above it, its rounding midpoint
  // (r = the half bit) and just around that, and the same pattern at the smallest normal.
  function around(ex: number, prec: number): F80[] {
    const ones = ((1n << BigInt(prec)) - 1n) << BigInt(64 - prec);
    const half = 1n << BigInt(63 - prec);
    const out: F80[] = [];
    for (const r of [0n, 1n, half - 1n, half, half + 1n, (half << 1n) - 1n]) {
      for (const sign of [0, 0x8000]) {
        out.push({ se: sign | ex, sig: ones | r }, { se: sign | ex, sig: J | r }, { se: sign | (ex + 1), sig: J | r });
      }
    }
    return out;
  }
  function check(fmt: (typeof formats)[number], a: F80, rc: number, masks: number) {
    const ref = refStore(a, fmt.mbits, fmt.bias, rc, masks);
    const got = fmt.store(cwOf(PC64, rc, masks), a);
    const what = `${fmt.name} ${hex(a)} rc${rc} masks ${masks.toString(16)}`;
    expect(flags(), what).toBe(ref.flags);
    if (ref.bits !== null) expect(got.toString(16), what).toBe(ref.bits.toString(16));
  }

  it('max80 stores as infinity or the largest finite value per RC, with OE, PE and C1 when rounded up', () => {
    const f64 = formats[0].store, f32 = formats[1].store;
    const max80 = { se: 0x7ffe, sig: M64 }, negMax80 = { se: 0xfffe, sig: M64 };
    const expected: [number, bigint, bigint, bigint, bigint, number, number][] = [
      // rc, +max80 -> m64, -max80 -> m64, +max80 -> m32, -max80 -> m32, flags for +, flags for -
      [RN, 0x7ff0000000000000n, 0xfff0000000000000n, 0x7f800000n, 0xff800000n, OE | PE | C1, OE | PE | C1],
      [RD, 0x7fefffffffffffffn, 0xfff0000000000000n, 0x7f7fffffn, 0xff800000n, OE | PE, OE | PE | C1],
      [RU, 0x7ff0000000000000n, 0xffefffffffffffffn, 0x7f800000n, 0xff7fffffn, OE | PE | C1, OE | PE],
      [RZ, 0x7fefffffffffffffn, 0xffefffffffffffffn, 0x7f7fffffn, 0xff7fffffn, OE | PE, OE | PE],
    ];
    for (const [rc, pos64, neg64, pos32, neg32, fpos, fneg] of expected) {
      expect(f64(cwOf(PC64, rc), max80).toString(16)).toBe(pos64.toString(16));
      expect(flags()).toBe(fpos);
      expect(f64(cwOf(PC64, rc), negMax80).toString(16)).toBe(neg64.toString(16));
      expect(flags()).toBe(fneg);
      expect(f32(cwOf(PC64, rc), max80).toString(16)).toBe(pos32.toString(16));
      expect(flags()).toBe(fpos);
      expect(f32(cwOf(PC64, rc), negMax80).toString(16)).toBe(neg32.toString(16));
      expect(flags()).toBe(fneg);
    }
    // Unmasked OE: nothing to store, and neither PE nor C1 (SDM Vol. 1 4.9.1.6).
    for (const rc of [RN, RD, RU, RZ]) {
      f64(cwOf(PC64, rc, NO_OE), max80);
      expect(flags()).toBe(OE);
      f32(cwOf(PC64, rc, NO_OE), negMax80);
      expect(flags()).toBe(OE);
    }
  });

  it('values just below, at and above the destination maximum, in all four rounding modes, masked and unmasked', () => {
    for (const fmt of formats) {
      const maxEx = 16383 + fmt.bias; // extended exponent of the destination's largest binade
      const vals = around(maxEx, fmt.mbits + 1);
      for (const a of vals) for (let rc = 0; rc < 4; rc++) for (const masks of [MASKED, NO_OE]) check(fmt, a, rc, masks);
    }
    // Spot values: the f64 maximum is exact; its RN midpoint to 2^1024 ties to even, which is up.
    const f64max = { se: 16383 + 1023, sig: 0xfffffffffffff800n };
    expect(formats[0].store(cwOf(PC64, RN), f64max)).toBe(0x7fefffffffffffffn);
    expect(flags()).toBe(0);
    expect(formats[0].store(cwOf(PC64, RN), { ...f64max, sig: 0xfffffffffffffbffn })).toBe(0x7fefffffffffffffn);
    expect(flags()).toBe(PE);
    expect(formats[0].store(cwOf(PC64, RN), { ...f64max, sig: 0xfffffffffffffc00n })).toBe(0x7ff0000000000000n);
    expect(flags()).toBe(OE | PE | C1);
    expect(formats[0].store(cwOf(PC64, RU), { ...f64max, sig: 0xfffffffffffff801n })).toBe(0x7ff0000000000000n);
    expect(flags()).toBe(OE | PE | C1);
  });

  it('values around the smallest normal and in the denormal range, masked and unmasked UE', () => {
    for (const fmt of formats) {
      const minEx = 16383 + 1 - fmt.bias; // extended exponent of the destination's smallest normal
      const vals = [...around(minEx - 1, fmt.mbits + 1), ...around(minEx, fmt.mbits + 1)];
      for (let d = 1; d <= fmt.mbits + 3; d++) vals.push({ se: minEx - d, sig: J }, { se: 0x8000 | (minEx - d), sig: J | 1n }, { se: minEx - d, sig: 0xc000000000000000n });
      for (const a of vals) for (let rc = 0; rc < 4; rc++) for (const masks of [MASKED, NO_UE]) check(fmt, a, rc, masks);
    }
    // Half the smallest f64 denormal ties to even (0); a hair more rounds up to it.
    const halfMin = { se: 16383 - 1075, sig: J };
    expect(formats[0].store(cwOf(PC64, RN), halfMin)).toBe(0n);
    expect(flags()).toBe(UE | PE);
    expect(formats[0].store(cwOf(PC64, RN), { ...halfMin, sig: J | 1n })).toBe(1n);
    expect(flags()).toBe(UE | PE | C1);
    // Unmasked UE is signaled on tininess even when exact (SDM Vol. 1 4.9.1.5).
    formats[0].store(cwOf(PC64, RN, NO_UE), { se: 16383 - 1023, sig: J });
    expect(flags()).toBe(UE);
    expect(formats[0].store(cwOf(PC64, RN), { se: 16383 - 1023, sig: J })).toBe(0x0008000000000000n);
    expect(flags()).toBe(0);
  });

  it('random extended values over the whole exponent range, all modes, masked and unmasked', () => {
    for (let i = 0; i < 40000; i++) {
      const fmt = formats[i & 1];
      const ex = rndInt(4) === 0 ? 16383 - fmt.bias + rndInt(2 * fmt.bias + 2 * 70) - 70 : 1 + rndInt(0x7ffe);
      const sig = rndInt(4) === 0 ? (rnd64() | J) & ~((1n << BigInt(rndInt(64))) - 1n) | J : rnd64() | J;
      const a = { se: (rndInt(2) << 15) | Math.max(1, Math.min(0x7ffe, ex)), sig };
      check(fmt, a, rndInt(4), [MASKED, NO_OE, NO_UE, 0][rndInt(4)]);
    }
  });
});

describe('special operands (SDM Vol. 1 4.8.3, 8.2.2)', () => {
  const INDEF = 'ffff:c000000000000000';
  const inf: F80 = { se: 0x7fff, sig: J }, ninf: F80 = { se: 0xffff, sig: J };
  const one = fromF64(1), zero = fromF64(0), nzero = fromF64(-0);
  const cw = cwOf(PC64, RN);
  it('invalid operations give the QNaN indefinite and IE', () => {
    expect(hex(call2('add', cw, inf, ninf))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call2('sub', cw, inf, inf))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call2('mul', cw, inf, zero))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call2('div', cw, zero, nzero))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call2('div', cw, inf, ninf))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call1('sqrt', cw, fromF64(-2)))).toBe(INDEF); expect(flags()).toBe(IE);
    expect(hex(call1('sqrt', cw, nzero))).toBe('8000:0000000000000000'); expect(flags()).toBe(0);
  });
  it('division by zero gives a signed infinity and ZE', () => {
    expect(hex(call2('div', cw, fromF64(-3), zero))).toBe('ffff:8000000000000000');
    expect(flags()).toBe(ZE);
    // ZE outranks DE (SDM Vol. 1 4.9.2).
    expect(hex(call2('div', cw, { se: 0, sig: 1n }, nzero))).toBe('ffff:8000000000000000');
    expect(flags()).toBe(ZE);
  });
  it('unnormals, pseudo-NaNs and pseudo-infinities are unsupported (IE)', () => {
    expect(hex(call2('add', cw, { se: 0x3fff, sig: 0x4000000000000000n }, one))).toBe(INDEF);
    expect(flags()).toBe(IE);
    expect(hex(call2('mul', cw, { se: 0x7fff, sig: 0n }, one))).toBe(INDEF);
    expect(hex(call2('mul', cw, { se: 0x7fff, sig: 0x4000000000000001n }, one))).toBe(INDEF);
    expect(W.compare(cw, 0x3fff, 0x1n, 0x3fff, J, true)).toBe(3);
    expect(flags()).toBe(IE);
  });
  it('pseudo-denormals are denormal operands (DE) that weigh as exponent 1', () => {
    const pd = { se: 0, sig: J }; // equals the smallest normal 0001:8000...
    expect(W.compare(cw, pd.se, pd.sig, 1, J, false)).toBe(1);
    expect(flags()).toBe(DE);
    expect(hex(call2('add', cw, pd, { se: 1, sig: J }))).toBe('0002:8000000000000000');
    expect(flags()).toBe(DE);
  });
  it('NaN operands follow table 4-7: QNaN beats SNaN, else larger significand', () => {
    const q1 = { se: 0x7fff, sig: 0xc000000000000001n }, q2 = { se: 0xffff, sig: 0xc000000000000002n };
    const sn = { se: 0x7fff, sig: 0x8000000000000005n };
    expect(hex(call2('add', cw, q1, q2))).toBe('ffff:c000000000000002'); expect(flags()).toBe(0);
    expect(hex(call2('add', cw, q2, q1))).toBe('ffff:c000000000000002');
    expect(hex(call2('mul', cw, sn, q1))).toBe('7fff:c000000000000001'); expect(flags()).toBe(IE);
    expect(hex(call2('mul', cw, q1, sn))).toBe('7fff:c000000000000001'); expect(flags()).toBe(IE);
    expect(hex(call2('div', cw, sn, one))).toBe('7fff:c000000000000005'); expect(flags()).toBe(IE);
    expect(hex(call2('sub', cw, one, q2))).toBe('ffff:c000000000000002'); // NaN sign kept by FSUB
  });
  it('FCOM raises IE on a QNaN, FUCOM only on an SNaN', () => {
    const q = { se: 0x7fff, sig: 0xc000000000000000n };
    expect(W.compare(cw, q.se, q.sig, one.se, one.sig, false)).toBe(3); expect(flags()).toBe(IE);
    expect(W.compare(cw, q.se, q.sig, one.se, one.sig, true)).toBe(3); expect(flags()).toBe(0);
    expect(W.compare(cw, 0x7fff, 0x8000000000000001n, one.se, one.sig, true)).toBe(3); expect(flags()).toBe(IE);
    expect(W.compare(cw, zero.se, zero.sig, nzero.se, nzero.sig, false)).toBe(1);
    expect(W.compare(cw, ninf.se, ninf.sig, one.se, one.sig, false)).toBe(0);
  });
  it('exact zero sums are +0, or -0 when rounding down', () => {
    expect(hex(call2('sub', cwOf(PC64, RN), one, one))).toBe('0000:0000000000000000');
    expect(hex(call2('sub', cwOf(PC64, RD), one, one))).toBe('8000:0000000000000000');
    expect(hex(call2('add', cwOf(PC64, RN), nzero, nzero))).toBe('8000:0000000000000000');
  });
});

describe('overflow and underflow (SDM Vol. 1 4.9.1.4-5, 8.5.4-5)', () => {
  const big: F80 = { se: 0x7ffe, sig: 0xffffffffffffffffn };
  const tiny: F80 = { se: 0x0001, sig: J };
  it('masked overflow: infinity or the largest finite value per RC, C1 when rounded up', () => {
    expect(hex(call2('add', cwOf(PC64, RN), big, big))).toBe('7fff:8000000000000000');
    expect(flags()).toBe(OE | PE | C1);
    expect(hex(call2('add', cwOf(PC64, RZ), big, big))).toBe('7ffe:ffffffffffffffff');
    expect(flags()).toBe(OE | PE);
    expect(hex(call2('mul', cwOf(PC53, RD), big, big))).toBe('7ffe:fffffffffffff800');
    expect(hex(call2('mul', cwOf(PC24, RU), { ...big, se: 0xfffe }, big))).toBe('fffe:ffffff0000000000');
  });
  it('unmasked overflow wraps the exponent by 24576 into the register', () => {
    const r = call2('mul', cwOf(PC64, RN, 0x3f & ~OE), { se: 0x7000, sig: J }, { se: 0x7000, sig: J });
    expect(hex(r)).toBe(`${(0x7000 + 0x7000 - 16383 - 24576).toString(16).padStart(4, '0')}:8000000000000000`);
    expect(flags()).toBe(OE);
  });
  it('masked underflow denormalizes; UE only when also inexact', () => {
    const half = fromF64(0.5);
    expect(hex(call2('mul', cwOf(PC64, RN), tiny, half))).toBe('0000:4000000000000000');
    expect(flags()).toBe(0);
    expect(hex(call2('mul', cwOf(PC64, RN), { se: 1, sig: J | 1n }, half))).toBe('0000:4000000000000000');
    expect(flags()).toBe(UE | PE);
    expect(hex(call2('mul', cwOf(PC64, RN), tiny, { se: 0x3fff - 70, sig: J }))).toBe('0000:0000000000000000');
    expect(flags()).toBe(UE | PE);
    expect(hex(call2('mul', cwOf(PC64, RU), tiny, { se: 0x3fff - 70, sig: J }))).toBe('0000:0000000000000001');
    expect(flags()).toBe(UE | PE | C1);
  });
  it('tininess is detected after rounding (SDM Vol. 1 4.9.1.5)', () => {
    // (1 - 2^-60) * 2^-16382 rounds to 53 bits as 2^-16382 with unbounded exponent: not tiny.
    const r = call2('mul', cwOf(PC53, RN), { se: 2, sig: 0xfffffffffffffff0n }, { se: 0x3ffd, sig: J });
    expect(hex(r)).toBe('0001:8000000000000000');
    expect(flags()).toBe(PE | C1);
    // Rounded toward zero it stays below: tiny and inexact.
    expect(hex(call2('mul', cwOf(PC53, RZ), { se: 2, sig: 0xfffffffffffffff0n }, { se: 0x3ffd, sig: J }))).toBe('0000:7ffffffffffff800');
    expect(flags()).toBe(UE | PE);
  });
  it('unmasked underflow wraps the exponent up by 24576, even when exact', () => {
    const r = call2('mul', cwOf(PC64, RN, 0x3f & ~UE), tiny, fromF64(0.5));
    expect(hex(r)).toBe(`${(24576).toString(16)}:8000000000000000`);
    expect(flags()).toBe(UE);
  });
  it('denormal operands raise DE and are computed exactly', () => {
    const d = { se: 0, sig: 3n };
    expect(hex(call2('mul', cwOf(PC64, RN), d, fromF64(2 ** 70)))).toBe(hex({ se: 16383 - 16382 - 63 + 70 + 1, sig: 3n << 62n }));
    expect(flags()).toBe(DE);
  });
});

describe('FRNDINT, FSCALE, FXTRACT', () => {
  it('FRNDINT rounds per RC', () => {
    const cases: [number, number[]][] = [
      [2.5, [2, 2, 3, 2]], [-2.5, [-2, -3, -2, -2]], [0.3, [0, 0, 1, 0]], [-0.7, [-1, -1, -0, -0]], [1e20, [1e20, 1e20, 1e20, 1e20]],
    ];
    for (const [x, want] of cases) {
      for (const rc of [RN, RD, RU, RZ]) {
        expect(hex(call1('rndint', cwOf(PC64, rc), fromF64(x))), `${x} rc${rc}`).toBe(hex(fromF64(want[rc])));
      }
    }
    call1('rndint', cwOf(PC64, RU), fromF64(0.3));
    expect(flags()).toBe(PE | C1);
  });
  it('FSCALE scales by trunc(ST1) and handles the infinite scale factors', () => {
    expect(hex(call2('scale', cwOf(PC64, RN), fromF64(3), fromF64(-2.9)))).toBe(hex(fromF64(0.75)));
    expect(hex(call2('scale', cwOf(PC64, RN), fromF64(3), fromF64(0.9)))).toBe(hex(fromF64(3)));
    expect(hex(call2('scale', cwOf(PC64, RN), fromF64(-3), { se: 0xffff, sig: J }))).toBe('8000:0000000000000000');
    expect(hex(call2('scale', cwOf(PC64, RN), fromF64(0), { se: 0x7fff, sig: J }))).toBe('ffff:c000000000000000');
    expect(flags()).toBe(IE);
    expect(hex(call2('scale', cwOf(PC64, RN), fromF64(1), fromF64(1e6)))).toBe('7fff:8000000000000000');
    expect(flags()).toBe(OE | PE | C1);
  });
  it('FXTRACT splits exponent and significand; zero raises ZE', () => {
    W.xtract(cwOf(PC64, RN), fromF64(-40).se, fromF64(-40).sig);
    expect(hex({ se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) })).toBe(hex(fromF64(5)));
    expect(hex({ se: Number(W.res_se2()), sig: BigInt.asUintN(64, W.res_sig2() as bigint) })).toBe(hex(fromF64(-1.25)));
    W.xtract(cwOf(PC64, RN), 0x8000, 0n);
    expect(flags()).toBe(ZE);
    expect(Number(W.res_se())).toBe(0xffff);
    expect(Number(W.res_se2())).toBe(0x8000);
  });
});

describe('FPREM and FPREM1 against BigInt', () => {
  it('remainders are exact, quotient bits are the low three bits of Q', () => {
    for (let i = 0; i < 10000; i++) {
      const a = { se: (rndInt(2) << 15) | (16383 + rndInt(80)), sig: rnd64() | J };
      const b = { se: (rndInt(2) << 15) | (16383 + rndInt(20)), sig: rnd64() | J };
      const ieee = (i & 1) === 1;
      W.prem(cwOf(PC64, RN), a.se, a.sig, b.se, b.sig, ieee);
      const r = { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
      const A = exact(a), B = exact(b);
      const D = (a.se & 0x7fff) - (b.se & 0x7fff);
      if (D >= 64) { expect(W.c2()).toBe(1); continue; }
      expect(W.c2()).toBe(0);
      const e = Math.min(A.e, B.e);
      const X = A.m << BigInt(A.e - e), Y = B.m << BigInt(B.e - e);
      let q = X / Y, rem = X - q * Y;
      let neg = A.neg;
      if (ieee && (2n * rem > Y || (2n * rem === Y && (q & 1n) === 1n))) { q++; rem = Y - rem; neg = !neg; }
      expect(Number(W.quot())).toBe(Number(q & 7n));
      const R = exact(r);
      if (rem === 0n) { expect(r.sig).toBe(0n); continue; }
      expect(R.neg).toBe(neg);
      const ee = Math.min(R.e, e);
      expect(R.m << BigInt(R.e - ee)).toBe(rem << BigInt(e - ee));
      expect(flags() & PE).toBe(0);
    }
  });
  it('partial remainder for large exponent differences sets C2 and reduces by 32..63 bits', () => {
    const a = { se: 16383 + 200, sig: 0xc90fdaa22168c235n }, b = { se: 16383, sig: 0xb17217f7d1cf79acn };
    W.prem(cwOf(PC64, RN), a.se, a.sig, b.se, b.sig, false);
    expect(W.c2()).toBe(1);
    const d = 200 - (Number(W.res_se()) - 16383);
    expect(d).toBeGreaterThanOrEqual(32);
    expect(d).toBeLessThanOrEqual(64 + 63);
  });
});

describe('packed BCD', () => {
  it('FBLD/FBSTP round-trip 18-digit integers like BigInt decimal strings', () => {
    for (let i = 0; i < 3000; i++) {
      const digits = rndInt(19);
      let s = '';
      for (let k = 0; k < digits; k++) s += String(rndInt(10));
      const v = BigInt(s || '0');
      const neg = rndInt(2) === 1;
      const str = v.toString().padStart(18, '0');
      let lo = 0n;
      for (let k = 0; k < 16; k++) lo |= BigInt(str.charCodeAt(17 - k) - 48) << BigInt(4 * k);
      const hi = (str.charCodeAt(1) - 48) | ((str.charCodeAt(0) - 48) << 4) | (neg ? 0x8000 : 0);
      W.from_bcd(cwOf(PC64, RN), lo, hi);
      const r = { se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) };
      const x = exact(r);
      expect(x.neg).toBe(neg);
      expect(x.e >= 0 ? x.m << BigInt(x.e) : x.m >> BigInt(-x.e)).toBe(v);
      const back = BigInt.asUintN(64, W.to_bcd(cwOf(PC64, RN), r.se, r.sig) as bigint);
      expect(back).toBe(lo);
      expect(Number(W.bcd_hi())).toBe(hi);
    }
  });
  it('out of range stores the BCD indefinite with IE', () => {
    const r = fromF64(1e18);
    expect(BigInt.asUintN(64, W.to_bcd(cwOf(PC64, RN), r.se, r.sig) as bigint)).toBe(0xc000000000000000n);
    expect(Number(W.bcd_hi())).toBe(0xffff);
    expect(flags()).toBe(IE);
    const ok = fromF64(999999999999999999.4); // rounds to 1e18 in f64: out of range too
    W.to_bcd(cwOf(PC64, RN), ok.se, ok.sig);
    expect(flags()).toBe(IE);
    const x = fromF64(-12.5);
    expect(BigInt.asUintN(64, W.to_bcd(cwOf(PC64, RN), x.se, x.sig) as bigint)).toBe(0x12n);
    expect(Number(W.bcd_hi())).toBe(0x8000);
    expect(flags()).toBe(PE);
  });
});

describe('transcendentals (evaluated through f64: about 53 good bits)', () => {
  const cw = cwOf(PC64, RN);
  const toNum = (v: F80) => { const x = exact(v); return (x.neg ? -1 : 1) * Number(x.m) * 2 ** x.e; };
  const close = (got: number, want: number, rel = 4e-16) =>
    expect(Math.abs(got - want) <= rel * Math.abs(want) + 1e-300, `${got} vs ${want}`).toBe(true);
  it('FSIN/FCOS/FPTAN/FSINCOS agree with Math within f64 accuracy', () => {
    for (let i = 0; i < 3000; i++) {
      const x = (rnd64() & 1n ? -1 : 1) * Math.random() * 2 ** rndInt(30) * 1e-3;
      const a = fromF64(x);
      close(toNum(call1('sin', cw, a)), Math.sin(x), 1e-15 * Math.max(1, Math.abs(x) / Math.abs(Math.sin(x)) * 1e-3));
      close(toNum(call1('cos', cw, a)), Math.cos(x), 1e-15 * Math.max(1, Math.abs(x) / Math.abs(Math.cos(x)) * 1e-3));
      const t = toNum(call1('tan', cw, a));
      close(t, Math.tan(x), 1e-14 * Math.max(1, Math.abs(x) / Math.abs(Math.tan(x))));
      W.sincos(cw, a.se, a.sig);
      expect(toNum({ se: Number(W.res_se()), sig: BigInt.asUintN(64, W.res_sig() as bigint) })).toBe(toNum(call1('sin', cw, a)));
    }
  });
  it('|x| >= 2^63 sets C2 and leaves the operand; infinity is invalid', () => {
    const big = { se: 16383 + 63, sig: J };
    expect(hex(call1('sin', cw, big))).toBe(hex(big));
    expect(W.c2()).toBe(1);
    const justBelow = { se: 16383 + 62, sig: M64 };
    call1('cos', cw, justBelow);
    expect(W.c2()).toBe(0);
    expect(hex(call1('sin', cw, { se: 0x7fff, sig: J }))).toBe('ffff:c000000000000000');
    expect(flags()).toBe(IE);
  });
  it('large arguments are reduced exactly: sin(2^62) against a BigInt reduction', () => {
    // sin(2^62) = -0.9586... (reduction with 200-bit pi in BigInt).
    const P = 300n, ONE = 1n << P;
    const atanInv = (n: bigint) => { let s = 0n, t = ONE / n, k = 0n; while (t) { s += (k & 1n ? -1n : 1n) * (t / (2n * k + 1n)); t /= n * n; k++; } return s; };
    const pi = 4n * (4n * atanInv(5n) - atanInv(239n));
    const x = 1n << (62n + P);
    const r = x % (2n * pi); // x mod 2pi, fixed point
    const want = Math.sin(Number(r >> (P - 60n)) / 2 ** 60);
    close(toNum(call1('sin', cw, { se: 16383 + 62, sig: J })), want, 1e-12);
  });
  it('small arguments: sin x = x, cos x = 1 (rounded per RC), PE', () => {
    const x = { se: 16383 - 40, sig: 0xabcdef0123456789n };
    expect(hex(call1('sin', cw, x))).toBe(hex(x));
    expect(flags()).toBe(PE | C1); // |x| is above the true |sin x|: rounded up
    expect(hex(call1('sin', cwOf(PC64, RZ), x))).toBe(hex({ se: x.se, sig: x.sig - 1n }));
    expect(hex(call1('cos', cw, x))).toBe('3fff:8000000000000000');
    expect(hex(call1('cos', cwOf(PC64, RD), x))).toBe('3ffe:ffffffffffffffff');
    expect(hex(call1('sin', cw, fromF64(-0)))).toBe('8000:0000000000000000');
    expect(flags()).toBe(0);
  });
  it('F2XM1, FYL2X, FYL2XP1, FPATAN agree with Math', () => {
    for (let i = 0; i < 2000; i++) {
      const x = Math.random() * 2 - 1;
      close(toNum(call1('f2xm1', cw, fromF64(x))), Math.expm1(x * Math.LN2), 2e-15);
      const y = rndF64(20), p = Math.abs(rndF64(300));
      close(toNum(call2('yl2x', cw, fromF64(p), fromF64(y))), y * Math.log2(p), 1e-15);
      const s = (Math.random() - 0.5) * 0.5;
      close(toNum(call2('yl2xp1', cw, fromF64(s), fromF64(y))), y * Math.log1p(s) / Math.LN2, 1e-15);
      const u = rndF64(30), v = rndF64(30);
      close(toNum(call2('atan', cw, fromF64(u), fromF64(v))), Math.atan2(v, u), 1e-15);
    }
    // Tiny arguments stay accurate: 2^x - 1 ~ x ln 2.
    close(toNum(call1('f2xm1', cw, fromF64(1e-30))), 1e-30 * Math.LN2, 1e-15);
  });
  it('FPATAN special cases are multiples of pi/4 at full precision (SDM FLDPI pattern)', () => {
    expect(hex(call2('atan', cw, fromF64(-1), fromF64(0)))).toBe('4000:c90fdaa22168c235');
    expect(hex(call2('atan', cw, fromF64(-1), fromF64(-0)))).toBe('c000:c90fdaa22168c235');
    expect(hex(call2('atan', cw, fromF64(0), fromF64(5)))).toBe('3fff:c90fdaa22168c235');
    expect(hex(call2('atan', cwOf(PC64, RZ), { se: 0x7fff, sig: J }, { se: 0x7fff, sig: J }))).toBe('3ffe:c90fdaa22168c234');
    expect(hex(call2('atan', cw, fromF64(1), fromF64(-0)))).toBe('8000:0000000000000000');
  });
  it('FYL2X special values: log of zero is ZE, of a negative number IE', () => {
    expect(hex(call2('yl2x', cw, fromF64(0), fromF64(2)))).toBe('ffff:8000000000000000');
    expect(flags()).toBe(ZE);
    expect(hex(call2('yl2x', cw, fromF64(-1), fromF64(2)))).toBe('ffff:c000000000000000');
    expect(flags()).toBe(IE);
    expect(hex(call2('yl2x', cw, fromF64(1), fromF64(-3)))).toBe('8000:0000000000000000');
    expect(flags()).toBe(0);
    expect(hex(call2('yl2x', cw, fromF64(8), fromF64(1)))).toBe(hex(fromF64(3)));
  });
});
