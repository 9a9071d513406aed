// Segmentation and control transfers between code segments: segment register loads,
// interrupt and exception delivery, far JMP/CALL/RET, IRET (SDM Vol. 3, chapters 5-7
// and the Vol. 2 pseudocode of each instruction).
//
// Every protected-mode transfer follows one pattern, because a fault unwinds through the
// host and deliver_fault() only rolls back EIP and ESP: read and check everything (the
// descriptors, the new stack's limits, its pages through probe_frame), then write the
// frame, then commit the registers. Nothing after the first register write can fault.

import {
  CPU_STATE, GDTR_BASE, GDTR_LIMIT, IDTR_BASE, IDTR_LIMIT, CPL, FAULT_VECTOR,
  FAULT_ERROR, FAULT_HAS_ERROR, EIP_START, ESP_START, EXC_DEPTH, SHUTDOWN,
  REG_CR0, INSTR_COUNT, NMI_MASKED,
} from './layout';
import {
  seg_sel, seg_base, seg_limit, seg_attr, set_seg, reg32, reg16, set_reg32, set_reg16,
  set_eip, eip, get_eflags, set_eflags_raw, update_cs_cache, update_ss_cache,
  protected_mode, v86_mode, cpl, iopl, stack32, ES, CS, SS, DS, FS, GS, LDTR, ESP, TR,
  ATTR_P, ATTR_S, ATTR_CODE, ATTR_RW, ATTR_DC, ATTR_DB, ATTR_VALID, ATTR_DPL_SHIFT,
  ATTR_ACCESSED, FLAG_IF, FLAG_TF, FLAG_NT, FLAG_VM, FLAG_RF, FLAG_IOPL, FLAG_AC,
  FLAG_VIF, FLAG_VIP, CR0_PE,
} from './state';
import {
  raise, gp, ss_fault, read32_sys, read16_sys, write8_sys, write16_sys, write32_sys,
  write16, write32, translate, ATTR_READ_OK, ATTR_WRITE_OK, EXC_GP, EXC_NP, EXC_SS, EXC_TS,
  EXC_DF, EXC_PF, EXC_DE, update_access_masks, fetch_invalidate, read16, vread16, vread32,
} from './memory';
import { o32, sp, set_sp, sp_add, push16, push32, check_stack_push } from './decode';
import { task_switch, TS_JMP, TS_CALL, TS_IRET, TS_INT } from './task';

// ---------------------------------------------------------------------------------------
// Descriptors.

/** The last descriptor read: low and high dwords, and its linear address. */
export let desc_lo: u32 = 0;
export let desc_hi: u32 = 0;
export let desc_addr: u32 = 0;

@inline export function desc_base(lo: u32, hi: u32): u32 { return (lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000); }
@inline export function desc_limit(lo: u32, hi: u32): u32 {
  const l = (lo & 0xffff) | (hi & 0xf0000);
  return (hi & (1 << 23)) ? (l << 12) | 0xfff : l;
}
@inline export function desc_attr(hi: u32): u32 { return (hi >>> 8) & 0xf0ff; }
@inline export function desc_dpl(hi: u32): u32 { return (hi >>> 13) & 3; }

/**
 * Read the descriptor for `sel` from the GDT or LDT into desc_lo/desc_hi. Returns false
 * when the selector's index is outside the table (the caller picks the fault).
 */
export function fetch_descriptor(sel: u32): bool {
  let base: u32, limit: u32;
  if (sel & 4) {
    if ((seg_attr(LDTR) & ATTR_VALID) == 0) return false;
    base = seg_base(LDTR);
    limit = seg_limit(LDTR);
  } else {
    base = load<u32>(CPU_STATE + GDTR_BASE);
    limit = load<u32>(CPU_STATE + GDTR_LIMIT);
  }
  const idx = sel & 0xfff8;
  if (idx + 7 > limit) return false;
  desc_addr = base + idx;
  desc_lo = read32_sys(desc_addr);
  desc_hi = read32_sys(desc_addr + 4);
  return true;
}

/** Set the accessed bit of the descriptor last fetched (a real write: it marks the page dirty). */
export function set_desc_accessed(): void {
  if ((desc_hi & (1 << 8)) == 0) {
    desc_hi |= 1 << 8;
    write8_sys(desc_addr + 5, desc_hi >>> 8);
  }
}

/**
 * Set the accessed bit of the descriptor at `addr` whose high dword is `hi`: the processor
 * does so whenever it loads a segment register from a descriptor (SDM Vol. 3, 3.4.5.1),
 * CS and SS included.
 */
export function set_accessed_at(addr: u32, hi: u32): void {
  if ((hi & (1 << 8)) == 0) write8_sys(addr + 5, (hi >>> 8) | 1);
}

/** The access rights a loaded segment grants, from its descriptor attributes. */
export function rights_of(attr: u32): u32 {
  if ((attr & ATTR_S) == 0) return 0;
  if (attr & ATTR_CODE) return (attr & ATTR_RW) ? ATTR_READ_OK : 0;
  return (attr & ATTR_RW) ? ATTR_READ_OK | ATTR_WRITE_OK : ATTR_READ_OK;
}

// Real-mode and V86 segments: base = selector * 16 (SDM Vol. 3, 20.1.1). Real mode keeps
// the cached limit and attributes (what "unreal mode" relies on); V86 forces 64 KiB,
// DPL 3, writable.
const REAL_ATTR: u32 = ATTR_P | ATTR_S | ATTR_RW | ATTR_ACCESSED | ATTR_VALID | ATTR_READ_OK | ATTR_WRITE_OK;
const V86_ATTR: u32 = REAL_ATTR | (3 << ATTR_DPL_SHIFT);

export function load_seg_real(s: i32, sel: u32): void {
  sel &= 0xffff;
  if (v86_mode()) {
    set_seg(s, sel, sel << 4, 0xffff, V86_ATTR);
  } else {
    set_seg(s, sel, sel << 4, seg_limit(s), seg_attr(s) | ATTR_VALID | ATTR_READ_OK | ATTR_WRITE_OK);
  }
  if (s == CS) { update_cs_cache(); fetch_invalidate(); }
  else if (s == SS) update_ss_cache();
}

/** MOV/POP to a segment register, LDS & co (SDM Vol. 2, MOV: "Loading a segment register"). */
export function load_seg(s: i32, sel: u32): void {
  sel &= 0xffff;
  if (!protected_mode() || v86_mode()) { load_seg_real(s, sel); return; }
  const rpl = sel & 3;
  const c = cpl();
  if ((sel & 0xfffc) == 0) {
    if (s == SS) gp(0);
    // A null selector loads; using the register later faults.
    set_seg(s, sel, 0, 0, 0);
    return;
  }
  if (!fetch_descriptor(sel)) gp(sel & 0xfffc);
  const attr = desc_attr(desc_hi);
  const dpl = desc_dpl(desc_hi);
  if (s == SS) {
    if (rpl != c || dpl != c) gp(sel & 0xfffc);
    if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != (ATTR_S | ATTR_RW)) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_SS, true, sel & 0xfffc);
  } else {
    if ((attr & ATTR_S) == 0) gp(sel & 0xfffc);
    if ((attr & (ATTR_CODE | ATTR_RW)) == ATTR_CODE) gp(sel & 0xfffc); // execute-only code
    const conformingCode = (attr & (ATTR_CODE | ATTR_DC)) == (ATTR_CODE | ATTR_DC);
    if (!conformingCode && (rpl > dpl || c > dpl)) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
  }
  set_desc_accessed();
  const a = desc_attr(desc_hi) | ATTR_VALID | rights_of(attr);
  set_seg(s, sel, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi), a);
  if (s == SS) update_ss_cache();
}

/** Load CS for a transfer that already passed its checks; `newCpl` becomes the CPL. */
export function commit_cs(sel: u32, lo: u32, hi: u32, newCpl: u32): void {
  const attr = desc_attr(hi);
  set_seg(CS, (sel & 0xfffc) | newCpl, desc_base(lo, hi), desc_limit(lo, hi),
    attr | ATTR_VALID | ATTR_ACCESSED | rights_of(attr));
  set_cpl(newCpl);
  update_cs_cache();
  fetch_invalidate();
}

export function set_cpl(c: u32): void {
  if (load<u32>(CPU_STATE + CPL) != c) {
    store<u32>(CPU_STATE + CPL, c);
    update_access_masks();
    fetch_invalidate();
  }
}

/** Check a code segment descriptor for a direct far JMP/CALL/RET target (SDM JMP/CALL). */
function check_code_desc(sel: u32, ext: u32): void {
  if ((sel & 0xfffc) == 0) gp(ext);
  if (!fetch_descriptor(sel)) gp((sel & 0xfffc) | ext);
  const attr = desc_attr(desc_hi);
  if ((attr & (ATTR_S | ATTR_CODE)) != (ATTR_S | ATTR_CODE)) gp((sel & 0xfffc) | ext);
}

/** Load the SS:ESP pair for privilege level `dpl` from the current TSS (SDM Vol. 3, 7.2.1). */
export let tss_ss: u32 = 0;
export let tss_esp: u32 = 0;
function tss_stack(dpl: u32, ext: u32): void {
  const attr = seg_attr(TR);
  const is32 = (attr & 0x8) != 0; // type 9/11: 32-bit TSS
  const base = seg_base(TR);
  // The limit tests are the SDM's (INT n and CALL pseudocode): +5 and +3.
  if (is32) {
    const off: u32 = 4 + dpl * 8;
    if (off + 5 > seg_limit(TR)) raise(EXC_TS, true, (seg_sel(TR) & 0xfffc) | ext);
    tss_esp = read32_sys(base + off);
    tss_ss = read16_sys(base + off + 4);
  } else {
    const off: u32 = 2 + dpl * 4;
    if (off + 3 > seg_limit(TR)) raise(EXC_TS, true, (seg_sel(TR) & 0xfffc) | ext);
    tss_esp = read16_sys(base + off);
    tss_ss = read16_sys(base + off + 2);
  }
}

/**
 * Check the SS that a stack switch loads: from the TSS (`vector` #TS) or from a far
 * return's stack (`vector` #GP), for privilege `dpl`. Leaves its descriptor in ss_lo/ss_hi.
 */
let ss_lo: u32 = 0;
let ss_hi: u32 = 0;
function check_new_ss(sel: u32, dpl: u32, vector: u32, ext: u32): void {
  if ((sel & 0xfffc) == 0) raise(vector, true, ext);
  const err = (sel & 0xfffc) | ext;
  if (!fetch_descriptor(sel)) raise(vector, true, err);
  const attr = desc_attr(desc_hi);
  if ((sel & 3) != dpl || desc_dpl(desc_hi) != dpl) raise(vector, true, err);
  if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != (ATTR_S | ATTR_RW)) raise(vector, true, err);
  if ((attr & ATTR_P) == 0) raise(EXC_SS, true, err);
  set_desc_accessed();
  ss_lo = desc_lo;
  ss_hi = desc_hi;
}

function commit_ss(sel: u32, lo: u32, hi: u32): void {
  const attr = desc_attr(hi);
  set_seg(SS, sel, desc_base(lo, hi), desc_limit(lo, hi), attr | ATTR_VALID | ATTR_ACCESSED | rights_of(attr));
  update_ss_cache();
}

/** After a return to an outer level, data segments the new CPL may not use become null (SDM RET/IRET). */
function invalidate_outer_segs(): void {
  const c = cpl();
  for (let s: i32 = 0; s < 6; s++) {
    if (s == CS || s == SS) continue;
    const attr = seg_attr(s);
    const conforming = (attr & (ATTR_CODE | ATTR_DC)) == (ATTR_CODE | ATTR_DC);
    const dpl = (attr >> ATTR_DPL_SHIFT) & 3;
    if ((attr & ATTR_VALID) == 0) continue;
    if (!conforming && dpl < c) set_seg(s, 0, 0, 0, 0);
  }
}

// ---------------------------------------------------------------------------------------
// Stack frames pushed by interrupts and call gates, checked before anything is written.

/** Whether [off, off+len) is inside a stack segment of `limit` and `attr` (expand-down aware, SDM Vol. 3, 5.3). */
function in_stack_limits(limit: u32, attr: u32, off: u32, len: u32): bool {
  const last = off + len - 1;
  if (last < off) return false;
  if ((attr & (ATTR_DC | ATTR_CODE)) == ATTR_DC) {
    const upper: u32 = (attr & ATTR_DB) ? 0xffffffff : 0xffff;
    return off > limit && last <= upper;
  }
  return last <= limit;
}

/**
 * Whether `total` bytes pushed below stack pointer `top` fit a stack segment of `limit`
 * and `attr`. A 16-bit stack wraps at 64 KiB, so its frame may be in two pieces.
 */
export function frame_fits(limit: u32, attr: u32, big: bool, top: u32, total: u32): bool {
  if (big) return in_stack_limits(limit, attr, top - total, total);
  const nsp = (top - total) & 0xffff;
  if (nsp + total <= 0x10000) return in_stack_limits(limit, attr, nsp, total);
  return in_stack_limits(limit, attr, nsp, 0x10000 - nsp) && in_stack_limits(limit, attr, 0, top);
}

/**
 * Make sure the pages of a frame of `count` slots of `n` bytes pushed below `top` (see
 * frame_fits) are writable, so its stores cannot fault. The slots are visited in push
 * order, so a #PF names the address of the first push that would fault, as on hardware;
 * each page is walked once.
 */
export function probe_frame(sbase: u32, big: bool, top: u32, n: u32, count: u32, user: bool): void {
  const mask: u32 = big ? 0xffffffff : 0xffff;
  let seen1: u32 = 1; // page bases already walked (1: none)
  let seen2: u32 = 1;
  for (let k: u32 = 1; k <= count; k++) {
    const lin = sbase + ((top - k * n) & mask);
    const p0 = lin & 0xfffff000;
    if (p0 != seen1 && p0 != seen2) { translate(lin, true, user); seen2 = seen1; seen1 = p0; }
    const p1 = (lin + n - 1) & 0xfffff000;
    if (p1 != seen1 && p1 != seen2) { translate(p1, true, user); seen2 = seen1; seen1 = p1; }
  }
}

/** Store one slot of a probed frame; `user` when the new privilege is 3 (paging rights). */
function wr(base: u32, off: u32, big: bool, is32: bool, v: u32, user: bool): void {
  const lin = base + (big ? off : off & 0xffff);
  if (user) {
    if (is32) write32(lin, v); else write16(lin, v);
  } else {
    if (is32) write32_sys(lin, v); else write16_sys(lin, v);
  }
}

/** ESP after a push on the new stack: a 16-bit stack changes SP only. */
function set_stack_pointer(big: bool, v: u32): void {
  if (big) set_reg32(ESP, v); else set_reg16(ESP, v);
}

// ---------------------------------------------------------------------------------------
// Interrupts and exceptions.

export const INT_HARDWARE: u32 = 0;
/** INT3 and INTO: gate DPL checked, return after the instruction, not IOPL-sensitive in V86. */
export const INT_SOFTWARE: u32 = 1;
export const INT_EXCEPTION: u32 = 2;
/** INT n: like INT_SOFTWARE, and IOPL-sensitive in V86 mode (SDM Vol. 3, 20.3.1). */
export const INT_SOFTWARE_N: u32 = 3;

/**
 * EXT, bit 0 of a selector error code: 1 while delivering an event external to the
 * program (a hardware interrupt or an exception), 0 for INT n/INT3/INTO (SDM Vol. 3, 6.13).
 * Set by do_interrupt for the faults its checks raise, and read by task_switch.
 */
export let event_ext: u32 = 0;

/**
 * Deliver interrupt `vector`. EIP must already hold the return address (the next
 * instruction for INT n and hardware interrupts, the faulting instruction for faults).
 * SDM Vol. 2 "INT n/INTO/INT3/INT1" pseudocode, Vol. 3 6.12.
 */
export function do_interrupt(vector: u32, kind: u32, hasError: bool, error: u32): void {
  if (!protected_mode()) { real_interrupt(vector); return; }
  const soft = kind == INT_SOFTWARE || kind == INT_SOFTWARE_N;
  const ext: u32 = soft ? 0 : 1;
  event_ext = ext;
  // Without VME only INT n is IOPL-sensitive; INT3 and INTO go through the IDT.
  if (kind == INT_SOFTWARE_N && v86_mode() && iopl() < 3) gp(0);
  const gateErr = (vector << 3) | 2 | ext;
  if ((vector << 3) + 7 > load<u32>(CPU_STATE + IDTR_LIMIT)) gp(gateErr);
  const ga = load<u32>(CPU_STATE + IDTR_BASE) + (vector << 3);
  const glo = read32_sys(ga);
  const ghi = read32_sys(ga + 4);
  const gtype = (ghi >>> 8) & 0x1f; // S bit and type
  if (gtype != 0x05 && gtype != 0x06 && gtype != 0x07 && gtype != 0x0e && gtype != 0x0f) gp(gateErr);
  if (soft && desc_dpl(ghi) < cpl()) gp(gateErr);
  if ((ghi & (1 << 15)) == 0) raise(EXC_NP, true, gateErr);
  if (gtype == 0x05) {
    task_switch(glo >>> 16, TS_INT, hasError, error);
    return;
  }
  const gate32 = (gtype & 8) != 0;
  const trap = (gtype & 1) != 0;
  const sel = glo >>> 16;
  const offset = gate32 ? (glo & 0xffff) | (ghi & 0xffff0000) : glo & 0xffff;
  if ((sel & 0xfffc) == 0) gp(ext);
  if (!fetch_descriptor(sel)) gp((sel & 0xfffc) | ext);
  const clo = desc_lo, chi = desc_hi, caddr = desc_addr;
  const cattr = desc_attr(chi);
  const cdpl = desc_dpl(chi);
  if ((cattr & (ATTR_S | ATTR_CODE)) != (ATTR_S | ATTR_CODE) || cdpl > cpl()) gp((sel & 0xfffc) | ext);
  if ((cattr & ATTR_P) == 0) raise(EXC_NP, true, (sel & 0xfffc) | ext);
  const conforming = (cattr & ATTR_DC) != 0;
  const climit = desc_limit(clo, chi);
  const flags = get_eflags();
  const fromV86 = (flags & FLAG_VM) != 0;
  const oldCs = seg_sel(CS);
  const oldEip = eip();
  const n: u32 = gate32 ? 4 : 2;
  const newFlags = flags & ~(FLAG_TF | FLAG_NT | FLAG_VM | FLAG_RF | (trap ? 0 : FLAG_IF));
  if (!conforming && cdpl < cpl()) {
    // Inter-privilege: switch to the TSS stack of the target level.
    if (fromV86 && cdpl != 0) gp((sel & 0xfffc) | ext);
    tss_stack(cdpl, ext);
    const newSs = tss_ss, newEsp = tss_esp;
    check_new_ss(newSs, cdpl, EXC_TS, ext);
    const nlo = ss_lo, nhi = ss_hi;
    const big = (nhi & (1 << 22)) != 0;
    const sbase = desc_base(nlo, nhi);
    const count: u32 = (fromV86 ? 9 : 5) + (hasError ? 1 : 0);
    const total = count * n;
    const top = big ? newEsp : newEsp & 0xffff;
    if (!frame_fits(desc_limit(nlo, nhi), desc_attr(nhi), big, top, total)) {
      raise(EXC_SS, true, (newSs & 0xfffc) | ext);
    }
    if (offset > climit) gp(ext);
    probe_frame(sbase, big, top, n, count, false);
    set_accessed_at(caddr, chi);
    let p = top;
    if (fromV86) {
      p -= n; wr(sbase, p, big, gate32, seg_sel(GS), false);
      p -= n; wr(sbase, p, big, gate32, seg_sel(FS), false);
      p -= n; wr(sbase, p, big, gate32, seg_sel(DS), false);
      p -= n; wr(sbase, p, big, gate32, seg_sel(ES), false);
    }
    p -= n; wr(sbase, p, big, gate32, seg_sel(SS), false);
    p -= n; wr(sbase, p, big, gate32, reg32(ESP), false);
    p -= n; wr(sbase, p, big, gate32, flags, false);
    p -= n; wr(sbase, p, big, gate32, oldCs, false);
    p -= n; wr(sbase, p, big, gate32, oldEip, false);
    if (hasError) { p -= n; wr(sbase, p, big, gate32, error, false); }
    // Leaving V86 mode: the data segments of the 8086 program mean nothing to the handler.
    if (fromV86) {
      set_seg(ES, 0, 0, 0, 0);
      set_seg(DS, 0, 0, 0, 0);
      set_seg(FS, 0, 0, 0, 0);
      set_seg(GS, 0, 0, 0, 0);
    }
    set_eflags_raw(newFlags);
    commit_ss((newSs & 0xfffc) | cdpl, nlo, nhi);
    set_stack_pointer(big, p);
    commit_cs(sel, clo, chi, cdpl);
  } else {
    // Same privilege: a conforming handler, or DPL = CPL.
    if (fromV86) gp((sel & 0xfffc) | ext);
    const big = stack32();
    const top = big ? reg32(ESP) : reg16(ESP);
    const count: u32 = 3 + (hasError ? 1 : 0);
    if (!frame_fits(seg_limit(SS), seg_attr(SS), big, top, count * n)) raise(EXC_SS, true, ext);
    if (offset > climit) gp(ext);
    const user = cpl() == 3;
    const sbase = seg_base(SS);
    probe_frame(sbase, big, top, n, count, user);
    set_accessed_at(caddr, chi);
    let p = top;
    p -= n; wr(sbase, p, big, gate32, flags, user);
    p -= n; wr(sbase, p, big, gate32, oldCs, user);
    p -= n; wr(sbase, p, big, gate32, oldEip, user);
    if (hasError) { p -= n; wr(sbase, p, big, gate32, error, user); }
    set_stack_pointer(big, p);
    set_eflags_raw(newFlags);
    commit_cs(sel, clo, chi, cpl());
  }
  set_eip(offset);
}

/** Real-mode delivery through the interrupt vector table (SDM Vol. 3, 20.1.4). */
function real_interrupt(vector: u32): void {
  if ((vector << 2) + 3 > load<u32>(CPU_STATE + IDTR_LIMIT)) gp(0);
  const ivt = load<u32>(CPU_STATE + IDTR_BASE) + (vector << 2);
  const newIp = read16(ivt);
  const newCs = read16(ivt + 2);
  const flags = get_eflags();
  push16(flags);
  push16(seg_sel(CS));
  push16(eip());
  set_eflags_raw(flags & ~(FLAG_IF | FLAG_TF | FLAG_AC | FLAG_RF));
  load_seg_real(CS, newCs);
  set_eip(newIp);
}

// Exception classes for double-fault detection (SDM Vol. 3, Table 6-5).
function contributory(v: u32): bool { return v == EXC_DE || (v >= 10 && v <= 13); }

/**
 * Deliver the exception recorded by raise(). The instruction is rolled back to its start
 * (faults are restartable), then the vector goes through the IDT. A fault while delivering
 * escalates to #DF, and one during #DF shuts the CPU down (triple fault).
 *
 * A task switch sets EIP_START/ESP_START to the new task's EIP/ESP at its commit point,
 * so a fault after that point is rolled back to, and reported in, the new task.
 */
export function deliver_fault(): void {
  // Delivery counts as a step, so a guest whose handlers fault forever still advances the
  // instruction counter and every bounded run loop ends.
  store<u64>(CPU_STATE + INSTR_COUNT, load<u64>(CPU_STATE + INSTR_COUNT) + 1);
  const vector = load<u32>(CPU_STATE + FAULT_VECTOR);
  const error = load<u32>(CPU_STATE + FAULT_ERROR);
  const hasError = load<u32>(CPU_STATE + FAULT_HAS_ERROR) != 0;
  const depth = load<u32>(CPU_STATE + EXC_DEPTH);
  // A fault is reported at the instruction that caused it, with its stack pointer.
  set_eip(load<u32>(CPU_STATE + EIP_START));
  set_reg32(ESP, load<u32>(CPU_STATE + ESP_START));
  if (depth != 0) {
    const first = depth & 0xff;
    if (first == EXC_DF + 1) {
      store<u32>(CPU_STATE + SHUTDOWN, 1);
      store<u32>(CPU_STATE + EXC_DEPTH, 0);
      return;
    }
    const prev = first - 1;
    const df = (contributory(prev) && contributory(vector)) ||
      (prev == EXC_PF && (contributory(vector) || vector == EXC_PF));
    if (df) {
      store<u32>(CPU_STATE + EXC_DEPTH, EXC_DF + 1);
      do_interrupt(EXC_DF, INT_EXCEPTION, true, 0);
      store<u32>(CPU_STATE + EXC_DEPTH, 0);
      return;
    }
  }
  store<u32>(CPU_STATE + EXC_DEPTH, vector + 1);
  do_interrupt(vector, INT_EXCEPTION, hasError && protected_mode(), error);
  store<u32>(CPU_STATE + EXC_DEPTH, 0);
}

/** Called by the host if delivery itself was interrupted by a fault: see deliver_fault. */
export function exc_depth(): u32 { return load<u32>(CPU_STATE + EXC_DEPTH); }

// ---------------------------------------------------------------------------------------
// Far transfers.

export function far_jump(sel: u32, off: u32): void {
  if (!protected_mode() || v86_mode()) {
    load_seg_real(CS, sel);
    set_eip(off);
    return;
  }
  if ((sel & 0xfffc) == 0) gp(0);
  if (!fetch_descriptor(sel)) gp(sel & 0xfffc);
  const attr = desc_attr(desc_hi);
  const dpl = desc_dpl(desc_hi);
  const c = cpl();
  if (attr & ATTR_S) {
    if ((attr & ATTR_CODE) == 0) gp(sel & 0xfffc);
    if (attr & ATTR_DC) { if (dpl > c) gp(sel & 0xfffc); }
    else if ((sel & 3) > c || dpl != c) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
    if (off > desc_limit(desc_lo, desc_hi)) gp(0);
    set_desc_accessed();
    commit_cs(sel, desc_lo, desc_hi, c);
    set_eip(off);
    return;
  }
  const type = attr & 0xf;
  if (type == 0x4 || type == 0xc) {
    // Call gate: JMP stays at the same privilege, parameters ignored (SDM JMP, "call gate").
    if (dpl < c || dpl < (sel & 3)) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
    const glo = desc_lo, ghi = desc_hi;
    const csel = glo >>> 16;
    const goff = type == 0xc ? (glo & 0xffff) | (ghi & 0xffff0000) : glo & 0xffff;
    check_code_desc(csel, 0);
    const cattr = desc_attr(desc_hi);
    const cdpl = desc_dpl(desc_hi);
    if ((cattr & ATTR_DC) ? cdpl > c : cdpl != c) gp(csel & 0xfffc);
    if ((cattr & ATTR_P) == 0) raise(EXC_NP, true, csel & 0xfffc);
    if (goff > desc_limit(desc_lo, desc_hi)) gp(0);
    set_desc_accessed();
    commit_cs(csel, desc_lo, desc_hi, c);
    set_eip(goff);
    return;
  }
  if (type == 0x5 || type == 0x1 || type == 0x9) {
    // A task gate or an available TSS; a busy TSS is #GP below (SDM JMP, TASK-STATE-SEGMENT).
    if (dpl < c || dpl < (sel & 3)) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
    task_switch(type == 0x5 ? desc_lo >>> 16 : sel, TS_JMP, false, 0);
    return;
  }
  gp(sel & 0xfffc);
}

export function far_call(sel: u32, off: u32): void {
  if (!protected_mode() || v86_mode()) {
    const oldCs = seg_sel(CS);
    const oldIp = eip();
    // Both words must fit before anything changes.
    if (o32) push_pair32(oldCs, oldIp); else push_pair16(oldCs, oldIp);
    load_seg_real(CS, sel);
    set_eip(off);
    return;
  }
  if ((sel & 0xfffc) == 0) gp(0);
  if (!fetch_descriptor(sel)) gp(sel & 0xfffc);
  const attr = desc_attr(desc_hi);
  const dpl = desc_dpl(desc_hi);
  const c = cpl();
  if (attr & ATTR_S) {
    if ((attr & ATTR_CODE) == 0) gp(sel & 0xfffc);
    if (attr & ATTR_DC) { if (dpl > c) gp(sel & 0xfffc); }
    else if ((sel & 3) > c || dpl != c) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
    const lo = desc_lo, hi = desc_hi, addr = desc_addr;
    // SDM CALL: room for the return address (#SS(0)) is checked before the target's limit.
    check_stack_push(2, o32 ? 4 : 2);
    if (off > desc_limit(lo, hi)) gp(0);
    set_accessed_at(addr, hi);
    const oldCs = seg_sel(CS);
    const oldIp = eip();
    if (o32) { push32(oldCs); push32(oldIp); } else { push16(oldCs); push16(oldIp); }
    commit_cs(sel, lo, hi, c);
    set_eip(off);
    return;
  }
  const type = attr & 0xf;
  if (type == 0x4 || type == 0xc) { call_gate(sel, c); return; }
  if (type == 0x5 || type == 0x1 || type == 0x9) {
    if (dpl < c || dpl < (sel & 3)) gp(sel & 0xfffc);
    if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
    task_switch(type == 0x5 ? desc_lo >>> 16 : sel, TS_CALL, false, 0);
    return;
  }
  gp(sel & 0xfffc);
}

function push_pair32(a: u32, b: u32): void {
  check_stack_push(2, 4);
  push32(a); push32(b);
}
function push_pair16(a: u32, b: u32): void {
  check_stack_push(2, 2);
  push16(a); push16(b);
}

/**
 * CALL through a call gate (SDM CALL pseudocode, Vol. 3 5.8.5): to an inner level with a
 * stack switch from the TSS and `count` parameters copied from the caller's stack, or at
 * the same level (a conforming target, or DPL = CPL).
 */
function call_gate(sel: u32, c: u32): void {
  const gdpl = desc_dpl(desc_hi);
  const gattr = desc_attr(desc_hi);
  if (gdpl < c || gdpl < (sel & 3)) gp(sel & 0xfffc);
  if ((gattr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
  const glo = desc_lo, ghi = desc_hi;
  const gate32 = (gattr & 0xf) == 0xc;
  const csel = glo >>> 16;
  const goff = gate32 ? (glo & 0xffff) | (ghi & 0xffff0000) : glo & 0xffff;
  const params = ghi & 0x1f;
  check_code_desc(csel, 0);
  const clo = desc_lo, chi = desc_hi, caddr = desc_addr;
  const cattr = desc_attr(chi);
  const cdpl = desc_dpl(chi);
  if (cdpl > c) gp(csel & 0xfffc);
  if ((cattr & ATTR_P) == 0) raise(EXC_NP, true, csel & 0xfffc);
  const climit = desc_limit(clo, chi);
  const n: u32 = gate32 ? 4 : 2;
  const oldCs = seg_sel(CS);
  const oldEip = eip();
  if ((cattr & ATTR_DC) == 0 && cdpl < c) {
    tss_stack(cdpl, 0);
    const newSs = tss_ss, newEsp = tss_esp;
    check_new_ss(newSs, cdpl, EXC_TS, 0);
    const nlo = ss_lo, nhi = ss_hi;
    const big = (nhi & (1 << 22)) != 0;
    const sbase = desc_base(nlo, nhi);
    const total = (4 + params) * n;
    const top = big ? newEsp : newEsp & 0xffff;
    if (!frame_fits(desc_limit(nlo, nhi), desc_attr(nhi), big, top, total)) ss_fault(newSs & 0xfffc);
    if (goff > climit) gp(0);
    probe_frame(sbase, big, top, n, 4 + params, false);
    set_accessed_at(caddr, chi);
    const oldBig = stack32();
    const oldSp = oldBig ? reg32(ESP) : reg16(ESP);
    let p = top;
    p -= n; wr(sbase, p, big, gate32, seg_sel(SS), false);
    p -= n; wr(sbase, p, big, gate32, reg32(ESP), false);
    // The parameters keep their order: the one at the caller's ESP lands at the callee's
    // ESP + 8 (+ 4 for 16-bit gates). Reading them may fault on the caller's stack, which
    // is fine: nothing but memory below the new ESP has been written yet.
    for (let i: i32 = <i32>params - 1; i >= 0; i--) {
      const src = oldBig ? oldSp + <u32>i * n : (oldSp + <u32>i * n) & 0xffff;
      const v = gate32 ? vread32(SS, src) : vread16(SS, src);
      p -= n; wr(sbase, p, big, gate32, v, false);
    }
    p -= n; wr(sbase, p, big, gate32, oldCs, false);
    p -= n; wr(sbase, p, big, gate32, oldEip, false);
    commit_ss((newSs & 0xfffc) | cdpl, nlo, nhi);
    set_stack_pointer(big, p);
    commit_cs(csel, clo, chi, cdpl);
  } else {
    const big = stack32();
    const top = big ? reg32(ESP) : reg16(ESP);
    if (!frame_fits(seg_limit(SS), seg_attr(SS), big, top, 2 * n)) ss_fault(0);
    if (goff > climit) gp(0);
    const user = c == 3;
    const sbase = seg_base(SS);
    probe_frame(sbase, big, top, n, 2, user);
    set_accessed_at(caddr, chi);
    let p = top;
    p -= n; wr(sbase, p, big, gate32, oldCs, user);
    p -= n; wr(sbase, p, big, gate32, oldEip, user);
    set_stack_pointer(big, p);
    commit_cs(csel, clo, chi, c);
  }
  set_eip(goff);
}

/** RETF [imm16] (SDM RET, far return, protected mode). */
export function far_ret(imm: u32): void {
  const n: u32 = o32 ? 4 : 2;
  if (!protected_mode() || v86_mode()) {
    const s = sp();
    const off = o32 ? read_stack(s, 4) : read_stack(s, 2);
    const sel = read_stack(sp_add(s, n), 2);
    load_seg_real(CS, sel);
    set_eip(off);
    set_sp(sp_add(s, 2 * n + imm));
    return;
  }
  const s = sp();
  const off = read_stack(s, n);
  const sel = read_stack(sp_add(s, n), 2);
  const c = cpl();
  const rpl = sel & 3;
  if (rpl < c) gp(sel & 0xfffc);
  check_code_desc(sel, 0);
  const lo = desc_lo, hi = desc_hi, addr = desc_addr;
  const attr = desc_attr(hi);
  const dpl = desc_dpl(hi);
  if ((attr & ATTR_DC) ? dpl > rpl : dpl != rpl) gp(sel & 0xfffc);
  if ((attr & ATTR_P) == 0) raise(EXC_NP, true, sel & 0xfffc);
  if (rpl == c) {
    if (off > desc_limit(lo, hi)) gp(0);
    set_accessed_at(addr, hi);
    commit_cs(sel, lo, hi, c);
    set_eip(off);
    set_sp(sp_add(s, 2 * n + imm));
    return;
  }
  // Return to an outer level: SS:ESP follow the parameters on the stack.
  const at = sp_add(s, 2 * n + imm);
  const newEsp = read_stack(at, n);
  const newSs = read_stack(sp_add(at, n), 2);
  check_new_ss(newSs, rpl, EXC_GP, 0);
  const nlo = ss_lo, nhi = ss_hi;
  if (off > desc_limit(lo, hi)) gp(0);
  set_accessed_at(addr, hi);
  commit_cs(sel, lo, hi, rpl);
  commit_ss(newSs, nlo, nhi);
  const big = (nhi & (1 << 22)) != 0;
  set_stack_pointer(big, newEsp + imm);
  set_eip(off);
  invalidate_outer_segs();
}

function read_stack(off: u32, n: u32): u32 {
  const o = stack32() ? off : off & 0xffff;
  // Stack reads obey SS limits like any access.
  return n == 4 ? vread32(SS, o) : vread16(SS, o);
}

/** IRET / IRETD (SDM IRET pseudocode). */
export function iret(): void {
  // IRET ends NMI blocking even when it faults (SDM Vol. 3, 6.7.1).
  store<u32>(CPU_STATE + NMI_MASKED, 0);
  const n: u32 = o32 ? 4 : 2;
  const s = sp();
  if (!protected_mode()) {
    const ip = read_stack(s, n);
    const cs = read_stack(sp_add(s, n), 2);
    const fl = read_stack(sp_add(s, 2 * n), n);
    load_seg_real(CS, cs);
    set_eip(ip);
    set_sp(sp_add(s, 3 * n));
    const old = get_eflags();
    const keep: u32 = o32 ? (FLAG_VM | FLAG_VIF | FLAG_VIP) : 0xffff0000;
    set_eflags_raw((old & keep) | (fl & ~keep));
    return;
  }
  if (v86_mode()) {
    // IOPL-sensitive in V86 (SDM Vol. 3, 20.2.7); without VME, IOPL < 3 faults.
    if (iopl() < 3) gp(0);
    const ip = read_stack(s, n);
    const cs = read_stack(sp_add(s, n), 2);
    const fl = read_stack(sp_add(s, 2 * n), n);
    // The V86 code segment is 64 KiB (SDM IRET: "IF tempEIP not within CS limit #GP(0)").
    if (ip > 0xffff) gp(0);
    load_seg_real(CS, cs);
    set_eip(ip);
    set_sp(sp_add(s, 3 * n));
    const old = get_eflags();
    const keep: u32 = FLAG_IOPL | FLAG_VM | FLAG_VIF | FLAG_VIP | (o32 ? 0 : 0xffff0000);
    set_eflags_raw((old & keep) | (fl & ~keep));
    return;
  }
  const cur = get_eflags();
  if (cur & FLAG_NT) {
    // Return from a nested task to the one in the back link (SDM IRET, TASK-RETURN).
    task_switch(read16_sys(seg_base(TR)), TS_IRET, false, 0);
    return;
  }
  const ip = read_stack(s, n);
  const cs = read_stack(sp_add(s, n), 2);
  const fl = read_stack(sp_add(s, 2 * n), n);
  const c = cpl();
  if (o32 && (fl & FLAG_VM) && c == 0) { iret_to_v86(s, ip, cs, fl); return; }
  const rpl = cs & 3;
  if (rpl < c) gp(cs & 0xfffc);
  check_code_desc(cs, 0);
  const lo = desc_lo, hi = desc_hi, addr = desc_addr;
  const attr = desc_attr(hi);
  const dpl = desc_dpl(hi);
  if ((attr & ATTR_DC) ? dpl > rpl : dpl != rpl) gp(cs & 0xfffc);
  if ((attr & ATTR_P) == 0) raise(EXC_NP, true, cs & 0xfffc);
  // EFLAGS bits the return may change depend on the *old* CPL and IOPL.
  let mask: u32 = 0x3f7fd5 & ~(FLAG_VM | FLAG_VIF | FLAG_VIP | FLAG_IOPL | FLAG_IF);
  if (c == 0) mask |= FLAG_IOPL | FLAG_VIF | FLAG_VIP;
  if (c <= iopl()) mask |= FLAG_IF;
  if (!o32) mask &= 0xffff;
  const newFlags = (cur & ~mask) | (fl & mask);
  if (rpl == c) {
    if (ip > desc_limit(lo, hi)) gp(0);
    set_accessed_at(addr, hi);
    commit_cs(cs, lo, hi, c);
    set_eip(ip);
    set_sp(sp_add(s, 3 * n));
    set_eflags_raw(newFlags);
    return;
  }
  const at = sp_add(s, 3 * n);
  const newEsp = read_stack(at, n);
  const newSs = read_stack(sp_add(at, n), 2);
  check_new_ss(newSs, rpl, EXC_GP, 0);
  const nlo = ss_lo, nhi = ss_hi;
  if (ip > desc_limit(lo, hi)) gp(0);
  set_accessed_at(addr, hi);
  commit_cs(cs, lo, hi, rpl);
  commit_ss(newSs, nlo, nhi);
  set_stack_pointer((nhi & (1 << 22)) != 0, newEsp);
  set_eip(ip);
  set_eflags_raw(newFlags);
  invalidate_outer_segs();
}

/** IRETD from CPL 0 with EFLAGS.VM set: enter virtual-8086 mode (SDM Vol. 3, 20.2.1). */
function iret_to_v86(s: u32, ip: u32, cs: u32, fl: u32): void {
  const esp = read_stack(sp_add(s, 12), 4);
  const ss = read_stack(sp_add(s, 16), 4);
  const es = read_stack(sp_add(s, 20), 4);
  const ds = read_stack(sp_add(s, 24), 4);
  const fs = read_stack(sp_add(s, 28), 4);
  const gs = read_stack(sp_add(s, 32), 4);
  set_eflags_raw(fl);
  set_cpl(3);
  load_seg_real(CS, cs);
  load_seg_real(SS, ss);
  load_seg_real(ES, es);
  load_seg_real(DS, ds);
  load_seg_real(FS, fs);
  load_seg_real(GS, gs);
  set_reg32(ESP, esp);
  set_eip(ip & 0xffff);
}

/** Protected-mode CR0.PE transitions keep CPL in step (SDM Vol. 3, 9.9). */
export function on_cr0_pe_change(): void {
  if ((load<u32>(CPU_STATE + REG_CR0) & CR0_PE) == 0) set_cpl(0);
}
