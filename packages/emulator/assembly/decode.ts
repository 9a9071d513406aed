// Instruction fetch, prefixes, ModRM/SIB effective addresses, operand and stack helpers.

import { CPU_STATE, EIP_START, REG_EIP } from './layout';
import {
  reg8, reg16, reg32, set_reg8, set_reg16, set_reg32, seg_base, seg_limit, CS, SS, DS,
  EBP, ESP, stack32,
} from './state';
import {
  fetch_slow, fw_lo, fw_cur, fw_host, gp, vread8, vread16, vread32, vwrite8, vwrite16, vwrite32, seg_check,
  ATTR_READ_OK, ATTR_WRITE_OK, read8, read16, read32, write8, write16, write32,
  check_write_lin_fast, vcheck_write,
} from './memory';

// The instruction being decoded. Module globals compile to WASM globals: the cheapest
// home for per-instruction temporaries.
export let prefix_seg: i32 = -1;
export let o32: bool = false;
export let a32: bool = false;
/** 0, 0xF2 (REPNE) or 0xF3 (REP/REPE). */
export let rep: u32 = 0;
export let lock: bool = false;

export let m_mod: u32 = 0;
export let m_reg: u32 = 0;
export let m_rm: u32 = 0;
export let ea_seg: i32 = DS;
export let ea_off: u32 = 0;

export function reset_prefixes(code32: bool): void {
  prefix_seg = -1;
  o32 = code32;
  a32 = code32;
  rep = 0;
  lock = false;
}
export function set_prefix_seg(s: i32): void { prefix_seg = s; }
export function toggle_o32(code32: bool): void { o32 = !code32; }
export function toggle_a32(code32: bool): void { a32 = !code32; }
export function set_rep(r: u32): void { rep = r; }
export function set_lock(): void { lock = true; }

// ---------------------------------------------------------------------------------------
// Fetch. The 15-byte length limit (SDM Vol. 2, 2.3.11) is checked by step().

@inline export function fetch_u8(): u32 {
  const ip = load<u32>(CPU_STATE + REG_EIP);
  store<u32>(CPU_STATE + REG_EIP, ip + 1);
  if (ip - fw_lo() < fw_cur()) return load<u8>(fw_host() + ip);
  return fetch_slow(ip);
}
export function fetch_u16(): u32 {
  const lo = fetch_u8();
  return lo | (fetch_u8() << 8);
}
export function fetch_u32(): u32 {
  const lo = fetch_u16();
  return lo | (fetch_u16() << 16);
}
@inline export function fetch_s8(): u32 { return <u32>(<i32>(<i8>fetch_u8())); }
/** An immediate of the operand size. */
@inline export function fetch_iv(): u32 { return o32 ? fetch_u32() : fetch_u16(); }

// ---------------------------------------------------------------------------------------
// ModRM (SDM Vol. 2, 2.1.5).

@inline export function decode_modrm(): void {
  const b = fetch_u8();
  m_mod = b >> 6;
  m_reg = (b >> 3) & 7;
  m_rm = b & 7;
  if (m_mod != 3) decode_ea();
}

function decode_ea(): void {
  if (a32) decode_ea32(); else decode_ea16();
}

function decode_ea16(): void {
  let off: u32 = 0;
  let seg: i32 = DS;
  switch (m_rm) {
    case 0: off = reg16(3) + reg16(6); break; // BX+SI
    case 1: off = reg16(3) + reg16(7); break; // BX+DI
    case 2: off = reg16(5) + reg16(6); seg = SS; break; // BP+SI
    case 3: off = reg16(5) + reg16(7); seg = SS; break; // BP+DI
    case 4: off = reg16(6); break;
    case 5: off = reg16(7); break;
    case 6:
      if (m_mod == 0) { off = fetch_u16(); } else { off = reg16(5); seg = SS; }
      break;
    default: off = reg16(3); break;
  }
  if (m_mod == 1) off += fetch_s8();
  else if (m_mod == 2) off += fetch_u16();
  ea_off = off & 0xffff;
  ea_seg = prefix_seg >= 0 ? prefix_seg : seg;
}

function decode_ea32(): void {
  let off: u32 = 0;
  let seg: i32 = DS;
  if (m_rm == 4) {
    const sib = fetch_u8();
    const scale = sib >> 6;
    const index = (sib >> 3) & 7;
    const base = sib & 7;
    if (base == 5 && m_mod == 0) {
      off = fetch_u32();
    } else {
      off = reg32(base);
      if (base == 4 || base == 5) seg = SS;
    }
    if (index != 4) off += reg32(index) << scale;
  } else if (m_rm == 5 && m_mod == 0) {
    off = fetch_u32();
  } else {
    off = reg32(m_rm);
    if (m_rm == 5) seg = SS;
  }
  if (m_mod == 1) off += fetch_s8();
  else if (m_mod == 2) off += fetch_u32();
  ea_off = off;
  ea_seg = prefix_seg >= 0 ? prefix_seg : seg;
}

/** The data segment of an instruction with an implicit DS operand (string sources, XLAT, moffs). */
@inline export function data_seg(): i32 { return prefix_seg >= 0 ? prefix_seg : DS; }

// ---------------------------------------------------------------------------------------
// r/m operands.

@inline export function rm_read8(): u32 { return m_mod == 3 ? reg8(m_rm) : vread8(ea_seg, ea_off); }
@inline export function rm_read16(): u32 { return m_mod == 3 ? reg16(m_rm) : vread16(ea_seg, ea_off); }
@inline export function rm_read32(): u32 { return m_mod == 3 ? reg32(m_rm) : vread32(ea_seg, ea_off); }
@inline export function rm_readv(): u32 { return o32 ? rm_read32() : rm_read16(); }

@inline export function rm_write8(v: u32): void { if (m_mod == 3) set_reg8(m_rm, v); else vwrite8(ea_seg, ea_off, v); }
@inline export function rm_write16(v: u32): void { if (m_mod == 3) set_reg16(m_rm, v); else vwrite16(ea_seg, ea_off, v); }
@inline export function rm_write32(v: u32): void { if (m_mod == 3) set_reg32(m_rm, v); else vwrite32(ea_seg, ea_off, v); }
@inline export function rm_writev(v: u32): void { if (o32) rm_write32(v); else rm_write16(v); }

// Read-modify-write of a memory operand: check writability (segment and paging) first, so
// the final store cannot fault after flags or registers were changed.
let rmw_addr: u32 = 0;

export function rmw_read8(): u32 {
  if (m_mod == 3) return reg8(m_rm);
  rmw_addr = seg_check(ea_seg, ea_off, 1, ATTR_WRITE_OK | ATTR_READ_OK);
  check_write_lin_fast(rmw_addr, 1);
  return read8(rmw_addr);
}
export function rmw_read16(): u32 {
  if (m_mod == 3) return reg16(m_rm);
  rmw_addr = seg_check(ea_seg, ea_off, 2, ATTR_WRITE_OK | ATTR_READ_OK);
  check_write_lin_fast(rmw_addr, 2);
  return read16(rmw_addr);
}
export function rmw_read32(): u32 {
  if (m_mod == 3) return reg32(m_rm);
  rmw_addr = seg_check(ea_seg, ea_off, 4, ATTR_WRITE_OK | ATTR_READ_OK);
  check_write_lin_fast(rmw_addr, 4);
  return read32(rmw_addr);
}
@inline export function rmw_readv(): u32 { return o32 ? rmw_read32() : rmw_read16(); }
export function rmw_write8(v: u32): void { if (m_mod == 3) set_reg8(m_rm, v); else write8(rmw_addr, v); }
export function rmw_write16(v: u32): void { if (m_mod == 3) set_reg16(m_rm, v); else write16(rmw_addr, v); }
export function rmw_write32(v: u32): void { if (m_mod == 3) set_reg32(m_rm, v); else write32(rmw_addr, v); }
@inline export function rmw_writev(v: u32): void { if (o32) rmw_write32(v); else rmw_write16(v); }

// ModRM.reg as a general register of the operand size.
@inline export function gv(): u32 { return o32 ? reg32(m_reg) : reg16(m_reg); }
@inline export function set_gv(v: u32): void { if (o32) set_reg32(m_reg, v); else set_reg16(m_reg, v); }
@inline export function regv(r: i32): u32 { return o32 ? reg32(r) : reg16(r); }
@inline export function set_regv(r: i32, v: u32): void { if (o32) set_reg32(r, v); else set_reg16(r, v); }

// ---------------------------------------------------------------------------------------
// Stack. SS.B picks ESP or SP (SDM Vol. 1, 6.2.3); SP wraps at 64 KiB.

@inline export function sp(): u32 { return stack32() ? reg32(ESP) : reg16(ESP); }
@inline export function set_sp(v: u32): void { if (stack32()) set_reg32(ESP, v); else set_reg16(ESP, v); }
@inline export function sp_add(v: u32, n: u32): u32 { return stack32() ? v + n : (v + n) & 0xffff; }

@inline export function push16(v: u32): void {
  const s = sp_add(sp(), -2);
  vwrite16(SS, s, v);
  set_sp(s);
}
@inline export function push32(v: u32): void {
  const s = sp_add(sp(), -4);
  vwrite32(SS, s, v);
  set_sp(s);
}
@inline export function pushv(v: u32): void { if (o32) push32(v); else push16(v); }
@inline export function pop16(): u32 {
  const s = sp();
  const v = vread16(SS, s);
  set_sp(sp_add(s, 2));
  return v;
}
@inline export function pop32(): u32 {
  const s = sp();
  const v = vread32(SS, s);
  set_sp(sp_add(s, 4));
  return v;
}
@inline export function popv(): u32 { return o32 ? pop32() : pop16(); }
/**
 * Check that `count` slots of `n` bytes below the stack pointer can be written, before an
 * instruction that pushes several (PUSHA, ENTER, far CALL) writes any. A 16-bit stack wraps
 * at 64 KiB between slots, so each slot is checked on its own there.
 */
export function check_stack_push(count: u32, n: u32): void {
  const s = sp();
  if (stack32()) { vcheck_write(SS, s - count * n, count * n); return; }
  for (let i: u32 = 1; i <= count; i++) vcheck_write(SS, (s - i * n) & 0xffff, n);
}

/** Read the stack at SP + `at` without popping. */
export function peek16(at: u32): u32 { return vread16(SS, sp_add(sp(), at)); }
export function peek32(at: u32): u32 { return vread32(SS, sp_add(sp(), at)); }

export const BP: i32 = EBP;
