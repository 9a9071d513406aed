/**
 * Named access to the CPU state the core keeps at fixed offsets in linear memory. The
 * offsets come from the core's own exported layout constants (assembly/layout.ts), so the
 * two sides cannot drift apart.
 */
import type { CoreExports } from './cpu.ts';

export const GPR_NAMES = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi'] as const;
export const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;
export type GprName = (typeof GPR_NAMES)[number];
export type SegName = (typeof SEG_NAMES)[number];
export type ControlName = 'cr0' | 'cr2' | 'cr3' | 'cr4' | `dr${0 | 1 | 2 | 3 | 4 | 5 | 6 | 7}`;
export type RegisterName = GprName | SegName | ControlName | 'eip' | 'eflags';

// Segment attribute words as the core keeps them (assembly/state.ts and memory.ts): the
// descriptor's type/S/DPL/P/AVL/DB/G bits, then VALID, READ_OK and WRITE_OK.
const ATTR_VALID = 1 << 16;
const ATTR_READ_OK = 1 << 17;
const ATTR_WRITE_OK = 1 << 18;
/** A present, accessed, readable 32-bit code segment, 4 GiB, DPL 0. */
export const FLAT_CODE32 = 0xb | 0x10 | 0x80 | 0x4000 | 0x8000 | ATTR_VALID | ATTR_READ_OK;
/** A present, accessed, writable 32-bit data segment, 4 GiB, DPL 0. */
export const FLAT_DATA32 = 0x3 | 0x10 | 0x80 | 0x4000 | 0x8000 | ATTR_VALID | ATTR_READ_OK | ATTR_WRITE_OK;

export interface SegmentCache {
  selector: number;
  base: number;
  limit: number;
  attributes: number;
}

export class CpuStateView {
  private readonly base: number;
  private readonly size: number;
  private readonly off: Record<string, number>;

  constructor(private readonly memory: WebAssembly.Memory, private readonly core: CoreExports) {
    const g = (name: string) => (core[name] as WebAssembly.Global).value as number;
    this.base = g('CPU_STATE');
    this.size = g('CPU_STATE_SIZE');
    this.off = {};
    for (const name of ['REG_EAX', 'REG_EIP', 'SEG_BASE_OFF', 'SEG_SIZE', 'REG_CR0', 'REG_CR2', 'REG_CR3',
      'REG_CR4', 'REG_DR0', 'CPL', 'A20_MASK', 'INTR_LINE', 'NMI_PENDING', 'HALTED', 'HOST_REQUEST',
      'SHUTDOWN', 'STOP_REASON', 'TSC_OFFSET', 'GDTR_BASE', 'GDTR_LIMIT', 'IDTR_BASE', 'IDTR_LIMIT',
      'DIRTY_COUNT', 'FPU_STATE', 'INSTR_COUNT', 'FAULT_VECTOR', 'FAULT_ERROR', 'EIP_START', 'TSC_LIVE']) {
      this.off[name] = g(name);
    }
    this.off.DIRTY_LIST = g('DIRTY_LIST');
  }

  private get u32(): Uint32Array {
    return new Uint32Array(this.memory.buffer, this.base, this.size >>> 2);
  }

  private word(offset: number): number { return this.u32[offset >>> 2]; }
  private setWord(offset: number, v: number): void { this.u32[offset >>> 2] = v >>> 0; }

  get(name: RegisterName): number {
    const gi = (GPR_NAMES as readonly string[]).indexOf(name);
    if (gi >= 0) return this.word(this.off.REG_EAX + gi * 4);
    const si = (SEG_NAMES as readonly string[]).indexOf(name);
    if (si >= 0) return this.segment(name as SegName).selector;
    switch (name) {
      case 'eip': return this.word(this.off.REG_EIP);
      case 'eflags': return this.core.get_eflags() >>> 0;
      case 'cr0': return this.word(this.off.REG_CR0);
      case 'cr2': return this.word(this.off.REG_CR2);
      case 'cr3': return this.word(this.off.REG_CR3);
      case 'cr4': return this.word(this.off.REG_CR4);
    }
    const dr = /^dr([0-7])$/.exec(name);
    if (dr) return this.word(this.off.REG_DR0 + Number(dr[1]) * 4);
    throw new Error(`unknown register "${name}"`);
  }

  /**
   * Set a register. Segment registers take a selector and load it the real-mode way
   * (base = selector * 16, limit and rights kept); use setSegment for a full descriptor cache.
   */
  set(name: RegisterName, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`register ${name}: value ${value} is not a 32-bit unsigned integer`);
    }
    const gi = (GPR_NAMES as readonly string[]).indexOf(name);
    if (gi >= 0) { this.setWord(this.off.REG_EAX + gi * 4, value); return; }
    const si = (SEG_NAMES as readonly string[]).indexOf(name);
    if (si >= 0) {
      if (value > 0xffff) throw new RangeError(`segment register ${name}: selector ${value} exceeds 16 bits`);
      const cur = this.segment(name as SegName);
      this.setSegment(name as SegName, { ...cur, selector: value, base: value * 16 });
      return;
    }
    switch (name) {
      case 'eip': this.setWord(this.off.REG_EIP, value); return;
      case 'eflags': this.core.set_eflags_raw(value); return;
      case 'cr0': this.setWord(this.off.REG_CR0, value); this.core.state_loaded(); return;
      case 'cr2': this.setWord(this.off.REG_CR2, value); return;
      case 'cr3': this.setWord(this.off.REG_CR3, value); this.core.state_loaded(); return;
      case 'cr4': this.setWord(this.off.REG_CR4, value); this.core.state_loaded(); return;
    }
    const dr = /^dr([0-7])$/.exec(name);
    if (dr) { this.setWord(this.off.REG_DR0 + Number(dr[1]) * 4, value); return; }
    throw new Error(`unknown register "${name}"`);
  }

  segment(name: SegName | 'ldtr' | 'tr'): SegmentCache {
    const idx = name === 'ldtr' ? 6 : name === 'tr' ? 7 : (SEG_NAMES as readonly string[]).indexOf(name);
    if (idx < 0) throw new Error(`unknown segment register "${name}"`);
    const o = this.off.SEG_BASE_OFF + idx * this.off.SEG_SIZE;
    return { selector: this.word(o), base: this.word(o + 4), limit: this.word(o + 8), attributes: this.word(o + 12) };
  }

  setSegment(name: SegName | 'ldtr' | 'tr', s: SegmentCache): void {
    const idx = name === 'ldtr' ? 6 : name === 'tr' ? 7 : (SEG_NAMES as readonly string[]).indexOf(name);
    if (idx < 0) throw new Error(`unknown segment register "${name}"`);
    const o = this.off.SEG_BASE_OFF + idx * this.off.SEG_SIZE;
    this.setWord(o, s.selector); this.setWord(o + 4, s.base); this.setWord(o + 8, s.limit); this.setWord(o + 12, s.attributes);
    this.core.state_loaded();
  }

  /** Control words of the core the machine drives. */
  get halted(): boolean { return this.word(this.off.HALTED) !== 0; }
  set halted(v: boolean) { this.setWord(this.off.HALTED, v ? 1 : 0); }
  get shutdown(): boolean { return this.word(this.off.SHUTDOWN) !== 0; }
  set shutdown(v: boolean) { this.setWord(this.off.SHUTDOWN, v ? 1 : 0); }
  set intrLine(level: boolean) { this.setWord(this.off.INTR_LINE, level ? 1 : 0); }
  get intrLine(): boolean { return this.word(this.off.INTR_LINE) !== 0; }
  set nmiPending(v: boolean) { this.setWord(this.off.NMI_PENDING, v ? 1 : 0); }
  set hostRequest(v: boolean) { this.setWord(this.off.HOST_REQUEST, v ? 1 : 0); }
  get a20(): boolean { return this.word(this.off.A20_MASK) === 0xffffffff; }
  set a20(enabled: boolean) {
    this.setWord(this.off.A20_MASK, enabled ? 0xffffffff : 0xffefffff);
    this.core.tlb_flush();
  }
  get cpl(): number { return this.word(this.off.CPL); }
  get faultVector(): number { return this.word(this.off.FAULT_VECTOR); }
  get faultError(): number { return this.word(this.off.FAULT_ERROR); }
  /** EIP of the first byte of the instruction being executed (or that faulted). */
  get eipStart(): number { return this.word(this.off.EIP_START); }
  /** Added to the instruction counter to form the guest TSC. */
  get tscOffset(): bigint { return new BigUint64Array(this.memory.buffer, this.base + this.off.TSC_OFFSET, 1)[0]; }
  set tscOffset(v: bigint) { new BigUint64Array(this.memory.buffer, this.base + this.off.TSC_OFFSET, 1)[0] = BigInt.asUintN(64, v); }
  /** RDTSC asks the host (realtime clock) instead of counting instructions. */
  set tscLive(v: boolean) { this.setWord(this.off.TSC_LIVE, v ? 1 : 0); }
  get tscLive(): boolean { return this.word(this.off.TSC_LIVE) !== 0; }
  get interruptsEnabled(): boolean { return (this.core.get_eflags() & 0x200) !== 0; }

  setDescriptorTable(which: 'gdtr' | 'idtr', base: number, limit: number): void {
    const b = which === 'gdtr' ? this.off.GDTR_BASE : this.off.IDTR_BASE;
    const l = which === 'gdtr' ? this.off.GDTR_LIMIT : this.off.IDTR_LIMIT;
    this.setWord(b, base);
    this.setWord(l, limit);
  }

  /** The CPU state as one byte range (registers, caches, x87), for snapshots. */
  bytes(): Uint8Array {
    return new Uint8Array(this.memory.buffer, this.base, this.size).slice();
  }

  loadBytes(bytes: Uint8Array): void {
    if (bytes.length !== this.size) throw new Error(`CPU state must be ${this.size} bytes, got ${bytes.length}`);
    new Uint8Array(this.memory.buffer, this.base, this.size).set(bytes);
    this.core.state_loaded();
  }

  /** Physical page numbers dirtied since the last dirtyReset, in first-write order. */
  dirtyPages(): Uint32Array {
    const n = this.word(this.off.DIRTY_COUNT);
    return new Uint32Array(this.memory.buffer, this.off.DIRTY_LIST, n).slice();
  }
}
