// The run loop, reset, interrupt acceptance and the host's entry points.

import {
  CPU_STATE, CPU_STATE_SIZE, INSTR_COUNT, RUN_TARGET, HOST_REQUEST, HALTED, SHUTDOWN,
  INTR_LINE, NMI_PENDING, NMI_MASKED, INHIBIT_UNTIL, STOP_REASON, A20_MASK, RAM_SIZE, RAM,
  REG_CR0, IDTR_LIMIT, EIP_START, ESP_START, EXC_DEPTH, TLB, TLB_ENTRIES, DIRTY_MAP,
  TLB_VALID_COUNT, DIRTY_COUNT, REG_EFLAGS, SEG_FAST_STALE, CODE_CACHE_OFF,
} from './layout';
import {
  set_seg, set_eip, set_reg32, eip, reg32, get_flag_if, set_eflags_raw, update_cs_cache,
  update_ss_cache, instr_count, get_eflags, flush_flags, ES, CS, SS, DS, FS, GS, LDTR, TR,
  ESP, EDX, FLAG_TF, ATTR_P, ATTR_S, ATTR_RW, ATTR_CODE, ATTR_ACCESSED, ATTR_VALID, CR0_ET,
} from './state';
import {
  tlb_flush, update_access_masks, fetch_invalidate, ATTR_READ_OK, ATTR_WRITE_OK, EXC_DB,
} from './memory';
import { do_interrupt, INT_HARDWARE, INT_EXCEPTION, set_cpl } from './system';
import { step, STOP_COUNT, STOP_HALT, STOP_HOST, STOP_SHUTDOWN } from './exec';
import { fpu_reset } from './fpu';
import { run_cached, code_cache_flush, blocks_may_run } from './codecache';

@external("host", "intr_ack")
declare function host_intr_ack(): i32;

/** Power-on / RESET state (SDM Vol. 3, 9.1.1), with `ramBytes` of RAM. */
export function reset(ramBytes: u32): void {
  memory.fill(CPU_STATE, 0, CPU_STATE_SIZE);
  store<u32>(CPU_STATE + RAM_SIZE, ramBytes);
  store<u32>(CPU_STATE + A20_MASK, 0xffffffff);
  store<u32>(CPU_STATE + REG_CR0, 0x60000000 | CR0_ET);
  store<u32>(CPU_STATE + IDTR_LIMIT, 0x3ff);
  store<u32>(CPU_STATE + 0x0c4, 0xffff); // GDTR limit
  const data = ATTR_P | ATTR_S | ATTR_RW | ATTR_ACCESSED | ATTR_VALID | ATTR_READ_OK | ATTR_WRITE_OK;
  set_seg(ES, 0, 0, 0xffff, data);
  set_seg(SS, 0, 0, 0xffff, data);
  set_seg(DS, 0, 0, 0xffff, data);
  set_seg(FS, 0, 0, 0xffff, data);
  set_seg(GS, 0, 0, 0xffff, data);
  set_seg(CS, 0xf000, 0xffff0000, 0xffff, data | ATTR_CODE);
  set_seg(LDTR, 0, 0, 0xffff, ATTR_P | 0x2 | ATTR_VALID);
  set_seg(TR, 0, 0, 0xffff, ATTR_P | 0xb | ATTR_VALID);
  set_eip(0xfff0);
  set_reg32(EDX, 0x633);
  set_eflags_raw(0);
  update_cs_cache();
  update_ss_cache();
  set_cpl(0);
  store<u32>(CPU_STATE + 0x100, 0);
  update_access_masks();
  tlb_flush_all();
  code_cache_flush();
  fpu_reset();
}

function tlb_flush_all(): void {
  memory.fill(TLB, 0, TLB_ENTRIES << 2);
  store<u32>(CPU_STATE + TLB_VALID_COUNT, 0);
  fetch_invalidate();
}

/** Clear the dirty map and list entirely (at attach, restore and after a full copy). */
export function dirty_clear_all(): void {
  const pages = load<u32>(CPU_STATE + RAM_SIZE) >>> 12;
  memory.fill(DIRTY_MAP, 0, pages);
  store<u32>(CPU_STATE + DIRTY_COUNT, 0);
  tlb_flush();
  // Called after the host rewrote RAM wholesale (restore): decoded code may be stale.
  code_cache_flush();
}

/**
 * Re-derive caches after the host wrote CPU_STATE as a whole (snapshot restore): the TLB,
 * the fetch page and the privilege-folded access masks depend on registers.
 */
export function state_loaded(): void {
  store<u32>(SEG_FAST_STALE, 1);
  update_cs_cache();
  update_ss_cache();
  update_access_masks();
  tlb_flush_all();
  code_cache_flush();
}

/**
 * Turn the decoded-code cache off (every instruction then runs in step()) or back on: for
 * tests that compare the two, and for ruling the cache out when chasing a bug.
 */
export function code_cache_enable(on: bool): void {
  store<u32>(CODE_CACHE_OFF, on ? 0 : 1);
  code_cache_flush();
}

/**
 * Run until INSTR_COUNT reaches RUN_TARGET, the CPU halts with nothing to wake it, the
 * host asks (HOST_REQUEST) or the CPU shuts down. Faults unwind through the host, which
 * calls deliver_fault() and then run() again. Returns a STOP_* code.
 */
export function run(): u32 {
  const target = load<u64>(CPU_STATE + RUN_TARGET);
  let count = load<u64>(CPU_STATE + INSTR_COUNT);
  while (true) {
    if (count >= target) return stop(STOP_COUNT);
    if (load<u32>(CPU_STATE + HOST_REQUEST) != 0) return stop(STOP_HOST);
    if (load<u32>(CPU_STATE + SHUTDOWN) != 0) return stop(STOP_SHUTDOWN);
    if ((load<u32>(CPU_STATE + INTR_LINE) | load<u32>(CPU_STATE + NMI_PENDING)) != 0) {
      if (accept_interrupt(count)) { count = load<u64>(CPU_STATE + INSTR_COUNT); continue; }
    }
    if (load<u32>(CPU_STATE + HALTED) != 0) return stop(STOP_HALT);
    if (blocks_may_run()) {
      const n = run_cached(target - count);
      if (n != 0) { count += n; continue; }
    }
    // TF is never a lazy flag: the stored EFLAGS word has it.
    const tf = (load<u32>(CPU_STATE + REG_EFLAGS) & FLAG_TF) != 0;
    step();
    count++;
    store<u64>(CPU_STATE + INSTR_COUNT, count);
    if (tf) single_step_trap();
  }
  return STOP_COUNT;
}

@inline function stop(reason: u32): u32 {
  store<u32>(CPU_STATE + STOP_REASON, reason);
  return reason;
}

/** The #DB trap after an instruction executed with TF set (SDM Vol. 3, 17.3.1.4). */
function single_step_trap(): void {
  store<u32>(CPU_STATE + EIP_START, eip());
  store<u32>(CPU_STATE + ESP_START, reg32(ESP));
  do_interrupt(EXC_DB, INT_EXCEPTION, false, 0);
}

/** Take an NMI or a maskable interrupt if the CPU can; true when one was delivered. */
function accept_interrupt(count: u64): bool {
  if (count < load<u64>(CPU_STATE + INHIBIT_UNTIL)) return false;
  store<u32>(CPU_STATE + EIP_START, eip());
  store<u32>(CPU_STATE + ESP_START, reg32(ESP));
  if (load<u32>(CPU_STATE + NMI_PENDING) != 0 && load<u32>(CPU_STATE + NMI_MASKED) == 0) {
    store<u32>(CPU_STATE + NMI_PENDING, 0);
    store<u32>(CPU_STATE + HALTED, 0);
    store<u32>(CPU_STATE + NMI_MASKED, 1);
    do_interrupt(2, INT_HARDWARE, false, 0);
    return true;
  }
  if (load<u32>(CPU_STATE + INTR_LINE) == 0 || !get_flag_if()) return false;
  const v = host_intr_ack();
  if (v < 0) return false;
  store<u32>(CPU_STATE + HALTED, 0);
  do_interrupt(<u32>v, INT_HARDWARE, false, 0);
  return true;
}
