// String instructions: MOVS CMPS STOS LODS SCAS INS OUTS, with REP/REPE/REPNE.
//
// A REP instruction runs at most REP_CHUNK iterations per step and then restarts itself
// (EIP back at its first byte), so interrupts are taken between chunks as on hardware and
// no single step runs unbounded. A fault in an iteration leaves ECX/ESI/EDI describing the
// iterations already done (SDM Vol. 2, REP: "interrupted" repeat instructions).

import { CPU_STATE, EIP_START } from './layout';
import {
  reg32, set_reg32, reg16, set_reg16, set_reg8, reg8, set_eip, get_flag_df, get_zf,
  seg_attr, seg_limit, seg_base, ECX, ESI, EDI, EAX, EDX, ES, ATTR_DC, ATTR_CODE,
} from './state';
import {
  vread8, vread16, vread32, vwrite8, vwrite16, vwrite32, vcheck_write, tlb_read_host,
  tlb_write_host, ATTR_READ_OK, ATTR_WRITE_OK,
} from './memory';
import { a32, rep, data_seg } from './decode';
import { alu } from './arith';
import { io_read, io_write, io_check } from './io';

const REP_CHUNK: u32 = 4096;

@inline function idx(r: i32): u32 { return a32 ? reg32(r) : reg16(r); }
@inline function set_idx(r: i32, v: u32): void { if (a32) set_reg32(r, v); else set_reg16(r, v); }
@inline function count(): u32 { return a32 ? reg32(ECX) : reg16(ECX); }
@inline function set_count(v: u32): void { if (a32) set_reg32(ECX, v); else set_reg16(ECX, v); }

function rd(seg: i32, off: u32, size: u32): u32 {
  if (size == 1) return vread8(seg, off);
  if (size == 2) return vread16(seg, off);
  return vread32(seg, off);
}
function wr(seg: i32, off: u32, size: u32, v: u32): void {
  if (size == 1) vwrite8(seg, off, v);
  else if (size == 2) vwrite16(seg, off, v);
  else vwrite32(seg, off, v);
}
function acc(size: u32): u32 { return size == 1 ? reg8(0) : size == 2 ? reg16(EAX) : reg32(EAX); }
function set_acc(size: u32, v: u32): void {
  if (size == 1) set_reg8(0, v); else if (size == 2) set_reg16(EAX, v); else set_reg32(EAX, v);
}

/** Kinds. */
export const S_MOVS: u32 = 0;
export const S_CMPS: u32 = 1;
export const S_STOS: u32 = 2;
export const S_LODS: u32 = 3;
export const S_SCAS: u32 = 4;
export const S_INS: u32 = 5;
export const S_OUTS: u32 = 6;

export function string_op(kind: u32, size: u32): void {
  const shift: u32 = size * 8 - 1;
  const delta: u32 = get_flag_df() ? -size : size;
  if (kind == S_INS || kind == S_OUTS) io_check(reg16(EDX), size);
  if (rep == 0) {
    one(kind, size, shift, delta);
    return;
  }
  let n = count();
  let budget = REP_CHUNK;
  const bulkable = (kind == S_MOVS || kind == S_STOS) && a32 && delta == size;
  while (n != 0) {
    if (bulkable) {
      const done = bulk(kind, size, n < budget ? n : budget);
      if (done != 0) {
        n -= done;
        set_count(n);
        budget -= done;
        if (budget == 0 && n != 0) {
          set_eip(load<u32>(CPU_STATE + EIP_START));
          return;
        }
        continue;
      }
    }
    one(kind, size, shift, delta);
    n--;
    set_count(n);
    if (kind == S_CMPS || kind == S_SCAS) {
      // REPE stops on ZF=0, REPNE on ZF=1.
      const z = (reg_zf() != 0);
      if (rep == 0xf3 ? !z : z) return;
    }
    if (--budget == 0 && n != 0) {
      set_eip(load<u32>(CPU_STATE + EIP_START));
      return;
    }
  }
}

@inline function reg_zf(): u32 { return get_zf() ? 1 : 0; }

/**
 * The linear address of [off, off + len) in `seg` if seg_check's fast path passes for all
 * of it, else 0xffffffff (then the elements go one by one and fault where they must).
 */
function seg_range(seg: i32, off: u32, len: u32, need: u32): u32 {
  const attr = seg_attr(seg);
  const limit = seg_limit(seg);
  if ((attr & (need | ATTR_DC | ATTR_CODE)) == need && limit >= len - 1 && off <= limit - (len - 1)) {
    return seg_base(seg) + off;
  }
  return 0xffffffff;
}

/**
 * REP MOVS/STOS forwards with 32-bit addresses, as many elements (at most `max`) as lie in
 * one page of the source and one of the destination, moved at once. Only where the TLB fast
 * paths already allow every access: the pages are present, dirty-marked this epoch and hold
 * no decoded code, and nothing in the run can fault. Returns the elements done (0: none;
 * the caller does one the ordinary way). The registers end as the element loop leaves them.
 */
function bulk(kind: u32, size: u32, max: u32): u32 {
  const di = reg32(EDI);
  const dlin = seg_range(ES, di, size, ATTR_WRITE_OK);
  if (dlin == 0xffffffff) return 0;
  let cnt: u32 = (0x1000 - (dlin & 0xfff)) / size;
  let si: u32 = 0;
  let slin: u32 = 0;
  if (kind == S_MOVS) {
    si = reg32(ESI);
    slin = seg_range(data_seg(), si, size, ATTR_READ_OK);
    if (slin == 0xffffffff) return 0;
    const room: u32 = (0x1000 - (slin & 0xfff)) / size;
    if (room < cnt) cnt = room;
  }
  if (max < cnt) cnt = max;
  if (cnt < 2) return 0;
  const bytes = cnt * size;
  if (seg_range(ES, di, bytes, ATTR_WRITE_OK) == 0xffffffff) return 0;
  const hd = tlb_write_host(dlin);
  if (hd == 0) return 0;
  if (kind == S_MOVS) {
    if (seg_range(data_seg(), si, bytes, ATTR_READ_OK) == 0xffffffff) return 0;
    const hs = tlb_read_host(slin);
    if (hs == 0) return 0;
    // Element by element, a destination just above the source repeats the first bytes
    // (memory.copy would not): leave that to the loop.
    if (hd > hs && hd - hs < bytes) return 0;
    memory.copy(hd, hs, bytes);
    set_reg32(ESI, si + bytes);
  } else {
    const v = acc(size);
    if (size == 1) memory.fill(hd, <u8>v, bytes);
    else if (size == 2) for (let i: u32 = 0; i < bytes; i += 2) store<u16>(hd + i, <u16>v);
    else for (let i: u32 = 0; i < bytes; i += 4) store<u32>(hd + i, v);
  }
  set_reg32(EDI, di + bytes);
  return cnt;
}

function one(kind: u32, size: u32, shift: u32, delta: u32): void {
  switch (kind) {
    case S_MOVS: {
      const si = idx(ESI), di = idx(EDI);
      const v = rd(data_seg(), si, size);
      wr(ES, di, size, v);
      set_idx(ESI, si + delta);
      set_idx(EDI, di + delta);
      break;
    }
    case S_CMPS: {
      const si = idx(ESI), di = idx(EDI);
      const a = rd(data_seg(), si, size);
      const b = rd(ES, di, size);
      alu(7, a, b, shift);
      set_idx(ESI, si + delta);
      set_idx(EDI, di + delta);
      break;
    }
    case S_STOS: {
      const di = idx(EDI);
      wr(ES, di, size, acc(size));
      set_idx(EDI, di + delta);
      break;
    }
    case S_LODS: {
      const si = idx(ESI);
      set_acc(size, rd(data_seg(), si, size));
      set_idx(ESI, si + delta);
      break;
    }
    case S_SCAS: {
      const di = idx(EDI);
      const b = rd(ES, di, size);
      alu(7, acc(size), b, shift);
      set_idx(EDI, di + delta);
      break;
    }
    case S_INS: {
      const di = idx(EDI);
      // The destination must be writable before the port is read (SDM INS: the read has side effects).
      vcheck_write(ES, di, size);
      wr(ES, di, size, io_read(reg16(EDX), size));
      set_idx(EDI, di + delta);
      break;
    }
    default: { // OUTS
      const si = idx(ESI);
      io_write(reg16(EDX), size, rd(data_seg(), si, size));
      set_idx(ESI, si + delta);
      break;
    }
  }
}
