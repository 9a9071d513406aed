// The host side of the block compiler: after run() returns, the blocks the core queued as
// hot are compiled into one WASM module, and each block's function goes into the core's
// function table, its index into the block's header, where run_cached() calls it from.

import { CoreLayout, blockImports, blockModule, compileRegion } from './compiler.ts';

export interface JitOptions {
  /** Runs of a block in the interpreter before it is compiled; 0 turns the compiler off. */
  threshold: number;
}

/**
 * The threshold FTX86_JIT=on gives: a block must have run this often to be worth compiling.
 * 30000 beat 8000 by 1.09-1.19x on the Debian workload in four interleaved pairs (session 7;
 * fork+exec code that is warm but never hot no longer gets compiled); 15000 and 60000 were
 * within the machine's noise of it.
 */
export const JIT_THRESHOLD_DEFAULT = 30000;

export interface JitStats {
  /** Blocks compiled, modules made, and the host time spent on them (ms). */
  blocks: number;
  modules: number;
  skipped: number;
  compileMs: number;
  /** Of compileMs, the time the WASM engine took to compile and instantiate the modules. */
  engineMs: number;
  bytes: number; flushes: number; regionBlocks: number;
}

export class Jit {
  private readonly layout: CoreLayout;
  private readonly view: DataView;
  private readonly words: Uint32Array;
  private readonly table: WebAssembly.Table;
  private readonly imports: WebAssembly.Imports;
  private readonly memPages: number;
  /** Table indices below this belong to the core itself. */
  private readonly tableBase: number;
  private next: number;
  private flushes: number;
  /** The next exit-site slot to hand out (JIT_SLOTS .. JIT_SLOTS_END, JIT_SLOT_SIZE bytes each). */
  private nextSlot: number;
  readonly stats: JitStats = { blocks: 0, modules: 0, skipped: 0, compileMs: 0, engineMs: 0, bytes: 0, flushes: 0, regionBlocks: 0 };

  constructor(private readonly exports: Record<string, unknown>, memory: WebAssembly.Memory, opts: JitOptions) {
    this.layout = new CoreLayout(exports);
    this.view = new DataView(memory.buffer);
    this.words = new Uint32Array(memory.buffer);
    const table = exports.table;
    if (!(table instanceof WebAssembly.Table)) throw new Error('core does not export its function table: rebuild it');
    this.table = table;
    this.imports = blockImports(exports, memory);
    this.memPages = memory.buffer.byteLength / 65536;
    this.tableBase = Math.max(1, table.length);
    this.next = this.tableBase;
    this.flushes = this.word('JIT_FLUSHES');
    this.nextSlot = this.clearSlots();
    this.setThreshold(opts.threshold);
  }

  /**
   * Empty every exit-site slot: after decoded code is forgotten, code generations and table
   * indices are handed out again from the start, so a slot's contents would name the wrong
   * function. Returns the first slot.
   */
  private clearSlots(): number {
    const lo = this.layout.get('JIT_SLOTS'), hi = this.layout.get('JIT_SLOTS_END');
    this.words.fill(0, lo >>> 2, hi >>> 2);
    return lo;
  }

  /**
   * A slot for one exit site. When they run out they are handed out again from the start:
   * a slot is only a cache that its site checks in full, so two sites may share one.
   */
  private slot = (): number => {
    const s = this.nextSlot;
    const next = s + this.layout.get('JIT_SLOT_SIZE');
    this.nextSlot = next >= this.layout.get('JIT_SLOTS_END') ? this.layout.get('JIT_SLOTS') : next;
    return s;
  };

  private word(name: string): number { return this.words[this.layout.get(name) >>> 2]!; }
  private setWord(name: string, v: number): void { this.words[this.layout.get(name) >>> 2] = v >>> 0; }

  setThreshold(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`JIT threshold must be a whole number >= 0, got ${n}`);
    this.setWord('JIT_THRESHOLD', n);
  }

  /** Called with each module's bytes before it is instantiated (tests, inspection). */
  onModule: ((bytes: Uint8Array) => void) | undefined;

  /** Instructions retired in compiled code so far. */
  get retired(): bigint {
    const a = this.layout.get('JIT_RETIRED') >>> 2;
    return BigInt(this.words[a]!) | (BigInt(this.words[a + 1]!) << 32n);
  }

  /** Whether blocks wait in the queue. */
  get pending(): boolean { return this.word('JIT_QUEUE_COUNT') !== 0; }

  /** Compile the queued blocks (called between runs of the core). */
  compileQueued(): void {
    const count = this.word('JIT_QUEUE_COUNT');
    if (count === 0) return;
    const t0 = performance.now();
    const flushes = this.word('JIT_FLUSHES');
    if (flushes !== this.flushes) {
      // All decoded code was forgotten since the last batch: no header names an index now.
      this.flushes = flushes;
      this.stats.flushes++;
      this.next = this.tableBase;
      this.nextSlot = this.clearSlots();
    }
    const queue = this.layout.get('JIT_QUEUE');
    const funcOff = this.layout.get('B_FUNC');
    const headers: number[] = [];
    const bodies: number[][] = [];
    for (let i = 0; i < count; i++) {
      const hdr = this.words[(queue >>> 2) + i]!;
      if (this.view.getUint32(hdr + funcOff, true) !== 0) continue;
      const fn = compileRegion(this.layout, this.view, hdr, this.slot);
      if (!fn) { this.stats.skipped++; continue; }
      headers.push(hdr);
      bodies.push(fn.code);
      this.stats.regionBlocks += fn.blocks;
    }
    this.setWord('JIT_QUEUE_COUNT', 0);
    if (bodies.length === 0) return;
    if (process.env.FTX86_TEST_JIT_FAIL) throw new Error('FTX86_TEST_JIT_FAIL (test hook)');
    const bytes = blockModule(this.layout, this.memPages, bodies);
    this.onModule?.(bytes);
    const t1 = performance.now();
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), this.imports);
    this.stats.engineMs += performance.now() - t1;
    this.stats.bytes += bytes.length;
    const base = this.next;
    const need = base + bodies.length - this.table.length;
    if (need > 0) this.table.grow(need);
    for (let i = 0; i < bodies.length; i++) {
      this.table.set(base + i, instance.exports[`b${i}`] as () => number);
      this.view.setUint32(headers[i]! + funcOff, base + i, true);
    }
    this.next = base + bodies.length;
    this.stats.blocks += bodies.length;
    this.stats.modules++;
    this.stats.compileMs += performance.now() - t0;
  }
}
