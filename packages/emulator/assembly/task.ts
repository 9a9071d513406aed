// Hardware task switching (SDM Vol. 3, 7.3; the SWITCH-TASKS steps of the Vol. 2 JMP,
// CALL, IRET and INT pseudocode). Linux reaches it through the #DF task gate.
//
// Everything before the commit point (the selector and descriptor checks, reading the new
// TSS, saving the old state, the busy bits and the back link) is preceded by a probe of
// every page it touches, so a fault there leaves the CPU and memory as they were, apart
// from EIP/ESP which deliver_fault() restores anyway. After the commit point the new
// task's registers are loaded first and its segments qualified afterwards; a fault in that
// second part is delivered in the new task's context (SDM Vol. 3, 7.3 step 13, Table 7-1),
// which is why EIP_START/ESP_START are moved to the new task at the commit point.
//
// Not modelled: the T flag of a 32-bit TSS (a #DB trap on entering the task), since the
// core has no debug-register breakpoints either.

import {
  CPU_STATE, GDTR_BASE, REG_CR0, REG_CR3, REG_DR0, EIP_START, ESP_START,
} from './layout';
import {
  seg_sel, seg_base, seg_limit, seg_attr, set_seg, cpl, reg32, set_reg32, set_eip, eip, get_eflags,
  set_eflags_raw, update_cs_cache, update_ss_cache, stack32, cr0, ES, CS, SS, DS, FS, GS,
  LDTR, TR, ESP, ATTR_P, ATTR_S, ATTR_CODE, ATTR_RW, ATTR_DC, ATTR_VALID, ATTR_ACCESSED,
  FLAG_NT, FLAG_VM, CR0_PG, CR0_TS,
} from './state';
import {
  raise, translate, read16_sys, read32_sys, write16_sys, write32_sys, write16, write32,
  tlb_flush, fetch_invalidate, EXC_GP, EXC_NP, EXC_SS, EXC_TS,
} from './memory';
import {
  fetch_descriptor, desc_lo, desc_hi, desc_addr, desc_base, desc_limit, desc_attr,
  desc_dpl, set_desc_accessed, rights_of, set_cpl, load_seg_real, event_ext, frame_fits,
} from './system';

export const TS_JMP: u32 = 0;
export const TS_CALL: u32 = 1;
export const TS_IRET: u32 = 2;
/** An interrupt or exception through a task gate: nests like CALL. */
export const TS_INT: u32 = 3;

// 32-bit TSS (SDM Vol. 3, Figure 7-2). General registers and segment selectors are in
// encoding order, which is also the core's order (EAX..EDI, ES CS SS DS FS GS).
const T32_CR3: u32 = 0x1c;
const T32_EIP: u32 = 0x20;
const T32_EFLAGS: u32 = 0x24;
const T32_REGS: u32 = 0x28;
const T32_SEGS: u32 = 0x48;
const T32_LDT: u32 = 0x60;
const T32_MIN_LIMIT: u32 = 0x67;
// 16-bit TSS (SDM Vol. 3, Figure 7-11): no FS, GS or CR3.
const T16_IP: u32 = 0x0e;
const T16_FLAGS: u32 = 0x10;
const T16_REGS: u32 = 0x12;
const T16_SEGS: u32 = 0x22;
const T16_LDT: u32 = 0x2a;
const T16_MIN_LIMIT: u32 = 0x2b;

const TSS_BUSY: u32 = 0x200; // type bit 1 in the descriptor's high dword

// The incoming task's registers, read from its TSS before the commit point (after it the
// TSS may no longer be mapped at the same linear address: CR3 changes).
const NEW_REGS = memory.data(32);
const NEW_SEGS = memory.data(24);
let new_eip: u32 = 0;
let new_eflags: u32 = 0;
let new_cr3: u32 = 0;
let new_ldt: u32 = 0;

/** Make sure [lin, lin+len) can be accessed by the supervisor (descriptor and TSS accesses). */
function probe(lin: u32, len: u32, write: bool): void {
  translate(lin, write, false);
  const last = lin + len - 1;
  if ((last ^ lin) >>> 12) translate(last, write, false);
}

/**
 * Switch to the task whose TSS selector is `sel` (SDM Vol. 3, 7.3). `reason` is one of
 * TS_*. The caller has done the privilege checks of the TSS descriptor or task gate (JMP,
 * CALL and INT n only). For an exception through a task gate, `hasError` pushes `error`
 * on the new task's stack once the switch is complete.
 */
export function task_switch(sel: u32, reason: u32, hasError: bool, error: u32): void {
  const ext: u32 = reason == TS_INT ? event_ext : 0;
  const isIret = reason == TS_IRET;
  const nests = reason == TS_CALL || reason == TS_INT;
  // The TSS descriptor: in the GDT, available (busy for IRET), present, big enough.
  // JMP/CALL/INT fault with #GP, IRET with #TS (SDM JMP TASK-GATE; IRET exceptions).
  const selErr = (sel & 0xfffc) | ext;
  const badVec = isIret ? EXC_TS : EXC_GP;
  if ((sel & 4) != 0 || (sel & 0xfffc) == 0 || !fetch_descriptor(sel)) raise(badVec, true, selErr);
  const lo = desc_lo, hi = desc_hi, daddr = desc_addr;
  const type = (hi >>> 8) & 0x17; // S and type, the 32-bit bit left out
  if (type != (isIret ? 0x03 : 0x01)) raise(badVec, true, selErr);
  if ((hi & (1 << 15)) == 0) raise(EXC_NP, true, selErr);
  const is32 = (hi & (8 << 8)) != 0;
  const nbase = desc_base(lo, hi);
  const nlimit = desc_limit(lo, hi);
  const minLimit = is32 ? T32_MIN_LIMIT : T16_MIN_LIMIT;
  if (nlimit < minLimit) raise(EXC_TS, true, selErr);

  const oldSel = seg_sel(TR);
  const obase = seg_base(TR);
  const old32 = (seg_attr(TR) & 8) != 0;
  const oldDescHi = load<u32>(CPU_STATE + GDTR_BASE) + (oldSel & 0xfff8) + 4;
  const clearOldBusy = (reason == TS_JMP || isIret) && (oldSel & 0xfffc) != 0;

  // Page in everything the switch touches before changing any of it (SDM 7.3 step 5).
  if (old32) probe(obase + T32_EIP, T32_LDT - T32_EIP, true);
  else probe(obase + T16_IP, T16_LDT - T16_IP, true);
  probe(nbase, is32 ? T32_MIN_LIMIT + 1 : T16_MIN_LIMIT + 1, nests);
  if (clearOldBusy) probe(oldDescHi, 4, true);
  if (!isIret) probe(daddr + 4, 4, true);

  // Read the new task's state.
  if (is32) {
    new_cr3 = read32_sys(nbase + T32_CR3);
    new_eip = read32_sys(nbase + T32_EIP);
    new_eflags = read32_sys(nbase + T32_EFLAGS);
    for (let r: u32 = 0; r < 8; r++) store<u32>(NEW_REGS + (r << 2), read32_sys(nbase + T32_REGS + (r << 2)));
    for (let s: u32 = 0; s < 6; s++) store<u32>(NEW_SEGS + (s << 2), read16_sys(nbase + T32_SEGS + (s << 2)));
    new_ldt = read16_sys(nbase + T32_LDT);
  } else {
    new_eip = read16_sys(nbase + T16_IP);
    new_eflags = read16_sys(nbase + T16_FLAGS);
    // The upper halves of the general registers are not in a 16-bit TSS: they keep their
    // values (QEMU does the same; the SDM does not say).
    for (let r: u32 = 0; r < 8; r++) {
      const v = read16_sys(nbase + T16_REGS + (r << 1));
      store<u32>(NEW_REGS + (r << 2), (reg32(<i32>r) & 0xffff0000) | v);
    }
    for (let s: u32 = 0; s < 4; s++) store<u32>(NEW_SEGS + (s << 2), read16_sys(nbase + T16_SEGS + (s << 1)));
    store<u32>(NEW_SEGS + 16, 0); // FS and GS become null
    store<u32>(NEW_SEGS + 20, 0);
    new_ldt = read16_sys(nbase + T16_LDT);
  }

  // The outgoing task: JMP and IRET leave it (not busy); IRET clears NT in its saved
  // EFLAGS, so it can be re-entered later (SDM 7.3 steps 6-8, Table 7-2).
  if (clearOldBusy) write32_sys(oldDescHi, read32_sys(oldDescHi) & ~TSS_BUSY);
  let oldFlags = get_eflags();
  if (isIret) oldFlags &= ~FLAG_NT;
  if (old32) {
    write32_sys(obase + T32_EIP, eip());
    write32_sys(obase + T32_EFLAGS, oldFlags);
    for (let r: u32 = 0; r < 8; r++) write32_sys(obase + T32_REGS + (r << 2), reg32(<i32>r));
    for (let s: u32 = 0; s < 6; s++) write16_sys(obase + T32_SEGS + (s << 2), seg_sel(<i32>s));
  } else {
    write16_sys(obase + T16_IP, eip());
    write16_sys(obase + T16_FLAGS, oldFlags);
    for (let r: u32 = 0; r < 8; r++) write16_sys(obase + T16_REGS + (r << 1), reg32(<i32>r));
    for (let s: u32 = 0; s < 4; s++) write16_sys(obase + T16_SEGS + (s << 1), seg_sel(<i32>s));
  }
  // CALL and interrupts nest: the back link names the old task, NT is set below.
  if (nests) write16_sys(nbase, oldSel);
  if (!isIret) write32_sys(daddr + 4, hi | TSS_BUSY);

  // ---- Commit point: from here on the CPU is in the new task.
  set_seg(TR, sel, nbase, nlimit, desc_attr(hi | TSS_BUSY) | ATTR_VALID);
  store<u32>(CPU_STATE + REG_CR0, cr0() | CR0_TS);
  // A task switch clears the local breakpoint enables L0-L3 and LE of DR7 (SDM Vol. 3, 17.2.4).
  store<u32>(CPU_STATE + REG_DR0 + 7 * 4, load<u32>(CPU_STATE + REG_DR0 + 7 * 4) & ~0x155);
  let flags = is32 ? new_eflags : new_eflags & 0xffff;
  if (nests) flags |= FLAG_NT;
  set_eflags_raw(flags);
  set_eip(new_eip);
  for (let r: u32 = 0; r < 8; r++) set_reg32(<i32>r, load<u32>(NEW_REGS + (r << 2)));
  store<u32>(CPU_STATE + EIP_START, new_eip);
  store<u32>(CPU_STATE + ESP_START, reg32(ESP));
  // The selectors are loaded at once, their caches only when qualified: a fault below
  // leaves the rest unusable, as on hardware.
  for (let s: i32 = 0; s < 6; s++) set_seg(s, load<u32>(NEW_SEGS + (<u32>s << 2)), 0, 0, 0);
  set_seg(LDTR, new_ldt, 0, 0, 0);
  update_cs_cache();
  update_ss_cache();
  fetch_invalidate();
  // CPL 3 until SS is loaded, so that a fault in between switches to a stack from the
  // new TSS instead of pushing on an unqualified SS (what Bochs does).
  set_cpl(3);
  if (is32 && (cr0() & CR0_PG) != 0) {
    store<u32>(CPU_STATE + REG_CR3, new_cr3);
    tlb_flush();
  }

  load_task_ldt(ext);
  if (flags & FLAG_VM) {
    // A virtual-8086 task (32-bit TSS only): 8086 segments, CPL 3.
    for (let s: i32 = 0; s < 6; s++) load_seg_real(s, load<u32>(NEW_SEGS + (<u32>s << 2)));
  } else {
    load_task_segments(ext);
  }

  // An exception through a task gate pushes its error code on the new task's stack, with
  // the new TSS's size (SDM INT pseudocode, TASK-GATE; Vol. 3 7.3).
  if (hasError) {
    const n: u32 = is32 ? 4 : 2;
    const big = stack32();
    const top = big ? reg32(ESP) : reg32(ESP) & 0xffff;
    if (!frame_fits(seg_limit(SS), seg_attr(SS), big, top, n)) raise(EXC_SS, true, ext);
    const nsp = big ? top - n : (top - n) & 0xffff;
    if (n == 4) write32(seg_base(SS) + nsp, error); else write16(seg_base(SS) + nsp, error);
    if (big) set_reg32(ESP, nsp); else set_reg32(ESP, (reg32(ESP) & 0xffff0000) | nsp);
  }
  if (eip() > seg_limit(CS)) raise(EXC_GP, true, ext);
}

/** The new task's LDT: null, or an LDT descriptor in the GDT, present; else #TS(LDT). */
function load_task_ldt(ext: u32): void {
  const sel = new_ldt;
  const err = (sel & 0xfffc) | ext;
  if (sel & 4) raise(EXC_TS, true, err);
  if ((sel & 0xfffc) == 0) return;
  if (!fetch_descriptor(sel)) raise(EXC_TS, true, err);
  const attr = desc_attr(desc_hi);
  if ((attr & 0x1f) != 0x02) raise(EXC_TS, true, err);
  if ((attr & ATTR_P) == 0) raise(EXC_TS, true, err);
  set_seg(LDTR, sel, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi), attr | ATTR_VALID);
}

/**
 * Qualify and load CS, SS, then ES DS FS GS from the new TSS (SDM Vol. 3, Table 7-1). The
 * order is QEMU's; the error codes are the SDM's (a not-present SS is #SS, not #NP).
 */
function load_task_segments(ext: u32): void {
  const cs = load<u32>(NEW_SEGS + 4);
  const rpl = cs & 3;
  const csErr = (cs & 0xfffc) | ext;
  if ((cs & 0xfffc) == 0 || !fetch_descriptor(cs)) raise(EXC_TS, true, csErr);
  let attr = desc_attr(desc_hi);
  let dpl = desc_dpl(desc_hi);
  if ((attr & (ATTR_S | ATTR_CODE)) != (ATTR_S | ATTR_CODE)) raise(EXC_TS, true, csErr);
  if ((attr & ATTR_DC) ? dpl > rpl : dpl != rpl) raise(EXC_TS, true, csErr);
  if ((attr & ATTR_P) == 0) raise(EXC_NP, true, csErr);
  set_desc_accessed();
  set_seg(CS, cs, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi),
    attr | ATTR_VALID | ATTR_ACCESSED | rights_of(attr));
  update_cs_cache();
  fetch_invalidate();

  const ss = load<u32>(NEW_SEGS + 8);
  const ssErr = (ss & 0xfffc) | ext;
  if ((ss & 0xfffc) == 0 || !fetch_descriptor(ss)) raise(EXC_TS, true, ssErr);
  attr = desc_attr(desc_hi);
  dpl = desc_dpl(desc_hi);
  if ((attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != (ATTR_S | ATTR_RW)) raise(EXC_TS, true, ssErr);
  if ((attr & ATTR_P) == 0) raise(EXC_SS, true, ssErr);
  if (dpl != rpl || (ss & 3) != rpl) raise(EXC_TS, true, ssErr);
  set_desc_accessed();
  set_seg(SS, ss, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi),
    attr | ATTR_VALID | ATTR_ACCESSED | rights_of(attr));
  update_ss_cache();
  set_cpl(rpl);

  load_task_data_seg(ES, ext);
  load_task_data_seg(DS, ext);
  load_task_data_seg(FS, ext);
  load_task_data_seg(GS, ext);
}

function load_task_data_seg(s: i32, ext: u32): void {
  const sel = load<u32>(NEW_SEGS + (<u32>s << 2));
  if ((sel & 0xfffc) == 0) return; // a null selector is fine: the register is unusable
  const err = (sel & 0xfffc) | ext;
  if (!fetch_descriptor(sel)) raise(EXC_TS, true, err);
  const attr = desc_attr(desc_hi);
  const dpl = desc_dpl(desc_hi);
  if ((attr & ATTR_S) == 0 || (attr & (ATTR_CODE | ATTR_RW)) == ATTR_CODE) raise(EXC_TS, true, err);
  const conformingCode = (attr & (ATTR_CODE | ATTR_DC)) == (ATTR_CODE | ATTR_DC);
  if (!conformingCode && ((sel & 3) > dpl || cpl() > dpl)) raise(EXC_TS, true, err);
  if ((attr & ATTR_P) == 0) raise(EXC_NP, true, err);
  set_desc_accessed();
  set_seg(s, sel, desc_base(desc_lo, desc_hi), desc_limit(desc_lo, desc_hi), attr | ATTR_VALID | rights_of(attr));
}
