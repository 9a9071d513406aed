// Register file access and lazy arithmetic flags. Everything lives at fixed offsets
// in linear memory (layout.ts) so the host can read the whole CPU as one byte range.

import {
  CPU_STATE, REG_EAX, REG_EIP, REG_EFLAGS, LF_RES, LF_OP1, LF_OP2, LF_KIND, LF_MASK,
  SEG_BASE_OFF, SEG_SIZE, SEG_SEL, SEG_BASE, SEG_LIMIT, SEG_ATTR, CPL, CODE32, STACK32,
  REG_CR0, REG_CR4, INSTR_COUNT, SEG_FAST_STALE,
} from './layout';

// EFLAGS bits (SDM Vol. 1, 3.4.3).
export const FLAG_CF: u32 = 1 << 0;
export const FLAG_PF: u32 = 1 << 2;
export const FLAG_AF: u32 = 1 << 4;
export const FLAG_ZF: u32 = 1 << 6;
export const FLAG_SF: u32 = 1 << 7;
export const FLAG_TF: u32 = 1 << 8;
export const FLAG_IF: u32 = 1 << 9;
export const FLAG_DF: u32 = 1 << 10;
export const FLAG_OF: u32 = 1 << 11;
export const FLAG_IOPL: u32 = 3 << 12;
export const FLAG_NT: u32 = 1 << 14;
export const FLAG_RF: u32 = 1 << 16;
export const FLAG_VM: u32 = 1 << 17;
export const FLAG_AC: u32 = 1 << 18;
export const FLAG_VIF: u32 = 1 << 19;
export const FLAG_VIP: u32 = 1 << 20;
export const FLAG_ID: u32 = 1 << 21;
/** Bit 1 of EFLAGS always reads as 1. */
export const FLAGS_FIXED: u32 = 1 << 1;
export const FLAGS_ARITH: u32 = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF;

// CR0 bits.
export const CR0_PE: u32 = 1 << 0;
export const CR0_MP: u32 = 1 << 1;
export const CR0_EM: u32 = 1 << 2;
export const CR0_TS: u32 = 1 << 3;
export const CR0_ET: u32 = 1 << 4;
export const CR0_NE: u32 = 1 << 5;
export const CR0_WP: u32 = 1 << 16;
export const CR0_AM: u32 = 1 << 18;
export const CR0_NW: u32 = 1 << 29;
export const CR0_CD: u32 = 1 << 30;
export const CR0_PG: u32 = 1 << 31;
export const CR4_VME: u32 = 1 << 0;
export const CR4_PVI: u32 = 1 << 1;
export const CR4_TSD: u32 = 1 << 2;
export const CR4_DE: u32 = 1 << 3;
export const CR4_PSE: u32 = 1 << 4;
export const CR4_PGE: u32 = 1 << 7;

// Segment register numbers in encoding order, then the system segments.
export const ES: i32 = 0;
export const CS: i32 = 1;
export const SS: i32 = 2;
export const DS: i32 = 3;
export const FS: i32 = 4;
export const GS: i32 = 5;
export const LDTR: i32 = 6;
export const TR: i32 = 7;

// Segment attribute bits as kept in SEG_ATTR: descriptor high dword bits 8..23 shifted
// down by 8 (type 0-3, S 4, DPL 5-6, P 7, AVL 12, D/B 14, G 15).
export const ATTR_ACCESSED: u32 = 1 << 0;
export const ATTR_RW: u32 = 1 << 1; // writable data / readable code
export const ATTR_DC: u32 = 1 << 2; // expand-down data / conforming code
export const ATTR_CODE: u32 = 1 << 3;
export const ATTR_S: u32 = 1 << 4;
export const ATTR_DPL_SHIFT: u32 = 5;
export const ATTR_P: u32 = 1 << 7;
export const ATTR_DB: u32 = 1 << 14;
export const ATTR_G: u32 = 1 << 15;
/** Set when the register holds a usable segment (not a null selector in protected mode). */
export const ATTR_VALID: u32 = 1 << 16;

// General registers.
export const EAX: i32 = 0;
export const ECX: i32 = 1;
export const EDX: i32 = 2;
export const EBX: i32 = 3;
export const ESP: i32 = 4;
export const EBP: i32 = 5;
export const ESI: i32 = 6;
export const EDI: i32 = 7;

@inline export function reg32(r: i32): u32 { return load<u32>(CPU_STATE + REG_EAX + (<u32>r << 2)); }
@inline export function set_reg32(r: i32, v: u32): void { store<u32>(CPU_STATE + REG_EAX + (<u32>r << 2), v); }
@inline export function reg16(r: i32): u32 { return load<u16>(CPU_STATE + REG_EAX + (<u32>r << 2)); }
@inline export function set_reg16(r: i32, v: u32): void { store<u16>(CPU_STATE + REG_EAX + (<u32>r << 2), <u16>v); }
/** 8-bit registers AL CL DL BL AH CH DH BH: r & 3 picks the dword, r & 4 the high byte. */
@inline export function reg8(r: i32): u32 {
  return load<u8>(CPU_STATE + REG_EAX + ((<u32>r & 3) << 2) + ((<u32>r >> 2) & 1));
}
@inline export function set_reg8(r: i32, v: u32): void {
  store<u8>(CPU_STATE + REG_EAX + ((<u32>r & 3) << 2) + ((<u32>r >> 2) & 1), <u8>v);
}

@inline export function eip(): u32 { return load<u32>(CPU_STATE + REG_EIP); }
@inline export function set_eip(v: u32): void { store<u32>(CPU_STATE + REG_EIP, v); }

@inline function seg_addr(s: i32): u32 { return CPU_STATE + SEG_BASE_OFF + <u32>s * SEG_SIZE; }
@inline export function seg_sel(s: i32): u32 { return load<u32>(seg_addr(s) + SEG_SEL); }
@inline export function seg_base(s: i32): u32 { return load<u32>(seg_addr(s) + SEG_BASE); }
@inline export function seg_limit(s: i32): u32 { return load<u32>(seg_addr(s) + SEG_LIMIT); }
@inline export function seg_attr(s: i32): u32 { return load<u32>(seg_addr(s) + SEG_ATTR); }
@inline export function set_seg(s: i32, sel: u32, base: u32, limit: u32, attr: u32): void {
  store<u32>(SEG_FAST_STALE, 1);
  const a = seg_addr(s);
  store<u32>(a + SEG_SEL, sel);
  store<u32>(a + SEG_BASE, base);
  store<u32>(a + SEG_LIMIT, limit);
  store<u32>(a + SEG_ATTR, attr);
}
@inline export function set_seg_sel_only(s: i32, sel: u32): void { store<u32>(seg_addr(s) + SEG_SEL, sel); }

@inline export function cpl(): u32 { return load<u32>(CPU_STATE + CPL); }
@inline export function code32(): bool { return load<u32>(CPU_STATE + CODE32) != 0; }
@inline export function stack32(): bool { return load<u32>(CPU_STATE + STACK32) != 0; }
@inline export function cr0(): u32 { return load<u32>(CPU_STATE + REG_CR0); }
@inline export function cr4(): u32 { return load<u32>(CPU_STATE + REG_CR4); }
@inline export function protected_mode(): bool { return (cr0() & CR0_PE) != 0; }
@inline export function instr_count(): u64 { return load<u64>(CPU_STATE + INSTR_COUNT); }

// ---------------------------------------------------------------------------------------
// Lazy flags. A flag-setting ALU operation records its result, operands and kind, and
// marks the six arithmetic flags as "lazy"; readers compute just the flag they need.
// Instructions that leave some arithmetic flag unchanged (INC/DEC keep CF) first
// materialise it and then exclude it from LF_MASK.

export const LF_ADD: u32 = 0;
export const LF_SUB: u32 = 1;
export const LF_LOGIC: u32 = 2;
/**
 * Or'ed into LF_SUB by SBB: the flags formulas hold with a borrow in, but the operands no
 * longer order like a comparison's (test_cc_inline's shortcut).
 */
export const LF_BORROW_IN: u32 = 0x10;
// Sizes are kept as the sign-bit shift: 7, 15 or 31.

@inline export function lf_kind(): u32 { return load<u32>(CPU_STATE + LF_KIND); }
@inline export function lf_mask(): u32 { return load<u32>(CPU_STATE + LF_MASK); }

@inline export function set_lazy(kind: u32, shift: u32, res: u32, op1: u32, op2: u32): void {
  store<u32>(CPU_STATE + LF_RES, res);
  // A logical operation's flags come from its result alone (CF = OF = AF = 0).
  if (kind != LF_LOGIC) {
    store<u32>(CPU_STATE + LF_OP1, op1);
    store<u32>(CPU_STATE + LF_OP2, op2);
  }
  store<u32>(CPU_STATE + LF_KIND, kind | (shift << 8));
  store<u32>(CPU_STATE + LF_MASK, FLAGS_ARITH);
}

/** Like set_lazy but CF keeps its current value (INC, DEC). */
@inline export function set_lazy_keep_cf(kind: u32, shift: u32, res: u32, op1: u32, op2: u32): void {
  // In an INC/DEC chain CF is already in EFLAGS: only a lazy CF needs computing.
  if ((lf_mask() & FLAG_CF) != 0) {
    const cf = get_cf();
    const fl = load<u32>(CPU_STATE + REG_EFLAGS);
    store<u32>(CPU_STATE + REG_EFLAGS, (fl & ~FLAG_CF) | (cf ? FLAG_CF : 0));
  }
  store<u32>(CPU_STATE + LF_RES, res);
  store<u32>(CPU_STATE + LF_OP1, op1);
  store<u32>(CPU_STATE + LF_OP2, op2);
  store<u32>(CPU_STATE + LF_KIND, kind | (shift << 8));
  store<u32>(CPU_STATE + LF_MASK, FLAGS_ARITH & ~FLAG_CF);
}

@inline function lf_shift(): u32 { return (lf_kind() >> 8) & 31; }

export function get_cf(): bool {
  if ((lf_mask() & FLAG_CF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_CF) != 0;
  const k = lf_kind() & 0xf;
  const sh = lf_shift();
  const a = load<u32>(CPU_STATE + LF_OP1);
  const b = load<u32>(CPU_STATE + LF_OP2);
  const r = load<u32>(CPU_STATE + LF_RES);
  if (k == LF_ADD) return (((a & b) | ((a | b) & ~r)) >> sh) & 1 ? true : false;
  if (k == LF_SUB) return (((~a & b) | (~(a ^ b) & r)) >> sh) & 1 ? true : false;
  return false;
}

export function get_zf(): bool {
  if ((lf_mask() & FLAG_ZF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_ZF) != 0;
  const sh = lf_shift();
  const r = load<u32>(CPU_STATE + LF_RES);
  return (r << (31 - sh)) == 0;
}

export function get_sf(): bool {
  if ((lf_mask() & FLAG_SF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_SF) != 0;
  return ((load<u32>(CPU_STATE + LF_RES) >> lf_shift()) & 1) != 0;
}

export function get_of(): bool {
  if ((lf_mask() & FLAG_OF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_OF) != 0;
  const k = lf_kind() & 0xf;
  const sh = lf_shift();
  const a = load<u32>(CPU_STATE + LF_OP1);
  const b = load<u32>(CPU_STATE + LF_OP2);
  const r = load<u32>(CPU_STATE + LF_RES);
  if (k == LF_ADD) return (((a ^ r) & (b ^ r)) >> sh) & 1 ? true : false;
  if (k == LF_SUB) return (((a ^ b) & (a ^ r)) >> sh) & 1 ? true : false;
  return false;
}

export function get_pf(): bool {
  if ((lf_mask() & FLAG_PF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_PF) != 0;
  return parity(load<u32>(CPU_STATE + LF_RES));
}

export function get_af(): bool {
  if ((lf_mask() & FLAG_AF) == 0) return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_AF) != 0;
  const k = lf_kind() & 0xf;
  if (k == LF_LOGIC) return false;
  const a = load<u32>(CPU_STATE + LF_OP1);
  const b = load<u32>(CPU_STATE + LF_OP2);
  const r = load<u32>(CPU_STATE + LF_RES);
  return ((a ^ b ^ r) & 0x10) != 0;
}

@inline export function parity(v: u32): bool {
  return (popcnt<u32>(v & 0xff) & 1) == 0;
}

/** The full EFLAGS value with the lazy bits computed. */
export function get_eflags(): u32 {
  let fl = load<u32>(CPU_STATE + REG_EFLAGS);
  const m = lf_mask();
  if (m != 0) {
    fl &= ~m;
    if ((m & FLAG_CF) && get_cf()) fl |= FLAG_CF;
    if ((m & FLAG_PF) && get_pf()) fl |= FLAG_PF;
    if ((m & FLAG_AF) && get_af()) fl |= FLAG_AF;
    if ((m & FLAG_ZF) && get_zf()) fl |= FLAG_ZF;
    if ((m & FLAG_SF) && get_sf()) fl |= FLAG_SF;
    if ((m & FLAG_OF) && get_of()) fl |= FLAG_OF;
  }
  return fl | FLAGS_FIXED;
}

/** Materialise the lazy flags into REG_EFLAGS (before changing some of them by hand). */
export function flush_flags(): void {
  if (lf_mask() == 0) return;
  const fl = get_eflags();
  store<u32>(CPU_STATE + REG_EFLAGS, fl);
  store<u32>(CPU_STATE + LF_MASK, 0);
}

/** Raw store of EFLAGS (no privilege filtering: callers decide which bits may change). */
export function set_eflags_raw(v: u32): void {
  store<u32>(CPU_STATE + REG_EFLAGS, (v & 0x3f7fd5) | FLAGS_FIXED);
  store<u32>(CPU_STATE + LF_MASK, 0);
}

@inline export function eflags_stored(): u32 { return load<u32>(CPU_STATE + REG_EFLAGS); }

/**
 * Set or clear given arithmetic flags directly (the others stay as they are). Lazy flags
 * not among them stay lazy: their record (LF_RES..LF_KIND) is left as it is.
 */
export function set_flags_bits(mask: u32, values: u32): void {
  const fl = load<u32>(CPU_STATE + REG_EFLAGS);
  store<u32>(CPU_STATE + REG_EFLAGS, (fl & ~mask) | (values & mask));
  store<u32>(CPU_STATE + LF_MASK, lf_mask() & ~mask);
}

/** Result flags ZF SF PF from a value of a given size, CF/OF/AF given explicitly (shifts, MUL). */
export function set_szp_flags(res: u32, shift: u32, others: u32, othersMask: u32): void {
  const set = FLAG_ZF | FLAG_SF | FLAG_PF | othersMask;
  store<u32>(CPU_STATE + LF_MASK, lf_mask() & ~set);
  let fl = load<u32>(CPU_STATE + REG_EFLAGS) & ~set;
  if ((res << (31 - shift)) == 0) fl |= FLAG_ZF;
  if ((res >> shift) & 1) fl |= FLAG_SF;
  if (parity(res)) fl |= FLAG_PF;
  store<u32>(CPU_STATE + REG_EFLAGS, fl | (others & othersMask));
}

/** For FCOMI/FUCOMI (x87): ZF PF CF set, OF SF AF cleared. */
export function set_arith_flags_zpc(zf: bool, pf: bool, cf: bool): void {
  set_flags_bits(FLAGS_ARITH, (zf ? FLAG_ZF : 0) | (pf ? FLAG_PF : 0) | (cf ? FLAG_CF : 0));
}

@inline export function get_flag_df(): bool { return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_DF) != 0; }
@inline export function get_flag_if(): bool { return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_IF) != 0; }
@inline export function v86_mode(): bool { return (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_VM) != 0; }
@inline export function iopl(): u32 { return (load<u32>(CPU_STATE + REG_EFLAGS) >> 12) & 3; }

/**
 * test_cc() with the common cases worked out in line, for the decoded-block executor: ZF
 * (JZ/JNZ after anything), and every condition straight after CMP/SUB or a logical
 * operation with all six flags lazy, from the operands rather than from the flag bits.
 */
@inline export function test_cc_inline(cc: u32): bool {
  const mask = lf_mask();
  const kind = lf_kind();
  const sh = (kind >> 8) & 31;
  const c = cc >> 1;
  if (c == 2 && (mask & FLAG_ZF) != 0) {
    return ((load<u32>(CPU_STATE + LF_RES) << (31 - sh)) == 0) != ((cc & 1) != 0);
  }
  const k = kind & 0xff;
  if (mask == FLAGS_ARITH && (k == LF_SUB || k == LF_LOGIC)) {
    const up = 31 - sh;
    let r: bool;
    if (k == LF_SUB) {
      // The operands are held at their size: compare them as unsigned or, shifted up to
      // bit 31, as signed numbers.
      const a = load<u32>(CPU_STATE + LF_OP1);
      const b = load<u32>(CPU_STATE + LF_OP2);
      const res = load<u32>(CPU_STATE + LF_RES) << up;
      switch (c) {
        case 0: r = (((a ^ b) & (a ^ (res >>> up))) >> sh) & 1 ? true : false; break; // OF
        case 1: r = a < b; break;
        case 3: r = a <= b; break;
        case 4: r = <i32>res < 0; break;
        case 5: r = parity(res >>> up); break;
        case 6: r = <i32>(a << up) < <i32>(b << up); break;
        default: r = <i32>(a << up) <= <i32>(b << up); break;
      }
    } else {
      // Logical: CF = OF = 0.
      const res = load<u32>(CPU_STATE + LF_RES) << up;
      switch (c) {
        case 0: case 1: r = false; break;
        case 3: r = res == 0; break;
        case 4: case 6: r = <i32>res < 0; break;
        case 5: r = parity(res >>> up); break;
        default: r = <i32>res <= 0; break;
      }
    }
    return r != ((cc & 1) != 0);
  }
  return test_cc(cc);
}

/** Evaluate condition code cc (0-15) as used by Jcc, SETcc, CMOVcc. */
export function test_cc(cc: u32): bool {
  let r: bool;
  switch (cc >> 1) {
    case 0: r = get_of(); break;
    case 1: r = get_cf(); break;
    case 2: r = get_zf(); break;
    case 3: r = get_cf() || get_zf(); break;
    case 4: r = get_sf(); break;
    case 5: r = get_pf(); break;
    case 6: r = get_sf() != get_of(); break;
    default: r = get_zf() || (get_sf() != get_of()); break;
  }
  return (cc & 1) ? !r : r;
}

/** Keep the CODE32/STACK32/CPL caches in line with CS and SS. */
export function update_cs_cache(): void {
  store<u32>(CPU_STATE + CODE32, (seg_attr(CS) & ATTR_DB) ? 1 : 0);
}
export function update_ss_cache(): void {
  store<u32>(CPU_STATE + STACK32, (seg_attr(SS) & ATTR_DB) ? 1 : 0);
}
