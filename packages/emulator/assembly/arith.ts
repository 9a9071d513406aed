// Integer arithmetic: the eight ALU operations, shifts and rotates, multiply and divide,
// BCD adjusts, bit scans and tests. Results are returned; flags go to the lazy-flag record
// or, for operations whose flags are irregular, straight into EFLAGS.

import {
  set_lazy, set_lazy_keep_cf, get_cf, get_af, set_flags_bits, set_szp_flags,
  reg8, reg16, reg32, set_reg8, set_reg16, set_reg32, LF_ADD, LF_SUB, LF_LOGIC, LF_BORROW_IN, FLAG_CF,
  FLAG_OF, FLAG_AF, FLAG_ZF, EAX, EDX,
} from './state';
import { raise, EXC_DE } from './memory';

@inline export function size_mask(shift: u32): u32 { return shift == 31 ? 0xffffffff : (<u32>2 << shift) - 1; }

/** ADD OR ADC SBB AND SUB XOR CMP, by ModRM.reg / opcode bits 3-5. `shift` is 7, 15 or 31. */
export function alu(op: u32, a: u32, b: u32, shift: u32): u32 { return alu_inline(op, a, b, shift); }

/** alu() for the decoded-block executor, where `shift` is a constant at each use. */
@inline export function alu_inline(op: u32, a: u32, b: u32, shift: u32): u32 {
  const m = size_mask(shift);
  let r: u32;
  switch (op) {
    case 0: r = (a + b) & m; set_lazy(LF_ADD, shift, r, a, b); break;
    case 1: r = a | b; set_lazy(LF_LOGIC, shift, r, a, b); break;
    case 2: r = (a + b + (get_cf() ? 1 : 0)) & m; set_lazy(LF_ADD, shift, r, a, b); break;
    case 3: r = (a - b - (get_cf() ? 1 : 0)) & m; set_lazy(LF_SUB | LF_BORROW_IN, shift, r, a, b); break;
    case 4: r = a & b; set_lazy(LF_LOGIC, shift, r, a, b); break;
    case 5: r = (a - b) & m; set_lazy(LF_SUB, shift, r, a, b); break;
    case 6: r = a ^ b; set_lazy(LF_LOGIC, shift, r, a, b); break;
    default: r = (a - b) & m; set_lazy(LF_SUB, shift, r, a, b); break;
  }
  return r;
}

@inline export function inc(a: u32, shift: u32): u32 {
  const r = (a + 1) & size_mask(shift);
  set_lazy_keep_cf(LF_ADD, shift, r, a, 1);
  return r;
}
@inline export function dec(a: u32, shift: u32): u32 {
  const r = (a - 1) & size_mask(shift);
  set_lazy_keep_cf(LF_SUB, shift, r, a, 1);
  return r;
}
export function neg(a: u32, shift: u32): u32 {
  const r = (0 - a) & size_mask(shift);
  set_lazy(LF_SUB, shift, r, 0, a);
  return r;
}

// ---------------------------------------------------------------------------------------
// Shifts and rotates (SDM SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR). The count is masked to 5
// bits; a zero count changes nothing, flags included. OF is defined for count 1 only, AF
// is undefined: we give what later Intel CPUs give.

export function shift_op(op: u32, a: u32, count: u32, shift: u32): u32 {
  count &= 31;
  if (count == 0) return a;
  const bits = shift + 1;
  const m = size_mask(shift);
  a &= m;
  let r: u32 = a;
  let cf: u32 = 0;
  let ov: u32 = 0;
  switch (op) {
    case 0: { // ROL
      const c = count % bits;
      r = c == 0 ? a : ((a << c) | (a >>> (bits - c))) & m;
      cf = r & 1;
      ov = ((r >>> shift) ^ cf) & 1;
      set_flags_bits(FLAG_CF | FLAG_OF, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0));
      return r;
    }
    case 1: { // ROR
      const c = count % bits;
      r = c == 0 ? a : ((a >>> c) | (a << (bits - c))) & m;
      cf = (r >>> shift) & 1;
      ov = ((r >>> shift) ^ (r >>> (shift - 1))) & 1;
      set_flags_bits(FLAG_CF | FLAG_OF, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0));
      return r;
    }
    case 2: { // RCL: rotate through CF over bits+1 positions
      const c = count % (bits + 1);
      let v: u64 = (<u64>a) | ((get_cf() ? <u64>1 : 0) << bits);
      const w: u64 = (<u64>1 << (bits + 1)) - 1;
      if (c != 0) v = ((v << c) | (v >> ((bits + 1) - c))) & w;
      r = <u32>v & m;
      cf = <u32>(v >> bits) & 1;
      ov = ((r >>> shift) ^ cf) & 1;
      set_flags_bits(FLAG_CF | FLAG_OF, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0));
      return r;
    }
    case 3: { // RCR
      const c = count % (bits + 1);
      const cin: u32 = get_cf() ? 1 : 0;
      let v: u64 = (<u64>a) | (<u64>cin << bits);
      const w: u64 = (<u64>1 << (bits + 1)) - 1;
      if (c != 0) v = ((v >> c) | (v << ((bits + 1) - c))) & w;
      r = <u32>v & m;
      cf = <u32>(v >> bits) & 1;
      ov = ((r >>> shift) ^ (r >>> (shift - 1))) & 1;
      set_flags_bits(FLAG_CF | FLAG_OF, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0));
      return r;
    }
    case 4: case 6: { // SHL/SAL
      if (count <= bits) {
        r = count == 32 ? 0 : (a << count) & m;
        cf = count == 32 ? a & 1 : (a >>> (bits - count)) & 1;
      } else { r = 0; cf = 0; }
      ov = ((r >>> shift) ^ cf) & 1;
      break;
    }
    case 5: { // SHR
      if (count <= bits) {
        r = count == 32 ? 0 : a >>> count;
        cf = (a >>> (count - 1)) & 1;
      } else { r = 0; cf = 0; }
      ov = (a >>> shift) & 1;
      break;
    }
    default: { // SAR
      const sa = <i32>(a << (31 - shift)) >> (31 - shift);
      const c = count > shift ? shift + 1 : count;
      r = <u32>(sa >> (c > 31 ? 31 : c)) & m;
      cf = <u32>(sa >> (c - 1)) & 1;
      ov = 0;
      break;
    }
  }
  set_szp_flags(r, shift, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0) , FLAG_CF | FLAG_OF | FLAG_AF);
  return r;
}

/** SHLD/SHRD (SDM): `a` is the destination, `b` supplies the bits shifted in. */
export function shld(a: u32, b: u32, count: u32, shift: u32): u32 {
  count &= 31;
  if (count == 0) return a;
  const bits = shift + 1;
  let r: u32, cf: u32;
  if (bits == 16) {
    // 16-bit with count > 16 is undefined; Intel CPUs shift through a 48-bit b:a:b value.
    const v: u64 = ((<u64>a) << 32) | ((<u64>b) << 16) | <u64>a;
    const sh = v << count;
    r = <u32>(sh >> 32) & 0xffff;
    cf = <u32>(v >> (48 - count)) & 1;
  } else {
    r = (a << count) | (b >>> (32 - count));
    cf = (a >>> (32 - count)) & 1;
  }
  const ov = ((r >>> shift) ^ ((a >>> shift) & 1)) & 1;
  set_szp_flags(r, shift, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0), FLAG_CF | FLAG_OF | FLAG_AF);
  return r;
}
export function shrd(a: u32, b: u32, count: u32, shift: u32): u32 {
  count &= 31;
  if (count == 0) return a;
  const bits = shift + 1;
  let r: u32, cf: u32;
  if (bits == 16) {
    // Shift the 48-bit value a:b:a right: the low half is a, above it b.
    const w: u64 = (<u64>a) | ((<u64>b) << 16) | ((<u64>a) << 32);
    r = <u32>(w >> count) & 0xffff;
    cf = <u32>(w >> (count - 1)) & 1;
  } else {
    r = (a >>> count) | (b << (32 - count));
    cf = (a >>> (count - 1)) & 1;
  }
  const ov = ((r >>> shift) ^ ((a >>> shift) & 1)) & 1;
  set_szp_flags(r, shift, (cf ? FLAG_CF : 0) | (ov ? FLAG_OF : 0), FLAG_CF | FLAG_OF | FLAG_AF);
  return r;
}

// ---------------------------------------------------------------------------------------
// Multiply and divide. SF ZF PF AF are undefined after MUL/IMUL; we set them from the low
// half of the result, as Intel P6-family CPUs do for SF ZF PF.

function mul_flags(lo: u32, shift: u32, over: bool): void {
  set_szp_flags(lo, shift, over ? FLAG_CF | FLAG_OF : 0, FLAG_CF | FLAG_OF | FLAG_AF);
}

export function mul8(b: u32): void {
  const r = reg8(0) * (b & 0xff);
  set_reg16(EAX, r);
  mul_flags(r & 0xff, 7, (r >>> 8) != 0);
}
export function imul8(b: u32): void {
  const r = <i32>(<i8>reg8(0)) * <i32>(<i8>b);
  set_reg16(EAX, <u32>r);
  mul_flags(<u32>r & 0xff, 7, r != <i32>(<i8>r));
}
export function mul16(b: u32): void {
  const r = reg16(EAX) * (b & 0xffff);
  set_reg16(EAX, r); set_reg16(EDX, r >>> 16);
  mul_flags(r & 0xffff, 15, (r >>> 16) != 0);
}
export function imul16(b: u32): void {
  const r = <i32>(<i16>reg16(EAX)) * <i32>(<i16>b);
  set_reg16(EAX, <u32>r); set_reg16(EDX, <u32>r >>> 16);
  mul_flags(<u32>r & 0xffff, 15, r != <i32>(<i16>r));
}
export function mul32(b: u32): void {
  const r: u64 = <u64>reg32(EAX) * <u64>b;
  set_reg32(EAX, <u32>r); set_reg32(EDX, <u32>(r >> 32));
  mul_flags(<u32>r, 31, (r >> 32) != 0);
}
export function imul32(b: u32): void {
  const r: i64 = <i64>(<i32>reg32(EAX)) * <i64>(<i32>b);
  set_reg32(EAX, <u32>r); set_reg32(EDX, <u32>(r >> 32));
  mul_flags(<u32>r, 31, r != <i64>(<i32>r));
}
/** Two- and three-operand IMUL: the truncated product. */
export function imul_trunc(a: u32, b: u32, shift: u32): u32 {
  if (shift == 15) {
    const r = <i32>(<i16>a) * <i32>(<i16>b);
    mul_flags(<u32>r & 0xffff, 15, r != <i32>(<i16>r));
    return <u32>r & 0xffff;
  }
  const r: i64 = <i64>(<i32>a) * <i64>(<i32>b);
  mul_flags(<u32>r, 31, r != <i64>(<i32>r));
  return <u32>r;
}

function div_error(): void { raise(EXC_DE, false, 0); }

export function div8(b: u32): void {
  b &= 0xff;
  if (b == 0) div_error();
  const n = reg16(EAX);
  const q = n / b;
  if (q > 0xff) div_error();
  set_reg8(0, q); set_reg8(4, n % b);
}
export function idiv8(b: u32): void {
  const d = <i32>(<i8>b);
  if (d == 0) div_error();
  const n = <i32>(<i16>reg16(EAX));
  const q = n / d;
  if (q > 127 || q < -128) div_error();
  set_reg8(0, <u32>q); set_reg8(4, <u32>(n % d));
}
export function div16(b: u32): void {
  b &= 0xffff;
  if (b == 0) div_error();
  const n = (reg16(EDX) << 16) | reg16(EAX);
  const q = n / b;
  if (q > 0xffff) div_error();
  set_reg16(EAX, q); set_reg16(EDX, n % b);
}
export function idiv16(b: u32): void {
  const d = <i32>(<i16>b);
  if (d == 0) div_error();
  const n = <i32>((reg16(EDX) << 16) | reg16(EAX));
  // -2^31 / -1 overflows i32 itself: compute in i64.
  const q = <i64>n / <i64>d;
  if (q > 32767 || q < -32768) div_error();
  set_reg16(EAX, <u32>q); set_reg16(EDX, <u32>(<i64>n % <i64>d));
}
export function div32(b: u32): void {
  if (b == 0) div_error();
  const n: u64 = (<u64>reg32(EDX) << 32) | <u64>reg32(EAX);
  const q = n / <u64>b;
  if (q > 0xffffffff) div_error();
  set_reg32(EAX, <u32>q); set_reg32(EDX, <u32>(n % <u64>b));
}
export function idiv32(b: u32): void {
  const d = <i64>(<i32>b);
  if (d == 0) div_error();
  const n = <i64>((<u64>reg32(EDX) << 32) | <u64>reg32(EAX));
  if (n == i64.MIN_VALUE && d == -1) div_error();
  const q = n / d;
  if (q > 2147483647 || q < -2147483648) div_error();
  set_reg32(EAX, <u32>q); set_reg32(EDX, <u32>(n % d));
}

// ---------------------------------------------------------------------------------------
// BCD adjusts (SDM DAA/DAS/AAA/AAS/AAM/AAD).

export function daa(): void {
  const oldAl = reg8(0);
  const oldCf = get_cf();
  let al = oldAl;
  let cf = false;
  let af = false;
  if ((al & 0xf) > 9 || get_af()) { al += 6; cf = oldCf || al > 0xff; af = true; }
  if (oldAl > 0x99 || oldCf) { al += 0x60; cf = true; }
  al &= 0xff;
  set_reg8(0, al);
  set_szp_flags(al, 7, (cf ? FLAG_CF : 0) | (af ? FLAG_AF : 0), FLAG_CF | FLAG_AF | FLAG_OF);
}
export function das(): void {
  const oldAl = reg8(0);
  const oldCf = get_cf();
  let al = oldAl;
  let cf = false;
  let af = false;
  if ((al & 0xf) > 9 || get_af()) { cf = oldCf || al < 6; al -= 6; af = true; }
  if (oldAl > 0x99 || oldCf) { al -= 0x60; cf = true; }
  al &= 0xff;
  set_reg8(0, al);
  set_szp_flags(al, 7, (cf ? FLAG_CF : 0) | (af ? FLAG_AF : 0), FLAG_CF | FLAG_AF | FLAG_OF);
}
export function aaa(): void {
  const ax = reg16(EAX);
  if ((ax & 0xf) > 9 || get_af()) {
    set_reg16(EAX, ((ax + 0x106) & 0xff0f));
    set_szp_flags(reg8(0), 7, FLAG_AF | FLAG_CF, FLAG_AF | FLAG_CF | FLAG_OF);
  } else {
    set_reg16(EAX, ax & 0xff0f);
    set_szp_flags(reg8(0), 7, 0, FLAG_AF | FLAG_CF | FLAG_OF);
  }
}
export function aas(): void {
  const ax = reg16(EAX);
  if ((ax & 0xf) > 9 || get_af()) {
    // 386 and later: AX - 6 borrows into AH, then AH - 1 (SDM AAS).
    const t = (ax - 6) & 0xffff;
    set_reg16(EAX, (((t & 0xff00) - 0x100) | (t & 0x0f)) & 0xff0f);
    set_szp_flags(reg8(0), 7, FLAG_AF | FLAG_CF, FLAG_AF | FLAG_CF | FLAG_OF);
  } else {
    set_reg16(EAX, ax & 0xff0f);
    set_szp_flags(reg8(0), 7, 0, FLAG_AF | FLAG_CF | FLAG_OF);
  }
}
export function aam(base: u32): void {
  if (base == 0) div_error();
  const al = reg8(0);
  const r = al % base;
  set_reg8(4, al / base);
  set_reg8(0, r);
  set_szp_flags(r, 7, 0, FLAG_AF | FLAG_CF | FLAG_OF);
}
export function aad(base: u32): void {
  const al = reg8(0);
  const ah = reg8(4);
  const r = (al + ah * base) & 0xff;
  set_reg16(EAX, r);
  // Flags as for the underlying 8-bit ADD of AL and AH*base (P6 behaviour).
  alu(0, al, (ah * base) & 0xff, 7);
}

// ---------------------------------------------------------------------------------------
// Bit scans. BSF/BSR leave the destination unchanged for a zero source (as Intel CPUs do,
// though the SDM calls it undefined); ZF tells.

export function bsf(src: u32, dst: u32, shift: u32): u32 {
  src &= size_mask(shift);
  if (src == 0) { set_flags_bits(FLAG_ZF, FLAG_ZF); return dst; }
  const r = <u32>ctz<u32>(src);
  set_szp_flags(r, shift, 0, FLAG_CF | FLAG_OF | FLAG_AF);
  set_flags_bits(FLAG_ZF, 0);
  return r;
}
export function bsr(src: u32, dst: u32, shift: u32): u32 {
  src &= size_mask(shift);
  if (src == 0) { set_flags_bits(FLAG_ZF, FLAG_ZF); return dst; }
  const r = 31 - <u32>clz<u32>(src);
  set_szp_flags(r, shift, 0, FLAG_CF | FLAG_OF | FLAG_AF);
  set_flags_bits(FLAG_ZF, 0);
  return r;
}

/** The flags of TEST and logical ops without a result to store. */
export function test_flags(r: u32, shift: u32): void { set_lazy(LF_LOGIC, shift, r, r, 0); }
