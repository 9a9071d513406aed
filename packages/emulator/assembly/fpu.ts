// The x87 FPU of a Pentium Pro/II: register stack, control/status/tag words, instruction
// and data pointers, and every D8-DF opcode. The arithmetic is softfloat80.ts.
//
// State, at CPU_STATE + FPU_STATE (0x200 bytes; the host saves it with the rest of the CPU):
//   +0x00  R0..R7, physical register order, 16 bytes each: significand u64 at +0,
//          sign/exponent u16 at +8, bytes +10..+15 zero
//   +0x80  FCW u16   control word
//   +0x82  FSW u16   status word, TOP live in bits 11-13
//   +0x84  tags u8   bit i set: physical register i is non-empty. The 2-bit tags of
//                    FNSTENV/FNSAVE are derived from the contents (valid/zero/special), as
//                    the P6 keeps only empty/non-empty internally (SDM Vol. 1 §8.1.7)
//   +0x85  FERR u8   1 while FERR# is asserted to the host (CR0.NE = 0 error reporting)
//   +0x86  FOP u16   last non-control instruction's opcode (11 bits, SDM Vol. 1 §8.1.9)
//   +0x88  FIP u32   its offset (prefixes included), +0x8C FCS u16 its CS selector
//   +0x8E  FDS u16   selector and +0x90 FDP u32 offset of its memory operand
//   +0x94..+0x1FF    reserved, zero
//
// Faults: memory accesses go through memory.ts and may unwind at any access, so every
// instruction reads and writes memory before it commits register or status changes.

import { CPU_STATE, FPU_STATE, EIP_START } from './layout';
import {
  cr0, CR0_NE, CR0_MP, CR0_TS, set_arith_flags_zpc, test_cc, set_reg16, EAX, seg_sel, CS,
  protected_mode, v86_mode,
} from './state';
import {
  vread16, vread32, vwrite16, vwrite32, vcheck_write, vcheck_read, raise, ud, EXC_MF, EXC_NM,
} from './memory';
import {
  sf_begin, sf_flags, sf_se, sf_sig, sf_se2, sf_sig2, sf_quot, sf_c2, sf_bcd_hi,
  f80_add, f80_sub, f80_mul, f80_div, f80_sqrt, f80_round_int, f80_compare,
  f80_from_i64, f80_to_int, f80_from_f32, f80_from_f64, f80_to_f32, f80_to_f64,
  f80_from_bcd, f80_to_bcd, f80_scale, f80_xtract, f80_prem, f80_is_unsupported, f80_is_nan,
  f80_sin, f80_cos, f80_tan, f80_sincos, f80_2xm1, f80_yl2x, f80_yl2xp1, f80_atan,
  SW_IE, SW_DE, SW_ZE, SW_OE, SW_UE, SW_SF, SW_ES, SW_C0, SW_C1, SW_C2, SW_C3, SW_B,
  CMP_LT, CMP_EQ, CMP_GT, INDEF_SE, INDEF_SIG, RC_DOWN, RC_UP, RC_ZERO,
} from './softfloat80';

/** FERR# output, routed by the PC chipset to IRQ13 (SDM Vol. 1 Appendix D). */
@external("host", "fpu_ferr")
declare function host_fpu_ferr(level: u32): void;

const FPU: u32 = CPU_STATE + FPU_STATE;
const F_CW: u32 = 0x80;
const F_SW: u32 = 0x82;
const F_TAGS: u32 = 0x84;
const F_FERR: u32 = 0x85;
const F_FOP: u32 = 0x86;
const F_FIP: u32 = 0x88;
const F_FCS: u32 = 0x8c;
const F_FDS: u32 = 0x8e;
const F_FDP: u32 = 0x90;

const SW_EXC: u32 = 0x3f;
const SW_CC: u32 = SW_C0 | SW_C1 | SW_C2 | SW_C3;
const J: u64 = 0x8000000000000000;

// The control and status words of the instruction being executed; written back on commit.
let cw: u32 = 0x037f;
let sw: u32 = 0;

// ---------------------------------------------------------------------------------------
// Register stack.

@inline function top(): u32 {
  return (sw >> 11) & 7;
}
@inline function setTop(t: u32): void {
  sw = (sw & ~0x3800) | ((t & 7) << 11);
}
@inline function phys(i: u32): u32 {
  return (top() + i) & 7;
}
@inline function regAddr(p: u32): u32 {
  return FPU + (p << 4);
}
@inline function tags(): u32 {
  return load<u8>(FPU + F_TAGS);
}
@inline function isEmpty(i: u32): bool {
  return (tags() & (1 << phys(i))) == 0;
}
@inline function stSe(i: u32): u32 {
  return load<u16>(regAddr(phys(i)) + 8);
}
@inline function stSig(i: u32): u64 {
  return load<u64>(regAddr(phys(i)));
}
function setSt(i: u32, se: u32, sig: u64): void {
  const p = phys(i);
  store<u64>(regAddr(p), sig);
  store<u16>(regAddr(p) + 8, <u16>se);
  store<u8>(FPU + F_TAGS, <u8>(tags() | (1 << p)));
}
function pop(): void {
  store<u8>(FPU + F_TAGS, <u8>(tags() & ~(1 << phys(0))));
  setTop(top() + 1);
}
/** The caller has checked for stack overflow (ST7 non-empty). */
function push(se: u32, sig: u64): void {
  setTop(top() - 1);
  setSt(0, se, sig);
}

// ---------------------------------------------------------------------------------------
// Exceptions (SDM Vol. 1 §8.5, §8.7).

/**
 * #IS: stack overflow (C1 = 1) or underflow (C1 = 0), reported as #IA with SF. Returns
 * true when IE is masked and the masked response (QNaN indefinite) is to be applied.
 */
function stackFault(overflow: bool): bool {
  sw |= SW_IE | SW_SF;
  if (overflow) sw |= SW_C1;
  else sw &= ~SW_C1;
  return (cw & SW_IE) != 0;
}

/**
 * Merge an operation's flags into the status word (C1 is the round-up bit). Returns true
 * when the result may be stored: an unmasked #I, #D or #Z leaves the destination and TOP
 * alone; an unmasked #O/#U is also fatal for a memory destination (SDM Vol. 1 §8.5.4-5).
 */
function merge(memDest: bool): bool {
  const f = sf_flags;
  sw = (sw & ~SW_C1) | (f & (SW_EXC | SW_C1));
  const fatal = memDest ? SW_IE | SW_DE | SW_ZE | SW_OE | SW_UE : SW_IE | SW_DE | SW_ZE;
  return (f & ~cw & fatal) == 0;
}

/**
 * ES (and B, its 8087 alias) is set when an unmasked exception flag is set (SDM Vol. 1
 * §8.1.3.5). Only FNCLEX/FNINIT clear it, and loading a control word recomputes it, so a
 * newly unmasked pending flag faults at the next waiting instruction (SDM Vol. 2 FLDCW).
 */
function recomputeES(): void {
  if ((sw & ~cw & SW_EXC) != 0) sw |= SW_ES | SW_B;
  else sw &= ~(SW_ES | SW_B);
}

function setFerr(on: bool): void {
  const level: u32 = on ? 1 : 0;
  if (<u32>load<u8>(FPU + F_FERR) != level) {
    store<u8>(FPU + F_FERR, <u8>level);
    host_fpu_ferr(level);
  }
}

/**
 * A waiting instruction first reports a pending unmasked exception: #MF with CR0.NE = 1,
 * else FERR# for the chipset's IRQ13 (SDM Vol. 1 §8.7, Vol. 3 §2.5 CR0.NE). Like QEMU the
 * instruction then proceeds instead of freezing for IGNNE#.
 */
function checkPending(): void {
  if ((sw & SW_ES) == 0) return;
  if ((cr0() & CR0_NE) != 0) raise(EXC_MF, false, 0);
  else setFerr(true);
}

function commit(): void {
  if ((sw & ~cw & SW_EXC) != 0) sw |= SW_ES | SW_B;
  store<u16>(FPU + F_SW, <u16>sw);
  store<u16>(FPU + F_CW, <u16>cw);
  if ((sw & SW_ES) == 0) setFerr(false);
}

/** FIP/FCS/FOP and, with a memory operand, FDP/FDS (SDM Vol. 1 §8.1.8-9). */
function notePointers(op: u32, modrm: u32, seg: i32, offset: u32): void {
  store<u32>(FPU + F_FIP, load<u32>(CPU_STATE + EIP_START));
  store<u16>(FPU + F_FCS, <u16>seg_sel(CS));
  store<u16>(FPU + F_FOP, <u16>(((op & 7) << 8) | modrm));
  if (seg >= 0) {
    store<u16>(FPU + F_FDS, <u16>seg_sel(seg));
    store<u32>(FPU + F_FDP, offset);
  }
}

// ---------------------------------------------------------------------------------------
// Memory operands.

let m_se: u32 = 0;
let m_sig: u64 = 0;

/** Read and convert a memory operand into m_se/m_sig; conversion flags land in sf_flags. */
function readReal(seg: i32, off: u32, kind: u32): void {
  // kind: 0 m32real, 1 m32int, 2 m64real, 3 m16int, 4 m80real, 5 m64int
  if (kind == 0) {
    f80_from_f32(vread32(seg, off));
  } else if (kind == 1) {
    f80_from_i64(<i64><i32>vread32(seg, off));
  } else if (kind == 2) {
    const lo = vread32(seg, off);
    const hi = vread32(seg, off + 4);
    f80_from_f64((<u64>hi << 32) | <u64>lo);
  } else if (kind == 3) {
    f80_from_i64(<i64><i16>vread16(seg, off));
  } else if (kind == 5) {
    const lo = vread32(seg, off);
    const hi = vread32(seg, off + 4);
    f80_from_i64(<i64>((<u64>hi << 32) | <u64>lo));
  } else {
    const lo = vread32(seg, off);
    const hi = vread32(seg, off + 4);
    const se = vread16(seg, off + 8);
    m_se = se;
    m_sig = (<u64>hi << 32) | <u64>lo;
    return;
  }
  m_se = sf_se;
  m_sig = sf_sig;
}

function write64(seg: i32, off: u32, v: u64): void {
  vcheck_write(seg, off, 8);
  vwrite32(seg, off, <u32>v);
  vwrite32(seg, off + 4, <u32>(v >> 32));
}

function write80(seg: i32, off: u32, se: u32, sig: u64): void {
  vcheck_write(seg, off, 10);
  vwrite32(seg, off, <u32>sig);
  vwrite32(seg, off + 4, <u32>(sig >> 32));
  vwrite16(seg, off + 8, se);
}

// ---------------------------------------------------------------------------------------
// Arithmetic helpers.

/**
 * a OP b for the arithmetic group's reg field: 0 add, 1 mul, 4 a-b, 5 b-a, 6 a/b, 7 b/a
 * (D8/DC/DA/DE memory forms and D8 register forms; the DC/DE register forms swap 4/5, 6/7).
 */
function arith(k: u32, ase: u32, asig: u64, bse: u32, bsig: u64): void {
  switch (k) {
    case 0: f80_add(ase, asig, bse, bsig); break;
    case 1: f80_mul(ase, asig, bse, bsig); break;
    case 4: f80_sub(ase, asig, bse, bsig); break;
    case 5: f80_sub(bse, bsig, ase, asig); break;
    case 6: f80_div(ase, asig, bse, bsig); break;
    default: f80_div(bse, bsig, ase, asig); break;
  }
}

/** C3 C2 C0 of FCOM/FUCOM/FTST (SDM Vol. 2 FCOM table 3-21); C1 cleared. */
function setCompareCC(r: i32): void {
  sw &= ~SW_CC;
  if (r == CMP_LT) sw |= SW_C0;
  else if (r == CMP_EQ) sw |= SW_C3;
  else if (r != CMP_GT) sw |= SW_C0 | SW_C2 | SW_C3;
}

/** ZF PF CF of FCOMI/FUCOMI (SDM Vol. 2 FCOMI table 3-22). */
function setCompareEflags(r: i32): void {
  if (r == CMP_GT) set_arith_flags_zpc(false, false, false);
  else if (r == CMP_LT) set_arith_flags_zpc(false, false, true);
  else if (r == CMP_EQ) set_arith_flags_zpc(true, false, false);
  else set_arith_flags_zpc(true, true, true);
}

/**
 * Compare ST0 with (bse, bsig) and pop `pops` times. eflags: FCOMI-style result.
 * Unmasked #IA: no flags, no pop (SDM Vol. 2 FCOM).
 */
function compareAndPop(bse: u32, bsig: u64, quiet: bool, eflags: bool, pops: u32): void {
  const r = f80_compare(stSe(0), stSig(0), bse, bsig, quiet);
  if (!merge(false)) return;
  if (eflags) {
    sw &= ~SW_C1;
    setCompareEflags(r);
  } else {
    setCompareCC(r);
  }
  for (let i: u32 = 0; i < pops; i++) pop();
}

/** Stack underflow on a compare: masked response is "unordered", then the pops. */
function compareUnderflow(eflags: bool, pops: u32): void {
  if (!stackFault(false)) return;
  if (eflags) set_arith_flags_zpc(true, true, true);
  else sw = (sw & ~SW_CC) | SW_C0 | SW_C2 | SW_C3;
  for (let i: u32 = 0; i < pops; i++) pop();
}

// ---------------------------------------------------------------------------------------
// Constants (SDM Vol. 2 FLD1/FLDL2T/FLDL2E/FLDPI/FLDLG2/FLDLN2/FLDZ). Since the 486 the
// internal 66-bit constants are rounded per RC; the extended patterns below are the
// round-to-nearest ones, one lower when rounding down/toward zero where nearest rounded up,
// and L2T one higher rounding up, where nearest rounded down.

function loadConst(rm: u32): void {
  const mode = (cw >> 10) & 3;
  const down = mode == RC_DOWN || mode == RC_ZERO;
  let se: u32 = 0x3fff;
  let sig: u64 = J;
  switch (rm) {
    case 0: break; // FLD1
    case 1: se = 0x4000; sig = mode == RC_UP ? 0xd49a784bcd1b8aff : 0xd49a784bcd1b8afe; break; // log2(10)
    case 2: sig = down ? 0xb8aa3b295c17f0bb : 0xb8aa3b295c17f0bc; break; // log2(e)
    case 3: se = 0x4000; sig = down ? 0xc90fdaa22168c234 : 0xc90fdaa22168c235; break; // pi
    case 4: se = 0x3ffd; sig = down ? 0x9a209a84fbcff798 : 0x9a209a84fbcff799; break; // log10(2)
    case 5: se = 0x3ffe; sig = down ? 0xb17217f7d1cf79ab : 0xb17217f7d1cf79ac; break; // ln(2)
    default: se = 0; sig = 0; break; // FLDZ
  }
  if (!isEmpty(7)) {
    if (!stackFault(true)) return;
    se = INDEF_SE;
    sig = INDEF_SIG;
  } else {
    sw &= ~SW_C1;
  }
  push(se, sig);
}

// ---------------------------------------------------------------------------------------
// Environment and state images (SDM Vol. 1 §8.1.10, figures 8-9 to 8-12).

/** The architectural 2-bit tag of physical register p (SDM Vol. 1 §8.1.7). */
function tagOf(p: u32): u32 {
  if ((tags() & (1 << p)) == 0) return 3;
  const se = <u32>load<u16>(regAddr(p) + 8);
  const sig = load<u64>(regAddr(p));
  const e = se & 0x7fff;
  if (e == 0) return sig == 0 ? 1 : 2;
  if (e == 0x7fff || (sig >> 63) == 0) return 2;
  return 0;
}

function fullTagWord(): u32 {
  let tw: u32 = 0;
  for (let p: u32 = 0; p < 8; p++) tw |= tagOf(p) << (2 * p);
  return tw;
}

@inline function realFormat(): bool {
  return !protected_mode() || v86_mode();
}

/** FNSTENV image; the caller checked the whole destination for writes. */
function storeEnv(seg: i32, off: u32, o32: bool): void {
  const tw = fullTagWord();
  const fip = load<u32>(FPU + F_FIP);
  const fcs = <u32>load<u16>(FPU + F_FCS);
  const fop = <u32>load<u16>(FPU + F_FOP) & 0x7ff;
  const fdp = load<u32>(FPU + F_FDP);
  const fds = <u32>load<u16>(FPU + F_FDS);
  if (realFormat()) {
    // Real-address and virtual-8086 formats hold 20/32-bit linear pointers.
    const ip = (fcs << 4) + fip;
    const dp = (fds << 4) + fdp;
    if (o32) {
      vwrite32(seg, off, 0xffff0000 | cw);
      vwrite32(seg, off + 4, 0xffff0000 | sw);
      vwrite32(seg, off + 8, 0xffff0000 | tw);
      vwrite32(seg, off + 12, 0xffff0000 | (ip & 0xffff));
      vwrite32(seg, off + 16, ((ip & 0xffff0000) >> 4) | fop);
      vwrite32(seg, off + 20, 0xffff0000 | (dp & 0xffff));
      vwrite32(seg, off + 24, (dp & 0xffff0000) >> 4);
    } else {
      vwrite16(seg, off, cw);
      vwrite16(seg, off + 2, sw);
      vwrite16(seg, off + 4, tw);
      vwrite16(seg, off + 6, ip & 0xffff);
      vwrite16(seg, off + 8, ((ip & 0xf0000) >> 4) | fop);
      vwrite16(seg, off + 10, dp & 0xffff);
      vwrite16(seg, off + 12, (dp & 0xf0000) >> 4);
    }
  } else if (o32) {
    vwrite32(seg, off, 0xffff0000 | cw);
    vwrite32(seg, off + 4, 0xffff0000 | sw);
    vwrite32(seg, off + 8, 0xffff0000 | tw);
    vwrite32(seg, off + 12, fip);
    vwrite32(seg, off + 16, fcs | (fop << 16));
    vwrite32(seg, off + 20, fdp);
    vwrite32(seg, off + 24, 0xffff0000 | fds);
  } else {
    vwrite16(seg, off, cw);
    vwrite16(seg, off + 2, sw);
    vwrite16(seg, off + 4, tw);
    vwrite16(seg, off + 6, fip);
    vwrite16(seg, off + 8, fcs);
    vwrite16(seg, off + 10, fdp);
    vwrite16(seg, off + 12, fds);
  }
}

// FLDENV image being loaded: read completely before anything is committed.
let e_cw: u32 = 0;
let e_sw: u32 = 0;
let e_tw: u32 = 0;
let e_fip: u32 = 0;
let e_fcs: u32 = 0;
let e_fop: u32 = 0;
let e_fdp: u32 = 0;
let e_fds: u32 = 0;

function readEnv(seg: i32, off: u32, o32: bool): void {
  if (o32) {
    e_cw = vread16(seg, off);
    e_sw = vread16(seg, off + 4);
    e_tw = vread16(seg, off + 8);
    const w3 = vread32(seg, off + 12);
    const w4 = vread32(seg, off + 16);
    const w5 = vread32(seg, off + 20);
    const w6 = vread32(seg, off + 24);
    if (realFormat()) {
      e_fip = (w3 & 0xffff) | ((w4 & 0x0ffff000) << 4);
      e_fop = w4 & 0x7ff;
      e_fdp = (w5 & 0xffff) | ((w6 & 0x0ffff000) << 4);
      e_fcs = 0;
      e_fds = 0;
    } else {
      e_fip = w3;
      e_fcs = w4 & 0xffff;
      e_fop = (w4 >> 16) & 0x7ff;
      e_fdp = w5;
      e_fds = w6 & 0xffff;
    }
  } else {
    e_cw = vread16(seg, off);
    e_sw = vread16(seg, off + 2);
    e_tw = vread16(seg, off + 4);
    const w3 = vread16(seg, off + 6);
    const w4 = vread16(seg, off + 8);
    const w5 = vread16(seg, off + 10);
    const w6 = vread16(seg, off + 12);
    if (realFormat()) {
      e_fip = w3 | ((w4 & 0xf000) << 4);
      e_fop = w4 & 0x7ff;
      e_fdp = w5 | ((w6 & 0xf000) << 4);
      e_fcs = 0;
      e_fds = 0;
    } else {
      e_fip = w3;
      e_fcs = w4;
      e_fop = 0;
      e_fdp = w5;
      e_fds = w6;
    }
  }
}

function commitEnv(): void {
  cw = sanitizeCw(e_cw);
  sw = e_sw & 0xffff;
  let t: u32 = 0;
  for (let p: u32 = 0; p < 8; p++) if (((e_tw >> (2 * p)) & 3) != 3) t |= 1 << p;
  store<u8>(FPU + F_TAGS, <u8>t);
  store<u32>(FPU + F_FIP, e_fip);
  store<u16>(FPU + F_FCS, <u16>e_fcs);
  store<u16>(FPU + F_FOP, <u16>e_fop);
  store<u32>(FPU + F_FDP, e_fdp);
  store<u16>(FPU + F_FDS, <u16>e_fds);
}

/** Reserved control-word bits: 6 reads as 1, 7 and 13-15 as 0 (SDM Vol. 1 §8.1.5). */
@inline function sanitizeCw(v: u32): u32 {
  return (v & 0x1f3f) | 0x0040;
}

function fninit(): void {
  cw = 0x037f;
  sw = 0;
  store<u8>(FPU + F_TAGS, 0);
  store<u32>(FPU + F_FIP, 0);
  store<u16>(FPU + F_FCS, 0);
  store<u16>(FPU + F_FOP, 0);
  store<u32>(FPU + F_FDP, 0);
  store<u16>(FPU + F_FDS, 0);
}

// ---------------------------------------------------------------------------------------
// Entry points.

/** Power-on/RESET state (SDM Vol. 3 §9.1.1, table 9-1): CW 0040, TW 5555, registers +0. */
export function fpu_reset(): void {
  memory.fill(FPU, 0, 0x200);
  store<u16>(FPU + F_CW, 0x0040);
  store<u8>(FPU + F_TAGS, 0xff);
}

/** FNINIT state, for a host that wants an initialized FPU without running guest code. */
export function fpu_init(): void {
  sw = load<u16>(FPU + F_SW);
  fninit();
  commit();
}

/** WAIT/FWAIT (SDM Vol. 2 WAIT): #NM if CR0.MP and CR0.TS, then pending exceptions. */
export function fpu_wait(): void {
  if ((cr0() & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS)) raise(EXC_NM, false, 0);
  cw = load<u16>(FPU + F_CW);
  sw = load<u16>(FPU + F_SW);
  checkPending();
}

/** Invalid encodings of the D8-DF space on a P6 (no FISTTP, which came with SSE3). */
function undefinedOpcode(op: u32, modrm: u32): bool {
  const mod = modrm >> 6;
  const reg = (modrm >> 3) & 7;
  const rm = modrm & 7;
  if (mod != 3) {
    switch (op) {
      case 0xd9: return reg == 1;
      case 0xdb: return reg == 1 || reg == 4 || reg == 6;
      case 0xdd: return reg == 1 || reg == 5;
      case 0xdf: return reg == 1;
      default: return false;
    }
  }
  switch (op) {
    case 0xd9:
      if (reg == 2) return rm != 0;
      if (reg == 4) return rm == 2 || rm == 3 || rm == 6 || rm == 7;
      if (reg == 5) return rm == 7;
      return false;
    case 0xda: return reg == 4 || reg == 6 || reg == 7 || (reg == 5 && rm != 1);
    case 0xdb: return reg == 7 || (reg == 4 && rm >= 5);
    case 0xdd: return reg >= 6;
    case 0xde: return reg == 3 && rm != 1;
    case 0xdf: return reg == 7 || (reg == 4 && rm != 0);
    default: return false;
  }
}

/**
 * Execute one x87 instruction. The dispatcher has already raised #NM for CR0.EM/TS and
 * decoded the ModRM byte: seg is the effective segment (-1 for register forms), offset the
 * effective address, o32 the operand size (FNSTENV/FLDENV/FNSAVE/FRSTOR image format).
 */
export function fpu_exec(op: u32, modrm: u32, seg: i32, offset: u32, o32: bool): void {
  if (undefinedOpcode(op, modrm)) {
    ud();
    return;
  }
  cw = load<u16>(FPU + F_CW);
  sw = load<u16>(FPU + F_SW);
  const reg = (modrm >> 3) & 7;
  const rm = modrm & 7;
  if (seg >= 0) execMemory(op, modrm, reg, seg, offset, o32);
  else execRegister(op, modrm, reg, rm);
}

// Memory forms ------------------------------------------------------------------------

function execMemory(op: u32, modrm: u32, reg: u32, seg: i32, off: u32, o32: bool): void {
  // The non-waiting control instructions (SDM Vol. 1 §8.3.11) skip the pending check.
  if (op == 0xd9 && reg == 6) { // FNSTENV
    vcheck_write(seg, off, o32 ? 28 : 14);
    storeEnv(seg, off, o32);
    cw |= SW_EXC; // masks all exceptions after storing (SDM Vol. 2 FSTENV)
    commit();
    return;
  }
  if (op == 0xd9 && reg == 7) { // FNSTCW
    vwrite16(seg, off, cw);
    return;
  }
  if (op == 0xdd && reg == 6) { // FNSAVE
    const envSize: u32 = o32 ? 28 : 14;
    vcheck_write(seg, off, envSize + 80);
    storeEnv(seg, off, o32);
    for (let i: u32 = 0; i < 8; i++) {
      const p = phys(i);
      const a = off + envSize + 10 * i;
      const sig = load<u64>(regAddr(p));
      vwrite32(seg, a, <u32>sig);
      vwrite32(seg, a + 4, <u32>(sig >> 32));
      vwrite16(seg, a + 8, load<u16>(regAddr(p) + 8));
    }
    fninit();
    commit();
    return;
  }
  if (op == 0xdd && reg == 7) { // FNSTSW m16
    vwrite16(seg, off, sw);
    return;
  }
  checkPending();
  if (op == 0xd9 && reg == 4) { // FLDENV
    readEnv(seg, off, o32);
    commitEnv();
    recomputeES();
    commit();
    return;
  }
  if (op == 0xd9 && reg == 5) { // FLDCW
    cw = sanitizeCw(vread16(seg, off));
    recomputeES();
    commit();
    return;
  }
  if (op == 0xdd && reg == 4) { // FRSTOR
    const envSize: u32 = o32 ? 28 : 14;
    // Check the whole image first: a fault must leave the FPU as it was.
    vcheck_read(seg, off, envSize + 80);
    readEnv(seg, off, o32);
    commitEnv();
    for (let i: u32 = 0; i < 8; i++) {
      const a = off + envSize + 10 * i;
      const lo = vread32(seg, a);
      const hi = vread32(seg, a + 4);
      const p = phys(i);
      store<u64>(regAddr(p), (<u64>hi << 32) | <u64>lo);
      store<u16>(regAddr(p) + 8, <u16>vread16(seg, a + 8));
    }
    recomputeES();
    commit();
    return;
  }

  sf_begin(cw);
  switch (op) {
    case 0xd8: arithMemory(op, modrm, reg, seg, off, 0); break;
    case 0xda: arithMemory(op, modrm, reg, seg, off, 1); break;
    case 0xdc: arithMemory(op, modrm, reg, seg, off, 2); break;
    case 0xde: arithMemory(op, modrm, reg, seg, off, 3); break;
    case 0xd9: // FLD m32 / FST m32 / FSTP m32
      if (reg == 0) loadMemory(op, modrm, seg, off, 0);
      else storeReal(op, modrm, seg, off, false, reg == 3);
      break;
    case 0xdd: // FLD m64 / FST m64 / FSTP m64
      if (reg == 0) loadMemory(op, modrm, seg, off, 2);
      else storeReal(op, modrm, seg, off, true, reg == 3);
      break;
    case 0xdb:
      if (reg == 0) loadMemory(op, modrm, seg, off, 1); // FILD m32
      else if (reg == 5) loadMemory(op, modrm, seg, off, 4); // FLD m80
      else if (reg == 7) storeExtended(op, modrm, seg, off); // FSTP m80
      else storeInt(op, modrm, seg, off, 32, reg == 3); // FIST/FISTP m32
      break;
    default: // 0xdf
      if (reg == 0) loadMemory(op, modrm, seg, off, 3); // FILD m16
      else if (reg == 4) loadBcd(op, modrm, seg, off); // FBLD
      else if (reg == 5) loadMemory(op, modrm, seg, off, 5); // FILD m64
      else if (reg == 6) storeBcd(op, modrm, seg, off); // FBSTP
      else if (reg == 7) storeInt(op, modrm, seg, off, 64, true); // FISTP m64
      else storeInt(op, modrm, seg, off, 16, reg == 3); // FIST/FISTP m16
      break;
  }
  commit();
}

/** D8/DA/DC/DE with a memory operand: m32real, m32int, m64real, m16int. */
function arithMemory(op: u32, modrm: u32, reg: u32, seg: i32, off: u32, width: u32): void {
  // width: 0 m32real, 1 m32int, 2 m64real, 3 m16int (readReal kinds)
  readReal(seg, off, width);
  const convFlags = sf_flags;
  notePointers(op, modrm, seg, off);
  if (isEmpty(0)) {
    if (reg == 2 || reg == 3) compareUnderflow(false, reg == 3 ? 1 : 0);
    else if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
    return;
  }
  sf_begin(cw);
  sf_flags = convFlags; // an SNaN or denormal m32/m64 operand counts for this instruction
  if (reg == 2 || reg == 3) {
    compareAndPop(m_se, m_sig, false, false, reg == 3 ? 1 : 0);
    return;
  }
  if ((convFlags & ~cw & (SW_IE | SW_DE)) != 0) {
    merge(false);
    return;
  }
  arith(reg, stSe(0), stSig(0), m_se, m_sig);
  if (merge(false)) setSt(0, sf_se, sf_sig);
}

/** FLD m32/m64/m80, FILD m16/m32/m64. */
function loadMemory(op: u32, modrm: u32, seg: i32, off: u32, kind: u32): void {
  readReal(seg, off, kind);
  notePointers(op, modrm, seg, off);
  if (!isEmpty(7)) {
    if (stackFault(true)) push(INDEF_SE, INDEF_SIG);
    return;
  }
  if (merge(false)) push(m_se, m_sig);
}

function loadBcd(op: u32, modrm: u32, seg: i32, off: u32): void {
  const lo = vread32(seg, off);
  const mid = vread32(seg, off + 4);
  const hi = vread16(seg, off + 8);
  notePointers(op, modrm, seg, off);
  if (!isEmpty(7)) {
    if (stackFault(true)) push(INDEF_SE, INDEF_SIG);
    return;
  }
  f80_from_bcd((<u64>mid << 32) | <u64>lo, hi);
  sw &= ~SW_C1;
  push(sf_se, sf_sig);
}

/** FST/FSTP m32 (double = false) and m64. */
function storeReal(op: u32, modrm: u32, seg: i32, off: u32, double: bool, doPop: bool): void {
  if (isEmpty(0)) {
    if ((cw & SW_IE) != 0) {
      if (double) write64(seg, off, 0xfff8000000000000);
      else vwrite32(seg, off, 0xffc00000);
    }
    notePointers(op, modrm, seg, off);
    if (stackFault(false) && doPop) pop();
    return;
  }
  let v: u64;
  if (double) v = f80_to_f64(stSe(0), stSig(0));
  else v = <u64>f80_to_f32(stSe(0), stSig(0));
  const flags = sf_flags;
  const ok = (flags & ~cw & (SW_IE | SW_OE | SW_UE)) == 0;
  if (ok) {
    if (double) write64(seg, off, v);
    else vwrite32(seg, off, <u32>v);
  }
  notePointers(op, modrm, seg, off);
  if (merge(true) && doPop) pop();
}

function storeExtended(op: u32, modrm: u32, seg: i32, off: u32): void {
  if (isEmpty(0)) {
    if ((cw & SW_IE) != 0) write80(seg, off, INDEF_SE, INDEF_SIG);
    notePointers(op, modrm, seg, off);
    if (stackFault(false)) pop();
    return;
  }
  write80(seg, off, stSe(0), stSig(0));
  notePointers(op, modrm, seg, off);
  sw &= ~SW_C1;
  pop();
}

/** FIST/FISTP m16/m32, FISTP m64. */
function storeInt(op: u32, modrm: u32, seg: i32, off: u32, bits: i32, doPop: bool): void {
  let v: i64;
  let ok = true;
  if (isEmpty(0)) {
    v = (<i64>-1) << <i64>(bits - 1);
    ok = (cw & SW_IE) != 0;
  } else {
    v = f80_to_int(stSe(0), stSig(0), bits);
    ok = (sf_flags & ~cw & SW_IE) == 0;
  }
  if (ok) {
    if (bits == 16) vwrite16(seg, off, <u32>v);
    else if (bits == 32) vwrite32(seg, off, <u32>v);
    else write64(seg, off, <u64>v);
  }
  notePointers(op, modrm, seg, off);
  if (isEmpty(0)) {
    if (stackFault(false) && doPop) pop();
    return;
  }
  if (merge(true) && doPop) pop();
}

function storeBcd(op: u32, modrm: u32, seg: i32, off: u32): void {
  let lo: u64 = 0xc000000000000000;
  let hi: u32 = 0xffff;
  let ok: bool;
  const empty = isEmpty(0);
  if (empty) {
    ok = (cw & SW_IE) != 0;
  } else {
    lo = f80_to_bcd(stSe(0), stSig(0));
    hi = sf_bcd_hi;
    ok = (sf_flags & ~cw & SW_IE) == 0;
  }
  if (ok) {
    vcheck_write(seg, off, 10);
    vwrite32(seg, off, <u32>lo);
    vwrite32(seg, off + 4, <u32>(lo >> 32));
    vwrite16(seg, off + 8, hi);
  }
  notePointers(op, modrm, seg, off);
  if (empty) {
    if (stackFault(false)) pop();
    return;
  }
  if (merge(true)) pop();
}

// Register forms ----------------------------------------------------------------------

function execRegister(op: u32, modrm: u32, reg: u32, rm: u32): void {
  if (op == 0xdb && reg == 4) {
    // FNENI/FNDISI/FNSETPM are no-ops since the 387; FNCLEX and FNINIT do not wait.
    if (rm == 2) {
      sw &= ~(SW_EXC | SW_SF | SW_ES | SW_B);
      commit();
    } else if (rm == 3) {
      fninit();
      commit();
    }
    return;
  }
  if (op == 0xdf && reg == 4) { // FNSTSW AX
    set_reg16(EAX, sw);
    return;
  }
  checkPending();
  sf_begin(cw);
  switch (op) {
    case 0xd8: arithRegister(op, modrm, reg, rm, false, false); break;
    case 0xdc: arithRegister(op, modrm, reg, rm, true, false); break;
    case 0xde:
      if (reg == 3) { // FCOMPP
        notePointers(op, modrm, -1, 0);
        if (isEmpty(0) || isEmpty(1)) compareUnderflow(false, 2);
        else compareAndPop(stSe(1), stSig(1), false, false, 2);
      } else {
        arithRegister(op, modrm, reg, rm, true, true);
      }
      break;
    case 0xd9: execD9(op, modrm, reg, rm); break;
    case 0xda:
      if (reg == 5) { // FUCOMPP
        notePointers(op, modrm, -1, 0);
        if (isEmpty(0) || isEmpty(1)) compareUnderflow(false, 2);
        else compareAndPop(stSe(1), stSig(1), true, false, 2);
      } else {
        fcmov(op, modrm, reg, rm, false);
      }
      break;
    case 0xdb:
      if (reg < 4) fcmov(op, modrm, reg, rm, true);
      else comi(op, modrm, rm, reg == 5, false); // FUCOMI / FCOMI
      break;
    case 0xdd:
      switch (reg) {
        case 0: // FFREE
          store<u8>(FPU + F_TAGS, <u8>(tags() & ~(1 << phys(rm))));
          break;
        case 1: fxch(op, modrm, rm); break; // FXCH4 alias
        case 2: fst(op, modrm, rm, false); break;
        case 3: fst(op, modrm, rm, true); break;
        case 4: ucom(op, modrm, rm, 0); break; // FUCOM
        default: ucom(op, modrm, rm, 1); break; // FUCOMP
      }
      break;
    default: // 0xdf
      switch (reg) {
        case 0: // FFREEP: undocumented, free ST(i) then pop (P6 executes it)
          store<u8>(FPU + F_TAGS, <u8>(tags() & ~(1 << phys(rm))));
          pop();
          break;
        case 1: fxch(op, modrm, rm); break; // FXCH7 alias
        case 2: case 3: fst(op, modrm, rm, true); break; // FSTP8/FSTP9 aliases
        case 5: comi(op, modrm, rm, true, true); break; // FUCOMIP
        default: comi(op, modrm, rm, false, true); break; // FCOMIP
      }
      break;
  }
  commit();
}

/**
 * D8 (ST0 = ST0 op STi), DC (STi = STi op ST0) and DE (same, then pop). For DC/DE, Intel's
 * FSUB ST(i),ST(0) is DC E8+i and FSUBR ST(i),ST(0) DC E0+i (SDM Vol. 2 FSUB/FSUBR).
 */
function arithRegister(op: u32, modrm: u32, reg: u32, rm: u32, toSti: bool, doPop: bool): void {
  notePointers(op, modrm, -1, 0);
  if (reg == 2 || reg == 3) { // FCOM/FCOMP, and the aliases DC D0/D8 and DE D0 (pops)
    const pops: u32 = reg == 3 || doPop ? 1 : 0;
    if (isEmpty(0) || isEmpty(rm)) compareUnderflow(false, pops);
    else compareAndPop(stSe(rm), stSig(rm), false, false, pops);
    return;
  }
  const dst = toSti ? rm : 0;
  if (isEmpty(0) || isEmpty(rm)) {
    if (stackFault(false)) {
      setSt(dst, INDEF_SE, INDEF_SIG);
      if (doPop) pop();
    }
    return;
  }
  let k = reg;
  if (toSti && reg >= 4) k = reg ^ 1;
  arith(k, stSe(dst), stSig(dst), stSe(toSti ? 0 : rm), stSig(toSti ? 0 : rm));
  if (merge(false)) {
    setSt(dst, sf_se, sf_sig);
    if (doPop) pop();
  }
}

function fxch(op: u32, modrm: u32, rm: u32): void {
  notePointers(op, modrm, -1, 0);
  if (isEmpty(0) || isEmpty(rm)) {
    if (!stackFault(false)) return;
    if (isEmpty(0)) setSt(0, INDEF_SE, INDEF_SIG);
    if (isEmpty(rm)) setSt(rm, INDEF_SE, INDEF_SIG);
  } else {
    sw &= ~SW_C1;
  }
  const se = stSe(0);
  const sig = stSig(0);
  setSt(0, stSe(rm), stSig(rm));
  setSt(rm, se, sig);
}

/** FST/FSTP ST(i): a register copy, no conversion and hence no exceptions but #IS. */
function fst(op: u32, modrm: u32, rm: u32, doPop: bool): void {
  notePointers(op, modrm, -1, 0);
  if (isEmpty(0)) {
    if (!stackFault(false)) return;
    setSt(rm, INDEF_SE, INDEF_SIG);
  } else {
    sw &= ~SW_C1;
    setSt(rm, stSe(0), stSig(0));
  }
  if (doPop) pop();
}

function ucom(op: u32, modrm: u32, rm: u32, pops: u32): void {
  notePointers(op, modrm, -1, 0);
  if (isEmpty(0) || isEmpty(rm)) compareUnderflow(false, pops);
  else compareAndPop(stSe(rm), stSig(rm), true, false, pops);
}

/** FCOMI/FUCOMI/FCOMIP/FUCOMIP: the result goes to ZF PF CF (SDM Vol. 2 FCOMI). */
function comi(op: u32, modrm: u32, rm: u32, quiet: bool, doPop: bool): void {
  notePointers(op, modrm, -1, 0);
  const pops: u32 = doPop ? 1 : 0;
  if (isEmpty(0) || isEmpty(rm)) compareUnderflow(true, pops);
  else compareAndPop(stSe(rm), stSig(rm), quiet, true, pops);
}

/** FCMOVcc (SDM Vol. 2 FCMOVcc): B E BE U on DA, their negations on DB. */
function fcmov(op: u32, modrm: u32, reg: u32, rm: u32, negate: bool): void {
  notePointers(op, modrm, -1, 0);
  if (isEmpty(0) || isEmpty(rm)) {
    if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
    return;
  }
  sw &= ~SW_C1;
  // Condition codes of Jcc: B = 2, E = 4, BE = 6, P = 10; odd = negated.
  const base: u32 = reg == 0 ? 2 : reg == 1 ? 4 : reg == 2 ? 6 : 10;
  if (test_cc(base | (negate ? 1 : 0))) setSt(0, stSe(rm), stSig(rm));
}

function execD9(op: u32, modrm: u32, reg: u32, rm: u32): void {
  switch (reg) {
    case 0: { // FLD ST(i)
      notePointers(op, modrm, -1, 0);
      if (!isEmpty(7)) {
        if (stackFault(true)) push(INDEF_SE, INDEF_SIG);
        return;
      }
      if (isEmpty(rm)) {
        if (stackFault(false)) push(INDEF_SE, INDEF_SIG);
        return;
      }
      sw &= ~SW_C1;
      push(stSe(rm), stSig(rm));
      return;
    }
    case 1: fxch(op, modrm, rm); return;
    case 2: return; // FNOP: a control instruction, no pointer update
    case 3: fst(op, modrm, rm, true); return; // FSTP1 alias
    case 4: {
      notePointers(op, modrm, -1, 0);
      if (rm == 5) { // FXAM: classify ST0 even when empty
        fxam();
        return;
      }
      if (isEmpty(0)) {
        if (rm == 4) compareUnderflow(false, 0);
        else if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
        return;
      }
      if (rm == 0) { // FCHS
        sw &= ~SW_C1;
        setSt(0, stSe(0) ^ 0x8000, stSig(0));
      } else if (rm == 1) { // FABS
        sw &= ~SW_C1;
        setSt(0, stSe(0) & 0x7fff, stSig(0));
      } else { // FTST
        compareAndPop(0, 0, false, false, 0);
      }
      return;
    }
    case 5: // FLD1 .. FLDZ
      notePointers(op, modrm, -1, 0);
      loadConst(rm);
      return;
    case 6: execD9F0(op, modrm, rm); return;
    default: execD9F8(op, modrm, rm); return;
  }
}

/** FXAM (SDM Vol. 2 FXAM table 3-42): C3 C2 C0 class, C1 sign. */
function fxam(): void {
  const se = stSe(0);
  const sig = stSig(0);
  let cc: u32;
  const e = se & 0x7fff;
  if (isEmpty(0)) cc = SW_C3 | SW_C0;
  else if (f80_is_unsupported(se, sig)) cc = 0;
  else if (f80_is_nan(se, sig)) cc = SW_C0;
  else if (e == 0x7fff) cc = SW_C2 | SW_C0;
  else if (e == 0 && sig == 0) cc = SW_C3;
  else if (e == 0) cc = SW_C3 | SW_C2;
  else cc = SW_C2;
  if ((se & 0x8000) != 0) cc |= SW_C1;
  sw = (sw & ~SW_CC) | cc;
}

/** One-operand functions on ST0: the result replaces ST0. */
function unaryST0(kind: u32): void {
  if (isEmpty(0)) {
    if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
    return;
  }
  const se = stSe(0);
  const sig = stSig(0);
  switch (kind) {
    case 0: f80_2xm1(se, sig); break;
    case 1: f80_sqrt(se, sig); break;
    case 2: f80_round_int(se, sig); break;
    case 3: f80_sin(se, sig); break;
    default: f80_cos(se, sig); break;
  }
  const trig = kind >= 3;
  if (merge(false)) {
    if (trig) {
      sw &= ~SW_C2;
      if (sf_c2) {
        sw |= SW_C2; // out of range: operand unchanged (SDM Vol. 2 FSIN)
        return;
      }
    }
    setSt(0, sf_se, sf_sig);
  }
}

/** Two-operand functions with the result in ST1 and a pop: FYL2X, FPATAN, FYL2XP1. */
function binaryPop(kind: u32): void {
  if (isEmpty(0) || isEmpty(1)) {
    if (stackFault(false)) {
      setSt(1, INDEF_SE, INDEF_SIG);
      pop();
    }
    return;
  }
  const ase = stSe(0);
  const asig = stSig(0);
  const bse = stSe(1);
  const bsig = stSig(1);
  if (kind == 0) f80_yl2x(ase, asig, bse, bsig);
  else if (kind == 1) f80_atan(ase, asig, bse, bsig);
  else f80_yl2xp1(ase, asig, bse, bsig);
  if (merge(false)) {
    setSt(1, sf_se, sf_sig);
    pop();
  }
}

/**
 * FPTAN, FSINCOS, FXTRACT: ST0 is replaced and one more value pushed. A stack fault's
 * masked response fills both with the indefinite (as Bochs does).
 */
function pushTwo(kind: u32): void {
  if (isEmpty(0) || !isEmpty(7)) {
    if (stackFault(!isEmpty(0))) {
      setSt(0, INDEF_SE, INDEF_SIG);
      push(INDEF_SE, INDEF_SIG);
    }
    return;
  }
  const se = stSe(0);
  const sig = stSig(0);
  if (kind == 0) {
    f80_tan(se, sig);
    sf_se2 = 0x3fff;
    sf_sig2 = J;
  } else if (kind == 1) {
    f80_sincos(se, sig);
  } else {
    f80_xtract(se, sig);
  }
  if (!merge(false)) return;
  if (kind != 2) {
    sw &= ~SW_C2;
    if (sf_c2) {
      sw |= SW_C2;
      return;
    }
  }
  let se2 = sf_se2;
  let sig2 = sf_sig2;
  // A NaN result (NaN operand or masked #IA) goes to both registers.
  if (kind == 0 && f80_is_nan(sf_se, sf_sig)) {
    se2 = sf_se;
    sig2 = sf_sig;
  }
  // FPTAN: tan, then 1.0 on top; FSINCOS: sin, then cos; FXTRACT: exponent, then significand.
  setSt(0, sf_se, sf_sig);
  push(se2, sig2);
}

function premST(ieee: bool): void {
  if (isEmpty(0) || isEmpty(1)) {
    if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
    return;
  }
  f80_prem(stSe(0), stSig(0), stSe(1), stSig(1), ieee);
  if (!merge(false)) return;
  setSt(0, sf_se, sf_sig);
  // C0 = Q2, C3 = Q1, C1 = Q0; C2 = incomplete (SDM Vol. 2 FPREM).
  sw &= ~SW_CC;
  if (sf_c2) sw |= SW_C2;
  if ((sf_quot & 4) != 0) sw |= SW_C0;
  if ((sf_quot & 2) != 0) sw |= SW_C3;
  if ((sf_quot & 1) != 0) sw |= SW_C1;
}

function execD9F0(op: u32, modrm: u32, rm: u32): void {
  if (rm == 6 || rm == 7) {
    // FDECSTP/FINCSTP: control instructions, no pointer update.
    sw &= ~SW_C1;
    setTop(rm == 6 ? top() - 1 : top() + 1);
    return;
  }
  notePointers(op, modrm, -1, 0);
  switch (rm) {
    case 0: unaryST0(0); break; // F2XM1
    case 1: binaryPop(0); break; // FYL2X
    case 2: pushTwo(0); break; // FPTAN
    case 3: binaryPop(1); break; // FPATAN
    case 4: pushTwo(2); break; // FXTRACT
    default: premST(true); break; // FPREM1
  }
}

function execD9F8(op: u32, modrm: u32, rm: u32): void {
  notePointers(op, modrm, -1, 0);
  switch (rm) {
    case 0: premST(false); break; // FPREM
    case 1: binaryPop(2); break; // FYL2XP1
    case 2: unaryST0(1); break; // FSQRT
    case 3: pushTwo(1); break; // FSINCOS
    case 4: unaryST0(2); break; // FRNDINT
    case 5: { // FSCALE
      if (isEmpty(0) || isEmpty(1)) {
        if (stackFault(false)) setSt(0, INDEF_SE, INDEF_SIG);
        return;
      }
      f80_scale(stSe(0), stSig(0), stSe(1), stSig(1));
      if (merge(false)) setSt(0, sf_se, sf_sig);
      break;
    }
    case 6: unaryST0(3); break; // FSIN
    default: unaryST0(4); break; // FCOS
  }
}
