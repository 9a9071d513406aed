// The block compiler: turns the core's decoded blocks (assembly/codecache.ts) into WASM
// functions, one per block, from the same records the interpreter runs. It reads the
// records' layout, the uop numbers and every memory offset from the core's exports, so the
// two cannot drift apart.
//
// A compiled block is `(eip) -> eip`: given the linear address its block starts at, it runs
// the block's instructions as run_cached() would and returns the next EIP. What that means,
// record by record:
// - Registers and an operation's flags wait in locals within a block; CPU_STATE is brought
//   up to date wherever something can look at it: a helper call, a fault, a way out.
// - Memory operands take the segment bound in SEG_FAST and the TLB in line; anything else
//   (a bound or TLB miss, MMIO, a page crossing, a code page) calls the core's helpers.
//   Only those helper paths can fault, so only they store EIP_START, the instructions
//   retired so far, the registers and the flags first (emitSite): a fault, thrown through
//   the host, is delivered exactly as from the interpreter, and the in-line path stores
//   nothing. ESP changes only after an instruction's last possible fault, as there.
// - block_stop (a write to decoded code, MMIO) can only be set on a helper path: the
//   instruction leaves the function after it if that path saw it set, as the interpreter
//   stops after a memory operand.
// - U_STEP and U_STRING records run through step() (jit_step) in the block; a uop it does
//   not compile ends the function with JIT_RESUME naming the record, and the interpreter
//   goes on from there; blocks that begin with one are not compiled at all.
// - An exit to code outside the function goes straight into the compiled block there when
//   the exit site's slot names it (leaveChain); a CALL waits for its callee's RET.
// - Conditions read flags the block itself just set from the operands in locals, as the
//   fused records do; otherwise the lazy-flag helper answers.

import { encodeModule, I32, I64, Op as OpExport, VOID, sleb, uleb, type FuncBody, type FuncType, type ImportedFunc } from './wasm-writer.ts';

type Exports = Record<string, unknown>;

/** The opcodes as a plain local object: a module binding can cost a getter call per use. */
const Op = { ...OpExport };

/** The core's helper functions a compiled block may call, in import order. */
const HELPERS: [string, FuncType][] = [
  ['jit_seg', { params: [I32, I32, I32, I32], results: [I32] }],
  ['jit_read8', { params: [I32], results: [I32] }],
  ['jit_read16', { params: [I32], results: [I32] }],
  ['jit_read32', { params: [I32], results: [I32] }],
  ['jit_write8', { params: [I32, I32], results: [] }],
  ['jit_write16', { params: [I32, I32], results: [] }],
  ['jit_write32', { params: [I32, I32], results: [] }],
  ['jit_check_write', { params: [I32, I32], results: [] }],
  ['jit_test_cc', { params: [I32], results: [I32] }],
  ['jit_alu', { params: [I32, I32, I32, I32], results: [I32] }],
  ['jit_keep_cf', { params: [], results: [] }],
  ['jit_shift', { params: [I32, I32, I32, I32], results: [I32] }],
  ['jit_imul', { params: [I32, I32], results: [I32] }],
  ['jit_grp3', { params: [I32, I32], results: [] }],
  ['jit_push32', { params: [I32], results: [] }],
  ['jit_pop32', { params: [], results: [I32] }],
  ['jit_leave', { params: [], results: [] }],
  ['jit_sp_add', { params: [I32], results: [] }],
  ['jit_step', { params: [I32], results: [I32] }],
];
const H = Object.fromEntries(HELPERS.map(([n], i) => [n, i])) as Record<string, number>;
const READ_HELPER: Record<number, number> = { 7: H.jit_read8!, 15: H.jit_read16!, 31: H.jit_read32! };
const WRITE_HELPER: Record<number, number> = { 7: H.jit_write8!, 15: H.jit_write16!, 31: H.jit_write32! };

export const BLOCK_TYPE: FuncType = { params: [I32, I32, I32], results: [I32] };

// Locals: the parameters 0 the root block's EIP, 1 how many compiled blocks chained into
// this one and 2 the return address the innermost compiled CALL among them waits for (0:
// none); 3 the counter at the start of the block running, 4 the run's instruction limit
// (i64); 5 the next block's index; i32 scratch.
const EIP0 = 0, DEPTH = 1, RET_TO = 2, C = 3, LIMIT = 4, NEXT = 5;
const A = 6, B = 7, T = 8, LIN = 9, E = 10, ADDR = 11, FAST = 12, V = 13;
/** The operands and result of the last flag-setting operation the block did in line. */
const FA = 14, FB = 15, FR = 16;
/** The eight general registers while a block holds them (R0 + register number), and a scratch. */
const R0 = 17, TMPR = 25;
/** The operands and result of the operation whose flags are pending (copies of FA FB FR). */
const PA = 26, PB = 27, PR = 28;
/** The TLB masks of the current privilege (fixed while a function runs), and block_stop as a slow path saw it. */
const MR = 29, MW = 30, STOPL = 31;
/** CPU_STATE's STACK32 (fixed while a function runs: SS changes only in the interpreter). */
const S32 = 32;
/** The EIP an exit site goes on to. */
const X = 33;
const LOCALS: [number, number][] = [[2, I64], [29, I32]];
/**
 * How deep compiled blocks call into one another (leaveChain) before one returns to
 * run_cached() instead: each call keeps its caller's frame until the chain returns.
 */
const CHAIN_DEPTH = 24;
/** EFLAGS bits (SDM Vol. 1, 3.4.3) the in-line shifts set. */
const FLAG_CF = 1 << 0, FLAG_PF = 1 << 2, FLAG_AF = 1 << 4, FLAG_ZF = 1 << 6, FLAG_SF = 1 << 7, OF_BIT = 11, FLAG_OF = 1 << OF_BIT;
/** Segments compiled as flat (ES, SS, DS; FS and GS keep their checks): SEG_FLAT bits. */
const FLAT_SEGS = (1 << 0) | (1 << 2) | (1 << 3);
/** ESP's offset in CPU_STATE, and SS's entry in SEG_FAST (segment 2 * 16). */
const ESP_OFF = 4 * 4, SS_SF = 2 << 4;
/** Most blocks one function holds. */
const REGION_MAX = 12;

const ALU_KINDS = ['ADD', 'OR', 'ADC', 'SBB', 'AND', 'SUB', 'XOR', 'CMP'];
const CC_NAMES = ['O', 'NO', 'B', 'AE', 'E', 'NE', 'BE', 'A', 'S', 'NS', 'P', 'NP', 'L', 'GE', 'LE', 'G'];
const SIZE_SH: Record<string, number> = { '32': 31, '16': 15, '8': 7 };
function SIZE_SH_OF(s: string): number { return SIZE_SH[s]!; }

/** Uop name patterns, in the order record() tests them (classified once per uop). */
const RULES: RegExp[] = [
  /^U_MOV_RR(32|16|8)$/,
  /^U_MOV_RI(32|16|8)$/,
  /^U_LOAD(32|16|8)$/,
  /^U_STORE(_I)?(32|16|8)$/,
  /^U_MOV(ZX|SX)(8|16)_(R|M)$/,
  /^U_(ADD|OR|ADC|SBB|AND|SUB|XOR|CMP)_(RR|RI|RM)32$/,
  /^U_ALU_(RR|RI|RM)(16|8)$/,
  /^U_ALU_(MR|MI)(32|16|8)$/,
  /^U_TEST_(RR|RI|MR|MI)(32|16|8)$/,
  /^U_INCDEC_(R|M)(32|16|8)$/,
  /^U_GRP3_(R|M)32$/,
  /^U_SHIFT_(R|M)(I|C)(32|16|8)$/,
  /^U_J(O|NO|B|AE|E|NE|BE|A|S|NS|P|NP|L|GE|LE|G)$/,
  /^U_(CMP|TEST)_(RR|RI)32_J(B|AE|E|NE|BE|A|L|GE|LE|G)$/,
  /^U_IMUL_(RR|RM|RRI|RMI)$/,
];

/** What the block knows of the flags: set in line by an operation whose operands are in FA FB FR. */
interface Flags { kind: 'sub' | 'add' | 'logic'; cfValid: boolean; sh: number }
/** A pending operation's lazy kind: Flags' kinds, and SBB (LF_SUB with a borrow in). */
type PendingKind = Flags['kind'] | 'sbb';

/** Offsets and numbers the compiler takes from the core. */
export class CoreLayout {
  readonly c: Record<string, number> = {};
  /** Uop number -> name ("U_LOAD32"). */
  readonly uopName: string[] = [];
  /** Uop number -> its name and the first of RULES it matches. */
  readonly classes: ({ name: string; rule: number; m: RegExpMatchArray | null } | undefined)[] = [];
  /** Record field offsets. */
  readonly rf: Record<'UOP' | 'LEN' | 'DST' | 'SRC' | 'BASE' | 'IXS' | 'SEG' | 'SUB' | 'DISP' | 'IMM', number>;

  constructor(exports: Exports) {
    for (const [k, v] of Object.entries(exports)) {
      if (v instanceof WebAssembly.Global) {
        const n = v.value as number;
        this.c[k] = n;
        if (k.startsWith('U_') && this.uopName[n] === undefined) this.uopName[n] = k;
      }
    }
    // Aliases share a number (U_JCC is U_JO): keep the specific names.
    for (const [k, v] of Object.entries(this.c)) if (k.startsWith('U_') && !['U_JCC', 'U_ALU_RR32', 'U_ALU_RI32', 'U_ALU_RM32'].includes(k)) this.uopName[v] = k;
    for (const need of ['CPU_STATE', 'TLB', 'RAM', 'SEG_FAST', 'RECORD_SIZE', 'JIT_RESUME', 'JIT_LIMIT', 'V_BLOCK_STOP', 'U_END', 'U_INTERP']) {
      if (this.c[need] === undefined) throw new Error(`core does not export ${need}: rebuild it`);
    }
    this.uopName.forEach((name, n) => {
      const rule = RULES.findIndex((re) => re.test(name));
      this.classes[n] = { name, rule, m: rule >= 0 ? name.match(RULES[rule]!) : null };
    });
    this.rf = {
      UOP: this.get('R_UOP'), LEN: this.get('R_LEN'), DST: this.get('R_DST'), SRC: this.get('R_SRC'),
      BASE: this.get('R_BASE'), IXS: this.get('R_INDEX_SCALE'), SEG: this.get('R_SEG'), SUB: this.get('R_SUB'),
      DISP: this.get('R_DISP'), IMM: this.get('R_IMM'),
    };
  }

  get(name: string): number {
    const v = this.c[name];
    if (v === undefined) throw new Error(`core does not export ${name}`);
    return v;
  }
}

/** A block a compiled function holds: its header, physical address and shape. */
export interface RegionBlock {
  hdr: number;
  phys: number;
  /** Its start minus the root block's (same page: in EIP as in physical addresses). */
  delta: number;
  /** Instructions and bytes, as the block's hash entry says. */
  count: number;
  bytes: number;
  root: boolean;
}

/**
 * The blocks one function holds: the hot root block and the decoded blocks on its page that
 * it reaches by direct jumps, calls and fall-through, found as the code is emitted. All share
 * the root's page and code generation, so the root's check in run_cached() covers them.
 */
export class Region {
  readonly blocks: RegionBlock[] = [];
  /**
   * Where the CALLs among its blocks whose callee it holds return to (offsets from the root
   * block's start, blocks it holds too): a RET it compiles tests these before leaving.
   */
  readonly returnSites: number[] = [];
  private readonly byPhys = new Map<number, number>();

  constructor(private readonly L: CoreLayout, private readonly mem: DataView, root: RegionBlock, private readonly gen: number) {
    this.blocks.push(root);
    this.byPhys.set(root.phys, 0);
  }

  /** The index of the block at `phys`, taking it in if it is decoded, current and on the page. */
  blockAt(phys: number): number | undefined {
    const have = this.byPhys.get(phys);
    if (have !== undefined) return have;
    const root = this.blocks[0]!;
    if ((phys >>> 12) !== (root.phys >>> 12) || this.blocks.length >= REGION_MAX) return undefined;
    const b = lookupBlock(this.L, this.mem, phys);
    if (!b || b.gen !== this.gen) return undefined;
    const i = this.blocks.length;
    this.blocks.push({ ...b.block, delta: (phys - root.phys) | 0 });
    this.byPhys.set(phys, i);
    return i;
  }
}

/** The decoded block at `phys` from the core's block hash, if it is there. */
function lookupBlock(L: CoreLayout, mem: DataView, phys: number): { block: RegionBlock; gen: number } | undefined {
  const entries = L.get('BLOCK_HASH_ENTRIES');
  // Two ways (codecache.ts hash_entry).
  const pageGen = mem.getUint32(L.get('CODE_PAGE') + (phys >>> 12) * 4, true);
  const current = (e: number) => mem.getUint32(e + L.get('H_PHYS'), true) === phys && mem.getUint32(e + L.get('H_GEN'), true) === pageGen;
  let h = L.get('BLOCK_HASH') + ((Math.imul(phys, 0x9e3779b1) >>> (32 - Math.log2(entries))) & ~1) * 16;
  if (!current(h)) h += 16;
  if (pageGen === 0 || !current(h)) return undefined;
  const gen = pageGen;
  const records = mem.getUint32(h + L.get('H_RECORDS'), true);
  const shape = mem.getUint32(h + L.get('H_SHAPE'), true);
  const hdr = records - L.get('RECORD_SIZE');
  if (mem.getUint32(hdr + L.get('B_PHYS'), true) !== phys) return undefined;
  return { block: { hdr, phys, delta: 0, count: shape & 0xff, bytes: shape >>> 8, root: false }, gen };
}

/**
 * The code of the function for the block whose header is at `hdr` (its region), or
 * undefined when there is nothing to compile: the block is no longer current, or its first
 * uop is one the compiler leaves to the interpreter.
 */
export function compileRegion(L: CoreLayout, mem: DataView, hdr: number, slot: () => number): { code: number[]; blocks: number } | undefined {
  const phys = mem.getUint32(hdr + L.get('B_PHYS'), true);
  const found = lookupBlock(L, mem, phys);
  if (!found || found.block.hdr !== hdr) return undefined;
  const region = new Region(L, mem, { ...found.block, root: true }, found.gen);
  const e = new Emitter(L, region, slot);
  const parts: { code: number[]; patches: [number, number][] }[] = [];
  for (let i = 0; i < region.blocks.length; i++) {
    if (!e.block(mem, region.blocks[i]!)) return undefined;
    parts.push({ code: e.code, patches: e.patches });
  }
  // loop { block^n { br_table NEXT } code_0 } code_1 } ... code_n-1 }, code_i inside
  // n-1-i blocks and the loop, so a br to the loop from it is its own depth + n-1-i.
  const n = parts.length;
  const out: number[] = [];
  const cs = L.get('CPU_STATE');
  out.push(Op.i32_const, 0, Op.i64_load, 3); uleb(out, cs + L.get('INSTR_COUNT')); out.push(Op.local_set, C);
  out.push(Op.i32_const, 0, Op.i64_load, 3); uleb(out, L.get('JIT_LIMIT')); out.push(Op.local_set, LIMIT);
  out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, L.get('V_TLB_READ_MASK')); out.push(Op.local_set, MR);
  out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, L.get('V_TLB_WRITE_MASK')); out.push(Op.local_set, MW);
  out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, cs + L.get('STACK32')); out.push(Op.local_set, S32);
  // The root block must fit in what is left of the run, as run_cached() checks before a
  // block: it does, but a block chained to (Emitter.leaveChain) checks here. Returning its
  // own EIP with nothing run sends run_cached() to that check.
  out.push(Op.local_get, C, Op.i64_const); sleb(out, region.blocks[0]!.count);
  out.push(Op.i64_add, Op.local_get, LIMIT, Op.i64_gt_u, Op.if, VOID, Op.local_get, EIP0, Op.return, Op.end);
  // Compiled for a flat CS (base 0, limit 4 GiB: every block of the region, all on the
  // root's page, lies inside the limit) and flat data segments where it used them: if one
  // is not, the interpreter runs the block instead.
  const csAt = cs + L.get('SEG_BASE_OFF') + L.get('SEG_SIZE');
  out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, csAt + L.get('SEG_BASE'));
  out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, csAt + L.get('SEG_LIMIT'));
  out.push(Op.i32_const, 0x7f, Op.i32_xor, Op.i32_or);
  if (e.flatUsed) {
    out.push(Op.i32_const, 0, Op.i32_load, 2); uleb(out, L.get('SEG_FLAT'));
    out.push(Op.i32_const); sleb(out, e.flatUsed); out.push(Op.i32_and, Op.i32_const); sleb(out, e.flatUsed); out.push(Op.i32_xor, Op.i32_or);
  }
  out.push(Op.if, VOID, Op.i32_const, 0, Op.i32_const); sleb(out, hdr + L.get('RECORD_SIZE'));
  out.push(Op.i32_store, 2); uleb(out, L.get('JIT_RESUME'));
  out.push(Op.local_get, EIP0, Op.return, Op.end);
  out.push(Op.loop, VOID);
  for (let i = 0; i < n; i++) out.push(Op.block, VOID);
  out.push(Op.local_get, NEXT, Op.br_table);
  uleb(out, n);
  for (let i = 0; i < n; i++) uleb(out, i);
  uleb(out, 0);
  for (let i = 0; i < n; i++) {
    out.push(Op.end);
    const { code, patches } = parts[i]!;
    for (const [pos, depth] of patches) {
      const v = depth + (n - 1 - i);
      code[pos] = (v & 0x7f) | 0x80;
      code[pos + 1] = ((v >>> 7) & 0x7f) | 0x80;
      code[pos + 2] = ((v >>> 14) & 0x7f) | 0x80;
      code[pos + 3] = ((v >>> 21) & 0x7f) | 0x80;
      code[pos + 4] = (v >>> 28) & 0x7f;
    }
    for (let j = 0; j < code.length; j++) out.push(code[j]!);
  }
  out.push(Op.end, Op.unreachable);
  return { code: out, blocks: n };
}

/** The function index of a module's chain function (chainFunction), the first after the imports. */
const CHAIN = HELPERS.length;
const CHAIN_TYPE: FuncType = { params: [I32, I32, I32, I32], results: [I32] };

/**
 * The chain function every module holds: `(eip, depth, retTo, slot) -> eip`, for an exit
 * site (Emitter.leaveChain) whose state is all in CPU_STATE. It calls the compiled block at
 * `eip` if the site's slot names it and it is still what the slot says: the same EIP, the
 * TLB maps its page to the same physical page for a read at this privilege, and the page's
 * code generation is unchanged; and if nothing asked to stop and the chain is not
 * CHAIN_DEPTH deep yet. The callee checks on entry what run_cached() would have (the run's
 * budget, a flat CS so that its bytes lie inside the limit), and its EIP comes back through
 * every block of the chain; the fetch window stays where run_cached() left it (still a true
 * mapping: compiled code does not change the TLB), and run_cached() looks the next block up
 * afresh after a compiled call. Otherwise it names the slot (JIT_SITE), for run_cached() to
 * fill with the block it finds at `eip`, and returns `eip`.
 */
function chainFunction(L: CoreLayout): number[] {
  const P_EIP = 0, P_DEPTH = 1, P_RET = 2, P_SLOT = 3, L_E = 4;
  const o: number[] = [];
  const ld = (addr: number) => { o.push(Op.i32_const, 0, Op.i32_load, 2); uleb(o, addr); };
  const slotField = (name: string) => { o.push(Op.local_get, P_SLOT, Op.i32_load, 2); uleb(o, L.get(name)); };
  o.push(Op.block, VOID);
  slotField('JIT_SLOT_EIP'); o.push(Op.local_get, P_EIP, Op.i32_ne, Op.br_if, 0);
  o.push(Op.local_get, P_EIP, Op.i32_const, 12, Op.i32_shr_u, Op.i32_const, 2, Op.i32_shl, Op.i32_load, 2); uleb(o, L.get('TLB'));
  o.push(Op.local_tee, L_E);
  ld(L.get('V_TLB_READ_MASK')); o.push(Op.i32_const); sleb(o, 0xfffff000); o.push(Op.i32_or, Op.i32_and);
  slotField('JIT_SLOT_TAG'); o.push(Op.i32_ne, Op.br_if, 0);
  o.push(Op.local_get, L_E, Op.i32_const, 12, Op.i32_shr_u, Op.i32_const, 2, Op.i32_shl, Op.i32_load, 2); uleb(o, L.get('CODE_PAGE'));
  slotField('JIT_SLOT_GEN'); o.push(Op.i32_ne, Op.br_if, 0);
  ld(L.get('V_BLOCK_STOP')); o.push(Op.br_if, 0);
  o.push(Op.local_get, P_DEPTH, Op.i32_const); sleb(o, CHAIN_DEPTH); o.push(Op.i32_ge_u, Op.br_if, 0);
  o.push(Op.local_get, P_EIP, Op.local_get, P_DEPTH, Op.i32_const, 1, Op.i32_add, Op.local_get, P_RET);
  slotField('JIT_SLOT_FN');
  o.push(Op.call_indirect, 0, 0, Op.return);
  o.push(Op.end);
  o.push(Op.i32_const, 0, Op.local_get, P_SLOT, Op.i32_store, 2); uleb(o, L.get('JIT_SITE'));
  o.push(Op.local_get, P_EIP);
  return o;
}

/** A module holding `bodies`, exported as b0, b1, ... */
export function blockModule(L: CoreLayout, memPages: number, bodies: number[][]): Uint8Array<ArrayBuffer> {
  const imports: ImportedFunc[] = HELPERS.map(([n, type]) => ({ module: 'c', name: n, type }));
  const funcs: FuncBody[] = [
    { type: CHAIN_TYPE, locals: [[1, I32]], code: chainFunction(L) },
    ...bodies.map((code, i): FuncBody => ({ type: BLOCK_TYPE, locals: LOCALS, code, export: `b${i}` })),
  ];
  // BLOCK_TYPE is type 0, for the exit sites' call_indirect through the core's table.
  return encodeModule({
    memory: { module: 'e', name: 'm', minPages: memPages }, table: { module: 'e', name: 't' },
    types: [BLOCK_TYPE], imports, funcs,
  });
}

/** The import object for a block module. */
export function blockImports(exports: Exports, memory: WebAssembly.Memory): WebAssembly.Imports {
  const c: Record<string, unknown> = {};
  for (const [n] of HELPERS) {
    if (typeof exports[n] !== 'function') throw new Error(`core does not export ${n}: rebuild it`);
    c[n] = exports[n];
  }
  if (!(exports.table instanceof WebAssembly.Table)) throw new Error('core does not export its function table: rebuild it');
  return { c: c as WebAssembly.ModuleImports, e: { m: memory, t: exports.table } };
}

class Emitter {
  code: number[] = [];
  /** br placeholders in `code` to patch: [position, structured depth at the br]. */
  patches: [number, number][] = [];
  private depth = 0;
  private cur!: RegionBlock;
  private readonly cs: number;
  /** Instructions retired so far whose count is in INSTR_COUNT. */
  private stored = 0;
  private flags: Flags | undefined;

  constructor(private readonly L: CoreLayout, private readonly region: Region, private readonly slot: () => number) {
    this.cs = L.get('CPU_STATE');
  }

  // --- encoding ------------------------------------------------------------------------
  private op(...b: number[]): void {
    const o = b[0];
    if (o === Op.if || o === Op.block || o === Op.loop) this.depth++;
    else if (o === Op.end) this.depth--;
    for (const x of b) this.code.push(x);
  }
  private i32(v: number): void { this.code.push(Op.i32_const); sleb(this.code, v); }
  private get(l: number): void { this.code.push(Op.local_get); uleb(this.code, l); }
  private set(l: number): void { this.code.push(Op.local_set); uleb(this.code, l); }
  private tee(l: number): void { this.code.push(Op.local_tee); uleb(this.code, l); }
  private call(h: number): void { this.code.push(Op.call); uleb(this.code, h); }
  private mem(opc: number, align: number, offset: number): void {
    this.code.push(opc, align);
    uleb(this.code, offset >>> 0);
  }
  /** Load of size `sh` from the address on the stack + offset. */
  private loadSh(sh: number, offset: number): void {
    if (sh === 31) this.mem(Op.i32_load, 2, offset);
    else if (sh === 15) this.mem(Op.i32_load16_u, 1, offset);
    else this.mem(Op.i32_load8_u, 0, offset);
  }
  private storeSh(sh: number, offset: number): void {
    if (sh === 31) this.mem(Op.i32_store, 2, offset);
    else if (sh === 15) this.mem(Op.i32_store16, 1, offset);
    else this.mem(Op.i32_store8, 0, offset);
  }
  private ld32(addr: number): void { this.i32(0); this.mem(Op.i32_load, 2, addr); }

  private c(name: string): number { return this.L.c[name]!; }

  // --- registers -----------------------------------------------------------------------
  // General registers live in locals R0..R7 while a block runs: loaded at first use, stored
  // back (flushRegs) before anything that can see CPU_STATE: an instruction that can fault,
  // a helper that reads or writes registers, and every way out of the block.
  private cached = 0;
  private dirty = 0;
  private cache(r: number): void {
    if (this.cached & (1 << r)) return;
    this.i32(0); this.mem(Op.i32_load, 2, this.cs + r * 4); this.set(R0 + r);
    this.cached |= 1 << r;
  }
  /** Push the register at CPU_STATE offset `off` (an 8-bit one by its byte) of size `sh`. */
  private reg(off: number, sh: number): void {
    if (off >= 32) { this.i32(0); this.loadSh(sh, this.cs + off); return; }
    const r = off >> 2;
    this.cache(r);
    this.get(R0 + r);
    if (sh === 31) return;
    if (sh === 7 && (off & 1)) { this.i32(8); this.op(Op.i32_shr_u); }
    this.i32(sh === 15 ? 0xffff : 0xff); this.op(Op.i32_and);
  }
  /** Pop a value into the register at offset `off` of size `sh`. */
  private putReg(off: number, sh: number): void {
    const r = off >> 2;
    if (sh === 31) {
      this.set(R0 + r);
    } else {
      this.set(TMPR);
      this.cache(r);
      const shift = sh === 7 && (off & 1) ? 8 : 0;
      const mask = (sh === 15 ? 0xffff : 0xff) << shift;
      this.get(R0 + r); this.i32(~mask); this.op(Op.i32_and);
      this.get(TMPR); this.i32(sh === 15 ? 0xffff : 0xff); this.op(Op.i32_and);
      if (shift) { this.i32(shift); this.op(Op.i32_shl); }
      this.op(Op.i32_or);
      this.set(R0 + r);
    }
    this.cached |= 1 << r;
    this.dirty |= 1 << r;
  }
  /** Store the registers changed in locals (the block's state at this point is unchanged). */
  private emitFlushRegs(): void {
    for (let r = 0; r < 8; r++) {
      if (this.dirty & (1 << r)) { this.i32(0); this.get(R0 + r); this.mem(Op.i32_store, 2, this.cs + r * 4); }
    }
  }
  private flushRegs(): void { this.emitFlushRegs(); this.dirty = 0; }
  /** A helper changed registers in CPU_STATE: read them again. */
  private forgetRegs(): void { this.cached = this.dirty = 0; }
  /** Everything CPU_STATE must show now: registers and flags. */
  private flushAll(): void { this.flushRegs(); this.flushFlags(); }
  private emitFlushAll(): void { this.emitFlushRegs(); this.emitFlushFlags(); }

  // --- the counter, EIP_START and the ways out -------------------------------------------
  private storeCount(k: number): void {
    this.i32(0);
    this.get(C);
    if (k !== 0) { this.code.push(Op.i64_const); sleb(this.code, k); this.op(Op.i64_add); }
    this.mem(Op.i64_store, 3, this.cs + this.c('INSTR_COUNT'));
  }
  /**
   * A CALL whose callee this function holds returns to block offset `next`: take the block
   * there in too (if it can), so that the callee's RET can go on to it in line (leaveChain).
   */
  private returnSite(next: number): void {
    if (this.region.blockAt((this.cur.phys + next) >>> 0) === undefined) return;
    const site = (this.cur.delta + next) | 0;
    if (!this.region.returnSites.includes(site)) this.region.returnSites.push(site);
  }
  /** Push the EIP at offset `off` of the block being emitted. */
  private eipAt(off: number): void {
    this.get(EIP0);
    const d = (this.cur.delta + off) | 0;
    if (d !== 0) { this.i32(d); this.op(Op.i32_add); }
  }
  /**
   * The instruction at block offset `at`, with `k` retired before it, calls a helper that
   * can fault or reads CPU_STATE on every path: CPU_STATE is brought up to date here.
   */
  private mayFault(at: number, k: number): void {
    this.flushAll();
    this.i32(0); this.eipAt(at); this.mem(Op.i32_store, 2, this.cs + this.c('EIP_START'));
    if (this.stored !== k) { this.storeCount(k); this.stored = k; }
    this.site = { at, k };
  }
  /**
   * The instruction at `at` (`k` retired before it) can fault only on its helper paths (a
   * TLB miss, MMIO, a page crossing, a code page): each of them calls emitSite() first, and
   * the in-line path stores nothing.
   */
  private site: { at: number; k: number } | undefined;
  private faultSite(at: number, k: number): void { this.site = { at, k }; }
  /** On a helper path: CPU_STATE as a fault, the helper or a device must see it. */
  private emitSite(): void {
    const s = this.site;
    // Every instruction with a helper path names its fault site first; a compile error
    // here leaves the code to the interpreter (Cpu.compileQueued).
    if (!s) throw new Error('a helper path in an instruction that named no fault site');
    this.emitFlushAll();
    this.i32(0); this.eipAt(s.at); this.mem(Op.i32_store, 2, this.cs + this.c('EIP_START'));
    this.storeCount(s.k);
  }
  /** After a helper that may have set block_stop (a write to code, MMIO): keep it for checkStop(). */
  private noteStop(): void { this.ld32(this.c('V_BLOCK_STOP')); this.set(STOPL); }
  /** On a way out of the function, with `k` retired: CPU_STATE as the block leaves it. */
  private emitExit(k: number): void {
    this.emitFlushAll();
    if (this.stored !== k) this.storeCount(k);
  }
  /** Return the EIP on the stack with `k` instructions retired. */
  private leave(k: number): void {
    this.emitExit(k);
    this.op(Op.return);
  }
  /**
   * Go on at the EIP on the stack with `k` retired, outside this function: through the
   * module's chain function (chainFunction) with this exit site's slot, straight into the
   * compiled block there if it can; a CALL waits for its callee to come back to `how.fall`.
   */
  private leaveChain(k: number, how: { ret?: boolean; fall?: number } = {}): void {
    this.set(X);
    this.emitExit(k);
    if (how.ret) {
      // A RET to where the compiled CALL that chained here waits: back to its frame.
      this.get(X); this.get(RET_TO); this.op(Op.i32_eq);
      this.op(Op.if, VOID); this.get(X); this.op(Op.return); this.op(Op.end);
      // A RET to the instruction after a CALL this function made in line (returnSite): on
      // there in line too, as run_cached() would go on with the block there, instead of
      // chaining into it one frame deeper on every call.
      for (const site of this.region.returnSites) {
        const off = (site - this.cur.delta) | 0;
        this.get(X); this.eipAt(off); this.op(Op.i32_eq);
        this.op(Op.if, VOID);
        this.goTo(off, k);
        this.op(Op.end);
      }
    }
    const call = how.fall !== undefined;
    this.get(X); this.get(DEPTH);
    if (call) this.eipAt(how.fall!); else this.get(RET_TO);
    this.i32(this.slot());
    this.call(CHAIN);
    if (!call) { this.op(Op.return); return; }
    // The callee returned: on with the next instruction here if it returned to it, as
    // run_cached() would have gone on there, else out with whatever EIP it gave.
    this.set(X);
    this.get(X); this.eipAt(how.fall!); this.op(Op.i32_ne);
    this.ld32(this.c('JIT_RESUME')); this.op(Op.i32_or);
    this.ld32(this.c('V_BLOCK_STOP')); this.op(Op.i32_or);
    this.op(Op.if, VOID); this.get(X); this.op(Op.return); this.op(Op.end);
    // CPU_STATE holds everything the callee left: start afresh at the next instruction.
    this.i32(0); this.mem(Op.i64_load, 3, this.cs + this.c('INSTR_COUNT')); this.set(C);
    this.forgetRegs();
    this.flags = undefined;
    this.pending = undefined;
    this.stored = 0;
    this.goTo(how.fall!, 0);
  }
  private leaveAt(off: number, k: number): void {
    this.eipAt(off);
    this.leave(k);
  }
  /**
   * Go on at block offset `off` with `k` retired: into the block there if this function
   * holds it (or can take it in), else back to run_cached().
   */
  private goTo(off: number, k: number, fall?: number): void {
    const j = this.region.blockAt((this.cur.phys + off) >>> 0);
    if (j === undefined) { this.eipAt(off); this.leaveChain(k, { fall }); return; }
    const to = this.region.blocks[j]!;
    this.emitFlushAll();
    // C moves on to the next block's start, and INSTR_COUNT with it.
    if (this.stored !== k) this.storeCount(k);
    if (k !== 0) { this.get(C); this.code.push(Op.i64_const); sleb(this.code, k); this.op(Op.i64_add); this.set(C); }
    // As run_cached() would before a block: nothing asked to stop, and the block fits in
    // what is left of the run. (Its bytes lie inside CS.limit: the function checked on entry
    // that CS is flat.)
    this.ld32(this.c('V_BLOCK_STOP'));
    this.get(C); this.code.push(Op.i64_const); sleb(this.code, to.count); this.op(Op.i64_add);
    this.get(LIMIT); this.code.push(Op.i64_gt_u);
    this.op(Op.i32_or);
    this.op(Op.if, VOID);
    this.eipAt(off); this.op(Op.return);
    this.op(Op.end);
    this.i32(j); this.set(NEXT);
    // br to the dispatch loop; its depth is known once the region is: patched in emitRegion().
    this.code.push(Op.br);
    this.patches.push([this.code.length, this.depth]);
    this.code.push(0x80, 0x80, 0x80, 0x80, 0x00);
  }
  /** A conditional jump on the condition on the stack, with `k` retired either way. */
  private branch(takenOff: number, fallOff: number, k: number): void {
    this.op(Op.if, VOID);
    this.goTo(takenOff, k);
    this.op(Op.end);
    this.goTo(fallOff, k);
  }
  /**
   * After an instruction that touched memory: stop if one of its helper paths saw block_stop
   * set (in-line accesses cannot set it: the TLB sends writes to code pages and MMIO to the
   * helpers). STOPL is nonzero only on the way out of the function.
   */
  private checkStop(next: number, k: number): void {
    this.get(STOPL);
    this.op(Op.if, VOID);
    this.leaveAt(next, k);
    this.op(Op.end);
  }
  /** checkStop() after a helper that ran on every path. */
  private checkStopMem(next: number, k: number): void {
    this.ld32(this.c('V_BLOCK_STOP'));
    this.op(Op.if, VOID);
    this.leaveAt(next, k);
    this.op(Op.end);
  }
  /** Leave the rest of the block, from the record at `rec`, to the interpreter. */
  private resume(at: number, k: number, rec: number): void {
    this.i32(0); this.i32(rec); this.mem(Op.i32_store, 2, this.c('JIT_RESUME'));
    this.leaveAt(at, k);
  }

  // --- memory operands -------------------------------------------------------------------
  private ea(base: number, ixs: number, disp: number): void {
    const zero = this.c('EA_ZERO');
    let parts = 0;
    if (base !== zero) { this.reg(base, 31); parts++; }
    const index = ixs & 0xfc;
    if (index !== zero) {
      this.reg(index, 31);
      if (ixs & 3) { this.i32(ixs & 3); this.op(Op.i32_shl); }
      if (parts++) this.op(Op.i32_add);
    }
    if (parts === 0) this.i32(disp);
    else if (disp !== 0) { this.i32(disp); this.op(Op.i32_add); }
  }
  /** LIN = the linear address of offset T in segment `sf` (seg * 16) checked for `kind`. */
  private segLin(sf: number, kind: 'SF_READ' | 'SF_WRITE' | 'SF_RMW', len: number): void {
    const need = kind === 'SF_READ' ? this.c('ATTR_READ_OK') : kind === 'SF_WRITE' ? this.c('ATTR_WRITE_OK')
      : this.c('ATTR_READ_OK') | this.c('ATTR_WRITE_OK');
    const seg = sf >> 4;
    if (FLAT_SEGS & (1 << seg)) {
      // Flat (the function checks SEG_FLAT on entry): the linear address is the offset, and
      // the in-line TLB path, which keeps the access inside one page, cannot pass the limit;
      // the helper path checks the segment first (slowSeg).
      this.flatUsed |= 1 << seg;
      this.get(T); this.set(LIN);
      this.segCheck = { seg, len, need };
      return;
    }
    this.segCheck = undefined;
    const sfAddr = this.c('SEG_FAST') + sf;
    this.get(T);
    this.ld32(sfAddr + this.c(kind));
    this.op(Op.i32_lt_u);
    this.op(Op.if, I32);
    this.ld32(sfAddr + this.c('SF_BASE'));
    this.get(T);
    this.op(Op.i32_add);
    this.op(Op.else);
    this.emitSite();
    this.i32(sf >> 4); this.get(T); this.i32(len); this.i32(need);
    this.call(H.jit_seg!);
    this.op(Op.end);
    this.set(LIN);
  }
  /** Segments assumed flat, the ones this function used, and the access last made on one. */
  flatUsed = 0;
  private segCheck: { seg: number; len: number; need: number } | undefined;
  /** On a helper path: the segment check a flat segment's in-line path did without. */
  private slowSeg(): void {
    const c = this.segCheck;
    if (!c) return;
    this.i32(c.seg); this.get(LIN); this.i32(c.len); this.i32(c.need);
    this.call(H.jit_seg!);
    this.set(LIN);
  }
  private lin(r: Rec, kind: 'SF_READ' | 'SF_WRITE' | 'SF_RMW', sh: number): void {
    this.ea(r.base, r.ixs, r.disp);
    this.set(T);
    this.segLin(r.seg, kind, (sh + 1) >> 3);
  }
  /** The TLB test for LIN: entry in E, and whether the access of size `sh` may go in line. */
  private tlbTest(maskVar: string, sh: number): void {
    this.get(LIN); this.i32(12); this.op(Op.i32_shr_u); this.i32(2); this.op(Op.i32_shl);
    this.mem(Op.i32_load, 2, this.c('TLB'));
    this.tee(E);
    this.get(maskVar === 'V_TLB_READ_MASK' ? MR : MW);
    this.op(Op.i32_and);
    this.i32(1);
    this.op(Op.i32_eq);
    if (sh !== 7) {
      this.get(LIN); this.i32(0xfff); this.op(Op.i32_and);
      this.i32(0x1000 - ((sh + 1) >> 3)); this.op(Op.i32_le_u);
      this.op(Op.i32_and);
    }
  }
  private hostAddr(): void {
    this.get(E); this.i32(0xfffff000 | 0); this.op(Op.i32_and);
    this.get(LIN); this.i32(0xfff); this.op(Op.i32_and);
    this.op(Op.i32_or);
  }
  /** Push the value of size `sh` at LIN. */
  private read(sh: number): void {
    this.tlbTest('V_TLB_READ_MASK', sh);
    this.op(Op.if, I32);
    this.hostAddr();
    this.loadSh(sh, this.c('RAM'));
    this.op(Op.else);
    this.emitSite();
    this.slowSeg();
    this.get(LIN);
    this.call(READ_HELPER[sh]!);
    this.noteStop();
    this.op(Op.end);
  }
  /** Write local `v` (size `sh`) at LIN. */
  private write(sh: number, v: number): void {
    this.tlbTest('V_TLB_WRITE_MASK', sh);
    this.op(Op.if, VOID);
    this.hostAddr();
    this.get(v);
    this.storeSh(sh, this.c('RAM'));
    this.op(Op.else);
    this.emitSite();
    this.slowSeg();
    this.get(LIN); this.get(v);
    this.call(WRITE_HELPER[sh]!);
    this.noteStop();
    this.op(Op.end);
  }
  /** Read-modify-write, first half: checked writable (so the write cannot fault), value pushed. */
  private rmwRead(sh: number): void {
    this.tlbTest('V_TLB_WRITE_MASK', sh);
    this.tee(FAST);
    this.op(Op.if, I32);
    this.hostAddr();
    this.tee(ADDR);
    this.loadSh(sh, this.c('RAM'));
    this.op(Op.else);
    this.emitSite();
    this.slowSeg();
    this.get(LIN); this.i32((sh + 1) >> 3); this.call(H.jit_check_write!);
    this.get(LIN); this.call(READ_HELPER[sh]!);
    this.noteStop();
    this.op(Op.end);
  }
  private rmwWrite(sh: number, v: number): void {
    this.get(FAST);
    this.op(Op.if, VOID);
    this.get(ADDR); this.get(v); this.storeSh(sh, this.c('RAM'));
    this.op(Op.else);
    this.emitSite();
    this.get(LIN); this.get(v); this.call(WRITE_HELPER[sh]!);
    this.noteStop();
    this.op(Op.end);
  }

  // --- stack -----------------------------------------------------------------------------
  // Both ways through leave ESP in its local and in CPU_STATE alike (the helper's way reads
  // and writes CPU_STATE), so the block knows it after either.
  private push(v: number): void {
    const ss = SS_SF, r = ESP_OFF >> 2;
    this.cache(r);
    this.get(S32);
    this.op(Op.if, VOID);
    this.get(R0 + r); this.i32(4); this.op(Op.i32_sub); this.set(T);
    this.segLin(ss, 'SF_WRITE', 4);
    this.write(31, v);
    this.get(T); this.set(R0 + r);
    this.op(Op.else);
    this.emitSite();
    this.get(v); this.call(H.jit_push32!);
    this.noteStop();
    this.ld32(this.cs + ESP_OFF); this.set(R0 + r);
    this.op(Op.end);
    this.dirty |= 1 << r;
  }
  /** Pop into local `v`. */
  private pop(v: number): void {
    const ss = SS_SF, r = ESP_OFF >> 2;
    this.cache(r);
    this.get(S32);
    this.op(Op.if, VOID);
    this.get(R0 + r); this.set(T);
    this.segLin(ss, 'SF_READ', 4);
    this.read(31); this.set(v);
    this.get(T); this.i32(4); this.op(Op.i32_add); this.set(R0 + r);
    this.op(Op.else);
    this.emitSite();
    this.call(H.jit_pop32!); this.set(v);
    this.noteStop();
    this.ld32(this.cs + ESP_OFF); this.set(R0 + r);
    this.op(Op.end);
    this.dirty |= 1 << r;
  }

  // --- flags -----------------------------------------------------------------------------
  private lazyKind(kind: PendingKind): number {
    if (kind === 'sbb') return this.c('LF_SUB') | this.c('LF_BORROW_IN');
    return kind === 'sub' ? this.c('LF_SUB') : kind === 'add' ? this.c('LF_ADD') : this.c('LF_LOGIC');
  }
  // An in-line operation's flags wait in FA FB FR (`pending`) until something can see them:
  // the stores are made there (flushFlags), or dropped when another operation sets all flags.
  private pending: { kind: PendingKind; sh: number; mask: number } | undefined;
  private emitFlushFlags(): void {
    const f = this.pending;
    if (!f) return;
    this.i32(0); this.get(PR); this.mem(Op.i32_store, 2, this.cs + this.c('LF_RES'));
    if (f.kind !== 'logic') {
      this.i32(0); this.get(PA); this.mem(Op.i32_store, 2, this.cs + this.c('LF_OP1'));
      this.i32(0); this.get(PB); this.mem(Op.i32_store, 2, this.cs + this.c('LF_OP2'));
    }
    this.i32(0); this.i32(this.lazyKind(f.kind) | (f.sh << 8)); this.mem(Op.i32_store, 2, this.cs + this.c('LF_KIND'));
    this.i32(0); this.i32(f.mask); this.mem(Op.i32_store, 2, this.cs + this.c('LF_MASK'));
  }
  private flushFlags(): void { this.emitFlushFlags(); this.pending = undefined; }
  /** FA FB FR into PA PB PR: the pending operation's values, whatever FA FB FR hold later. */
  private keepPending(): void {
    this.get(FA); this.set(PA); this.get(FB); this.set(PB); this.get(FR); this.set(PR);
  }
  /**
   * V = A shifted by B (1 to the operand's width less one): SHL/SAL (sub 4, 6), SHR (5) or
   * SAR (7) of an operand of size `sh`, with shift_fast()'s flags: CF and OF (AF cleared) in
   * EFLAGS, ZF SF PF lazy as after a logical operation on the result. The pending flags are
   * flushed already. Uses T.
   */
  private shiftByLocal(sub: number, sh: number): void {
    const mask = sh === 31 ? -1 : sh === 15 ? 0xffff : 0xff;
    // SAR works on the operand sign-extended from its width (in A from here on).
    if (sub === 7 && sh !== 31) { this.get(A); this.op(sh === 15 ? Op.i32_extend16_s : Op.i32_extend8_s); this.set(A); }
    this.get(A); this.get(B); this.op(sub === 5 ? Op.i32_shr_u : sub === 7 ? Op.i32_shr_s : Op.i32_shl);
    if (sh !== 31 && sub !== 5) { this.i32(mask); this.op(Op.i32_and); }
    this.set(V);
    // CF: the last bit shifted out.
    this.get(A);
    if (sub === 5 || sub === 7) { this.get(B); this.i32(1); this.op(Op.i32_sub); this.op(sub === 5 ? Op.i32_shr_u : Op.i32_shr_s); }
    else { this.i32(sh + 1); this.get(B); this.op(Op.i32_sub); this.op(Op.i32_shr_u); }
    this.i32(1); this.op(Op.i32_and); this.set(T);
    const eflags = this.cs + this.c('REG_EFLAGS');
    this.i32(0);
    this.ld32(eflags); this.i32(~(FLAG_CF | FLAG_AF | FLAG_OF)); this.op(Op.i32_and);
    this.get(T); this.op(Op.i32_or);
    // OF: SHL the top bit of the result xor CF, SHR the operand's top bit, SAR 0.
    if (sub !== 7) {
      if (sub === 5) { this.get(A); this.i32(sh); this.op(Op.i32_shr_u); this.i32(1); this.op(Op.i32_and); }
      else { this.get(V); this.i32(sh); this.op(Op.i32_shr_u); this.get(T); this.op(Op.i32_xor); this.i32(1); this.op(Op.i32_and); }
      this.i32(OF_BIT); this.op(Op.i32_shl); this.op(Op.i32_or);
    }
    this.mem(Op.i32_store, 2, eflags);
    this.i32(0); this.get(V); this.mem(Op.i32_store, 2, this.cs + this.c('LF_RES'));
    this.i32(0); this.i32(this.c('LF_LOGIC') | (sh << 8)); this.mem(Op.i32_store, 2, this.cs + this.c('LF_KIND'));
    this.i32(0); this.i32(FLAG_ZF | FLAG_SF | FLAG_PF); this.mem(Op.i32_store, 2, this.cs + this.c('LF_MASK'));
  }
  /**
   * ROL (`left`) or ROR of a 32-bit register by `c` (1-31), in line as shift_op(): CF and OF
   * go to EFLAGS (set_flags_bits), every other flag stays as it was.
   */
  private rotateInline(left: boolean, c: number, dst: number): void {
    this.reg(dst, 31); this.i32(c); this.op(left ? Op.i32_rotl : Op.i32_rotr); this.set(V);
    this.flushFlags();
    // ROL: CF = bit 0, OF = bit 31 ^ CF. ROR: CF = bit 31, OF = bit 31 ^ bit 30.
    if (left) { this.get(V); this.i32(1); this.op(Op.i32_and); } else { this.get(V); this.i32(31); this.op(Op.i32_shr_u); }
    this.set(B);
    this.get(V); this.i32(31); this.op(Op.i32_shr_u);
    if (left) this.get(B); else { this.get(V); this.i32(30); this.op(Op.i32_shr_u); this.i32(1); this.op(Op.i32_and); }
    this.op(Op.i32_xor); this.i32(OF_BIT); this.op(Op.i32_shl);
    this.get(B); this.op(Op.i32_or); this.set(B);
    this.setFlagsBits(FLAG_CF | FLAG_OF, B);
    this.get(V); this.putReg(dst, 31);
    this.flags = undefined;
  }
  /** The lazy flags of an operation on FA FB with result FR (as set_lazy()), pending. */
  private setLazy(kind: Flags['kind'], sh: number): void {
    this.keepPending();
    this.pending = { kind, sh, mask: this.c('FLAGS_ARITH') };
    this.flags = { kind, cfValid: true, sh };
  }
  /** FR = FA op FB with flags, op an ALU kind; the in-line ones for 32 bits, else the helper. */
  private alu(k: number, sh: number): void {
    const inline: Record<number, [number, Flags['kind']]> = {
      0: [Op.i32_add, 'add'], 1: [Op.i32_or, 'logic'], 4: [Op.i32_and, 'logic'],
      5: [Op.i32_sub, 'sub'], 6: [Op.i32_xor, 'logic'], 7: [Op.i32_sub, 'sub'],
    };
    const f = inline[k];
    if (f) {
      // As alu_inline(): ADD and SUB results cut to the operand size, logical ones not.
      this.get(FA); this.get(FB); this.op(f[0]);
      if (sh !== 31 && f[1] !== 'logic') { this.i32(sh === 15 ? 0xffff : 0xff); this.op(Op.i32_and); }
      this.set(FR);
      this.setLazy(f[1], sh);
      return;
    }
    if (k === 2 || k === 3) {
      // ADC, SBB as alu_inline(): FA +/- FB +/- CF, flags lazy from the operands (with a
      // borrow in for SBB); the conditions a block works out itself do not cover a carry in.
      this.currentCf(); this.set(X);
      this.get(FA); this.get(FB); this.op(k === 2 ? Op.i32_add : Op.i32_sub);
      this.get(X); this.op(k === 2 ? Op.i32_add : Op.i32_sub);
      if (sh !== 31) { this.i32(sh === 15 ? 0xffff : 0xff); this.op(Op.i32_and); }
      this.set(FR);
      this.keepPending();
      this.pending = { kind: k === 2 ? 'add' : 'sbb', sh, mask: this.c('FLAGS_ARITH') };
      this.flags = undefined;
      return;
    }
    this.flushFlags();
    this.i32(k); this.get(FA); this.get(FB); this.i32(sh);
    this.call(H.jit_alu!);
    this.set(FR);
    this.flags = undefined;
  }
  /** TEST: FR = FA & FB, logical flags. */
  private test(sh: number): void {
    this.get(FA); this.get(FB); this.op(Op.i32_and); this.set(FR);
    this.setLazy('logic', sh);
  }
  /** FR = FA + 1 or FA - 1 with the flags of INC or DEC (CF kept: set_lazy_keep_cf()). */
  private incDec(inc: boolean, sh: number): void {
    // CF as it stands goes to EFLAGS (unless a pending INC or DEC kept it there already);
    // the rest of a pending operation's flags are superseded by this one's, as
    // set_lazy_keep_cf() leaves them.
    const p = this.pending;
    if (!p || (p.mask & FLAG_CF)) {
      const eflags = this.cs + this.c('REG_EFLAGS');
      this.i32(0);
      this.ld32(eflags); this.i32(~FLAG_CF); this.op(Op.i32_and);
      this.currentCf();
      this.op(Op.i32_or);
      this.mem(Op.i32_store, 2, eflags);
    }
    this.pending = undefined;
    this.get(FA); this.i32(1); this.op(inc ? Op.i32_add : Op.i32_sub);
    if (sh !== 31) { this.i32(sh === 15 ? 0xffff : 0xff); this.op(Op.i32_and); }
    this.set(FR);
    this.i32(1); this.set(FB);
    this.keepPending();
    this.pending = { kind: inc ? 'add' : 'sub', sh, mask: this.c('FLAGS_ARITH') & ~1 };
    this.flags = { kind: inc ? 'add' : 'sub', cfValid: false, sh };
  }

  /**
   * Push CF (0 or 1) from the lazy flags in CPU_STATE, taken to be lazy there (LF_MASK has
   * it), as get_cf() works it out. Uses T A B V.
   */
  private lazyCf(): void {
    const cs = this.cs;
    this.ld32(cs + this.c('LF_KIND')); this.i32(0xf); this.op(Op.i32_and); this.set(T);
    this.ld32(cs + this.c('LF_OP1')); this.set(A);
    this.ld32(cs + this.c('LF_OP2')); this.set(B);
    this.ld32(cs + this.c('LF_RES')); this.set(V);
    this.carryOut(A, B, V, false);
    this.carryOut(A, B, V, true);
    this.get(T); this.i32(this.c('LF_SUB')); this.op(Op.i32_ne);
    this.op(Op.select);
    this.ld32(cs + this.c('LF_KIND')); this.i32(8); this.op(Op.i32_shr_u); this.i32(31); this.op(Op.i32_and);
    this.op(Op.i32_shr_u); this.i32(1); this.op(Op.i32_and);
    // Any other kind: CF clear.
    this.get(T); this.i32(this.c('LF_ADD')); this.op(Op.i32_eq);
    this.get(T); this.i32(this.c('LF_SUB')); this.op(Op.i32_eq);
    this.op(Op.i32_or); this.op(Op.i32_and);
  }
  /** Push CF (0 or 1) as it stands: from the pending operation, or from CPU_STATE. Uses T A B V. */
  private currentCf(): void {
    const p = this.pending;
    const eflags = this.cs + this.c('REG_EFLAGS');
    if (p && (p.mask & FLAG_CF)) { this.pendingCf(p); return; }
    if (p) { this.ld32(eflags); this.i32(FLAG_CF); this.op(Op.i32_and); return; }
    this.ld32(this.cs + this.c('LF_MASK')); this.i32(FLAG_CF); this.op(Op.i32_and);
    this.op(Op.if, I32);
    this.lazyCf();
    this.op(Op.else);
    this.ld32(eflags); this.i32(FLAG_CF); this.op(Op.i32_and);
    this.op(Op.end);
  }
  /**
   * Push the carry (borrow) word of r = a + b (a - b) from locals `a` `b` `r`, as get_cf()
   * works it out: CF is its bit at the operand's size. ADD: (a & b) | ((a | b) & ~r); SUB:
   * (~a & b) | (~(a ^ b) & r); right with a carry or borrow in too.
   */
  private carryOut(a: number, b: number, r: number, sub: boolean): void {
    if (!sub) {
      this.get(a); this.get(b); this.op(Op.i32_and);
      this.get(a); this.get(b); this.op(Op.i32_or); this.get(r); this.i32(-1); this.op(Op.i32_xor); this.op(Op.i32_and);
    } else {
      this.get(a); this.i32(-1); this.op(Op.i32_xor); this.get(b); this.op(Op.i32_and);
      this.get(a); this.get(b); this.op(Op.i32_xor); this.i32(-1); this.op(Op.i32_xor); this.get(r); this.op(Op.i32_and);
    }
    this.op(Op.i32_or);
  }
  /** Push CF (0 or 1) of the pending operation `p`, from PA PB PR as get_cf() would. */
  private pendingCf(p: { kind: PendingKind; sh: number }): void {
    if (p.kind === 'logic') { this.i32(0); return; }
    this.carryOut(PA, PB, PR, p.kind !== 'add');
    this.i32(p.sh); this.op(Op.i32_shr_u); this.i32(1); this.op(Op.i32_and);
  }
  /**
   * V = A * B (signed, the low 32 bits), with IMUL's flags as imul_trunc() sets them: CF and
   * OF when the product does not fit, ZF SF PF from the result, AF clear, all in EFLAGS.
   */
  private imulInline(): void {
    this.flushFlags();
    this.get(A); this.get(B); this.op(Op.i32_mul); this.set(V);
    // Overflow: the high half of the 64-bit product is not V's sign.
    this.get(A); this.op(Op.i64_extend_i32_s); this.get(B); this.op(Op.i64_extend_i32_s); this.op(Op.i64_mul);
    this.code.push(Op.i64_const, 32); this.op(Op.i64_shr_s); this.op(Op.i32_wrap_i64);
    this.get(V); this.i32(31); this.op(Op.i32_shr_s); this.op(Op.i32_ne);
    this.i32(-1); this.op(Op.i32_mul); this.i32(FLAG_CF | FLAG_OF); this.op(Op.i32_and);
    this.get(V); this.op(Op.i32_eqz); this.i32(6); this.op(Op.i32_shl); this.op(Op.i32_or);
    this.get(V); this.i32(31); this.op(Op.i32_shr_u); this.i32(7); this.op(Op.i32_shl); this.op(Op.i32_or);
    this.get(V); this.i32(0xff); this.op(Op.i32_and); this.op(Op.i32_popcnt); this.i32(1); this.op(Op.i32_and); this.op(Op.i32_eqz);
    this.i32(2); this.op(Op.i32_shl); this.op(Op.i32_or);
    this.set(T);
    this.setFlagsBits(this.c('FLAGS_ARITH'), T);
    this.flags = undefined;
  }
  /** As set_flags_bits(): the `mask` bits of EFLAGS from local `v`, and no longer lazy. */
  private setFlagsBits(mask: number, v: number): void {
    const eflags = this.cs + this.c('REG_EFLAGS'), lfMask = this.cs + this.c('LF_MASK');
    this.i32(0); this.ld32(eflags); this.i32(~mask); this.op(Op.i32_and); this.get(v); this.op(Op.i32_or);
    this.mem(Op.i32_store, 2, eflags);
    this.i32(0); this.ld32(lfMask); this.i32(~mask); this.op(Op.i32_and);
    this.mem(Op.i32_store, 2, lfMask);
  }
  /** Push whether condition `cc` holds. */
  private cond(cc: number): void {
    const f = this.flags;
    if (f && this.condInline(f, cc)) return;
    this.flushFlags();
    this.i32(cc);
    this.call(H.jit_test_cc!);
  }
  private condInline(f: Flags, cc: number): boolean {
    // An 8- or 16-bit operation's values are compared at their size: cut to it for the
    // unsigned conditions and ZF, sign-extended from it for the signed ones and SF.
    const view = (l: number, signed: boolean) => {
      this.get(l);
      if (f.sh === 31) return;
      if (signed) this.op(f.sh === 7 ? Op.i32_extend8_s : Op.i32_extend16_s);
      else { this.i32(f.sh === 7 ? 0xff : 0xffff); this.op(Op.i32_and); }
    };
    const signedOp = (o: number) => o === Op.i32_lt_s || o === Op.i32_ge_s || o === Op.i32_le_s || o === Op.i32_gt_s;
    const cmpAB = (o: number) => { view(FA, signedOp(o)); view(FB, signedOp(o)); this.op(o); };
    const cmpR0 = (o: number) => { view(FR, signedOp(o)); this.i32(0); this.op(o); };
    if (f.kind === 'logic') {
      switch (cc) {
        case 0: case 2: this.i32(0); return true;
        case 1: case 3: this.i32(1); return true;
        case 4: case 6: cmpR0(Op.i32_eq); return true;
        case 5: case 7: cmpR0(Op.i32_ne); return true;
        case 8: case 12: cmpR0(Op.i32_lt_s); return true;
        case 9: case 13: cmpR0(Op.i32_ge_s); return true;
        case 14: cmpR0(Op.i32_le_s); return true;
        case 15: cmpR0(Op.i32_gt_s); return true;
        default: return false;
      }
    }
    if (cc === 4) { cmpR0(Op.i32_eq); return true; }
    if (cc === 5) { cmpR0(Op.i32_ne); return true; }
    if (cc === 8) { cmpR0(Op.i32_lt_s); return true; }
    if (cc === 9) { cmpR0(Op.i32_ge_s); return true; }
    if (f.kind === 'sub') {
      // For a - b (no borrow in): SF != OF exactly when a < b as signed numbers.
      switch (cc) {
        case 12: cmpAB(Op.i32_lt_s); return true;
        case 13: cmpAB(Op.i32_ge_s); return true;
        case 14: cmpAB(Op.i32_le_s); return true;
        case 15: cmpAB(Op.i32_gt_s); return true;
      }
      if (!f.cfValid) return false;
      switch (cc) {
        case 2: cmpAB(Op.i32_lt_u); return true;
        case 3: cmpAB(Op.i32_ge_u); return true;
        case 6: cmpAB(Op.i32_le_u); return true;
        case 7: cmpAB(Op.i32_gt_u); return true;
      }
      return false;
    }
    // add: CF is the carry out, r < a.
    if (!f.cfValid) return false;
    if (cc === 2) { view(FR, false); view(FA, false); this.op(Op.i32_lt_u); return true; }
    if (cc === 3) { view(FR, false); view(FA, false); this.op(Op.i32_ge_u); return true; }
    return false;
  }

  // --- the block -------------------------------------------------------------------------
  /** Emit block `b`'s code into this.code (cleared); false if its first uop is not compiled. */
  block(mem: DataView, b: RegionBlock): boolean {
    const RS = this.c('RECORD_SIZE');
    this.code = [];
    this.patches = [];
    this.depth = 0;
    this.cur = b;
    this.stored = 0;
    this.flags = undefined;
    this.pending = undefined;
    this.cached = this.dirty = 0;
    let off = 0;
    let k = 0;
    for (let i = 0; i < 64; i++) {
      const r = readRec(this.L, mem, b.hdr + RS * (i + 1));
      const done = this.record(r, i, off, k);
      if (done === 'stop') return false;
      if (done === 'end') return true;
      off += r.len;
      k += done;
    }
    throw new Error(`decoded block at ${b.hdr} has no end`);
  }

  /** Emit one record; returns instructions retired, or how the block ended. */
  private record(r: Rec, index: number, at: number, k: number): number | 'end' | 'stop' {
    this.site = undefined;
    const cls = this.L.classes[r.uop];
    const name = cls?.name ?? '';
    const op = cls?.rule ?? -1;
    const cm = cls?.m ?? null;
    const next = (at + r.len) | 0;
    let m: RegExpMatchArray | null;


    if (name === 'U_END') { this.goTo(at, k); return 'end'; }
    if (name === 'U_NOP') return 1;
    if ((op === 0 && (m = cm))) {
      const sh = SIZE_SH_OF(m[1]!);
      this.reg(r.src, sh); this.putReg(r.dst, sh);
      return 1;
    }
    if ((op === 1 && (m = cm))) {
      this.i32(r.imm); this.putReg(r.dst, SIZE_SH_OF(m[1]!));
      return 1;
    }
    if ((op === 2 && (m = cm))) {
      const sh = SIZE_SH_OF(m[1]!);
      this.faultSite(at, k);
      this.lin(r, 'SF_READ', sh);
      this.read(sh); this.set(V);
      this.get(V); this.putReg(r.dst, sh);
      this.checkStop(next, k + 1);
      return 1;
    }
    if ((op === 3 && (m = cm))) {
      const sh = SIZE_SH_OF(m[2]!);
      this.faultSite(at, k);
      if (m[1]) this.i32(r.imm); else this.reg(r.src, sh);
      this.set(V);
      this.lin(r, 'SF_WRITE', sh);
      this.write(sh, V);
      this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_LEA') {
      this.ea(r.base, r.ixs, r.disp); this.putReg(r.dst, 31);
      return 1;
    }
    if ((op === 4 && (m = cm))) {
      const sh = SIZE_SH_OF(m[2]!);
      const ext = () => { if (m![1] === 'SX') this.op(sh === 7 ? Op.i32_extend8_s : Op.i32_extend16_s); };
      if (m[3] === 'R') {
        this.reg(r.src, sh); ext(); this.putReg(r.dst, 31);
        return 1;
      }
      this.faultSite(at, k);
      this.lin(r, 'SF_READ', sh);
      this.read(sh); ext(); this.set(V);
      this.get(V); this.putReg(r.dst, 31);
      this.checkStop(next, k + 1);
      return 1;
    }
    // 32-bit ALU by kind, register destination.
    if ((op === 5 && (m = cm))) {
      const kind = ALU_KINDS.indexOf(m[1]!);
      return this.aluReg(r, m[2]!, kind, 31, at, next, k);
    }
    if ((op === 6 && (m = cm))) return this.aluReg(r, m[1]!, r.sub, SIZE_SH_OF(m[2]!), at, next, k);
    if ((op === 7 && (m = cm))) {
      const sh = SIZE_SH_OF(m[2]!);
      this.faultSite(at, k);
      const other = () => { if (m![1] === 'MR') this.reg(r.src, sh); else this.i32(r.imm); };
      if (r.sub === 7) {
        this.lin(r, 'SF_READ', sh);
        this.read(sh); this.set(FA);
        other(); this.set(FB);
        this.alu(7, sh);
      } else {
        this.lin(r, 'SF_RMW', sh);
        this.rmwRead(sh); this.set(FA);
        other(); this.set(FB);
        this.alu(r.sub, sh);
        this.rmwWrite(sh, FR);
      }
      this.checkStop(next, k + 1);
      return 1;
    }
    if ((op === 8 && (m = cm))) {
      const sh = SIZE_SH_OF(m[2]!);
      const mem = m[1]![0] === 'M';
      if (mem) {
        this.faultSite(at, k);
        this.lin(r, 'SF_READ', sh);
        this.read(sh);
      } else {
        this.reg(r.dst, sh);
      }
      this.set(FA);
      if (m[1]![1] === 'R') this.reg(r.src, sh); else this.i32(r.imm);
      this.set(FB);
      this.test(sh);
      if (mem) this.checkStop(next, k + 1);
      return 1;
    }
    if ((op === 9 && (m = cm))) {
      const sh = SIZE_SH_OF(m[2]!);
      if (m[1] === 'R') {
        this.reg(r.dst, sh); this.set(FA);
      } else {
        this.faultSite(at, k);
        this.lin(r, 'SF_RMW', sh);
        this.rmwRead(sh); this.set(FA);
      }
      this.incDec(r.sub === 0, sh);
      if (m[1] === 'R') { this.get(FR); this.putReg(r.dst, sh); } else this.rmwWrite(sh, FR);
      if (m[1] === 'M') this.checkStop(next, k + 1);
      return 1;
    }
    if ((op === 10 && (m = cm))) {
      this.mayFault(at, k);
      this.i32(r.addr); this.i32(m[1] === 'M' ? 1 : 0); this.call(H.jit_grp3!);
      this.forgetRegs();
      this.flags = undefined;
      if (m[1] === 'M') this.checkStopMem(next, k + 1);
      return 1;
    }
    if ((op === 11 && (m = cm))) {
      const sh = SIZE_SH_OF(m[3]!);
      const byCl = m[2] === 'C';
      if (!byCl && (r.imm & 31) === 0 && m[1] === 'R') return 1;
      const count = () => { if (byCl) { this.reg(4, 7); this.i32(31); this.op(Op.i32_and); } else this.i32(r.imm & 31); };
      if (!byCl && sh === 31 && r.sub <= 1 && m[1] === 'R') {
        this.rotateInline(r.sub === 0, r.imm & 31, r.dst);
        return 1;
      }
      if (m[1] === 'M') {
        this.faultSite(at, k);
        this.lin(r, 'SF_RMW', sh);
        this.rmwRead(sh); this.set(A);
      } else {
        this.reg(r.dst, sh); this.set(A);
      }
      count(); this.set(B);
      // (The destination register is in its local before the branch, on both of its sides.)
      if (m[1] === 'R') this.cache(r.dst >> 2);
      this.flushFlags();
      if (byCl) { this.get(B); this.op(Op.if, VOID); }
      if (byCl || (r.imm & 31) !== 0) {
        const helper = () => { this.i32(r.sub); this.get(A); this.get(B); this.i32(sh); this.call(H.jit_shift!); this.set(V); };
        if (r.sub < 4) helper();
        else if (sh === 31 || (!byCl && (r.imm & 31) <= sh)) this.shiftByLocal(r.sub, sh);
        else if (!byCl) helper();
        else {
          // By CL: in line up to the operand's width, as shift_fast(); beyond it, the helper.
          this.get(B); this.i32(sh); this.op(Op.i32_le_u);
          this.op(Op.if, VOID); this.shiftByLocal(r.sub, sh); this.op(Op.else); helper(); this.op(Op.end);
        }
        if (m[1] === 'M') this.rmwWrite(sh, V); else { this.get(V); this.putReg(r.dst, sh); }
      }
      if (byCl) this.op(Op.end);
      this.flags = undefined;
      this.pending = undefined;
      if (m[1] === 'M') this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_JMP') { this.goTo((next + r.imm) | 0, k + 1); return 'end'; }
    if ((op === 12 && (m = cm))) {
      const cc = CC_NAMES.indexOf(m[1]!);
      this.cond(cc); this.branch((next + r.imm) | 0, next, k + 1);
      return 'end';
    }
    if ((op === 13 && (m = cm))) {
      const cc = CC_NAMES.indexOf(m[3]!);
      this.reg(r.dst, 31); this.set(FA);
      if (m[2] === 'RR') this.reg(r.src, 31); else this.i32(r.imm);
      this.set(FB);
      if (m[1] === 'CMP') this.alu(7, 31); else this.test(31);
      const fall = (next + r.base) | 0;
      this.cond(cc); this.branch((fall + r.disp) | 0, fall, k + 2);
      return 'end';
    }
    if (name === 'U_DEC_R32_JNE') {
      this.reg(r.dst, 31); this.set(FA);
      this.incDec(false, 31);
      this.get(FR); this.putReg(r.dst, 31);
      const fall = (next + r.base) | 0;
      this.get(FR); this.i32(0); this.op(Op.i32_ne); this.branch((fall + r.disp) | 0, fall, k + 2);
      return 'end';
    }
    if (name === 'U_CALL' || name === 'U_CALL_R' || name === 'U_CALL_M') {
      this.faultSite(at, k);
      if (name === 'U_CALL_R') { this.reg(r.src, 31); this.set(A); }
      else if (name === 'U_CALL_M') { this.lin(r, 'SF_READ', 31); this.read(31); this.set(A); }
      this.eipAt(next); this.set(V);
      this.push(V);
      if (name === 'U_CALL') {
        const target = (next + r.imm) | 0;
        if (this.region.blockAt((this.cur.phys + target) >>> 0) !== undefined) this.returnSite(next);
        this.goTo(target, k + 1, next);
        return 'end';
      }
      this.get(A);
      this.leaveChain(k + 1, { fall: next });
      return 'end';
    }
    if (name === 'U_RET' || name === 'U_RET_IMM') {
      this.faultSite(at, k);
      this.pop(A);
      if (name === 'U_RET_IMM') { this.flushRegs(); this.i32(r.imm); this.call(H.jit_sp_add!); this.forgetRegs(); }
      this.get(A);
      this.leaveChain(k + 1, { ret: true });
      return 'end';
    }
    if (name === 'U_JMP_R') { this.reg(r.src, 31); this.leaveChain(k + 1); return 'end'; }
    if (name === 'U_JMP_M') {
      this.faultSite(at, k);
      this.lin(r, 'SF_READ', 31); this.read(31);
      this.leaveChain(k + 1);
      return 'end';
    }
    if (name === 'U_PUSH_R' || name === 'U_PUSH_I' || name === 'U_PUSH_M') {
      this.faultSite(at, k);
      if (name === 'U_PUSH_R') this.reg(r.src, 31);
      else if (name === 'U_PUSH_I') this.i32(r.imm);
      else { this.lin(r, 'SF_READ', 31); this.read(31); }
      this.set(V);
      this.push(V);
      this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_POP_R') {
      this.faultSite(at, k);
      this.pop(V);
      this.get(V); this.putReg(r.dst, 31);
      this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_LEAVE') { this.mayFault(at, k); this.call(H.jit_leave!); this.forgetRegs(); return 1; }
    if ((op === 14 && (m = cm))) {
      const mem = m[1]![1] === 'M';
      if (mem) { this.faultSite(at, k); this.lin(r, 'SF_READ', 31); this.read(31); this.set(V); }
      if (m[1] === 'RR') { this.reg(r.dst, 31); this.reg(r.src, 31); }
      else if (m[1] === 'RM') { this.reg(r.dst, 31); this.get(V); }
      else if (m[1] === 'RRI') { this.reg(r.src, 31); this.i32(r.imm); }
      else { this.get(V); this.i32(r.imm); }
      this.set(B); this.set(A);
      this.imulInline();
      this.get(V); this.putReg(r.dst, 31);
      if (mem) this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_SETCC_R') { this.cond(r.sub); this.putReg(r.dst, 7); return 1; }
    if (name === 'U_SETCC_M') {
      this.faultSite(at, k);
      this.cond(r.sub); this.set(V);
      this.lin(r, 'SF_WRITE', 7);
      this.write(7, V);
      this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_CMOV_RR' || name === 'U_CMOV_RM') {
      const mem = name === 'U_CMOV_RM';
      if (mem) { this.faultSite(at, k); this.lin(r, 'SF_READ', 31); this.read(31); } else this.reg(r.src, 31);
      this.set(V);
      this.cond(r.sub);
      this.cache(r.dst >> 2);
      this.op(Op.if, VOID);
      this.get(V); this.putReg(r.dst, 31);
      this.op(Op.end);
      if (mem) this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_XCHG_RR') {
      this.reg(r.dst, 31); this.set(A);
      this.reg(r.src, 31); this.putReg(r.dst, 31);
      this.get(A); this.putReg(r.src, 31);
      return 1;
    }
    if (name === 'U_XCHG_MR') {
      this.faultSite(at, k);
      this.lin(r, 'SF_RMW', 31);
      this.rmwRead(31); this.set(A);
      this.reg(r.src, 31); this.set(V);
      this.rmwWrite(31, V);
      this.get(A); this.putReg(r.src, 31);
      this.checkStop(next, k + 1);
      return 1;
    }
    if (name === 'U_CWDE') { this.reg(0, 15); this.op(Op.i32_extend16_s); this.putReg(0, 31); return 1; }
    if (name === 'U_CDQ') { this.reg(0, 31); this.i32(31); this.op(Op.i32_shr_s); this.putReg(8, 31); return 1; }
    if (name === 'U_STEP' || name === 'U_STRING') {
      // step() runs it from CPU_STATE, as the interpreter's U_INTERP does, and the block
      // goes on after it unless EIP is elsewhere or the run must stop (jit_step).
      this.mayFault(at, k);
      this.i32(0); this.eipAt(at); this.mem(Op.i32_store, 2, this.cs + this.c('REG_EIP'));
      this.eipAt(next);
      this.call(H.jit_step!);
      this.forgetRegs();
      this.flags = undefined;
      this.op(Op.if, VOID);
      this.ld32(this.cs + this.c('REG_EIP'));
      this.leave(k + 1);
      this.op(Op.end);
      return 1;
    }
    // Everything else (U_INTERP, port I/O): the interpreter goes on from here.
    if (index === 0 && this.cur.root) return 'stop';
    this.resume(at, k, r.addr);
    return 'end';
  }

  /** ALU with a register destination and a register, immediate or memory source. */
  private aluReg(r: Rec, form: string, kind: number, sh: number, at: number, next: number, k: number): number {
    if (form === 'RM') {
      this.faultSite(at, k);
      this.lin(r, 'SF_READ', sh);
      this.read(sh); this.set(FB);
    } else if (form === 'RR') {
      this.reg(r.src, sh); this.set(FB);
    } else {
      this.i32(r.imm); this.set(FB);
    }
    this.reg(r.dst, sh); this.set(FA);
    this.alu(kind, sh);
    if (kind !== 7) { this.get(FR); this.putReg(r.dst, sh); }
    if (form === 'RM') this.checkStop(next, k + 1);
    return 1;
  }
}

interface Rec {
  addr: number; uop: number; len: number; dst: number; src: number; base: number; ixs: number;
  seg: number; sub: number; disp: number; imm: number;
}

function readRec(L: CoreLayout, mem: DataView, addr: number): Rec {
  const f = L.rf;
  return {
    addr,
    uop: mem.getUint8(addr + f.UOP),
    // U_STEP keeps R_LEN 0 for the interpreter, which runs it as U_INTERP; its length is in R_IMM.
    len: mem.getUint8(addr + f.UOP) === L.c.U_STEP ? mem.getUint32(addr + f.IMM, true) : mem.getUint8(addr + f.LEN),
    dst: mem.getUint8(addr + f.DST),
    src: mem.getUint8(addr + f.SRC),
    base: mem.getUint8(addr + f.BASE),
    ixs: mem.getUint8(addr + f.IXS),
    seg: mem.getUint8(addr + f.SEG),
    sub: mem.getUint8(addr + f.SUB),
    disp: mem.getUint32(addr + f.DISP, true),
    imm: mem.getUint32(addr + f.IMM, true),
  };
}
