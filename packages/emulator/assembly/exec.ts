// The interpreter: one instruction per step(), prefixes and all opcodes in one dense
// switch (a br_table: every case value from 0x000 to 0x1FF is listed, see
// test/core-module.test.ts), opcodes 0x100-0x1FF being the 0F xx map.

import {
  CPU_STATE, EIP_START, ESP_START, INHIBIT_UNTIL, HALTED, INSTR_COUNT, REG_CR0, REG_CR2,
  REG_CR3, REG_CR4, REG_DR0, GDTR_BASE, GDTR_LIMIT, IDTR_BASE, IDTR_LIMIT, MSR_SYSENTER_CS,
  MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, TSC_OFFSET, A20_MASK, TSC_LIVE,
} from './layout';
import {
  reg8, reg16, reg32, set_reg8, set_reg16, set_reg32, eip, set_eip, seg_sel, seg_attr,
  seg_base, seg_limit, set_seg, get_eflags, set_eflags_raw, flush_flags, set_flags_bits,
  get_cf, get_zf, get_of, test_cc, cpl, cr0, cr4, protected_mode, v86_mode, iopl, code32,
  eflags_stored, update_cs_cache, instr_count,
  ES, CS, SS, DS, FS, GS, LDTR, TR, EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI,
  FLAG_CF, FLAG_PF, FLAG_AF, FLAG_ZF, FLAG_SF, FLAG_TF, FLAG_IF, FLAG_DF, FLAG_OF,
  FLAG_IOPL, FLAG_NT, FLAG_RF, FLAG_VM, FLAG_AC, FLAG_ID, FLAG_VIF, FLAG_VIP, FLAGS_ARITH,
  CR0_PE, CR0_PG, CR0_WP, CR0_TS, CR0_EM, CR0_MP, CR0_NE, CR0_ET, CR0_NW, CR0_CD, CR4_PSE, CR4_PGE, CR4_TSD,
  ATTR_VALID, ATTR_S, ATTR_CODE, ATTR_RW, ATTR_DC, ATTR_P, ATTR_DPL_SHIFT, ATTR_DB,
} from './state';
import {
  gp, ud, raise, vread8, vread16, vread32, vwrite8, vwrite16, vwrite32, vcheck_write,
  tlb_flush, tlb_flush_page, update_access_masks, fetch_invalidate, read16_sys, read32_sys,
  EXC_BP, EXC_OF, EXC_BR, EXC_NM, EXC_DB, EXC_MF, EXC_GP, fetch_begin, write32_sys,
} from './memory';
import {
  prefix_seg, o32, a32, rep, lock, m_mod, m_reg, m_rm, ea_seg, ea_off, reset_prefixes,
  set_prefix_seg, toggle_o32, toggle_a32, set_rep, set_lock, fetch_u8, fetch_u16, fetch_u32,
  fetch_s8, fetch_iv, decode_modrm, data_seg, rm_read8, rm_read16, rm_read32, rm_write8,
  rm_write16, rm_write32, rmw_read8, rmw_read16, rmw_read32, rmw_write8, rmw_write16,
  rmw_write32, gv, set_gv, regv, set_regv, sp, set_sp, sp_add, push16, push32, pushv, pop16,
  pop32, popv, peek16, peek32, check_stack_push,
} from './decode';
import {
  alu, inc, dec, neg, shift_op, shld, shrd, mul8, imul8, mul16, imul16, mul32, imul32,
  imul_trunc, div8, idiv8, div16, idiv16, div32, idiv32, daa, das, aaa, aas, aam, aad, bsf,
  bsr, test_flags, size_mask,
} from './arith';
import { string_op, S_MOVS, S_CMPS, S_STOS, S_LODS, S_SCAS, S_INS, S_OUTS } from './string';
import { io_read, io_write, io_check } from './io';
import {
  load_seg, far_jump, far_call, far_ret, iret, do_interrupt, INT_SOFTWARE, INT_SOFTWARE_N, INT_EXCEPTION,
  fetch_descriptor, desc_lo, desc_hi, desc_attr, desc_dpl, desc_base, desc_limit, set_cpl,
  on_cr0_pe_change, rights_of, commit_cs, desc_addr,
} from './system';
import { task_switch, TS_JMP } from './task';
import { fpu_exec, fpu_wait } from './fpu';

@external("host", "intr_ack")
declare function host_intr_ack(): i32;
@external("host", "cpu_event")
declare function host_cpu_event(kind: u32, value: u32): void;

export const STOP_COUNT: u32 = 0;
export const STOP_HALT: u32 = 1;
export const STOP_HOST: u32 = 2;
export const STOP_SHUTDOWN: u32 = 3;

// ---------------------------------------------------------------------------------------
// Helpers used by several opcodes.

@inline function shiftv(): u32 { return o32 ? 31 : 15; }

function jump_rel(d: u32): void {
  const t = eip() + d;
  set_eip(o32 ? t : t & 0xffff);
}

/** Near branch targets are checked against CS.limit (SDM JMP: #GP if not within limits). */
function jump_abs(t: u32): void {
  if (!o32) t &= 0xffff;
  set_eip(t);
}

function mov_to_sreg(s: u32, v: u32): void {
  if (s == 1 || s > 5) ud();
  load_seg(<i32>s, v);
  if (s == 2) inhibit_interrupts();
}

function inhibit_interrupts(): void {
  store<u64>(CPU_STATE + INHIBIT_UNTIL, instr_count() + 1);
}

/** POPF (SDM POPF): which bits may change depends on CPL, IOPL and V86 mode. */
function popf(v: u32): void {
  const old = get_eflags();
  let mask: u32 = FLAGS_ARITH | FLAG_TF | FLAG_DF | FLAG_NT | FLAG_AC | FLAG_ID;
  if (v86_mode()) {
    if (iopl() < 3) gp(0);
    mask |= FLAG_IF;
  } else {
    if (!protected_mode() || cpl() == 0) mask |= FLAG_IOPL | FLAG_IF;
    else if (cpl() <= iopl()) mask |= FLAG_IF;
  }
  if (!o32) mask &= 0xffff;
  // RF is cleared; VM, VIF and VIP are kept (SDM POPF).
  set_eflags_raw(((old & ~mask) | (v & mask)) & ~FLAG_RF);
}

function cli_sti(set: bool): void {
  if (protected_mode() && (v86_mode() ? iopl() < 3 : cpl() > iopl())) gp(0);
  flush_flags();
  const fl = eflags_stored();
  if (set) {
    if ((fl & FLAG_IF) == 0) inhibit_interrupts();
    set_eflags_raw(fl | FLAG_IF);
  } else {
    set_eflags_raw(fl & ~FLAG_IF);
  }
}

function check_io_priv(port: u32, size: u32): void { io_check(port, size); }

function need_cpl0(): void {
  if (protected_mode() && (v86_mode() || cpl() != 0)) gp(0);
}

function bound(): void {
  if (m_mod == 3) ud();
  if (o32) {
    const idx = <i32>gv();
    const lo = <i32>vread32(ea_seg, ea_off);
    const hi = <i32>vread32(ea_seg, ea_off + 4);
    if (idx < lo || idx > hi) raise(EXC_BR, false, 0);
  } else {
    const idx = <i32>(<i16>gv());
    const lo = <i32>(<i16>vread16(ea_seg, ea_off));
    const hi = <i32>(<i16>vread16(ea_seg, (ea_off + 2) & (a32 ? 0xffffffff : 0xffff)));
    if (idx < lo || idx > hi) raise(EXC_BR, false, 0);
  }
}

/** LES/LDS/LSS/LFS/LGS: the offset then the selector; the segment is loaded first. */
function load_far_ptr(s: i32): void {
  if (m_mod == 3) ud();
  const off = o32 ? vread32(ea_seg, ea_off) : vread16(ea_seg, ea_off);
  const sel = vread16(ea_seg, ea_off + (o32 ? 4 : 2));
  load_seg(s, sel);
  if (s == SS) inhibit_interrupts();
  set_gv(off);
}

function enter(): void {
  const size = fetch_u16();
  const level = fetch_u8() & 31;
  const n: u32 = o32 ? 4 : 2;
  const big = (seg_attr(SS) & ATTR_DB) != 0;
  let bp: u32 = big ? reg32(EBP) : reg16(EBP);
  let s = sp();
  // Probe the whole frame first so a fault leaves everything as it was.
  check_stack_push(level + 1, n);
  if (size != 0) vcheck_write(SS, sp_add(s, -((level + 1) * n + size)), size);
  s = sp_add(s, -n);
  if (o32) vwrite32(SS, s, reg32(EBP)); else vwrite16(SS, s, reg16(EBP));
  const frameTemp = s;
  for (let i: u32 = 1; i < level; i++) {
    bp = sp_add(bp, -n);
    const v = o32 ? vread32(SS, bp) : vread16(SS, bp);
    s = sp_add(s, -n);
    if (o32) vwrite32(SS, s, v); else vwrite16(SS, s, v);
  }
  if (level > 0) {
    s = sp_add(s, -n);
    if (o32) vwrite32(SS, s, frameTemp); else vwrite16(SS, s, frameTemp);
  }
  if (o32) set_reg32(EBP, frameTemp); else set_reg16(EBP, frameTemp);
  set_sp(sp_add(s, -size));
}

function leave(): void {
  const big = (seg_attr(SS) & ATTR_DB) != 0;
  const bp = big ? reg32(EBP) : reg16(EBP);
  const v = o32 ? vread32(SS, bp) : vread16(SS, bp);
  set_sp(sp_add(bp, o32 ? 4 : 2));
  if (o32) set_reg32(EBP, v); else set_reg16(EBP, v);
}

function pusha(): void {
  const n: u32 = o32 ? 4 : 2;
  check_stack_push(8, n);
  const oldSp = o32 ? reg32(ESP) : reg16(ESP);
  for (let r: i32 = 0; r < 8; r++) pushv(r == ESP ? oldSp : regv(r));
}

function popa(): void {
  const n: u32 = o32 ? 4 : 2;
  const s = sp();
  // Read all eight first (a fault leaves the registers untouched), ESP's slot is skipped.
  let di = o32 ? peek32(0) : peek16(0);
  let si = o32 ? peek32(n) : peek16(n);
  let bp = o32 ? peek32(2 * n) : peek16(2 * n);
  let bx = o32 ? peek32(4 * n) : peek16(4 * n);
  let dx = o32 ? peek32(5 * n) : peek16(5 * n);
  let cx = o32 ? peek32(6 * n) : peek16(6 * n);
  let ax = o32 ? peek32(7 * n) : peek16(7 * n);
  set_regv(EDI, di); set_regv(ESI, si); set_regv(EBP, bp); set_regv(EBX, bx);
  set_regv(EDX, dx); set_regv(ECX, cx); set_regv(EAX, ax);
  set_sp(sp_add(s, 8 * n));
}

// ---------------------------------------------------------------------------------------
// CPUID (SDM CPUID): a P6-family "GenuineIntel" that advertises only what is implemented.

const CPUID_FEATURES: u32 =
  (1 << 0) |   // FPU
  (1 << 3) |   // PSE
  (1 << 4) |   // TSC
  (1 << 5) |   // MSR
  (1 << 8) |   // CX8
  (1 << 11) |  // SEP
  (1 << 13) |  // PGE (global pages are flushed with the rest: allowed by the SDM)
  (1 << 15);   // CMOV

function cpuid(): void {
  const leaf = reg32(EAX);
  let a: u32 = 0, b: u32 = 0, c: u32 = 0, d: u32 = 0;
  if (leaf == 0) {
    a = 2;
    b = 0x756e6547; d = 0x49656e69; c = 0x6c65746e; // "GenuineIntel"
  } else if (leaf == 1) {
    a = 0x0000_0633; // family 6, model 3 (Pentium II class), stepping 3
    d = CPUID_FEATURES;
  } else if (leaf == 2) {
    a = 0x03020101; d = 0x0c040843; // cache descriptors of a Pentium II
  } else if (leaf == 0x80000000) {
    a = 0x80000004;
  } else if (leaf >= 0x80000002 && leaf <= 0x80000004) {
    // Brand string "ftx86 i686 virtual CPU", 16 bytes a leaf.
    const s = leaf - 0x80000002;
    if (s == 0) { a = 0x38787466; b = 0x36692036; c = 0x76203638; d = 0x75747269; }
    else if (s == 1) { a = 0x43206c61; b = 0x00005550; }
  }
  set_reg32(EAX, a); set_reg32(EBX, b); set_reg32(ECX, c); set_reg32(EDX, d);
}

@external("host", "tsc")
declare function host_tsc(): u64;
@external("host", "tsc_write")
declare function host_tsc_write(v: u64): void;

function tsc(): u64 {
  if (load<u32>(CPU_STATE + TSC_LIVE) != 0) return host_tsc();
  return instr_count() + load<u64>(CPU_STATE + TSC_OFFSET);
}

function rdmsr(): void {
  need_cpl0();
  const idx = reg32(ECX);
  let v: u64 = 0;
  switch (idx) {
    case 0x10: v = tsc(); break;
    case 0x174: v = load<u32>(CPU_STATE + MSR_SYSENTER_CS); break;
    case 0x175: v = load<u32>(CPU_STATE + MSR_SYSENTER_ESP); break;
    case 0x176: v = load<u32>(CPU_STATE + MSR_SYSENTER_EIP); break;
    case 0x17: v = 0; break; // IA32_PLATFORM_ID
    case 0x8b: v = 0; break; // IA32_BIOS_SIGN_ID (microcode revision)
    default: gp(0);
  }
  set_reg32(EAX, <u32>v); set_reg32(EDX, <u32>(v >> 32));
}

function wrmsr(): void {
  need_cpl0();
  const idx = reg32(ECX);
  const v: u64 = (<u64>reg32(EDX) << 32) | <u64>reg32(EAX);
  switch (idx) {
    case 0x10: store<u64>(CPU_STATE + TSC_OFFSET, v - instr_count()); host_tsc_write(v); break;
    case 0x174: store<u32>(CPU_STATE + MSR_SYSENTER_CS, <u32>v & 0xffff); break;
    case 0x175: store<u32>(CPU_STATE + MSR_SYSENTER_ESP, <u32>v); break;
    case 0x176: store<u32>(CPU_STATE + MSR_SYSENTER_EIP, <u32>v); break;
    case 0x8b: break;
    default: gp(0);
  }
}

// SYSENTER/SYSEXIT load flat segments derived from IA32_SYSENTER_CS (SDM SYSENTER).
const FLAT_CODE: u32 = ATTR_VALID | ATTR_S | ATTR_CODE | ATTR_RW | ATTR_P | ATTR_DB | (1 << 15) | 1 | (1 << 17);
const FLAT_DATA: u32 = ATTR_VALID | ATTR_S | ATTR_RW | ATTR_P | ATTR_DB | (1 << 15) | 1 | (1 << 17) | (1 << 18);

function sysenter(): void {
  const cs = load<u32>(CPU_STATE + MSR_SYSENTER_CS);
  if (!protected_mode() || (cs & 0xfffc) == 0) gp(0);
  flush_flags();
  set_eflags_raw(eflags_stored() & ~(FLAG_VM | FLAG_IF | FLAG_RF));
  set_seg(CS, cs & 0xfffc, 0, 0xffffffff, FLAT_CODE);
  set_seg(SS, (cs + 8) & 0xfffc, 0, 0xffffffff, FLAT_DATA);
  set_cpl(0);
  update_cs_cache();
  store<u32>(CPU_STATE + 0x108, 1); // STACK32
  fetch_invalidate();
  set_reg32(ESP, load<u32>(CPU_STATE + MSR_SYSENTER_ESP));
  set_eip(load<u32>(CPU_STATE + MSR_SYSENTER_EIP));
}

function sysexit(): void {
  const cs = load<u32>(CPU_STATE + MSR_SYSENTER_CS);
  if (!protected_mode() || v86_mode() || cpl() != 0 || (cs & 0xfffc) == 0) gp(0);
  set_seg(CS, ((cs + 16) & 0xfffc) | 3, 0, 0xffffffff, FLAT_CODE | (3 << ATTR_DPL_SHIFT));
  set_seg(SS, ((cs + 24) & 0xfffc) | 3, 0, 0xffffffff, FLAT_DATA | (3 << ATTR_DPL_SHIFT));
  set_cpl(3);
  update_cs_cache();
  store<u32>(CPU_STATE + 0x108, 1);
  fetch_invalidate();
  set_reg32(ESP, reg32(ECX));
  set_eip(reg32(EDX));
}

// Control registers (SDM MOV to/from CR). Paging-related changes flush the TLB.
function mov_to_cr(n: u32, v: u32): void {
  need_cpl0();
  switch (n) {
    case 0: {
      if ((v & CR0_PG) && !(v & CR0_PE)) gp(0);
      if ((v & CR0_NW) && !(v & CR0_CD)) gp(0); // SDM MOV CR: NW without CD is #GP(0)
      const old = cr0();
      v = (v & 0xe005003f) | CR0_ET;
      store<u32>(CPU_STATE + REG_CR0, v);
      if ((old ^ v) & (CR0_PG | CR0_WP | CR0_PE)) tlb_flush();
      if ((old ^ v) & CR0_PE) on_cr0_pe_change();
      break;
    }
    case 2: store<u32>(CPU_STATE + REG_CR2, v); break;
    case 3: store<u32>(CPU_STATE + REG_CR3, v); tlb_flush(); break;
    case 4: {
      if (v & ~(CR4_PSE | CR4_PGE | CR4_TSD | 0x8)) gp(0);
      const old = cr4();
      store<u32>(CPU_STATE + REG_CR4, v);
      if ((old ^ v) & (CR4_PSE | CR4_PGE)) tlb_flush();
      break;
    }
    default: ud();
  }
}
function mov_from_cr(n: u32): u32 {
  need_cpl0();
  switch (n) {
    case 0: return cr0();
    case 2: return load<u32>(CPU_STATE + REG_CR2);
    case 3: return load<u32>(CPU_STATE + REG_CR3);
    case 4: return cr4();
    default: ud();
  }
  return 0;
}

// Group 6 and 7 system instructions (SLDT STR LLDT LTR VERR VERW; SGDT SIDT LGDT LIDT SMSW LMSW INVLPG).
function grp6(): void {
  decode_modrm();
  if (!protected_mode() || v86_mode()) ud();
  switch (m_reg) {
    case 0: if (m_mod == 3) set_regv(<i32>m_rm, seg_sel(LDTR)); else rm_write16(seg_sel(LDTR)); break;
    case 1: if (m_mod == 3) set_regv(<i32>m_rm, seg_sel(TR)); else rm_write16(seg_sel(TR)); break;
    case 2: { need_cpl0(); lldt(rm_read16()); break; }
    case 3: { need_cpl0(); ltr(rm_read16()); break; }
    case 4: verify(rm_read16(), false); break;
    case 5: verify(rm_read16(), true); break;
    default: ud();
  }
}

function lldt(sel: u32): void {
  if ((sel & 0xfffc) == 0) { set_seg(LDTR, sel, 0, 0, 0); return; }
  if (sel & 4) gp(sel & 0xfffc);
  if (!fetch_descriptor(sel)) gp(sel & 0xfffc);
  const attr = desc_attr(desc_hi);
  if ((attr & 0x1f) != 0x02) gp(sel & 0xfffc);
  if ((attr & ATTR_P) == 0) raise(11, true, sel & 0xfffc);
  set_seg(LDTR, sel, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi), attr | ATTR_VALID);
}

function ltr(sel: u32): void {
  if ((sel & 0xfffc) == 0 || (sel & 4)) gp(sel & 0xfffc);
  if (!fetch_descriptor(sel)) gp(sel & 0xfffc);
  const attr = desc_attr(desc_hi);
  const t = attr & 0x1f;
  if (t != 0x01 && t != 0x09) gp(sel & 0xfffc); // available 16- or 32-bit TSS
  if ((attr & ATTR_P) == 0) raise(11, true, sel & 0xfffc);
  // Mark it busy in the GDT (a real write, so the page is dirty).
  desc_hi |= 0x200;
  vwrite_sys_desc();
  set_seg(TR, sel, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi), desc_attr(desc_hi) | ATTR_VALID);
}

function vwrite_sys_desc(): void { write32_sys(desc_addr + 4, desc_hi); }

/** VERR/VERW (SDM): ZF=1 when the segment is readable/writable from here. */
function verify(sel: u32, write: bool): void {
  let ok = false;
  if ((sel & 0xfffc) != 0 && fetch_descriptor(sel)) {
    const attr = desc_attr(desc_hi);
    const dpl = desc_dpl(desc_hi);
    if (attr & ATTR_S) {
      const conforming = (attr & (ATTR_CODE | ATTR_DC)) == (ATTR_CODE | ATTR_DC);
      const privOk = conforming || (dpl >= cpl() && dpl >= (sel & 3));
      if (privOk) {
        if (write) ok = (attr & (ATTR_CODE | ATTR_RW)) == ATTR_RW;
        else ok = (attr & ATTR_CODE) == 0 || (attr & ATTR_RW) != 0;
      }
    }
  }
  set_flags_bits(FLAG_ZF, ok ? FLAG_ZF : 0);
}

/** LAR/LSL (SDM): the access rights or the limit of a descriptor visible from here. */
function lar_lsl(isLsl: bool): void {
  decode_modrm();
  if (!protected_mode() || v86_mode()) ud();
  const sel = rm_read16();
  let ok = false;
  if ((sel & 0xfffc) != 0 && fetch_descriptor(sel)) {
    const attr = desc_attr(desc_hi);
    const dpl = desc_dpl(desc_hi);
    const conforming = (attr & (ATTR_S | ATTR_CODE | ATTR_DC)) == (ATTR_S | ATTR_CODE | ATTR_DC);
    let typeOk = true;
    if ((attr & ATTR_S) == 0) {
      const t = attr & 0xf;
      // LSL accepts TSS and LDT descriptors; LAR also call and task gates.
      typeOk = t == 1 || t == 2 || t == 3 || t == 9 || t == 11 ||
        (!isLsl && (t == 4 || t == 5 || t == 12));
    }
    if (typeOk && (conforming || (dpl >= cpl() && dpl >= (sel & 3)))) {
      ok = true;
      if (isLsl) set_gv(desc_limit(desc_lo, desc_hi));
      else set_gv(desc_hi & (o32 ? 0x00f0ff00 : 0xff00));
    }
  }
  set_flags_bits(FLAG_ZF, ok ? FLAG_ZF : 0);
}

function grp7(): void {
  decode_modrm();
  switch (m_reg) {
    case 0: case 1: { // SGDT/SIDT: 6 bytes; 16-bit operand size stores a 24-bit base
      if (m_mod == 3) ud();
      const base = load<u32>(CPU_STATE + (m_reg == 0 ? GDTR_BASE : IDTR_BASE));
      const limit = load<u32>(CPU_STATE + (m_reg == 0 ? GDTR_LIMIT : IDTR_LIMIT));
      vcheck_write(ea_seg, ea_off, 6);
      vwrite16(ea_seg, ea_off, limit);
      vwrite32(ea_seg, ea_off + 2, o32 ? base : base & 0x00ffffff);
      break;
    }
    case 2: case 3: { // LGDT/LIDT
      if (m_mod == 3) ud();
      need_cpl0();
      const limit = vread16(ea_seg, ea_off);
      let base = vread32(ea_seg, ea_off + 2);
      if (!o32) base &= 0x00ffffff;
      store<u32>(CPU_STATE + (m_reg == 2 ? GDTR_BASE : IDTR_BASE), base);
      store<u32>(CPU_STATE + (m_reg == 2 ? GDTR_LIMIT : IDTR_LIMIT), limit);
      break;
    }
    case 4: // SMSW
      if (m_mod == 3) set_regv(<i32>m_rm, o32 ? cr0() : cr0() & 0xffff); else rm_write16(cr0() & 0xffff);
      break;
    case 6: { // LMSW: can set PE but never clear it; touches only PE MP EM TS
      need_cpl0();
      const v = rm_read16();
      const old = cr0();
      const nv = (old & ~0xe) | (v & 0xf) | (old & CR0_PE);
      mov_to_cr(0, nv);
      break;
    }
    case 7: // INVLPG
      if (m_mod == 3) ud();
      need_cpl0();
      tlb_flush_page(seg_base(ea_seg) + ea_off);
      break;
    default: ud();
  }
}

// ---------------------------------------------------------------------------------------
// Group opcodes.

function grp1(op: u32): void {
  // 80/82: Eb,Ib  81: Ev,Iv  83: Ev,Ib sign-extended
  decode_modrm();
  const kind = m_reg;
  if (op == 0x80 || op == 0x82) {
    if (kind == 7) { const a = rm_read8(); alu(7, a, fetch_u8(), 7); return; }
    const a = rmw_read8();
    const r = alu(kind, a, fetch_u8(), 7);
    rmw_write8(r);
    return;
  }
  const sh = shiftv();
  if (kind == 7) {
    const a = rm_readv_();
    const b = op == 0x81 ? fetch_iv() : fetch_s8() & size_mask(sh);
    alu(7, a, b, sh);
    return;
  }
  const a = rmw_readv_();
  const b = op == 0x81 ? fetch_iv() : fetch_s8() & size_mask(sh);
  const r = alu(kind, a, b, sh);
  rmw_writev_(r);
}

// Operand-size dispatch without @inline re-exports across modules.
function rm_readv_(): u32 { return o32 ? rm_read32() : rm_read16(); }
function rm_writev_(v: u32): void { if (o32) rm_write32(v); else rm_write16(v); }
function rmw_readv_(): u32 { return o32 ? rmw_read32() : rmw_read16(); }
function rmw_writev_(v: u32): void { if (o32) rmw_write32(v); else rmw_write16(v); }

function grp2(op: u32): void {
  decode_modrm();
  const byte = (op & 1) == 0;
  let count: u32;
  if (byte) {
    const a = rmw_read8();
    count = op == 0xc0 ? fetch_u8() : op == 0xd0 ? 1 : reg8(1);
    if ((count & 31) == 0) return;
    rmw_write8(shift_op(m_reg, a, count, 7));
    return;
  }
  const a = rmw_readv_();
  count = op == 0xc1 ? fetch_u8() : op == 0xd1 ? 1 : reg8(1);
  if ((count & 31) == 0) return;
  rmw_writev_(shift_op(m_reg, a, count, shiftv()));
}

function grp3(op: u32): void {
  decode_modrm();
  if (op == 0xf6) {
    switch (m_reg) {
      case 0: case 1: test_flags(rm_read8() & fetch_u8(), 7); break;
      case 2: { const a = rmw_read8(); rmw_write8(~a & 0xff); break; }
      case 3: { const a = rmw_read8(); const r = (0 - a) & 0xff; rmw_write8(r); neg(a, 7); break; }
      case 4: mul8(rm_read8()); break;
      case 5: imul8(rm_read8()); break;
      case 6: div8(rm_read8()); break;
      default: idiv8(rm_read8()); break;
    }
    return;
  }
  const sh = shiftv();
  switch (m_reg) {
    case 0: case 1: { const a = rm_readv_(); test_flags(a & fetch_iv(), sh); break; }
    case 2: { const a = rmw_readv_(); rmw_writev_(~a & size_mask(sh)); break; }
    case 3: { const a = rmw_readv_(); rmw_writev_((0 - a) & size_mask(sh)); neg(a, sh); break; }
    case 4: if (o32) mul32(rm_read32()); else mul16(rm_read16()); break;
    case 5: if (o32) imul32(rm_read32()); else imul16(rm_read16()); break;
    case 6: if (o32) div32(rm_read32()); else div16(rm_read16()); break;
    default: if (o32) idiv32(rm_read32()); else idiv16(rm_read16()); break;
  }
}

function grp4(): void {
  decode_modrm();
  if (m_reg == 0) { const a = rmw_read8(); rmw_write8((a + 1) & 0xff); inc(a, 7); }
  else if (m_reg == 1) { const a = rmw_read8(); rmw_write8((a - 1) & 0xff); dec(a, 7); }
  else ud();
}

function grp5(): void {
  decode_modrm();
  const sh = shiftv();
  switch (m_reg) {
    case 0: { const a = rmw_readv_(); rmw_writev_((a + 1) & size_mask(sh)); inc(a, sh); break; }
    case 1: { const a = rmw_readv_(); rmw_writev_((a - 1) & size_mask(sh)); dec(a, sh); break; }
    case 2: { // CALL near indirect
      const t = rm_readv_();
      pushv(eip());
      jump_abs(t);
      break;
    }
    case 3: { // CALL far indirect
      if (m_mod == 3) ud();
      const off = o32 ? vread32(ea_seg, ea_off) : vread16(ea_seg, ea_off);
      const sel = vread16(ea_seg, ea_off + (o32 ? 4 : 2));
      far_call(sel, off);
      break;
    }
    case 4: jump_abs(rm_readv_()); break;
    case 5: {
      if (m_mod == 3) ud();
      const off = o32 ? vread32(ea_seg, ea_off) : vread16(ea_seg, ea_off);
      const sel = vread16(ea_seg, ea_off + (o32 ? 4 : 2));
      far_jump(sel, off);
      break;
    }
    case 6: { const v = rm_readv_(); pushv(v); break; }
    default: ud();
  }
}

/** BT/BTS/BTR/BTC: op 0..3. A register bit offset reaches outside the memory operand (SDM BT). */
function bit_op(op: u32, imm: bool): void {
  const sh = shiftv();
  let bit: u32;
  if (m_mod == 3) {
    bit = (imm ? fetch_u8() : gv()) & sh;
    const v = o32 ? reg32(<i32>m_rm) : reg16(<i32>m_rm);
    const cf = (v >>> bit) & 1;
    let r = v;
    if (op == 1) r = v | (1 << bit); else if (op == 2) r = v & ~(1 << bit); else if (op == 3) r = v ^ (1 << bit);
    if (op != 0) set_regv(<i32>m_rm, r);
    set_flags_bits(FLAG_CF, cf ? FLAG_CF : 0);
    return;
  }
  let off = ea_off;
  if (imm) {
    bit = fetch_u8() & sh;
  } else {
    const b = gv();
    if (o32) { off += <u32>((<i32>b) >> 5) << 2; bit = b & 31; }
    else { off += <u32>((<i32>(<i16>b)) >> 4) << 1; bit = b & 15; }
    if (!a32) off &= 0xffff;
  }
  // Byte granular access keeps the touched range minimal.
  const boff = off + (bit >>> 3);
  const m = 1 << (bit & 7);
  const v = op == 0 ? vread8(ea_seg, boff) : vread8_rmw(boff);
  const cf = (v & m) != 0;
  if (op == 1) vwrite8(ea_seg, boff, v | m);
  else if (op == 2) vwrite8(ea_seg, boff, v & ~m);
  else if (op == 3) vwrite8(ea_seg, boff, v ^ m);
  set_flags_bits(FLAG_CF, cf ? FLAG_CF : 0);
}
function vread8_rmw(off: u32): u32 {
  vcheck_write(ea_seg, off, 1);
  return vread8(ea_seg, off);
}

function cmpxchg8b(): void {
  decode_modrm();
  if (m_reg != 1 || m_mod == 3) ud();
  vcheck_write(ea_seg, ea_off, 8);
  const lo = vread32(ea_seg, ea_off);
  const hi = vread32(ea_seg, ea_off + 4);
  if (lo == reg32(EAX) && hi == reg32(EDX)) {
    vwrite32(ea_seg, ea_off, reg32(EBX));
    vwrite32(ea_seg, ea_off + 4, reg32(ECX));
    set_flags_bits(FLAG_ZF, FLAG_ZF);
  } else {
    // The destination is written back even when unequal (SDM CMPXCHG8B: locked cycle).
    vwrite32(ea_seg, ea_off, lo);
    vwrite32(ea_seg, ea_off + 4, hi);
    set_reg32(EAX, lo);
    set_reg32(EDX, hi);
    set_flags_bits(FLAG_ZF, 0);
  }
}

/**
 * LOCK is valid only on the memory-destination forms of a few instructions (SDM Vol. 2,
 * LOCK); anything else is #UD. Peeks at the ModRM byte without consuming it.
 */
function check_lock(op: u32): void {
  const at = eip();
  const modrm = fetch_u8();
  set_eip(at);
  const mod = modrm >> 6;
  const reg = (modrm >> 3) & 7;
  let ok = false;
  if (op < 0x100) {
    if (op <= 0x35 && (op & 7) < 2 && (op & 0x38) != 0x38) ok = mod != 3;
    else if (op >= 0x80 && op <= 0x83) ok = mod != 3 && reg != 7;
    else if (op == 0x86 || op == 0x87) ok = mod != 3;
    else if (op == 0xf6 || op == 0xf7) ok = mod != 3 && (reg == 2 || reg == 3);
    else if (op == 0xfe || op == 0xff) ok = mod != 3 && reg < 2;
  } else {
    const o = op & 0xff;
    if (o == 0xab || o == 0xb3 || o == 0xbb || o == 0xb0 || o == 0xb1 || o == 0xc0 || o == 0xc1) ok = mod != 3;
    else if (o == 0xba) ok = mod != 3 && reg >= 5;
    else if (o == 0xc7) ok = mod != 3 && reg == 1;
  }
  if (!ok) ud();
}

// ---------------------------------------------------------------------------------------
// One instruction.

export function step(): void {
  const ip = eip();
  store<u32>(CPU_STATE + EIP_START, ip);
  store<u32>(CPU_STATE + ESP_START, reg32(ESP));
  const c32 = code32();
  fetch_begin(ip);
  reset_prefixes(c32);
  let op = fetch_u8();
  while (true) {
    switch (op) {
      // ---- prefixes
      case 0x26: set_prefix_seg(ES); op = fetch_u8(); continue;
      case 0x2e: set_prefix_seg(CS); op = fetch_u8(); continue;
      case 0x36: set_prefix_seg(SS); op = fetch_u8(); continue;
      case 0x3e: set_prefix_seg(DS); op = fetch_u8(); continue;
      case 0x64: set_prefix_seg(FS); op = fetch_u8(); continue;
      case 0x65: set_prefix_seg(GS); op = fetch_u8(); continue;
      case 0x66: toggle_o32(c32); op = fetch_u8(); continue;
      case 0x67: toggle_a32(c32); op = fetch_u8(); continue;
      case 0xf0: set_lock(); op = fetch_u8(); continue;
      case 0xf2: set_rep(0xf2); op = fetch_u8(); continue;
      case 0xf3: set_rep(0xf3); op = fetch_u8(); continue;
      case 0x0f: op = 0x100 | fetch_u8(); break;
      default: break;
    }
    break;
  }
  if (lock) check_lock(op);
  execute(op);
  // In a 16-bit code segment IP wraps at 64 KiB (the next fetch is checked against the limit).
  if (!code32()) set_eip(eip() & 0xffff);
}

function execute(op: u32): void {
  switch (op) {
    // ---- ALU: op Eb,Gb / Ev,Gv / Gb,Eb / Gv,Ev / AL,Ib / eAX,Iv
    case 0x00: case 0x08: case 0x10: case 0x18: case 0x20: case 0x28: case 0x30: case 0x38: {
      decode_modrm();
      const k = op >> 3;
      if (k == 7) { alu(7, rm_read8(), reg8(<i32>m_reg), 7); break; }
      const a = rmw_read8();
      rmw_write8(alu(k, a, reg8(<i32>m_reg), 7));
      break;
    }
    case 0x01: case 0x09: case 0x11: case 0x19: case 0x21: case 0x29: case 0x31: case 0x39: {
      decode_modrm();
      const k = op >> 3;
      if (k == 7) { alu(7, rm_readv_(), gv(), shiftv()); break; }
      const a = rmw_readv_();
      rmw_writev_(alu(k, a, gv(), shiftv()));
      break;
    }
    case 0x02: case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x32: case 0x3a: {
      decode_modrm();
      const r = alu(op >> 3, reg8(<i32>m_reg), rm_read8(), 7);
      if ((op >> 3) != 7) set_reg8(<i32>m_reg, r);
      break;
    }
    case 0x03: case 0x0b: case 0x13: case 0x1b: case 0x23: case 0x2b: case 0x33: case 0x3b: {
      decode_modrm();
      const r = alu(op >> 3, gv(), rm_readv_(), shiftv());
      if ((op >> 3) != 7) set_gv(r);
      break;
    }
    case 0x04: case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x2c: case 0x34: case 0x3c: {
      const r = alu(op >> 3, reg8(0), fetch_u8(), 7);
      if ((op >> 3) != 7) set_reg8(0, r);
      break;
    }
    case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d: {
      const r = alu(op >> 3, regv(EAX), fetch_iv(), shiftv());
      if ((op >> 3) != 7) set_regv(EAX, r);
      break;
    }
    case 0x06: pushv(seg_sel(ES)); break;
    case 0x07: { const v = o32 ? peek32(0) : peek16(0); load_seg(ES, v); set_sp(sp_add(sp(), o32 ? 4 : 2)); break; }
    case 0x0e: pushv(seg_sel(CS)); break;
    case 0x16: pushv(seg_sel(SS)); break;
    case 0x17: {
      const v = o32 ? peek32(0) : peek16(0);
      load_seg(SS, v);
      set_sp(sp_add(sp(), o32 ? 4 : 2));
      inhibit_interrupts();
      break;
    }
    case 0x1e: pushv(seg_sel(DS)); break;
    case 0x1f: { const v = o32 ? peek32(0) : peek16(0); load_seg(DS, v); set_sp(sp_add(sp(), o32 ? 4 : 2)); break; }
    case 0x27: daa(); break;
    case 0x2f: das(); break;
    case 0x37: aaa(); break;
    case 0x3f: aas(); break;
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47: {
      const r = <i32>(op & 7);
      const a = regv(r);
      set_regv(r, (a + 1) & size_mask(shiftv()));
      inc(a, shiftv());
      break;
    }
    case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f: {
      const r = <i32>(op & 7);
      const a = regv(r);
      set_regv(r, (a - 1) & size_mask(shiftv()));
      dec(a, shiftv());
      break;
    }
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57:
      pushv(regv(<i32>(op & 7)));
      break;
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      const v = popv();
      set_regv(<i32>(op & 7), v);
      break;
    }
    case 0x60: pusha(); break;
    case 0x61: popa(); break;
    case 0x62: decode_modrm(); bound(); break;
    case 0x63: { // ARPL
      if (!protected_mode() || v86_mode()) ud();
      decode_modrm();
      const d = rmw_read16();
      const s = reg16(<i32>m_reg);
      if ((d & 3) < (s & 3)) {
        rmw_write16((d & ~3) | (s & 3));
        set_flags_bits(FLAG_ZF, FLAG_ZF);
      } else {
        set_flags_bits(FLAG_ZF, 0);
      }
      break;
    }
    case 0x68: pushv(fetch_iv()); break;
    case 0x69: {
      decode_modrm();
      const a = rm_readv_();
      set_gv(imul_trunc(a, fetch_iv(), shiftv()));
      break;
    }
    case 0x6a: pushv(fetch_s8()); break;
    case 0x6b: {
      decode_modrm();
      const a = rm_readv_();
      set_gv(imul_trunc(a, fetch_s8(), shiftv()));
      break;
    }
    case 0x6c: string_op(S_INS, 1); break;
    case 0x6d: string_op(S_INS, o32 ? 4 : 2); break;
    case 0x6e: string_op(S_OUTS, 1); break;
    case 0x6f: string_op(S_OUTS, o32 ? 4 : 2); break;
    case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
    case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f: {
      const d = fetch_s8();
      if (test_cc(op & 15)) jump_rel(d);
      break;
    }
    case 0x80: case 0x81: case 0x82: case 0x83: grp1(op); break;
    case 0x84: decode_modrm(); test_flags(rm_read8() & reg8(<i32>m_reg), 7); break;
    case 0x85: decode_modrm(); test_flags(rm_readv_() & gv(), shiftv()); break;
    case 0x86: {
      decode_modrm();
      const a = rmw_read8();
      const b = reg8(<i32>m_reg);
      rmw_write8(b);
      set_reg8(<i32>m_reg, a);
      break;
    }
    case 0x87: {
      decode_modrm();
      const a = rmw_readv_();
      const b = gv();
      rmw_writev_(b);
      set_gv(a);
      break;
    }
    case 0x88: decode_modrm(); rm_write8(reg8(<i32>m_reg)); break;
    case 0x89: decode_modrm(); rm_writev_(gv()); break;
    case 0x8a: decode_modrm(); set_reg8(<i32>m_reg, rm_read8()); break;
    case 0x8b: decode_modrm(); set_gv(rm_readv_()); break;
    case 0x8c: {
      decode_modrm();
      if (m_reg > 5) ud();
      const v = seg_sel(<i32>m_reg);
      // To a register with 32-bit operand size, the upper bits are zeroed (P6 behaviour).
      if (m_mod == 3) set_regv(<i32>m_rm, v); else rm_write16(v);
      break;
    }
    case 0x8d: {
      decode_modrm();
      if (m_mod == 3) ud();
      set_gv(ea_off);
      break;
    }
    case 0x8e: decode_modrm(); mov_to_sreg(m_reg, rm_read16()); break;
    case 0x8f: {
      // POP Ev: ESP is incremented before the destination address is used (SDM POP).
      const s = sp();
      const v = o32 ? peek32(0) : peek16(0);
      set_sp(sp_add(s, o32 ? 4 : 2));
      decode_modrm();
      if (m_reg != 0) { set_sp(s); ud(); }
      rm_writev_(v);
      break;
    }
    case 0x90: break; // NOP / PAUSE
    case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97: {
      const r = <i32>(op & 7);
      const a = regv(EAX);
      set_regv(EAX, regv(r));
      set_regv(r, a);
      break;
    }
    case 0x98: if (o32) set_reg32(EAX, <u32>(<i32>(<i16>reg16(EAX)))); else set_reg16(EAX, <u32>(<i32>(<i8>reg8(0)))); break;
    case 0x99:
      if (o32) set_reg32(EDX, (reg32(EAX) >> 31) ? 0xffffffff : 0);
      else set_reg16(EDX, (reg16(EAX) & 0x8000) ? 0xffff : 0);
      break;
    case 0x9a: {
      const off = fetch_iv();
      const sel = fetch_u16();
      far_call(sel, off);
      break;
    }
    case 0x9b: fpu_wait(); break;
    case 0x9c: {
      if (v86_mode() && iopl() < 3) gp(0);
      // VM and RF are never pushed (SDM PUSHF).
      pushv(get_eflags() & 0xfcffff);
      break;
    }
    case 0x9d: { const v = o32 ? peek32(0) : peek16(0); popf(v); set_sp(sp_add(sp(), o32 ? 4 : 2)); break; }
    case 0x9e: { // SAHF
      const ah = reg8(4);
      set_flags_bits(FLAG_SF | FLAG_ZF | FLAG_AF | FLAG_PF | FLAG_CF, ah);
      break;
    }
    case 0x9f: set_reg8(4, get_eflags() & 0xff); break;
    case 0xa0: { const off = a32 ? fetch_u32() : fetch_u16(); set_reg8(0, vread8(data_seg(), off)); break; }
    case 0xa1: {
      const off = a32 ? fetch_u32() : fetch_u16();
      if (o32) set_reg32(EAX, vread32(data_seg(), off)); else set_reg16(EAX, vread16(data_seg(), off));
      break;
    }
    case 0xa2: { const off = a32 ? fetch_u32() : fetch_u16(); vwrite8(data_seg(), off, reg8(0)); break; }
    case 0xa3: {
      const off = a32 ? fetch_u32() : fetch_u16();
      if (o32) vwrite32(data_seg(), off, reg32(EAX)); else vwrite16(data_seg(), off, reg16(EAX));
      break;
    }
    case 0xa4: string_op(S_MOVS, 1); break;
    case 0xa5: string_op(S_MOVS, o32 ? 4 : 2); break;
    case 0xa6: string_op(S_CMPS, 1); break;
    case 0xa7: string_op(S_CMPS, o32 ? 4 : 2); break;
    case 0xa8: test_flags(reg8(0) & fetch_u8(), 7); break;
    case 0xa9: test_flags(regv(EAX) & fetch_iv(), shiftv()); break;
    case 0xaa: string_op(S_STOS, 1); break;
    case 0xab: string_op(S_STOS, o32 ? 4 : 2); break;
    case 0xac: string_op(S_LODS, 1); break;
    case 0xad: string_op(S_LODS, o32 ? 4 : 2); break;
    case 0xae: string_op(S_SCAS, 1); break;
    case 0xaf: string_op(S_SCAS, o32 ? 4 : 2); break;
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
      set_reg8(<i32>(op & 7), fetch_u8());
      break;
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
      set_regv(<i32>(op & 7), fetch_iv());
      break;
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: grp2(op); break;
    case 0xc2: { const n = fetch_u16(); const t = popv(); set_sp(sp_add(sp(), n)); jump_abs(t); break; }
    case 0xc3: { const t = popv(); jump_abs(t); break; }
    case 0xc4: decode_modrm(); load_far_ptr(ES); break;
    case 0xc5: decode_modrm(); load_far_ptr(DS); break;
    case 0xc6: decode_modrm(); if (m_reg != 0) ud(); { const v = fetch_u8(); rm_write8(v); } break;
    case 0xc7: decode_modrm(); if (m_reg != 0) ud(); { const v = fetch_iv(); rm_writev_(v); } break;
    case 0xc8: enter(); break;
    case 0xc9: leave(); break;
    case 0xca: far_ret(fetch_u16()); break;
    case 0xcb: far_ret(0); break;
    case 0xcc: do_interrupt(EXC_BP, INT_SOFTWARE, false, 0); break;
    // INT n, unlike INT3 and INTO, is IOPL-sensitive in V86 mode (SDM Vol. 3, 20.3.1).
    case 0xcd: { const v = fetch_u8(); do_interrupt(v, INT_SOFTWARE_N, false, 0); break; }
    case 0xce: if (get_of()) do_interrupt(EXC_OF, INT_SOFTWARE, false, 0); break;
    case 0xcf: iret(); break;
    case 0xd4: aam(fetch_u8()); break;
    case 0xd5: aad(fetch_u8()); break;
    case 0xd6: set_reg8(0, get_cf() ? 0xff : 0); break; // SALC
    case 0xd7: {
      const off = (a32 ? reg32(EBX) : reg16(EBX)) + reg8(0);
      set_reg8(0, vread8(data_seg(), a32 ? off : off & 0xffff));
      break;
    }
    case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf: {
      // Escape to the x87: #NM when CR0.EM or CR0.TS says so (SDM Vol. 3, 2.5; Table 12-8).
      if (cr0() & (CR0_EM | CR0_TS)) raise(EXC_NM, false, 0);
      decode_modrm();
      const modrm = (m_mod << 6) | (m_reg << 3) | m_rm;
      fpu_exec(op, modrm, m_mod == 3 ? -1 : ea_seg, ea_off, o32);
      break;
    }
    case 0xe0: case 0xe1: case 0xe2: {
      const d = fetch_s8();
      const n = (a32 ? reg32(ECX) : reg16(ECX)) - 1;
      if (a32) set_reg32(ECX, n); else set_reg16(ECX, n);
      const nz = (a32 ? n : n & 0xffff) != 0;
      const take = op == 0xe2 ? nz : op == 0xe1 ? nz && get_zf() : nz && !get_zf();
      if (take) jump_rel(d);
      break;
    }
    case 0xe3: { const d = fetch_s8(); if ((a32 ? reg32(ECX) : reg16(ECX)) == 0) jump_rel(d); break; }
    case 0xe4: { const p = fetch_u8(); check_io_priv(p, 1); set_reg8(0, io_read(p, 1)); break; }
    case 0xe5: {
      const p = fetch_u8();
      check_io_priv(p, o32 ? 4 : 2);
      if (o32) set_reg32(EAX, io_read(p, 4)); else set_reg16(EAX, io_read(p, 2));
      break;
    }
    case 0xe6: { const p = fetch_u8(); check_io_priv(p, 1); io_write(p, 1, reg8(0)); break; }
    case 0xe7: { const p = fetch_u8(); check_io_priv(p, o32 ? 4 : 2); io_write(p, o32 ? 4 : 2, regv(EAX)); break; }
    case 0xe8: { const d = fetch_iv(); pushv(eip()); jump_rel(d); break; }
    case 0xe9: { const d = fetch_iv(); jump_rel(d); break; }
    case 0xea: { const off = fetch_iv(); const sel = fetch_u16(); far_jump(sel, off); break; }
    case 0xeb: { const d = fetch_s8(); jump_rel(d); break; }
    case 0xec: { const p = reg16(EDX); check_io_priv(p, 1); set_reg8(0, io_read(p, 1)); break; }
    case 0xed: {
      const p = reg16(EDX);
      check_io_priv(p, o32 ? 4 : 2);
      if (o32) set_reg32(EAX, io_read(p, 4)); else set_reg16(EAX, io_read(p, 2));
      break;
    }
    case 0xee: { const p = reg16(EDX); check_io_priv(p, 1); io_write(p, 1, reg8(0)); break; }
    case 0xef: { const p = reg16(EDX); check_io_priv(p, o32 ? 4 : 2); io_write(p, o32 ? 4 : 2, regv(EAX)); break; }
    case 0xf1: do_interrupt(EXC_DB, INT_EXCEPTION, false, 0); break; // INT1 / ICEBP
    case 0xf4: {
      need_cpl0();
      store<u32>(CPU_STATE + HALTED, 1);
      break;
    }
    case 0xf5: set_flags_bits(FLAG_CF, get_cf() ? 0 : FLAG_CF); break;
    case 0xf6: case 0xf7: grp3(op); break;
    case 0xf8: set_flags_bits(FLAG_CF, 0); break;
    case 0xf9: set_flags_bits(FLAG_CF, FLAG_CF); break;
    case 0xfa: cli_sti(false); break;
    case 0xfb: cli_sti(true); break;
    case 0xfc: { flush_flags(); set_eflags_raw(eflags_stored() & ~FLAG_DF); break; }
    case 0xfd: { flush_flags(); set_eflags_raw(eflags_stored() | FLAG_DF); break; }
    case 0xfe: grp4(); break;
    case 0xff: grp5(); break;

    // ---- 0F xx
    case 0x100: grp6(); break;
    case 0x101: grp7(); break;
    case 0x102: lar_lsl(false); break;
    case 0x103: lar_lsl(true); break;
    case 0x106: { // CLTS
      need_cpl0();
      store<u32>(CPU_STATE + REG_CR0, cr0() & ~CR0_TS);
      break;
    }
    case 0x108: case 0x109: need_cpl0(); break; // INVD, WBINVD: no caches to write back
    case 0x10b: ud(); break; // UD2
    case 0x118: case 0x119: case 0x11a: case 0x11b: case 0x11c: case 0x11d: case 0x11e: case 0x11f:
      // Hint NOPs / multi-byte NOP (P6): decode and ignore the operand.
      decode_modrm();
      break;
    case 0x120: { // MOV r32, CRn: always 32-bit, ModRM.mod ignored
      const b = fetch_u8();
      set_reg32(<i32>(b & 7), mov_from_cr((b >> 3) & 7));
      break;
    }
    case 0x121: {
      const b = fetch_u8();
      need_cpl0();
      set_reg32(<i32>(b & 7), load<u32>(CPU_STATE + REG_DR0 + (((b >> 3) & 7) << 2)));
      break;
    }
    case 0x122: { const b = fetch_u8(); mov_to_cr((b >> 3) & 7, reg32(<i32>(b & 7))); break; }
    case 0x123: {
      const b = fetch_u8();
      need_cpl0();
      store<u32>(CPU_STATE + REG_DR0 + (((b >> 3) & 7) << 2), reg32(<i32>(b & 7)));
      break;
    }
    case 0x130: wrmsr(); break;
    case 0x131: {
      if ((cr4() & CR4_TSD) && protected_mode() && cpl() != 0) gp(0);
      const t = tsc();
      set_reg32(EAX, <u32>t); set_reg32(EDX, <u32>(t >> 32));
      break;
    }
    case 0x132: rdmsr(); break;
    case 0x134: sysenter(); break;
    case 0x135: sysexit(); break;
    case 0x140: case 0x141: case 0x142: case 0x143: case 0x144: case 0x145: case 0x146: case 0x147:
    case 0x148: case 0x149: case 0x14a: case 0x14b: case 0x14c: case 0x14d: case 0x14e: case 0x14f: {
      decode_modrm();
      // The source is read (and may fault) whether or not the condition holds.
      const v = rm_readv_();
      if (test_cc(op & 15)) set_gv(v);
      else if (o32) set_reg32(<i32>m_reg, reg32(<i32>m_reg)); // a 32-bit CMOV still writes
      break;
    }
    case 0x180: case 0x181: case 0x182: case 0x183: case 0x184: case 0x185: case 0x186: case 0x187:
    case 0x188: case 0x189: case 0x18a: case 0x18b: case 0x18c: case 0x18d: case 0x18e: case 0x18f: {
      const d = fetch_iv();
      if (test_cc(op & 15)) jump_rel(d);
      break;
    }
    case 0x190: case 0x191: case 0x192: case 0x193: case 0x194: case 0x195: case 0x196: case 0x197:
    case 0x198: case 0x199: case 0x19a: case 0x19b: case 0x19c: case 0x19d: case 0x19e: case 0x19f:
      decode_modrm();
      rm_write8(test_cc(op & 15) ? 1 : 0);
      break;
    case 0x1a0: pushv(seg_sel(FS)); break;
    case 0x1a1: { const v = o32 ? peek32(0) : peek16(0); load_seg(FS, v); set_sp(sp_add(sp(), o32 ? 4 : 2)); break; }
    case 0x1a2: cpuid(); break;
    case 0x1a3: decode_modrm(); bit_op(0, false); break;
    case 0x1a4: case 0x1a5: case 0x1ac: case 0x1ad: {
      decode_modrm();
      const a = rmw_readv_();
      const count = (op & 1) ? reg8(1) : fetch_u8();
      if ((count & 31) == 0) break;
      rmw_writev_(op < 0x1ac ? shld(a, gv(), count, shiftv()) : shrd(a, gv(), count, shiftv()));
      break;
    }
    case 0x1a8: pushv(seg_sel(GS)); break;
    case 0x1a9: { const v = o32 ? peek32(0) : peek16(0); load_seg(GS, v); set_sp(sp_add(sp(), o32 ? 4 : 2)); break; }
    case 0x1ab: decode_modrm(); bit_op(1, false); break;
    case 0x1af: { decode_modrm(); const b = rm_readv_(); set_gv(imul_trunc(gv(), b, shiftv())); break; }
    case 0x1b0: {
      decode_modrm();
      const d = rmw_read8();
      const al = reg8(0);
      alu(7, al, d, 7);
      if (al == d) rmw_write8(reg8(<i32>m_reg)); else { rmw_write8(d); set_reg8(0, d); }
      break;
    }
    case 0x1b1: {
      decode_modrm();
      const d = rmw_readv_();
      const a = regv(EAX);
      alu(7, a, d, shiftv());
      if (a == d) rmw_writev_(gv()); else { rmw_writev_(d); set_regv(EAX, d); }
      break;
    }
    case 0x1b2: decode_modrm(); load_far_ptr(SS); break;
    case 0x1b3: decode_modrm(); bit_op(2, false); break;
    case 0x1b4: decode_modrm(); load_far_ptr(FS); break;
    case 0x1b5: decode_modrm(); load_far_ptr(GS); break;
    case 0x1b6: { decode_modrm(); set_gv(rm_read8()); break; }
    case 0x1b7: { decode_modrm(); set_gv(rm_read16()); break; }
    case 0x1ba: {
      decode_modrm();
      if (m_reg < 4) ud();
      bit_op(m_reg - 4, true);
      break;
    }
    case 0x1bb: decode_modrm(); bit_op(3, false); break;
    case 0x1bc: { decode_modrm(); const s = rm_readv_(); set_gv(bsf(s, gv(), shiftv())); break; }
    case 0x1bd: { decode_modrm(); const s = rm_readv_(); set_gv(bsr(s, gv(), shiftv())); break; }
    case 0x1be: { decode_modrm(); set_gv(<u32>(<i32>(<i8>rm_read8()))); break; }
    case 0x1bf: { decode_modrm(); set_gv(<u32>(<i32>(<i16>rm_read16()))); break; }
    case 0x1c0: {
      decode_modrm();
      const d = rmw_read8();
      const s = reg8(<i32>m_reg);
      const r = alu(0, d, s, 7);
      set_reg8(<i32>m_reg, d);
      rmw_write8(r);
      break;
    }
    case 0x1c1: {
      decode_modrm();
      const d = rmw_readv_();
      const s = gv();
      const r = alu(0, d, s, shiftv());
      set_gv(d);
      rmw_writev_(r);
      break;
    }
    case 0x1c7: cmpxchg8b(); break;
    case 0x1c8: case 0x1c9: case 0x1ca: case 0x1cb: case 0x1cc: case 0x1cd: case 0x1ce: case 0x1cf: {
      const r = <i32>(op & 7);
      set_reg32(r, bswap<u32>(reg32(r)));
      break;
    }

    // Everything else is invalid on this CPU: #UD. Listing every value keeps the switch a
    // dense br_table.
    case 0x0f: case 0x26: case 0x2e: case 0x36: case 0x3e: case 0x64: case 0x65: case 0x66:
    case 0x67: case 0xf0: case 0xf2: case 0xf3:
    case 0x104: case 0x105: case 0x107: case 0x10a: case 0x10c: case 0x10d: case 0x10e: case 0x10f:
    case 0x110: case 0x111: case 0x112: case 0x113: case 0x114: case 0x115: case 0x116: case 0x117:
    case 0x124: case 0x125: case 0x126: case 0x127: case 0x128: case 0x129: case 0x12a: case 0x12b:
    case 0x12c: case 0x12d: case 0x12e: case 0x12f: case 0x133: case 0x136: case 0x137: case 0x138:
    case 0x139: case 0x13a: case 0x13b: case 0x13c: case 0x13d: case 0x13e: case 0x13f:
    case 0x150: case 0x151: case 0x152: case 0x153: case 0x154: case 0x155: case 0x156: case 0x157:
    case 0x158: case 0x159: case 0x15a: case 0x15b: case 0x15c: case 0x15d: case 0x15e: case 0x15f:
    case 0x160: case 0x161: case 0x162: case 0x163: case 0x164: case 0x165: case 0x166: case 0x167:
    case 0x168: case 0x169: case 0x16a: case 0x16b: case 0x16c: case 0x16d: case 0x16e: case 0x16f:
    case 0x170: case 0x171: case 0x172: case 0x173: case 0x174: case 0x175: case 0x176: case 0x177:
    case 0x178: case 0x179: case 0x17a: case 0x17b: case 0x17c: case 0x17d: case 0x17e: case 0x17f:
    case 0x1a6: case 0x1a7: case 0x1aa: case 0x1ae: case 0x1b8: case 0x1b9:
    case 0x1c2: case 0x1c3: case 0x1c4: case 0x1c5: case 0x1c6:
    case 0x1d0: case 0x1d1: case 0x1d2: case 0x1d3: case 0x1d4: case 0x1d5: case 0x1d6: case 0x1d7:
    case 0x1d8: case 0x1d9: case 0x1da: case 0x1db: case 0x1dc: case 0x1dd: case 0x1de: case 0x1df:
    case 0x1e0: case 0x1e1: case 0x1e2: case 0x1e3: case 0x1e4: case 0x1e5: case 0x1e6: case 0x1e7:
    case 0x1e8: case 0x1e9: case 0x1ea: case 0x1eb: case 0x1ec: case 0x1ed: case 0x1ee: case 0x1ef:
    case 0x1f0: case 0x1f1: case 0x1f2: case 0x1f3: case 0x1f4: case 0x1f5: case 0x1f6: case 0x1f7:
    case 0x1f8: case 0x1f9: case 0x1fa: case 0x1fb: case 0x1fc: case 0x1fd: case 0x1fe: case 0x1ff:
    default:
      ud();
  }
}
