// Guest memory: paging, the software TLB, dirty-page tracking, and the linear and
// segmented access functions every instruction uses.
//
// A TLB entry is one u32 per linear page: the physical page base in bits 12-31 and the
// TLB_* flags below. The fast paths test (entry & mask) == TLB_VALID with a mask that
// already folds in the current privilege, so a RAM access that hits costs a load, an
// and, a compare and the access itself, and never leaves WASM.
//
// Exceptions leave through host_raise(): the host throws, unwinding the WASM stack back
// to its run loop (like QEMU's siglongjmp out of TCG code), then calls deliver_fault().
// So an instruction must not commit architectural state before its last possible fault.

import {
  CPU_STATE, TLB, DIRTY_MAP, DIRTY_LIST, DIRTY_COUNT, TLB_VALID, TLB_VALID_MAX, TLB_VALID_COUNT,
  RAM, RAM_SIZE, A20_MASK, REG_CR0, REG_CR2, REG_CR3, REG_CR4, FAULT_VECTOR, FAULT_ERROR,
  FAULT_HAS_ERROR, TLB_ENTRIES, CODE_PAGE, ESP_START, REG_EAX, CORE_VARS, SEG_FAST, SEG_FAST_STALE, SEG_FLAT,
} from './layout';

const REG_ESP: u32 = REG_EAX + 4 * 4;
import {
  cpl, seg_base, seg_limit, seg_attr, CR0_PG, CR0_WP, CR4_PSE, SS, CS, ATTR_DC, ATTR_CODE,
  ATTR_DB,
} from './state';

// The core's hot variables live in linear memory (CORE_VARS) rather than in WASM globals:
// V8 reaches a global through the instance object, a load more than linear memory takes.
// They are caches and bookkeeping, not CPU state, so they sit outside CPU_STATE.
export const V_TLB_READ_MASK: u32 = CORE_VARS + 0x00;
export const V_TLB_WRITE_MASK: u32 = CORE_VARS + 0x04;
export const V_BLOCK_STOP: u32 = CORE_VARS + 0x08;
const V_IN_BLOCK: u32 = CORE_VARS + 0x0c;
export const V_FW_LO: u32 = CORE_VARS + 0x10;
export const V_FW_LEN: u32 = CORE_VARS + 0x14;
const V_FW_HOST: u32 = CORE_VARS + 0x18;
const V_FW_CUR: u32 = CORE_VARS + 0x1c;
const V_INSN_START: u32 = CORE_VARS + 0x20;

@external("host", "raise")
declare function host_raise(): void;
@external("host", "mmio_read")
declare function host_mmio_read(addr: u32, size: u32): u32;
@external("host", "mmio_write")
declare function host_mmio_write(addr: u32, size: u32, value: u32): void;

export const TLB_VALID_BIT: u32 = 1 << 0;
export const TLB_NO_USER: u32 = 1 << 1;
export const TLB_NO_WRITE_USER: u32 = 1 << 2;
export const TLB_NO_WRITE_KERNEL: u32 = 1 << 3;
/** Writes take the slow path: the PTE's D bit or this epoch's dirty mark is still to be set. */
export const TLB_NOT_DIRTY: u32 = 1 << 4;
export const TLB_MMIO: u32 = 1 << 5;
/** The page holds decoded code (CODE_PAGE): writes take the slow path, which forgets it. */
export const TLB_CODE: u32 = 1 << 6;

// Computed segment access rights kept in SEG_ATTR beside the descriptor bits.
export const ATTR_READ_OK: u32 = 1 << 17;
export const ATTR_WRITE_OK: u32 = 1 << 18;

// Exception vectors.
export const EXC_DE: u32 = 0;
export const EXC_DB: u32 = 1;
export const EXC_NMI: u32 = 2;
export const EXC_BP: u32 = 3;
export const EXC_OF: u32 = 4;
export const EXC_BR: u32 = 5;
export const EXC_UD: u32 = 6;
export const EXC_NM: u32 = 7;
export const EXC_DF: u32 = 8;
export const EXC_TS: u32 = 10;
export const EXC_NP: u32 = 11;
export const EXC_SS: u32 = 12;
export const EXC_GP: u32 = 13;
export const EXC_PF: u32 = 14;
export const EXC_MF: u32 = 16;
export const EXC_AC: u32 = 17;

// Masks for the fast paths, recomputed when CPL or paging state changes.

export function update_access_masks(): void {
  if (cpl() == 3) {
    store<u32>(V_TLB_READ_MASK, TLB_VALID_BIT | TLB_MMIO | TLB_NO_USER);
    store<u32>(V_TLB_WRITE_MASK, TLB_VALID_BIT | TLB_MMIO | TLB_NOT_DIRTY | TLB_CODE | TLB_NO_USER | TLB_NO_WRITE_USER);
  } else {
    store<u32>(V_TLB_READ_MASK, TLB_VALID_BIT | TLB_MMIO);
    store<u32>(V_TLB_WRITE_MASK, TLB_VALID_BIT | TLB_MMIO | TLB_NOT_DIRTY | TLB_CODE | TLB_NO_WRITE_KERNEL);
  }
}

/**
 * Set when something a running decoded block depends on may have changed: its code was
 * written (by the CPU through any alias, or by DMA), or a host device was called (MMIO),
 * which may raise an interrupt or ask the run loop to stop. The block executor checks it
 * after every instruction and returns to the run loop.
 */
@inline export function block_stop(): bool { return load<u32>(V_BLOCK_STOP) != 0; }
@inline export function clear_block_stop(): void { store<u32>(V_BLOCK_STOP, 0); }

// ---------------------------------------------------------------------------------------
// Raising exceptions.

/**
 * True while a decoded block runs (codecache.ts). Its instructions change ESP only after
 * their last possible fault, so ESP at the fault is ESP at the instruction's start and
 * raise() records ESP_START for them, which saves a store per instruction.
 */
@inline export function set_in_block(v: bool): void { store<u32>(V_IN_BLOCK, v ? 1 : 0); }

export function raise(vector: u32, hasError: bool, error: u32): void {
  if (load<u32>(V_IN_BLOCK) != 0) {
    store<u32>(CPU_STATE + ESP_START, load<u32>(CPU_STATE + REG_ESP));
    store<u32>(V_IN_BLOCK, 0);
  }
  store<u32>(CPU_STATE + FAULT_VECTOR, vector);
  store<u32>(CPU_STATE + FAULT_ERROR, error);
  store<u32>(CPU_STATE + FAULT_HAS_ERROR, hasError ? 1 : 0);
  host_raise();
  unreachable();
}
export function gp(error: u32): void { raise(EXC_GP, true, error); }
export function ud(): void { raise(EXC_UD, false, 0); }
export function ss_fault(error: u32): void { raise(EXC_SS, true, error); }

// ---------------------------------------------------------------------------------------
// Dirty pages: a byte per physical page plus the list of pages in first-write order, so
// collecting an epoch's pages costs what was dirtied, not the size of RAM.

@inline function ram_size(): u32 { return load<u32>(CPU_STATE + RAM_SIZE); }

export function mark_dirty(ppage: u32): void {
  if (load<u8>(DIRTY_MAP + ppage) == 0) {
    store<u8>(DIRTY_MAP + ppage, 1);
    const n = load<u32>(CPU_STATE + DIRTY_COUNT);
    store<u32>(DIRTY_LIST + (n << 2), ppage);
    store<u32>(CPU_STATE + DIRTY_COUNT, n + 1);
  }
}

/**
 * Host DMA into RAM: mark every page of [addr, addr+len) dirty and forget decoded code on
 * them. Host writes into RAM must come here (Cpu.markDirty): the decoded-code cache relies
 * on it as much as dirty tracking does.
 */
export function mark_dirty_range(addr: u32, len: u32): void {
  if (len == 0) return;
  const last = (addr + len - 1) >>> 12;
  const limit = ram_size() >>> 12;
  for (let p = addr >>> 12; p <= last && p < limit; p++) ram_written(p);
}

// ---------------------------------------------------------------------------------------
// Pages holding decoded code. CODE_PAGE[page] is 0, or the generation the page's decoded
// blocks were made under (codecache.ts checks it before running one). Every TLB entry of
// such a page has TLB_CODE, so CPU writes to it through any linear alias take the slow
// path and reach ram_written(), which drops the generation: the blocks die at once.

let code_gen: u32 = 0;

@inline export function code_page_gen(ppage: u32): u32 { return load<u32>(CODE_PAGE + (ppage << 2)); }

/**
 * Give `ppage` a new code generation (it is about to get decoded blocks) and take the
 * write fast path away from every TLB entry that maps it. Returns 0 when generations ran
 * out: the caller must forget all decoded code (code_pages_clear) first.
 */
export function code_page_register(ppage: u32): u32 {
  const gen = code_gen + 1;
  if (gen == 0) return 0;
  code_gen = gen;
  store<u32>(CODE_PAGE + (ppage << 2), gen);
  const v = load<u32>(CPU_STATE + TLB_VALID_COUNT);
  if (v > TLB_VALID_MAX) {
    // The list of filled entries overflowed: refill everything instead of scanning 4 MiB.
    tlb_flush();
    return gen;
  }
  for (let i: u32 = 0; i < v; i++) {
    const a = TLB + (load<u32>(TLB_VALID + (i << 2)) << 2);
    const e = load<u32>(a);
    if ((e >>> 12) == ppage && (e & (TLB_VALID_BIT | TLB_MMIO)) == TLB_VALID_BIT) store<u32>(a, e | TLB_CODE);
  }
  return gen;
}

/** Forget which pages hold decoded code (stale TLB_CODE bits only cost a slow write). */
export function code_pages_clear(): void {
  memory.fill(CODE_PAGE, 0, (ram_size() >>> 12) << 2);
  code_gen = 0;
}

/** Bookkeeping of a write into RAM page `ppage` that did not take the TLB fast path. */
function ram_written(ppage: u32): void {
  mark_dirty(ppage);
  if (code_page_gen(ppage) != 0) {
    store<u32>(CODE_PAGE + (ppage << 2), 0);
    store<u32>(V_BLOCK_STOP, 1);
  }
}

/**
 * Start a new epoch: forget the dirty list and make every cached writable mapping take
 * the slow path once more, so the next write to any page is recorded again.
 */
export function dirty_reset(): void {
  const n = load<u32>(CPU_STATE + DIRTY_COUNT);
  for (let i: u32 = 0; i < n; i++) store<u8>(DIRTY_MAP + load<u32>(DIRTY_LIST + (i << 2)), 0);
  store<u32>(CPU_STATE + DIRTY_COUNT, 0);
  const v = load<u32>(CPU_STATE + TLB_VALID_COUNT);
  if (v > TLB_VALID_MAX) {
    for (let i: u32 = 0; i < TLB_ENTRIES; i++) {
      const a = TLB + (i << 2);
      const e = load<u32>(a);
      if (e != 0) store<u32>(a, e | TLB_NOT_DIRTY);
    }
  } else {
    for (let i: u32 = 0; i < v; i++) {
      const a = TLB + (load<u32>(TLB_VALID + (i << 2)) << 2);
      const e = load<u32>(a);
      if (e != 0) store<u32>(a, e | TLB_NOT_DIRTY);
    }
  }
}

// ---------------------------------------------------------------------------------------
// TLB.

export function tlb_flush(): void {
  const v = load<u32>(CPU_STATE + TLB_VALID_COUNT);
  if (v > TLB_VALID_MAX) {
    memory.fill(TLB, 0, TLB_ENTRIES << 2);
  } else {
    for (let i: u32 = 0; i < v; i++) store<u32>(TLB + (load<u32>(TLB_VALID + (i << 2)) << 2), 0);
  }
  store<u32>(CPU_STATE + TLB_VALID_COUNT, 0);
  fetch_invalidate();
}

export function tlb_flush_page(lin: u32): void {
  store<u32>(TLB + ((lin >>> 12) << 2), 0);
  fetch_invalidate();
}

function tlb_set(page: u32, entry: u32): void {
  const a = TLB + (page << 2);
  if (load<u32>(a) == 0) {
    const v = load<u32>(CPU_STATE + TLB_VALID_COUNT);
    if (v < TLB_VALID_MAX) store<u32>(TLB_VALID + (v << 2), page);
    store<u32>(CPU_STATE + TLB_VALID_COUNT, v + 1);
  }
  store<u32>(a, entry);
}

@inline function a20(p: u32): u32 { return p & load<u32>(CPU_STATE + A20_MASK); }

function page_fault(lin: u32, error: u32): void {
  store<u32>(CPU_STATE + REG_CR2, lin);
  raise(EXC_PF, true, error);
}

/** What translate() returns for a probe that would have faulted. */
const PROBE_FAULT: u32 = 0xffffffff;

/**
 * Walk the page tables for `lin` (SDM Vol. 3, 4.3), set accessed/dirty bits, fill the TLB
 * and return the physical address. `user` is the privilege of the access (CPL 3 and not an
 * implicit supervisor access such as a descriptor table read). A `probe` raises nothing:
 * where the access would fault it returns PROBE_FAULT, having changed nothing but the
 * accessed bits of the entries it read on the way (as the access itself would have).
 */
export function translate(lin: u32, write: bool, user: bool, probe: bool = false): u32 {
  const cr0 = load<u32>(CPU_STATE + REG_CR0);
  const page = lin >>> 12;
  let phys: u32;
  let flags: u32 = TLB_VALID_BIT;
  if ((cr0 & CR0_PG) == 0) {
    phys = a20(lin & 0xfffff000);
  } else {
    const cr3 = load<u32>(CPU_STATE + REG_CR3);
    const pdeAddr = a20((cr3 & 0xfffff000) + ((lin >>> 22) << 2));
    let pde = phys_read32(pdeAddr);
    const errUser: u32 = user ? 4 : 0;
    const errWrite: u32 = write ? 2 : 0;
    if ((pde & 1) == 0) { if (probe) return PROBE_FAULT; page_fault(lin, errUser | errWrite); }
    const wp = (cr0 & CR0_WP) != 0;
    if ((pde & 0x80) != 0 && (load<u32>(CPU_STATE + REG_CR4) & CR4_PSE) != 0) {
      // A 4 MiB page: the PDE is the leaf.
      const isUser = (pde & 4) != 0;
      const isWritable = (pde & 2) != 0;
      if (user && !isUser) { if (probe) return PROBE_FAULT; page_fault(lin, 1 | errUser | errWrite); }
      if (write && !isWritable && (user || wp)) { if (probe) return PROBE_FAULT; page_fault(lin, 1 | errUser | errWrite); }
      const newPde = pde | 0x20 | (write ? 0x40 : 0);
      if (newPde != pde) { phys_write32(pdeAddr, newPde); pde = newPde; }
      phys = a20((pde & 0xffc00000) | (lin & 0x3ff000));
      if (!isUser) flags |= TLB_NO_USER;
      if (!isWritable) { flags |= TLB_NO_WRITE_USER; if (wp) flags |= TLB_NO_WRITE_KERNEL; }
      if ((pde & 0x40) == 0) flags |= TLB_NOT_DIRTY;
    } else {
      const pteAddr = a20((pde & 0xfffff000) + (((lin >>> 12) & 0x3ff) << 2));
      let pte = phys_read32(pteAddr);
      if ((pte & 1) == 0) { if (probe) return PROBE_FAULT; page_fault(lin, errUser | errWrite); }
      const isUser = (pde & pte & 4) != 0;
      const isWritable = (pde & pte & 2) != 0;
      if (user && !isUser) { if (probe) return PROBE_FAULT; page_fault(lin, 1 | errUser | errWrite); }
      if (write && !isWritable && (user || wp)) { if (probe) return PROBE_FAULT; page_fault(lin, 1 | errUser | errWrite); }
      if ((pde & 0x20) == 0) phys_write32(pdeAddr, pde | 0x20);
      const newPte = pte | 0x20 | (write ? 0x40 : 0);
      if (newPte != pte) { phys_write32(pteAddr, newPte); pte = newPte; }
      phys = a20(pte & 0xfffff000);
      if (!isUser) flags |= TLB_NO_USER;
      if (!isWritable) { flags |= TLB_NO_WRITE_USER; if (wp) flags |= TLB_NO_WRITE_KERNEL; }
      if ((pte & 0x40) == 0) flags |= TLB_NOT_DIRTY;
    }
  }
  const ppage = phys >>> 12;
  if (phys >= ram_size()) {
    flags |= TLB_MMIO;
  } else {
    if (write) mark_dirty(ppage);
    else if (load<u8>(DIRTY_MAP + ppage) == 0) flags |= TLB_NOT_DIRTY;
    if (code_page_gen(ppage) != 0) flags |= TLB_CODE;
  }
  tlb_set(page, phys | flags);
  return phys | (lin & 0xfff);
}

// ---------------------------------------------------------------------------------------
// Physical access (page walks, DMA-like core paths). Marks dirty on write.

export function phys_read8(p: u32): u32 {
  if (p < ram_size()) return load<u8>(RAM + p);
  return mmio_read(p, 1) & 0xff;
}
export function phys_read16(p: u32): u32 {
  if (p <= ram_size() - 2) return load<u16>(RAM + p);
  return phys_read8(p) | (phys_read8(p + 1) << 8);
}
export function phys_read32(p: u32): u32 {
  if (p <= ram_size() - 4) return load<u32>(RAM + p);
  if ((p & 3) == 0 && p >= ram_size()) return mmio_read(p, 4);
  return phys_read16(p) | (phys_read16(p + 2) << 16);
}
export function phys_write8(p: u32, v: u32): void {
  if (p < ram_size()) { ram_written(p >>> 12); store<u8>(RAM + p, <u8>v); return; }
  mmio_write(p, 1, v & 0xff);
}
export function phys_write16(p: u32, v: u32): void {
  if (p <= ram_size() - 2) {
    ram_written(p >>> 12);
    if (((p + 1) & 0xfff) == 0) ram_written((p + 1) >>> 12);
    store<u16>(RAM + p, <u16>v);
    return;
  }
  phys_write8(p, v); phys_write8(p + 1, v >>> 8);
}
export function phys_write32(p: u32, v: u32): void {
  if (p <= ram_size() - 4) {
    ram_written(p >>> 12);
    if ((p & 0xfff) > 0xffc) ram_written((p + 3) >>> 12);
    store<u32>(RAM + p, v);
    return;
  }
  if ((p & 3) == 0 && p >= ram_size()) { mmio_write(p, 4, v); return; }
  phys_write16(p, v); phys_write16(p + 2, v >>> 16);
}

// A device may raise an interrupt or ask the run loop to stop from inside an MMIO access.
function mmio_read(p: u32, size: u32): u32 {
  const v = host_mmio_read(p, size);
  store<u32>(V_BLOCK_STOP, 1);
  return v;
}
function mmio_write(p: u32, size: u32, v: u32): void {
  host_mmio_write(p, size, v);
  store<u32>(V_BLOCK_STOP, 1);
}

// ---------------------------------------------------------------------------------------
// Linear access with the current privilege. The *_sys variants are implicit supervisor
// accesses (descriptor tables, TSS, IDT), which ignore CPL (SDM Vol. 3, 4.6.1).

@inline function user_access(): bool { return cpl() == 3; }

@inline export function read8(lin: u32): u32 {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_READ_MASK)) == TLB_VALID_BIT) return load<u8>(RAM + (e & 0xfffff000) + (lin & 0xfff));
  return read8_slow(lin);
}
@inline export function read16(lin: u32): u32 {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_READ_MASK)) == TLB_VALID_BIT && (lin & 0xfff) <= 0xffe) {
    return load<u16>(RAM + (e & 0xfffff000) + (lin & 0xfff));
  }
  return read16_slow(lin, user_access());
}
@inline export function read32(lin: u32): u32 {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_READ_MASK)) == TLB_VALID_BIT && (lin & 0xfff) <= 0xffc) {
    return load<u32>(RAM + (e & 0xfffff000) + (lin & 0xfff));
  }
  return read32_slow(lin, user_access());
}

function read8_slow(lin: u32): u32 { return phys_read8(translate(lin, false, user_access())); }
function write8_slow(lin: u32, v: u32): void { phys_write8(translate(lin, true, user_access()), v); }

function read16_slow(lin: u32, user: bool): u32 {
  if ((lin & 0xfff) == 0xfff) {
    const p0 = translate(lin, false, user);
    const p1 = translate(lin + 1, false, user);
    return phys_read8(p0) | (phys_read8(p1) << 8);
  }
  return phys_read16(translate(lin, false, user));
}
function read32_slow(lin: u32, user: bool): u32 {
  if ((lin & 0xfff) > 0xffc) {
    const p0 = translate(lin, false, user);
    const p1 = translate((lin + 3) & 0xfffff000, false, user);
    let v: u32 = 0;
    for (let i: u32 = 0; i < 4; i++) {
      const l = lin + i;
      const p = (l & 0xfff) >= (lin & 0xfff) ? p0 + i : p1 + (l & 0xfff);
      v |= phys_read8(p) << (i << 3);
    }
    return v;
  }
  return phys_read32(translate(lin, false, user));
}

@inline export function write8(lin: u32, v: u32): void {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_WRITE_MASK)) == TLB_VALID_BIT) { store<u8>(RAM + (e & 0xfffff000) + (lin & 0xfff), <u8>v); return; }
  write8_slow(lin, v);
}
@inline export function write16(lin: u32, v: u32): void {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_WRITE_MASK)) == TLB_VALID_BIT && (lin & 0xfff) <= 0xffe) {
    store<u16>(RAM + (e & 0xfffff000) + (lin & 0xfff), <u16>v);
    return;
  }
  write16_slow(lin, v, user_access());
}
@inline export function write32(lin: u32, v: u32): void {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_WRITE_MASK)) == TLB_VALID_BIT && (lin & 0xfff) <= 0xffc) {
    store<u32>(RAM + (e & 0xfffff000) + (lin & 0xfff), v);
    return;
  }
  write32_slow(lin, v, user_access());
}

function write16_slow(lin: u32, v: u32, user: bool): void {
  if ((lin & 0xfff) == 0xfff) {
    // Translate both pages before writing either, so a fault leaves memory untouched.
    const p0 = translate(lin, true, user);
    const p1 = translate(lin + 1, true, user);
    phys_write8(p0, v);
    phys_write8(p1, v >>> 8);
    return;
  }
  phys_write16(translate(lin, true, user), v);
}
function write32_slow(lin: u32, v: u32, user: bool): void {
  if ((lin & 0xfff) > 0xffc) {
    const p0 = translate(lin, true, user);
    const p1 = translate((lin + 3) & 0xfffff000, true, user);
    for (let i: u32 = 0; i < 4; i++) {
      const l = lin + i;
      const p = (l & 0xfff) >= (lin & 0xfff) ? p0 + i : p1 + (l & 0xfff);
      phys_write8(p, v >>> (i << 3));
    }
    return;
  }
  phys_write32(translate(lin, true, user), v);
}

/** Make sure [lin, lin+len) can be written with the current privilege (faults if not). */
export function check_write_lin(lin: u32, len: u32): void {
  const user = user_access();
  const last = lin + len - 1;
  translate(lin, true, user);
  if ((last ^ lin) >>> 12) translate(last, true, user);
}
/**
 * The host address of linear `lin` if the TLB lets a read (a write) through its fast path
 * there, else 0: for bulk copies that must not fault or skip dirty and code bookkeeping.
 */
@inline export function tlb_read_host(lin: u32): u32 {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  return (e & load<u32>(V_TLB_READ_MASK)) == TLB_VALID_BIT ? RAM + (e & 0xfffff000) + (lin & 0xfff) : 0;
}
@inline export function tlb_write_host(lin: u32): u32 {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  return (e & load<u32>(V_TLB_WRITE_MASK)) == TLB_VALID_BIT ? RAM + (e & 0xfffff000) + (lin & 0xfff) : 0;
}

/** check_write_lin, without a page walk when the TLB already allows the write. */
@inline export function check_write_lin_fast(lin: u32, len: u32): void {
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_WRITE_MASK)) != TLB_VALID_BIT || (lin & 0xfff) > 0x1000 - len) check_write_lin(lin, len);
}
export function check_read_lin(lin: u32, len: u32): void {
  const user = user_access();
  const last = lin + len - 1;
  translate(lin, false, user);
  if ((last ^ lin) >>> 12) translate(last, false, user);
}
/** check_read_lin, without a page walk when the TLB already allows the read. */
@inline function check_read_lin_fast(lin: u32, len: u32): void {
  if (tlb_read_host(lin) == 0 || (lin & 0xfff) > 0x1000 - len) check_read_lin(lin, len);
}

export function read8_sys(lin: u32): u32 { return phys_read8(translate(lin, false, false)); }
export function read16_sys(lin: u32): u32 { return read16_slow(lin, false); }
export function read32_sys(lin: u32): u32 { return read32_slow(lin, false); }
export function write8_sys(lin: u32, v: u32): void { phys_write8(translate(lin, true, false), v); }
export function write16_sys(lin: u32, v: u32): void { write16_slow(lin, v, false); }
export function write32_sys(lin: u32, v: u32): void { write32_slow(lin, v, false); }

// ---------------------------------------------------------------------------------------
// Segmented (virtual) access: limit and rights checks (SDM Vol. 3, 5.3), then linear.

/** Fault for a segment check on `seg`: #SS for the stack segment, #GP otherwise. */
@inline function seg_fault(seg: i32): void {
  if (seg == SS) ss_fault(0); else gp(0);
}

/** Check `len` bytes at `off` in `seg` for `need` (ATTR_READ_OK and/or ATTR_WRITE_OK); return the linear address. */
@inline export function seg_check(seg: i32, off: u32, len: u32, need: u32): u32 {
  const attr = seg_attr(seg);
  const limit = seg_limit(seg);
  // The common case: an expand-up data segment with the rights, the access inside the limit.
  if ((attr & (need | ATTR_DC | ATTR_CODE)) == need && limit >= len - 1 && off <= limit - (len - 1)) {
    return seg_base(seg) + off;
  }
  return seg_check_slow(seg, off, len, need);
}

// Segment checks for the decoded-block executor, folded per segment register into one
// bound per kind of access: SEG_FAST + seg * 16 holds the base and, for reads, writes and
// read-modify-writes, the exclusive upper bound of the offsets where a 1- to 4-byte access
// passes seg_check's fast path (0: none does). Accesses beyond it, and of code or
// expand-down segments, take seg_check_slow. Refilled when set_seg() has marked it stale,
// before a run of blocks: segment registers change only in the interpreter.
export const SF_BASE: u32 = 0;
export const SF_READ: u32 = 4;
export const SF_WRITE: u32 = 8;
export const SF_RMW: u32 = 12;

export function seg_fast_refresh(): void {
  if (load<u32>(SEG_FAST_STALE) == 0) return;
  store<u32>(SEG_FAST_STALE, 0);
  let flat: u32 = 0;
  for (let s: i32 = 0; s < 6; s++) {
    const attr = seg_attr(s);
    const limit = seg_limit(s);
    const t = SEG_FAST + (<u32>s << 4);
    // A 4-byte access at `off` passes when off <= limit - 3, i.e. off < limit - 2.
    const bound: u32 = limit >= 3 ? limit - 2 : 0;
    const kind = attr & (ATTR_READ_OK | ATTR_WRITE_OK | ATTR_DC | ATTR_CODE);
    store<u32>(t + SF_BASE, seg_base(s));
    store<u32>(t + SF_READ, (kind & ~ATTR_WRITE_OK) == ATTR_READ_OK ? bound : 0);
    store<u32>(t + SF_WRITE, (kind & ~ATTR_READ_OK) == ATTR_WRITE_OK ? bound : 0);
    store<u32>(t + SF_RMW, kind == (ATTR_READ_OK | ATTR_WRITE_OK) ? bound : 0);
    if (kind == (ATTR_READ_OK | ATTR_WRITE_OK) && seg_base(s) == 0 && limit == 0xffffffff) flat |= 1 << s;
  }
  store<u32>(SEG_FLAT, flat);
}

/**
 * seg_check() for the block executor: `sf` is SEG_FAST's byte offset of the segment
 * (seg * 16), `kind` SF_READ, SF_WRITE or SF_RMW matching `need`.
 */
@inline export function seg_check_fast(sf: u32, off: u32, len: u32, kind: u32, need: u32): u32 {
  if (off < load<u32>(sf + kind, SEG_FAST)) return load<u32>(sf, SEG_FAST + SF_BASE) + off;
  return seg_check_slow(<i32>(sf >> 4), off, len, need);
}

function seg_check_slow(seg: i32, off: u32, len: u32, need: u32): u32 {
  const attr = seg_attr(seg);
  if ((attr & need) != need) seg_fault(seg);
  const limit = seg_limit(seg);
  const last = off + len - 1;
  if ((attr & (ATTR_DC | ATTR_CODE)) == ATTR_DC) {
    // Expand-down: valid offsets are limit+1 .. 0xFFFF or 0xFFFFFFFF (SDM Vol. 3, 5.3).
    const upper: u32 = (attr & ATTR_DB) ? 0xffffffff : 0xffff;
    if (off <= limit || last > upper || last < off) seg_fault(seg);
  } else {
    if (last > limit || last < off) seg_fault(seg);
  }
  return seg_base(seg) + off;
}

@inline export function vread8(seg: i32, off: u32): u32 { return read8(seg_check(seg, off, 1, ATTR_READ_OK)); }
@inline export function vread16(seg: i32, off: u32): u32 { return read16(seg_check(seg, off, 2, ATTR_READ_OK)); }
@inline export function vread32(seg: i32, off: u32): u32 { return read32(seg_check(seg, off, 4, ATTR_READ_OK)); }
@inline export function vwrite8(seg: i32, off: u32, v: u32): void { write8(seg_check(seg, off, 1, ATTR_WRITE_OK), v); }
@inline export function vwrite16(seg: i32, off: u32, v: u32): void { write16(seg_check(seg, off, 2, ATTR_WRITE_OK), v); }
@inline export function vwrite32(seg: i32, off: u32, v: u32): void { write32(seg_check(seg, off, 4, ATTR_WRITE_OK), v); }

/** Pre-check a multi-part store (FNSAVE, far pointers): segment limit and paging. */
export function vcheck_write(seg: i32, off: u32, len: u32): void {
  check_write_lin_fast(seg_check(seg, off, len, ATTR_WRITE_OK), len);
}
export function vcheck_read(seg: i32, off: u32, len: u32): void {
  check_read_lin_fast(seg_check(seg, off, len, ATTR_READ_OK), len);
}

// ---------------------------------------------------------------------------------------
// Instruction fetch through a window: the range of EIP values [fw_lo, fw_lo + fw_len) that
// lie on one present code page and inside CS.limit, with the host address of EIP 0 in
// fw_host, so the common fetch is a subtract, a compare and a load. Bytes are read from RAM
// at every fetch, so a store into code (self-modifying code, through any alias) is seen by
// the next instruction without any invalidation.

/**
 * The part of the window the current instruction may use: it ends 15 bytes after the
 * instruction's first byte, so the length limit (SDM Vol. 2, 2.3.11) costs nothing per byte
 * and is checked in fetch_slow.
 */

@inline export function fw_lo(): u32 { return load<u32>(V_FW_LO); }
@inline export function fw_len(): u32 { return load<u32>(V_FW_LEN); }
@inline export function fw_host(): u32 { return load<u32>(V_FW_HOST); }
@inline export function fw_cur(): u32 { return load<u32>(V_FW_CUR); }

export function fetch_invalidate(): void { store<u32>(V_FW_LEN, 0); store<u32>(V_FW_CUR, 0); }

/** Called at the first byte of every instruction. */
@inline export function fetch_begin(ip: u32): void {
  store<u32>(V_INSN_START, ip);
  const rel = ip - load<u32>(V_FW_LO);
  store<u32>(V_FW_CUR, rel < load<u32>(V_FW_LEN) ? min(load<u32>(V_FW_LEN), rel + 15) : 0);
}

/** Fetch the byte at CS:ip when it is outside the window, and open a window around it. */
export function fetch_slow(ip: u32): u32 {
  if (ip - load<u32>(V_INSN_START) >= 15) gp(0);
  const limit = seg_limit(CS);
  if (ip > limit) gp(0);
  const lin = seg_base(CS) + ip;
  // The TLB first: an instruction that crosses into the next page comes here every time.
  const host = tlb_read_host(lin);
  const p = host != 0 ? host - RAM : translate(lin, false, user_access());
  if (p >= ram_size()) { store<u32>(V_FW_LEN, 0); return mmio_read(p, 1) & 0xff; }
  fetch_window_set(ip, lin, p, limit);
  store<u32>(V_FW_CUR, min(load<u32>(V_FW_LEN), load<u32>(V_INSN_START) + 15 - load<u32>(V_FW_LO)));
  return load<u8>(RAM + p);
}

/** Open the window on the page of `lin` (EIP `ip`, physical `p`, CS.limit `limit`). */
function fetch_window_set(ip: u32, lin: u32, p: u32, limit: u32): void {
  const pageOff = lin & 0xfff;
  const back = pageOff <= ip ? pageOff : ip;
  const ahead: u32 = 4096 - pageOff;
  const toLimit = limit - ip + 1; // 0 means 2^32: the whole space
  store<u32>(V_FW_LO, ip - back);
  store<u32>(V_FW_LEN, back + (toLimit != 0 && toLimit < ahead ? toLimit : ahead));
  store<u32>(V_FW_HOST, RAM + p - ip);
}

/**
 * Open the window at `ip` without fetching, faulting or walking page tables: only when the
 * TLB already maps the page for a read at this privilege (as translate() would) and `ip` is
 * inside CS.limit. For the block executor, which meets a new code page at every far-enough
 * call or return; false leaves it to step(). fw_cur is left for fetch_begin() to set.
 */
/**
 * fetch_window_try() after a TLB miss: walk the page tables for the code page as an
 * instruction fetch at the CPL would (filling the TLB), then open the window. False where
 * the fetch would fault, leave the limit, or reach MMIO: the caller leaves that to step(),
 * which raises the fault. Run loops call this at block boundaries, where a TLB refilled
 * by a context switch would otherwise cost an exit to the host loop and a step() per page.
 */
export function fetch_window_walk(ip: u32): bool {
  if (ip > seg_limit(CS)) return false;
  const lin = seg_base(CS) + ip;
  if (translate(lin & 0xfffff000, false, cpl() == 3, true) == PROBE_FAULT) return false;
  return fetch_window_try(ip);
}

export function fetch_window_try(ip: u32): bool {
  const limit = seg_limit(CS);
  if (ip > limit) return false;
  const lin = seg_base(CS) + ip;
  const e = load<u32>(TLB + ((lin >>> 12) << 2));
  if ((e & load<u32>(V_TLB_READ_MASK)) != TLB_VALID_BIT) return false;
  fetch_window_set(ip, lin, (e & 0xfffff000) | (lin & 0xfff), limit);
  store<u32>(V_FW_CUR, 0);
  return true;
}
