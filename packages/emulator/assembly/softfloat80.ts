// x87 80-bit extended precision arithmetic in software.
//
// A value is a 16-bit sign+exponent word (`se`: bit 15 sign, bits 0-14 biased exponent)
// and a 64-bit significand with an explicit integer bit (`sig`, bit 63 = J), exactly the
// register/memory format of SDM Vol. 1 §4.2.2 and §8.2. Results are never produced through
// f64 arithmetic, except in the transcendental functions at the end of this file (marked).
//
// Calling convention (no allocation, no exceptions):
//   sf_begin(cw)         set the x87 control word (PC, RC, exception masks) and clear flags
//   f80_xxx(...)         operate; the result is left in sf_se/sf_sig (second result of
//                        FXTRACT/FSINCOS/FPTAN in sf_se2/sf_sig2)
//   sf_flags             the status-word bits the operation raised: IE DE ZE OE UE PE and C1
//                        (C1 = "rounded up", SDM §8.1.3.1), in status-word bit positions
// The response follows the control word: masked exceptions produce the masked response
// (QNaN real indefinite, signed infinities, denormals...); an unmasked numeric overflow or
// underflow with a register destination produces the exponent-wrapped result (SDM §8.5.4,
// §8.5.5). Whether to store at all when an unmasked IE/DE/ZE (or an unmasked OE/UE on a
// memory store) was raised is the caller's (fpu.ts) decision.

// Status word bits (SDM Vol. 1 §8.1.3).
export const SW_IE: u32 = 0x0001;
export const SW_DE: u32 = 0x0002;
export const SW_ZE: u32 = 0x0004;
export const SW_OE: u32 = 0x0008;
export const SW_UE: u32 = 0x0010;
export const SW_PE: u32 = 0x0020;
export const SW_SF: u32 = 0x0040;
export const SW_ES: u32 = 0x0080;
export const SW_C0: u32 = 0x0100;
export const SW_C1: u32 = 0x0200;
export const SW_C2: u32 = 0x0400;
export const SW_C3: u32 = 0x4000;
export const SW_B: u32 = 0x8000;

// Rounding control, control word bits 10-11 (SDM Vol. 1 §4.8.4, table 4-8).
export const RC_NEAREST: u32 = 0;
export const RC_DOWN: u32 = 1;
export const RC_UP: u32 = 2;
export const RC_ZERO: u32 = 3;

// Compare results.
export const CMP_LT: i32 = 0;
export const CMP_EQ: i32 = 1;
export const CMP_GT: i32 = 2;
export const CMP_UN: i32 = 3;

export const F80_BIAS: i32 = 16383;
const SIG_J: u64 = 0x8000000000000000;
const SIG_QUIET: u64 = 0xc000000000000000;
const SIG_QBIT: u64 = 0x4000000000000000;
/** QNaN floating-point indefinite (SDM Vol. 1 §4.8.3.7, table 4-3). */
export const INDEF_SE: u32 = 0xffff;
export const INDEF_SIG: u64 = SIG_QUIET;

// Inputs.
export let sf_cw: u32 = 0x037f;
// Outputs.
export let sf_flags: u32 = 0;
export let sf_se: u32 = 0;
export let sf_sig: u64 = 0;
export let sf_se2: u32 = 0;
export let sf_sig2: u64 = 0;
/** FPREM/FPREM1: low three bits of the quotient. */
export let sf_quot: u32 = 0;
/** FPREM/FPREM1: reduction incomplete; FSIN/FCOS/FSINCOS/FPTAN: operand out of range. */
export let sf_c2: bool = false;
/** FBSTP: bytes 8-9 of the packed BCD result (bytes 0-7 are the u64 return value). */
export let sf_bcd_hi: u32 = 0;

export function sf_begin(cw: u32): void {
  sf_cw = cw;
  sf_flags = 0;
  sf_c2 = false;
  sf_quot = 0;
}

// ---------------------------------------------------------------------------------------
// Classification (SDM Vol. 1 §8.2.2, table 8-3: unnormals, pseudo-NaNs and pseudo-infinities
// are unsupported encodings since the 387 and raise #IA).

@inline function rc(): u32 {
  return (sf_cw >> 10) & 3;
}

/** Significand bits after precision control (SDM Vol. 1 §8.1.5.2); the reserved encoding acts as 64. */
@inline function precisionBits(): i32 {
  const pc = (sf_cw >> 8) & 3;
  return pc == 0 ? 24 : pc == 2 ? 53 : 64;
}

export function f80_is_unsupported(se: u32, sig: u64): bool {
  return (se & 0x7fff) != 0 && (sig >> 63) == 0;
}
export function f80_is_nan(se: u32, sig: u64): bool {
  return (se & 0x7fff) == 0x7fff && (sig >> 63) != 0 && (sig << 1) != 0;
}
export function f80_is_snan(se: u32, sig: u64): bool {
  return f80_is_nan(se, sig) && (sig & SIG_QBIT) == 0;
}
@inline function isInf(se: u32, sig: u64): bool {
  return (se & 0x7fff) == 0x7fff && sig == SIG_J;
}
@inline function isZero(se: u32, sig: u64): bool {
  return (se & 0x7fff) == 0 && sig == 0;
}
/** Denormals and pseudo-denormals: both raise #D as operands (SDM Vol. 1 §8.2.2). */
@inline function isDenormal(se: u32, sig: u64): bool {
  return (se & 0x7fff) == 0 && sig != 0;
}
@inline function isNeg(se: u32): bool {
  return (se & 0x8000) != 0;
}

@inline function setResult(se: u32, sig: u64): void {
  sf_se = se;
  sf_sig = sig;
}

/** Masked response to #IA: the QNaN floating-point indefinite. */
function invalid(): void {
  sf_flags |= SW_IE;
  sf_se = INDEF_SE;
  sf_sig = INDEF_SIG;
}

function quietNaN(se: u32, sig: u64): void {
  if ((sig & SIG_QBIT) == 0) sf_flags |= SW_IE;
  sf_se = se;
  sf_sig = sig | SIG_QUIET;
}

/** NaN operand rules for x87 (SDM Vol. 1 §4.8.3.5, table 4-7). */
function propagateNaN(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  const aNaN = f80_is_nan(ase, asig);
  const bNaN = f80_is_nan(bse, bsig);
  const aS = aNaN && (asig & SIG_QBIT) == 0;
  const bS = bNaN && (bsig & SIG_QBIT) == 0;
  if (aS || bS) sf_flags |= SW_IE;
  if (!bNaN) {
    setResult(ase, asig | SIG_QUIET);
    return;
  }
  if (!aNaN) {
    setResult(bse, bsig | SIG_QUIET);
    return;
  }
  // An SNaN and a QNaN: the QNaN. Two of a kind: the larger significand (then the positive one).
  if (aS != bS) {
    if (aS) setResult(bse, bsig);
    else setResult(ase, asig);
    return;
  }
  const aq = asig | SIG_QUIET;
  const bq = bsig | SIG_QUIET;
  if (aq > bq || (aq == bq && (ase & 0x8000) <= (bse & 0x8000))) setResult(ase, aq);
  else setResult(bse, bq);
}

// Normalization of a finite nonzero operand: exponent (biased, may be <= 0) and significand
// with bit 63 set. A pseudo-denormal has exponent 0 but the weight of exponent 1.
let n_exp: i32 = 0;
let n_sig: u64 = 0;
@inline function normalize(se: u32, sig: u64): void {
  let e = <i32>(se & 0x7fff);
  if (e == 0) {
    const sh = <i32>clz<u64>(sig);
    sig <<= <u64>sh;
    e = 1 - sh;
  }
  n_exp = e;
  n_sig = sig;
}

// ---------------------------------------------------------------------------------------
// 128-bit helpers.

let w_hi: u64 = 0;
let w_lo: u64 = 0;

/** (hi:lo) >> n, ORing every bit shifted out into bit 0 (a sticky bit). */
function shiftRightJam128(hi: u64, lo: u64, n: i32): void {
  if (n == 0) {
    w_hi = hi;
    w_lo = lo;
  } else if (n < 64) {
    const un = <u64>n;
    w_lo = (hi << (64 - un)) | (lo >> un) | <u64>((lo << (64 - un)) != 0);
    w_hi = hi >> un;
  } else if (n == 64) {
    w_lo = hi | <u64>(lo != 0);
    w_hi = 0;
  } else if (n < 128) {
    const un = <u64>(n - 64);
    w_lo = (hi >> un) | <u64>(((hi << (64 - un)) | lo) != 0);
    w_hi = 0;
  } else {
    w_lo = <u64>((hi | lo) != 0);
    w_hi = 0;
  }
}

/** Full 64x64 -> 128-bit product into w_hi:w_lo. */
function mul64To128(a: u64, b: u64): void {
  const a0 = a & 0xffffffff;
  const a1 = a >> 32;
  const b0 = b & 0xffffffff;
  const b1 = b >> 32;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const p11 = a1 * b1;
  const mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff);
  w_lo = (mid << 32) | (p00 & 0xffffffff);
  w_hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

// ---------------------------------------------------------------------------------------
// Rounding.

let rs_inexact: bool = false;
let rs_inc: bool = false;

/**
 * Drops the low `s` bits of the 128-bit (sig:ext) and rounds per `mode`; returns the kept
 * bits plus the increment (which may wrap to 0 when s == 0 and sig is all ones).
 */
function roundShift(neg: bool, sig: u64, ext: u64, s: i32, mode: u32): u64 {
  let m: u64;
  let half: bool;
  let rest: bool;
  if (s == 0) {
    m = sig;
    half = (ext >> 63) != 0;
    rest = (ext << 1) != 0;
  } else if (s < 64) {
    const us = <u64>s;
    m = sig >> us;
    const lost = sig << (64 - us);
    half = (lost >> 63) != 0;
    rest = (lost << 1) != 0 || ext != 0;
  } else if (s == 64) {
    m = 0;
    half = (sig >> 63) != 0;
    rest = (sig << 1) != 0 || ext != 0;
  } else {
    m = 0;
    half = false;
    rest = sig != 0 || ext != 0;
  }
  const inexact = half || rest;
  let inc = false;
  if (mode == RC_NEAREST) inc = half && (rest || (m & 1) != 0);
  else if (mode == RC_UP) inc = !neg && inexact;
  else if (mode == RC_DOWN) inc = neg && inexact;
  rs_inexact = inexact;
  rs_inc = inc;
  return m + <u64>inc;
}

/**
 * Rounds sign * (sig:ext) * 2^(exp - 16383 - 63) to a register value with `prec`
 * significant bits (precision control), the exponent range staying that of the extended
 * format (SDM Vol. 1 §8.1.5.2). `sig` has bit 63 set. Tininess is detected after rounding,
 * with precision control taken into account (SDM Vol. 1 §4.9.1.5); masked underflow is
 * flagged only when the denormalized result is also inexact.
 */
function round80(neg: bool, exp: i32, sig: u64, ext: u64, prec: i32): void {
  const mode = rc();
  const s0 = 64 - prec;
  const sign: u32 = neg ? 0x8000 : 0;
  if (exp < 1) {
    let tiny = true;
    if (exp == 0) {
      const m = roundShift(neg, sig, ext, s0, mode);
      if (s0 == 0 ? rs_inc && m == 0 : (m >> <u64>prec) != 0) tiny = false;
    }
    if (tiny) {
      if ((sf_cw & SW_UE) == 0) {
        // Unmasked #U, register destination: round normally, exponent + 24576 (SDM §8.5.5).
        sf_flags |= SW_UE;
        exp += 24576;
        if (exp < 1) exp = 1; // only FSCALE gets here; SDM leaves it undefined
      } else {
        const s = s0 + (1 - exp);
        const m = roundShift(neg, sig, ext, s > 130 ? 130 : s, mode);
        if (rs_inexact) {
          sf_flags |= SW_UE | SW_PE;
          if (rs_inc) sf_flags |= SW_C1;
        }
        const out = m << <u64>s0;
        setResult(sign | <u32>(out >> 63), out);
        return;
      }
    }
  }
  let m = roundShift(neg, sig, ext, s0, mode);
  if (rs_inexact) {
    sf_flags |= SW_PE;
    if (rs_inc) sf_flags |= SW_C1;
  }
  let out: u64;
  if (s0 == 0) {
    if (rs_inc && m == 0) {
      out = SIG_J;
      exp++;
    } else {
      out = m;
    }
  } else {
    if ((m >> <u64>prec) != 0) {
      m >>= 1;
      exp++;
    }
    out = m << <u64>s0;
  }
  if (exp >= 0x7fff) {
    if ((sf_cw & SW_OE) == 0) {
      // Unmasked #O, register destination: exponent - 24576 (SDM §8.5.4).
      sf_flags |= SW_OE;
      exp -= 24576;
      if (exp >= 0x7fff) exp = 0x7ffe; // only FSCALE gets here; SDM leaves it undefined
    } else {
      // Masked response (SDM Vol. 1 §4.9.1.4, table 4-10).
      sf_flags |= SW_OE | SW_PE;
      if (mode == RC_ZERO || (mode == RC_UP && neg) || (mode == RC_DOWN && !neg)) {
        sf_flags &= ~SW_C1;
        setResult(sign | 0x7ffe, ~(<u64>0) << <u64>s0);
      } else {
        sf_flags |= SW_C1;
        setResult(sign | 0x7fff, SIG_J);
      }
      return;
    }
  }
  setResult(sign | <u32>exp, out);
}

/** Exact zero result of x + (-x): +0, or -0 when rounding down (IEEE 754 §6.3). */
@inline function exactZeroSum(): void {
  setResult(rc() == RC_DOWN ? 0x8000 : 0, 0);
}

// ---------------------------------------------------------------------------------------
// Basic arithmetic: FADD/FSUB/FMUL/FDIV/FSQRT honour precision control (SDM §8.1.5.2).

function addCore(ase: u32, asig: u64, bse: u32, bsig: u64, prec: i32): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  const aInf = isInf(ase, asig);
  const bInf = isInf(bse, bsig);
  if (aInf || bInf) {
    if (aInf && bInf && ((ase ^ bse) & 0x8000) != 0) {
      invalid();
      return;
    }
    if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
    setResult(aInf ? ase : bse, SIG_J);
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  const aZero = isZero(ase, asig);
  const bZero = isZero(bse, bsig);
  if (aZero && bZero) {
    if (((ase ^ bse) & 0x8000) == 0) setResult(ase, 0);
    else exactZeroSum();
    return;
  }
  if (aZero || bZero) {
    // x + 0 is still rounded to the precision control (and re-denormalized).
    const se = aZero ? bse : ase;
    normalize(se, aZero ? bsig : asig);
    round80(isNeg(se), n_exp, n_sig, 0, prec);
    return;
  }
  normalize(ase, asig);
  let ea = n_exp;
  let sa = n_sig;
  normalize(bse, bsig);
  let eb = n_exp;
  let sb = n_sig;
  let neg = isNeg(ase);
  if (ea < eb || (ea == eb && sa < sb)) {
    const te = ea;
    ea = eb;
    eb = te;
    const ts = sa;
    sa = sb;
    sb = ts;
    neg = isNeg(bse);
  }
  const d = ea - eb;
  shiftRightJam128(sb, 0, d > 200 ? 200 : d);
  const bh = w_hi;
  const bl = w_lo;
  if (((ase ^ bse) & 0x8000) == 0) {
    let hi = sa + bh;
    let lo = bl;
    if (hi < sa) {
      lo = (hi << 63) | (lo >> 1) | (lo & 1);
      hi = (hi >> 1) | SIG_J;
      ea++;
    }
    round80(neg, ea, hi, lo, prec);
  } else {
    let lo = 0 - bl;
    let hi = sa - bh - <u64>(bl != 0);
    if (hi == 0 && lo == 0) {
      exactZeroSum();
      return;
    }
    if (hi == 0) {
      hi = lo;
      lo = 0;
      ea -= 64;
    }
    const sh = <i32>clz<u64>(hi);
    if (sh != 0) {
      hi = (hi << <u64>sh) | (lo >> <u64>(64 - sh));
      lo <<= <u64>sh;
      ea -= sh;
    }
    round80(neg, ea, hi, lo, prec);
  }
}

export function f80_add(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  addCore(ase, asig, bse, bsig, precisionBits());
}

/** a - b. The sign of b is flipped only for non-NaN operands, so a NaN b propagates as is. */
export function f80_sub(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  if (!f80_is_nan(bse, bsig)) bse ^= 0x8000;
  addCore(ase, asig, bse, bsig, precisionBits());
}

function mulCore(ase: u32, asig: u64, bse: u32, bsig: u64, prec: i32): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  const neg = ((ase ^ bse) & 0x8000) != 0;
  const sign: u32 = neg ? 0x8000 : 0;
  const aInf = isInf(ase, asig);
  const bInf = isInf(bse, bsig);
  const aZero = isZero(ase, asig);
  const bZero = isZero(bse, bsig);
  if (aInf || bInf) {
    if (aZero || bZero) {
      invalid();
      return;
    }
    if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
    setResult(sign | 0x7fff, SIG_J);
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (aZero || bZero) {
    setResult(sign, 0);
    return;
  }
  normalize(ase, asig);
  const ea = n_exp;
  const sa = n_sig;
  normalize(bse, bsig);
  let exp = ea + n_exp - F80_BIAS + 1;
  mul64To128(sa, n_sig);
  let hi = w_hi;
  let lo = w_lo;
  if ((hi >> 63) == 0) {
    hi = (hi << 1) | (lo >> 63);
    lo <<= 1;
    exp--;
  }
  round80(neg, exp, hi, lo, prec);
}

export function f80_mul(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  mulCore(ase, asig, bse, bsig, precisionBits());
}

function divCore(ase: u32, asig: u64, bse: u32, bsig: u64, prec: i32): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  const neg = ((ase ^ bse) & 0x8000) != 0;
  const sign: u32 = neg ? 0x8000 : 0;
  const aInf = isInf(ase, asig);
  const bInf = isInf(bse, bsig);
  const aZero = isZero(ase, asig);
  const bZero = isZero(bse, bsig);
  if (aInf) {
    if (bInf) {
      invalid();
      return;
    }
    if (isDenormal(bse, bsig)) sf_flags |= SW_DE;
    setResult(sign | 0x7fff, SIG_J);
    return;
  }
  if (bInf) {
    if (isDenormal(ase, asig)) sf_flags |= SW_DE;
    setResult(sign, 0);
    return;
  }
  if (bZero) {
    if (aZero) {
      invalid();
      return;
    }
    // #Z outranks #D (SDM Vol. 1 §4.9.2).
    sf_flags |= SW_ZE;
    setResult(sign | 0x7fff, SIG_J);
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (aZero) {
    setResult(sign, 0);
    return;
  }
  normalize(ase, asig);
  const ea = n_exp;
  const A = n_sig;
  normalize(bse, bsig);
  const B = n_sig;
  let exp = ea - n_exp + F80_BIAS;
  // Restoring division, one quotient bit per step; r < B always, 2r may need 65 bits.
  let r = A;
  let q: u64 = 0;
  let steps = 64;
  if (A >= B) {
    r = A - B;
    q = 1;
    steps = 63;
  } else {
    exp--;
  }
  for (let i = 0; i < steps; i++) {
    const top = r >> 63;
    r <<= 1;
    q <<= 1;
    if (top != 0 || r >= B) {
      r -= B;
      q |= 1;
    }
  }
  const top = r >> 63;
  r <<= 1;
  let ext: u64 = 0;
  if (top != 0 || r >= B) {
    r -= B;
    ext = SIG_J;
  }
  if (r != 0) ext |= 1;
  round80(neg, exp, q, ext, prec);
}

export function f80_div(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  divCore(ase, asig, bse, bsig, precisionBits());
}

export function f80_sqrt(ase: u32, asig: u64): void {
  if (f80_is_unsupported(ase, asig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig)) {
    quietNaN(ase, asig);
    return;
  }
  if (isZero(ase, asig)) {
    setResult(ase, 0);
    return;
  }
  if (isNeg(ase)) {
    invalid();
    return;
  }
  if (isInf(ase, asig)) {
    setResult(ase, asig);
    return;
  }
  if (isDenormal(ase, asig)) sf_flags |= SW_DE;
  normalize(ase, asig);
  const E = n_exp - F80_BIAS;
  // value = N * 2^(2k) with N in [2^126, 2^128), so that sqrt(N) has bit 63 set.
  let nh: u64;
  let nl: u64;
  let k: i32;
  if ((E & 1) != 0) {
    nh = n_sig;
    nl = 0;
    k = (E - 127) >> 1;
  } else {
    nh = n_sig >> 1;
    nl = n_sig << 63;
    k = (E - 126) >> 1;
  }
  // Digit-by-digit square root, two radicand bits per step; the remainder stays below
  // 2*root + 1 < 2^65 and is shifted left by 2, so it needs up to 67 bits (rh:rl).
  let rh: u64 = 0;
  let rl: u64 = 0;
  let root: u64 = 0;
  for (let i = 0; i < 64; i++) {
    const two = i < 32 ? (nh >> <u64>(62 - 2 * i)) & 3 : (nl >> <u64>(126 - 2 * i)) & 3;
    rh = (rh << 2) | (rl >> 62);
    rl = (rl << 2) | two;
    const th = root >> 62;
    const tl = (root << 2) | 1;
    root <<= 1;
    if (rh > th || (rh == th && rl >= tl)) {
      rh = rh - th - <u64>(rl < tl);
      rl -= tl;
      root |= 1;
    }
  }
  // One more step on zero bits gives the round bit; what remains is the sticky bit.
  rh = (rh << 2) | (rl >> 62);
  rl <<= 2;
  const th = root >> 62;
  const tl = (root << 2) | 1;
  let ext: u64 = 0;
  if (rh > th || (rh == th && rl >= tl)) {
    rh = rh - th - <u64>(rl < tl);
    rl -= tl;
    ext = SIG_J;
  }
  if ((rh | rl) != 0) ext |= 1;
  round80(false, k + 63 + F80_BIAS, root, ext, precisionBits());
}

/** FRNDINT (SDM Vol. 2 FRNDINT): round to an integer per RC; PE and C1 as usual. */
export function f80_round_int(ase: u32, asig: u64): void {
  if (f80_is_unsupported(ase, asig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig)) {
    quietNaN(ase, asig);
    return;
  }
  if (isZero(ase, asig) || isInf(ase, asig)) {
    setResult(ase, asig);
    return;
  }
  if (isDenormal(ase, asig)) sf_flags |= SW_DE;
  normalize(ase, asig);
  const e = n_exp - F80_BIAS;
  if (e >= 63) {
    setResult(ase, asig);
    return;
  }
  const neg = isNeg(ase);
  const s = 63 - e;
  const m = roundShift(neg, n_sig, 0, s > 130 ? 130 : s, rc());
  if (rs_inexact) {
    sf_flags |= SW_PE;
    if (rs_inc) sf_flags |= SW_C1;
  }
  setIntMagnitude(neg, m);
}

/** Exact f80 from sign and integer magnitude. */
function setIntMagnitude(neg: bool, m: u64): void {
  const sign: u32 = neg ? 0x8000 : 0;
  if (m == 0) {
    setResult(sign, 0);
    return;
  }
  const sh = <i32>clz<u64>(m);
  setResult(sign | <u32>(F80_BIAS + 63 - sh), m << <u64>sh);
}

// ---------------------------------------------------------------------------------------
// Compare. FCOM/FCOMI/FTST raise #IA on any NaN; FUCOM/FUCOMI only on an SNaN (SDM Vol. 2
// FCOM/FUCOM). Unsupported encodings are #IA for both.

export function f80_compare(ase: u32, asig: u64, bse: u32, bsig: u64, quiet: bool): i32 {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    sf_flags |= SW_IE;
    return CMP_UN;
  }
  const aNaN = f80_is_nan(ase, asig);
  const bNaN = f80_is_nan(bse, bsig);
  if (aNaN || bNaN) {
    if (!quiet || f80_is_snan(ase, asig) || f80_is_snan(bse, bsig)) sf_flags |= SW_IE;
    return CMP_UN;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  const aZero = isZero(ase, asig);
  const bZero = isZero(bse, bsig);
  if (aZero && bZero) return CMP_EQ;
  const an = isNeg(ase);
  const bn = isNeg(bse);
  if (aZero) return bn ? CMP_GT : CMP_LT;
  if (bZero) return an ? CMP_LT : CMP_GT;
  if (an != bn) return an ? CMP_LT : CMP_GT;
  // Same sign: compare magnitudes (normalized, so pseudo-denormals compare by value).
  normalize(ase, asig);
  const ea = n_exp;
  const sa = n_sig;
  normalize(bse, bsig);
  let mag: i32;
  if (ea != n_exp) mag = ea < n_exp ? -1 : 1;
  else if (sa != n_sig) mag = sa < n_sig ? -1 : 1;
  else return CMP_EQ;
  if (an) mag = -mag;
  return mag < 0 ? CMP_LT : CMP_GT;
}

// ---------------------------------------------------------------------------------------
// Integer conversions (FILD/FIST/FISTP). Every 64-bit integer is exact in 64 significand bits.

export function f80_from_i64(v: i64): void {
  const neg = v < 0;
  setIntMagnitude(neg, neg ? <u64>(0 - v) : <u64>v);
}

/**
 * FIST/FISTP to a `bits`-wide integer, rounding per RC. Out of range, NaN, infinity and
 * unsupported: #IA, masked response the integer indefinite 0x80..0 (SDM Vol. 1 §4.8.3.7).
 * The result is returned sign-extended; the caller stores the low `bits`.
 */
export function f80_to_int(ase: u32, asig: u64, bits: i32): i64 {
  return toIntMode(ase, asig, bits, rc());
}

function toIntMode(ase: u32, asig: u64, bits: i32, mode: u32): i64 {
  const indefinite: i64 = (<i64>-1) << <i64>(bits - 1);
  if (f80_is_unsupported(ase, asig) || (ase & 0x7fff) == 0x7fff) {
    sf_flags |= SW_IE;
    return indefinite;
  }
  if (isZero(ase, asig)) return 0;
  normalize(ase, asig);
  const e = n_exp - F80_BIAS;
  if (e >= 64) {
    sf_flags |= SW_IE;
    return indefinite;
  }
  const neg = isNeg(ase);
  const s = 63 - e;
  const m = roundShift(neg, n_sig, 0, s > 130 ? 130 : s, mode);
  const limit: u64 = (<u64>1) << <u64>(bits - 1);
  if (neg ? m > limit : m >= limit) {
    sf_flags |= SW_IE;
    return indefinite;
  }
  if (rs_inexact) {
    sf_flags |= SW_PE;
    if (rs_inc) sf_flags |= SW_C1;
  }
  return neg ? <i64>(0 - m) : <i64>m;
}

// ---------------------------------------------------------------------------------------
// Single/double conversions (FLD m32/m64, FST/FSTP m32/m64).

/** FLD m32: exact; an SNaN is quieted with #IA, a denormal raises #D (SDM Vol. 2 FLD). */
export function f80_from_f32(bits: u32): void {
  const sign: u32 = (bits >> 16) & 0x8000;
  const e = (bits >> 23) & 0xff;
  const frac = <u64>(bits & 0x7fffff);
  if (e == 0xff) {
    if (frac == 0) {
      setResult(sign | 0x7fff, SIG_J);
    } else {
      if ((frac & 0x400000) == 0) sf_flags |= SW_IE;
      setResult(sign | 0x7fff, SIG_QUIET | (frac << 40));
    }
    return;
  }
  if (e == 0) {
    if (frac == 0) {
      setResult(sign, 0);
      return;
    }
    sf_flags |= SW_DE;
    const sh = <i32>clz<u64>(frac);
    setResult(sign | <u32>(F80_BIAS - 149 + 63 - sh), frac << <u64>sh);
    return;
  }
  setResult(sign | (e - 127 + <u32>F80_BIAS), SIG_J | (frac << 40));
}

export function f80_from_f64(bits: u64): void {
  const sign: u32 = <u32>(bits >> 48) & 0x8000;
  const e = <u32>(bits >> 52) & 0x7ff;
  const frac = bits & 0xfffffffffffff;
  if (e == 0x7ff) {
    if (frac == 0) {
      setResult(sign | 0x7fff, SIG_J);
    } else {
      if ((frac & 0x8000000000000) == 0) sf_flags |= SW_IE;
      setResult(sign | 0x7fff, SIG_QUIET | (frac << 11));
    }
    return;
  }
  if (e == 0) {
    if (frac == 0) {
      setResult(sign, 0);
      return;
    }
    sf_flags |= SW_DE;
    const sh = <i32>clz<u64>(frac);
    setResult(sign | <u32>(F80_BIAS - 1074 + 63 - sh), frac << <u64>sh);
    return;
  }
  setResult(sign | (e - 1023 + <u32>F80_BIAS), SIG_J | (frac << 11));
}

/**
 * Rounds a finite nonzero f80 to an IEEE single (mbits 23, bias 127) or double (52, 1023)
 * per RC; precision control does not apply to stores (SDM §8.1.5.2). Returns the bits.
 * With an unmasked #O/#U nothing is stored (SDM §8.5.4-5): the caller checks sf_flags.
 */
function packIEEE(neg: bool, ase: u32, asig: u64, mbits: i32, bias: i32): u64 {
  const mode = rc();
  const prec = mbits + 1;
  const s0 = 64 - prec;
  const signBit: u64 = neg ? (<u64>1) << <u64>(mbits == 23 ? 31 : 63) : 0;
  normalize(ase, asig);
  const sig = n_sig;
  let E = n_exp - F80_BIAS + bias;
  const allOnes = <u64>(2 * bias + 1);
  if (E < 1) {
    let tiny = true;
    if (E == 0) {
      const m = roundShift(neg, sig, 0, s0, mode);
      if ((m >> <u64>prec) != 0) tiny = false;
    }
    if (tiny) {
      if ((sf_cw & SW_UE) == 0) {
        sf_flags |= SW_UE;
        return signBit;
      }
      const s = s0 + (1 - E);
      const m = roundShift(neg, sig, 0, s > 130 ? 130 : s, mode);
      if (rs_inexact) {
        sf_flags |= SW_UE | SW_PE;
        if (rs_inc) sf_flags |= SW_C1;
      }
      return signBit | m;
    }
  }
  let m = roundShift(neg, sig, 0, s0, mode);
  // A carry out of the significand (m == 2^prec) moves the value up one binade; for E == 0
  // that is a value that rounded up to the smallest normal.
  if ((m >> <u64>prec) != 0) {
    m >>= 1;
    E++;
  }
  // The exponent is compared before it is packed: an f80 exponent rebiased for a double
  // reaches 17406, which does not fit in the 11 bits above the fraction.
  if (E >= <i32>allOnes) {
    if ((sf_cw & SW_OE) == 0) {
      // Unmasked #O on a memory store: nothing is stored, and the inexact-result condition
      // is not reported (PE and C1 clear; SDM Vol. 1 §4.9.1.6, §8.5.4).
      sf_flags |= SW_OE;
      return signBit;
    }
    sf_flags |= SW_OE | SW_PE;
    if (mode == RC_ZERO || (mode == RC_UP && neg) || (mode == RC_DOWN && !neg)) {
      return signBit | ((allOnes << <u64>mbits) - 1);
    }
    sf_flags |= SW_C1;
    return signBit | (allOnes << <u64>mbits);
  }
  if (rs_inexact) {
    sf_flags |= SW_PE;
    if (rs_inc) sf_flags |= SW_C1;
  }
  // m carries the integer bit, which adds the 1 that E - 1 leaves out.
  return signBit | ((<u64>(E - 1) << <u64>mbits) + m);
}

/** FST m32. NaNs keep their top significand bits, quieted; SNaN and unsupported raise #IA. */
export function f80_to_f32(ase: u32, asig: u64): u32 {
  const sign: u32 = (ase & 0x8000) << 16;
  if (f80_is_unsupported(ase, asig)) {
    sf_flags |= SW_IE;
    return 0xffc00000;
  }
  if ((ase & 0x7fff) == 0x7fff) {
    if (asig == SIG_J) return sign | 0x7f800000;
    if ((asig & SIG_QBIT) == 0) sf_flags |= SW_IE;
    return sign | 0x7fc00000 | <u32>((asig >> 40) & 0x7fffff);
  }
  if (isZero(ase, asig)) return sign;
  return <u32>packIEEE(isNeg(ase), ase, asig, 23, 127);
}

export function f80_to_f64(ase: u32, asig: u64): u64 {
  const sign: u64 = <u64>(ase & 0x8000) << 48;
  if (f80_is_unsupported(ase, asig)) {
    sf_flags |= SW_IE;
    return 0xfff8000000000000;
  }
  if ((ase & 0x7fff) == 0x7fff) {
    if (asig == SIG_J) return sign | 0x7ff0000000000000;
    if ((asig & SIG_QBIT) == 0) sf_flags |= SW_IE;
    return sign | 0x7ff8000000000000 | ((asig >> 11) & 0xfffffffffffff);
  }
  if (isZero(ase, asig)) return sign;
  return packIEEE(isNeg(ase), ase, asig, 52, 1023);
}

// ---------------------------------------------------------------------------------------
// Packed BCD (FBLD/FBSTP): 18 digits in bytes 0-8, sign in bit 7 of byte 9 (SDM Vol. 1 §4.7).

/** FBLD: exact. Invalid digits give an undefined result on hardware; here they weigh as-is. */
export function f80_from_bcd(lo: u64, hi: u32): void {
  let v: u64 = 0;
  for (let i = 1; i >= 0; i--) {
    const d = (hi >> <u32>(4 * i)) & 0xf;
    v = v * 10 + <u64>d;
  }
  for (let i = 15; i >= 0; i--) {
    v = v * 10 + ((lo >> <u64>(4 * i)) & 0xf);
  }
  setIntMagnitude((hi & 0x8000) != 0, v);
}

/**
 * FBSTP: round per RC to an integer of at most 18 digits. Out of range, NaN, infinity and
 * unsupported: #IA, masked response the BCD indefinite FFFF C000000000000000.
 */
export function f80_to_bcd(ase: u32, asig: u64): u64 {
  const neg = isNeg(ase);
  let m: u64 = 0;
  if (f80_is_unsupported(ase, asig) || (ase & 0x7fff) == 0x7fff) {
    sf_flags |= SW_IE;
    sf_bcd_hi = 0xffff;
    return 0xc000000000000000;
  }
  if (!isZero(ase, asig)) {
    normalize(ase, asig);
    const e = n_exp - F80_BIAS;
    if (e >= 60) {
      sf_flags |= SW_IE;
      sf_bcd_hi = 0xffff;
      return 0xc000000000000000;
    }
    const s = 63 - e;
    m = roundShift(neg, n_sig, 0, s > 130 ? 130 : s, rc());
    if (m > 999999999999999999) {
      sf_flags |= SW_IE;
      sf_bcd_hi = 0xffff;
      return 0xc000000000000000;
    }
    if (rs_inexact) {
      sf_flags |= SW_PE;
      if (rs_inc) sf_flags |= SW_C1;
    }
  }
  let lo: u64 = 0;
  for (let i = 0; i < 16; i++) {
    lo |= (m % 10) << <u64>(4 * i);
    m /= 10;
  }
  let hi: u32 = <u32>(m % 10);
  hi |= <u32>((m / 10) % 10) << 4;
  if (neg) hi |= 0x8000;
  sf_bcd_hi = hi;
  return lo;
}

// ---------------------------------------------------------------------------------------
// FSCALE, FXTRACT, FPREM, FPREM1.

/** FSCALE: ST0 * 2^trunc(ST1) (SDM Vol. 2 FSCALE, table 3-47). Not under precision control. */
export function f80_scale(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  const aZero = isZero(ase, asig);
  const aInf = isInf(ase, asig);
  if (isInf(bse, bsig)) {
    if (isNeg(bse)) {
      if (aInf) {
        invalid();
        return;
      }
      if (isDenormal(ase, asig)) sf_flags |= SW_DE;
      setResult(ase & 0x8000, 0);
    } else {
      if (aZero) {
        invalid();
        return;
      }
      if (isDenormal(ase, asig)) sf_flags |= SW_DE;
      setResult((ase & 0x8000) | 0x7fff, SIG_J);
    }
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (aZero || aInf) {
    setResult(ase, asig);
    return;
  }
  // trunc(ST1), clamped far enough out that the clamp itself overflows/underflows.
  let n: i32 = 0;
  if (!isZero(bse, bsig)) {
    normalize(bse, bsig);
    const e = n_exp - F80_BIAS;
    if (e >= 20) n = 0x100000;
    else if (e >= 0) n = <i32>(n_sig >> <u64>(63 - e));
    if (isNeg(bse)) n = -n;
  }
  normalize(ase, asig);
  round80(isNeg(ase), n_exp + n, n_sig, 0, 64);
}

/**
 * FXTRACT: exponent into sf_se/sf_sig (it becomes ST1), significand with the operand's sign
 * into sf_se2/sf_sig2 (the new ST0). Zero: #Z, exponent -inf (SDM Vol. 2 FXTRACT).
 */
export function f80_xtract(ase: u32, asig: u64): void {
  if (f80_is_unsupported(ase, asig)) {
    invalid();
    sf_se2 = INDEF_SE;
    sf_sig2 = INDEF_SIG;
    return;
  }
  if (f80_is_nan(ase, asig)) {
    quietNaN(ase, asig);
    sf_se2 = sf_se;
    sf_sig2 = sf_sig;
    return;
  }
  if (isZero(ase, asig)) {
    sf_flags |= SW_ZE;
    setResult(0xffff, SIG_J);
    sf_se2 = ase;
    sf_sig2 = 0;
    return;
  }
  if (isInf(ase, asig)) {
    setResult(0x7fff, SIG_J);
    sf_se2 = ase;
    sf_sig2 = asig;
    return;
  }
  if (isDenormal(ase, asig)) sf_flags |= SW_DE;
  normalize(ase, asig);
  sf_se2 = (ase & 0x8000) | <u32>F80_BIAS;
  sf_sig2 = n_sig;
  const e = n_exp - F80_BIAS;
  setIntMagnitude(e < 0, <u64>(e < 0 ? -e : e));
}

/**
 * FPREM (ieee == false: quotient truncated) and FPREM1 (ieee: quotient rounded to nearest
 * even). Exact. When the exponent difference is 64 or more the reduction is partial:
 * N = 32 + (D mod 32) bits per step, C2 = 1 and no quotient bits (SDM Vol. 2 FPREM).
 */
export function f80_prem(ase: u32, asig: u64, bse: u32, bsig: u64, ieee: bool): void {
  sf_quot = 0;
  sf_c2 = false;
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  if (isInf(ase, asig) || isZero(bse, bsig)) {
    invalid();
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (isZero(ase, asig) || isInf(bse, bsig)) {
    setResult(ase, asig);
    return;
  }
  normalize(ase, asig);
  const ea = n_exp;
  const A = n_sig;
  normalize(bse, bsig);
  const eb = n_exp;
  const B = n_sig;
  let neg = isNeg(ase);
  const D = ea - eb;
  if (D < 0) {
    if (ieee && D == -1 && A > B) {
      // |a| > |b|/2: quotient 1, remainder |b| - |a| with the opposite sign.
      sf_quot = 1;
      packRemainder(!neg, ea, B - (A - B));
      return;
    }
    round80(neg, ea, A, 0, 64);
    return;
  }
  let steps = D;
  let scaleExp = eb;
  if (D >= 64) {
    const N = 32 + (D & 31);
    steps = N;
    scaleExp = eb + (D - N);
    sf_c2 = true;
  }
  let r = A;
  let q: u64 = 0;
  if (r >= B) {
    r -= B;
    q = 1;
  }
  for (let i = 0; i < steps; i++) {
    const top = r >> 63;
    r <<= 1;
    q <<= 1;
    if (top != 0 || r >= B) {
      r -= B;
      q |= 1;
    }
  }
  if (ieee && !sf_c2) {
    const other = B - r;
    if (r > other || (r == other && (q & 1) != 0)) {
      r = other;
      q++;
      neg = !neg;
    }
  }
  if (!sf_c2) sf_quot = <u32>(q & 7);
  if (r == 0) {
    setResult(ase & 0x8000, 0);
    return;
  }
  packRemainder(neg, scaleExp, r);
}

/** Remainder r * 2^(exp - bias - 63), exact (it can only underflow, SDM Vol. 2 FPREM #U). */
function packRemainder(neg: bool, exp: i32, r: u64): void {
  const sh = <i32>clz<u64>(r);
  round80(neg, exp - sh, r << <u64>sh, 0, 64);
}

// ---------------------------------------------------------------------------------------
// Transcendentals. APPROXIMATE: the core function is evaluated in f64 (AssemblyScript's
// musl-derived Math), as QEMU's x87 emulation also does; results carry about 53 correct bits
// instead of the 64 of a real x87 and C1 is left clear. Argument checks, special values,
// argument reduction for FSIN/FCOS/FSINCOS/FPTAN (exact, against a 128-bit pi/2), the
// |x| >= 2^63 out-of-range rule and the exception flags are done in extended precision.

/** pi/2 * 2^126, truncated (127 bits). */
const PIO2_HI: u64 = 0x6487ed5110b4611a;
const PIO2_LO: u64 = 0x62633145c06e0e68;
/** Extended constants, round-to-nearest (SDM Vol. 2 FLDPI etc.). */
const PI_SIG: u64 = 0xc90fdaa22168c235;
const TPIO4_SIG: u64 = 0x96cbe3f9990e91a8;
const LN2_SIG: u64 = 0xb17217f7d1cf79ac;
const L2E_SIG: u64 = 0xb8aa3b295c17f0bc;

/** Finite nonzero f80 -> nearest f64, flags untouched (an evaluation input only). */
function toF64(se: u32, sig: u64): f64 {
  normalize(se, sig);
  const d = NativeMath.scalbn(<f64>n_sig, n_exp - F80_BIAS - 63);
  return isNeg(se) ? -d : d;
}

/** f64 evaluation result -> f80 register value (exact); PE since the value was rounded. */
function setFromF64(d: f64): void {
  const saved = sf_flags;
  f80_from_f64(reinterpret<u64>(d));
  sf_flags = saved;
  if (d != 0) sf_flags |= SW_PE;
}

/** Common operand screening for one-operand transcendentals. Returns true when done. */
function screen1(ase: u32, asig: u64): bool {
  if (f80_is_unsupported(ase, asig)) {
    invalid();
    return true;
  }
  if (f80_is_nan(ase, asig)) {
    quietNaN(ase, asig);
    return true;
  }
  return false;
}

// Trig argument reduction results: r in f64 (|r| <= pi/4) and the quadrant.
let red_r: f64 = 0;
let red_q: u32 = 0;

/** x mod pi/2 for finite nonzero |x| < 2^63, by exact long division against PIO2. */
function reduceTrig(se: u32, sig: u64): void {
  normalize(se, sig);
  const e = n_exp - F80_BIAS;
  if (e < -1 || (e == -1 && n_sig < PI_SIG)) {
    // |x| < pi/4: PI_SIG at exponent -1 is pi/4.
    red_r = toF64(se & 0x7fff, sig);
    red_q = 0;
    return;
  }
  // Dividend x * 2^126 = X * 2^(e + 63): the bits of X followed by e + 63 zeros.
  const X = n_sig;
  const total = 64 + e + 63;
  let rh: u64 = 0;
  let rl: u64 = 0;
  let q: u32 = 0;
  for (let i = 0; i < total; i++) {
    const bit: u64 = i < 64 ? (X >> <u64>(63 - i)) & 1 : 0;
    rh = (rh << 1) | (rl >> 63);
    rl = (rl << 1) | bit;
    q <<= 1;
    if (rh > PIO2_HI || (rh == PIO2_HI && rl >= PIO2_LO)) {
      rh = rh - PIO2_HI - <u64>(rl < PIO2_LO);
      rl -= PIO2_LO;
      q |= 1;
    }
  }
  // Nearest multiple: if r > pi/4 use r - pi/2.
  const hh = PIO2_HI >> 1;
  const hl = (PIO2_LO >> 1) | (PIO2_HI << 63);
  let neg = false;
  if (rh > hh || (rh == hh && rl > hl)) {
    const nl = PIO2_LO - rl;
    rh = PIO2_HI - rh - <u64>(PIO2_LO < rl);
    rl = nl;
    q++;
    neg = true;
  }
  let r = NativeMath.scalbn(<f64>rh, 64 - 126) + NativeMath.scalbn(<f64>rl, -126);
  red_r = neg ? -r : r;
  red_q = q & 3;
}

/** 2^63 <= |x|: FSIN/FCOS/FSINCOS/FPTAN set C2 and leave ST0 alone (SDM Vol. 2 FSIN). */
@inline function trigOutOfRange(se: u32): bool {
  return (se & 0x7fff) >= <u32>(F80_BIAS + 63);
}

/** Tiny |x| (< 2^-32): sin x and tan x round to x, cos x to 1; inexact unless x == 0. */
@inline function trigTiny(se: u32): bool {
  return (se & 0x7fff) < <u32>(F80_BIAS - 32);
}

/** kind: 0 sin, 1 cos, 2 tan. Result in sf_se/sf_sig; sf_c2 for out-of-range. */
function trig1(ase: u32, asig: u64, kind: i32): void {
  if (screen1(ase, asig)) return;
  if (isInf(ase, asig)) {
    invalid();
    return;
  }
  if ((ase & 0x7fff) != 0x7fff && trigOutOfRange(ase)) {
    sf_c2 = true;
    setResult(ase, asig);
    return;
  }
  if (isZero(ase, asig)) {
    if (kind == 1) setResult(0x3fff, SIG_J);
    else setResult(ase, 0);
    return;
  }
  if (isDenormal(ase, asig)) sf_flags |= SW_DE;
  if (trigTiny(ase)) {
    // |x| < 2^-32: sin x = x - x^3/6 and tan x = x + x^3/3 lie within 2^-66 |x| of x, and
    // cos x = 1 - x^2/2 within 2^-65 below 1: round a value just below/above instead.
    if (kind == 1) {
      round80(false, F80_BIAS - 1, ~(<u64>0), ~(<u64>0), 64);
      return;
    }
    normalize(ase, asig);
    if (kind == 2) {
      round80(isNeg(ase), n_exp, n_sig, 1, 64);
    } else if (n_sig == SIG_J) {
      round80(isNeg(ase), n_exp - 1, ~(<u64>0), ~(<u64>0), 64);
    } else {
      round80(isNeg(ase), n_exp, n_sig - 1, ~(<u64>0), 64);
    }
    return;
  }
  reduceTrig(ase, asig);
  const r = red_r;
  const q = red_q;
  let v: f64;
  if (kind == 2) {
    v = (q & 1) == 0 ? NativeMath.tan(r) : -1.0 / NativeMath.tan(r);
  } else {
    const qq = kind == 1 ? (q + 1) & 3 : q;
    v = (qq & 1) == 0 ? NativeMath.sin(r) : NativeMath.cos(r);
    if ((qq & 2) != 0) v = -v;
  }
  if (isNeg(ase) && kind != 1) v = -v;
  setFromF64(v);
}

export function f80_sin(ase: u32, asig: u64): void {
  trig1(ase, asig, 0);
}
export function f80_cos(ase: u32, asig: u64): void {
  trig1(ase, asig, 1);
}
/** FPTAN's tangent; the caller pushes 1.0 afterwards unless sf_c2 or the result is a NaN. */
export function f80_tan(ase: u32, asig: u64): void {
  trig1(ase, asig, 2);
}

/** FSINCOS: sine in sf_se/sf_sig, cosine in sf_se2/sf_sig2. */
export function f80_sincos(ase: u32, asig: u64): void {
  const flags0 = sf_flags;
  trig1(ase, asig, 1);
  const cse = sf_se;
  const csig = sf_sig;
  const cflags = sf_flags;
  sf_flags = flags0;
  trig1(ase, asig, 0);
  sf_flags |= cflags;
  sf_se2 = cse;
  sf_sig2 = csig;
}

/** F2XM1: 2^x - 1, defined for -1 <= x <= 1 (SDM Vol. 2 F2XM1). */
export function f80_2xm1(ase: u32, asig: u64): void {
  if (screen1(ase, asig)) return;
  if (isZero(ase, asig)) {
    setResult(ase, 0);
    return;
  }
  if (isInf(ase, asig)) {
    if (isNeg(ase)) setResult(0xbfff, SIG_J);
    else setResult(ase, asig);
    return;
  }
  if (isDenormal(ase, asig)) sf_flags |= SW_DE;
  normalize(ase, asig);
  if (n_exp - F80_BIAS < -70) {
    // 2^x - 1 = x ln2 (1 + x ln2 / 2 + ...): the extended product is the rounded result.
    mulCore(ase, asig, 0x3ffe, LN2_SIG, 64);
    sf_flags |= SW_PE;
    return;
  }
  setFromF64(NativeMath.expm1(toF64(ase, asig) * NativeMath.LN2));
}

/** log2 of a finite positive nonzero value, as f64: e + log2(m), m within [sqrt2/2, sqrt2). */
function log2Pos(se: u32, sig: u64): f64 {
  normalize(se, sig);
  let e = n_exp - F80_BIAS;
  let t: f64;
  if (n_sig > 0xb504f333f9de6484) {
    e++;
    t = -NativeMath.scalbn(<f64>((<u64>0) - n_sig), -64);
  } else {
    t = NativeMath.scalbn(<f64>(n_sig - SIG_J), -63);
  }
  return <f64>e + NativeMath.log1p(t) * NativeMath.LOG2E;
}

/** FYL2X: ST1 * log2(ST0) (SDM Vol. 2 FYL2X, table 3-50). a = ST0 (x), b = ST1 (y). */
export function f80_yl2x(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  const xZero = isZero(ase, asig);
  if (isNeg(ase) && !xZero) {
    invalid();
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (xZero) {
    // log2(0) = -inf: y * -inf; #Z when y is finite and nonzero.
    if (isZero(bse, bsig)) {
      invalid();
      return;
    }
    if (!isInf(bse, bsig)) sf_flags |= SW_ZE;
    setResult(((bse & 0x8000) ^ 0x8000) | 0x7fff, SIG_J);
    return;
  }
  if (isInf(ase, asig)) {
    mulCore(bse, bsig, 0x7fff, SIG_J, 64);
    return;
  }
  if (ase == 0x3fff && asig == SIG_J) {
    mulCore(bse, bsig, 0, 0, 64); // log2(1) = +0 exactly; inf * 0 is #IA
    return;
  }
  const flags0 = sf_flags;
  setFromF64(log2Pos(ase, asig));
  const lse = sf_se;
  const lsig = sf_sig;
  sf_flags = flags0;
  mulCore(bse, bsig, lse, lsig, 64);
  if (!isInf(bse, bsig) && !isZero(bse, bsig)) sf_flags |= SW_PE;
}

/** FYL2XP1: ST1 * log2(ST0 + 1), defined for |x| < 1 - sqrt2/2 (SDM Vol. 2 FYL2XP1). */
export function f80_yl2xp1(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  if (isZero(ase, asig)) {
    // log2(1 + 0) = 0 with x's sign: y * 0, #IA for an infinite y.
    mulCore(bse, bsig, ase, 0, 64);
    return;
  }
  if (isInf(ase, asig)) {
    if (isNeg(ase)) invalid();
    else mulCore(bse, bsig, 0x7fff, SIG_J, 64);
    return;
  }
  normalize(ase, asig);
  const flags0 = sf_flags;
  if (n_exp - F80_BIAS < -70) {
    // log2(1 + x) = x log2(e) (1 - x/2 + ...): the extended product is the rounded result.
    mulCore(ase, asig, 0x3fff, L2E_SIG, 64);
  } else {
    const x = toF64(ase, asig);
    if (x < -1.0) {
      invalid();
      return;
    }
    if (x == -1.0) {
      if (isZero(bse, bsig)) {
        invalid();
        return;
      }
      sf_flags |= SW_ZE;
      setResult(((bse & 0x8000) ^ 0x8000) | 0x7fff, SIG_J);
      return;
    }
    setFromF64(NativeMath.log1p(x) * NativeMath.LOG2E);
  }
  const lse = sf_se;
  const lsig = sf_sig;
  sf_flags = flags0;
  mulCore(bse, bsig, lse, lsig, 64);
  if (!isInf(bse, bsig) && !isZero(bse, bsig)) sf_flags |= SW_PE;
}

/**
 * FPATAN: atan2(ST1, ST0) (SDM Vol. 2 FPATAN, table 3-30). a = ST0 (x), b = ST1 (y). No #IA
 * for 0/0 or inf/inf: the signs select among +-0, +-pi/4, +-pi/2, +-3pi/4, +-pi, which are
 * returned at full extended precision.
 */
export function f80_atan(ase: u32, asig: u64, bse: u32, bsig: u64): void {
  if (f80_is_unsupported(ase, asig) || f80_is_unsupported(bse, bsig)) {
    invalid();
    return;
  }
  if (f80_is_nan(ase, asig) || f80_is_nan(bse, bsig)) {
    propagateNaN(ase, asig, bse, bsig);
    return;
  }
  if (isDenormal(ase, asig) || isDenormal(bse, bsig)) sf_flags |= SW_DE;
  const ysign = bse & 0x8000;
  const xneg = isNeg(ase);
  const xZero = isZero(ase, asig);
  const yZero = isZero(bse, bsig);
  const xInf = isInf(ase, asig);
  const yInf = isInf(bse, bsig);
  if (yZero || (xInf && !yInf)) {
    if (xneg) piConst(ysign, 0x4000, PI_SIG);
    else setResult(ysign, 0);
    return;
  }
  if (xZero || (yInf && !xInf)) {
    piConst(ysign, 0x3fff, PI_SIG);
    return;
  }
  if (xInf && yInf) {
    if (xneg) piConst(ysign, 0x4000, TPIO4_SIG);
    else piConst(ysign, 0x3ffe, PI_SIG);
    return;
  }
  normalize(ase, asig);
  const ex = n_exp;
  normalize(bse, bsig);
  const ey = n_exp;
  // Far apart, atan2 is pi/2 or pi within 2^-66 relative: the true multiple of pi/4 is
  // nowhere near a rounding boundary (its bits after C234 are C4C6...), so the correction
  // cannot change the rounded result.
  if (ey - ex > 66) {
    piConst(ysign, 0x3fff, PI_SIG);
    return;
  }
  if (xneg && ex - ey > 66) {
    piConst(ysign, 0x4000, PI_SIG);
    return;
  }
  if (!xneg && ex - ey > 60) {
    // atan(t) = t (1 - t^2/3 ...) with t < 2^-59: the extended quotient is the result.
    divCore(bse, bsig, ase & 0x7fff, asig, 64);
    sf_flags |= SW_PE;
    return;
  }
  // Scale both by the same power of two so that f64 holds them; atan2 is scale-free.
  const emax = ex > ey ? ex : ey;
  const xs = scaledF64(ase, asig, emax);
  const ys = scaledF64(bse, bsig, emax);
  setFromF64(NativeMath.atan2(ys, xs));
}

function scaledF64(se: u32, sig: u64, emax: i32): f64 {
  normalize(se, sig);
  const d = NativeMath.scalbn(<f64>n_sig, n_exp - emax - 63);
  return isNeg(se) ? -d : d;
}

/** Multiples of pi/4 at extended precision, rounded per RC like FLDPI (SDM Vol. 2 FLDPI). */
function piConst(sign: u32, exp: u32, sig: u64): void {
  // Both pi (C235) and 3pi/4 (91A8) were rounded up to nearest: one lower toward -inf/zero.
  const mode = rc();
  let s = sig;
  if (mode == RC_ZERO || (mode == RC_DOWN && sign == 0) || (mode == RC_UP && sign != 0)) s--;
  else sf_flags |= SW_C1;
  setResult(sign | exp, s);
  sf_flags |= SW_PE;
}
