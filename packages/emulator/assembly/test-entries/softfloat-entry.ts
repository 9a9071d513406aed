// Thin wrappers over softfloat80.ts for test/softfloat80.test.ts: operands go in as
// (se, sig) pairs plus the control word, results come back through the getters.
import {
  sf_begin, sf_flags, sf_se, sf_sig, sf_se2, sf_sig2, sf_quot, sf_c2, sf_bcd_hi,
  f80_add, f80_sub, f80_mul, f80_div, f80_sqrt, f80_round_int, f80_compare,
  f80_from_i64, f80_to_int, f80_from_f32, f80_from_f64, f80_to_f32, f80_to_f64,
  f80_from_bcd, f80_to_bcd, f80_scale, f80_xtract, f80_prem,
  f80_sin, f80_cos, f80_tan, f80_sincos, f80_2xm1, f80_yl2x, f80_yl2xp1, f80_atan,
} from '../softfloat80';

export function flags(): u32 { return sf_flags; }
export function res_se(): u32 { return sf_se; }
export function res_sig(): u64 { return sf_sig; }
export function res_se2(): u32 { return sf_se2; }
export function res_sig2(): u64 { return sf_sig2; }
export function quot(): u32 { return sf_quot; }
export function c2(): bool { return sf_c2; }
export function bcd_hi(): u32 { return sf_bcd_hi; }

export function add(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_add(ase, asig, bse, bsig); }
export function sub(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_sub(ase, asig, bse, bsig); }
export function mul(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_mul(ase, asig, bse, bsig); }
export function div(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_div(ase, asig, bse, bsig); }
export function sqrt(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_sqrt(ase, asig); }
export function rndint(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_round_int(ase, asig); }
export function compare(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64, quiet: bool): i32 { sf_begin(cw); return f80_compare(ase, asig, bse, bsig, quiet); }
export function from_i64(cw: u32, v: i64): void { sf_begin(cw); f80_from_i64(v); }
export function to_int(cw: u32, ase: u32, asig: u64, bits: i32): i64 { sf_begin(cw); return f80_to_int(ase, asig, bits); }
export function from_f32(cw: u32, bits: u32): void { sf_begin(cw); f80_from_f32(bits); }
export function from_f64(cw: u32, bits: u64): void { sf_begin(cw); f80_from_f64(bits); }
export function to_f32(cw: u32, ase: u32, asig: u64): u32 { sf_begin(cw); return f80_to_f32(ase, asig); }
export function to_f64(cw: u32, ase: u32, asig: u64): u64 { sf_begin(cw); return f80_to_f64(ase, asig); }
export function from_bcd(cw: u32, lo: u64, hi: u32): void { sf_begin(cw); f80_from_bcd(lo, hi); }
export function to_bcd(cw: u32, ase: u32, asig: u64): u64 { sf_begin(cw); return f80_to_bcd(ase, asig); }
export function scale(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_scale(ase, asig, bse, bsig); }
export function xtract(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_xtract(ase, asig); }
export function prem(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64, ieee: bool): void { sf_begin(cw); f80_prem(ase, asig, bse, bsig, ieee); }
export function sin(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_sin(ase, asig); }
export function cos(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_cos(ase, asig); }
export function tan(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_tan(ase, asig); }
export function sincos(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_sincos(ase, asig); }
export function f2xm1(cw: u32, ase: u32, asig: u64): void { sf_begin(cw); f80_2xm1(ase, asig); }
export function yl2x(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_yl2x(ase, asig, bse, bsig); }
export function yl2xp1(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_yl2xp1(ase, asig, bse, bsig); }
export function atan(cw: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void { sf_begin(cw); f80_atan(ase, asig, bse, bsig); }
