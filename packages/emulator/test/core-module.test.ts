import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { decode } from '@webassemblyjs/wasm-parser';
import { CORE_WASM_PATH, CORE_IMPORTS, Cpu, StopReason } from '../src/cpu.ts';
import { loadFlat } from '../src/loaders/multiboot.ts';

interface Node { type?: string; id?: string; args?: unknown[]; [k: string]: unknown }

function parseCore(): Node {
  const ast = decode(readFileSync(CORE_WASM_PATH), { ignoreDataSection: true }) as { body: Node[] };
  return ast.body[0];
}

function largestBrTable(n: unknown): number {
  let max = 0;
  const walk = (x: unknown): void => {
    if (!x || typeof x !== 'object') return;
    if (Array.isArray(x)) { x.forEach(walk); return; }
    const node = x as Node;
    if (node.type === 'Instr' && node.id === 'br_table') max = Math.max(max, node.args?.length ?? 0);
    for (const [k, v] of Object.entries(node)) if (k !== 'loc') walk(v);
  };
  walk(n);
  return max;
}

describe('the CPU core module', () => {
  const mod = parseCore();
  const fields = mod.fields as Node[];

  it('imports exactly what the host provides', () => {
    const imports = fields.filter((f) => f.type === 'ModuleImport').map((f) => `${f.module}.${f.name}`).sort();
    const expected = Object.entries(CORE_IMPORTS).flatMap(([m, names]) => names.map((n) => `${m}.${n}`)).sort();
    expect(imports).toEqual(expected);
  });

  it('exports the entry points and layout constants the host uses', () => {
    const exports = new Set(fields.filter((f) => f.type === 'ModuleExport').map((f) => f.name as string));
    for (const name of ['reset', 'run', 'deliver_fault', 'state_loaded', 'dirty_clear_all', 'mark_dirty_range',
      'dirty_reset', 'tlb_flush', 'get_eflags', 'set_eflags_raw', 'heap_base',
      'CPU_STATE', 'CPU_STATE_SIZE', 'REG_EAX', 'REG_EIP', 'SEG_BASE_OFF', 'INSTR_COUNT', 'RUN_TARGET', 'RAM',
      'DIRTY_LIST', 'DIRTY_COUNT', 'FPU_STATE']) {
      expect(exports.has(name), name).toBe(true);
    }
  });

  it('dispatches opcodes through one dense br_table, not a compare chain', () => {
    // 256 one-byte opcodes plus the 0F map: binaryen may fold a tail of #UD cases into the
    // default, but a compare chain would leave no large table at all.
    expect(largestBrTable(mod)).toBeGreaterThanOrEqual(400);
  });

  it('is what the block compiler\'s modules import: every helper, with the signature the core exports', () => {
    // A loop the compiler takes in, run in slices so it compiles between them.
    const cpu = new Cpu({ ramBytes: 2 * 1024 * 1024, jitThreshold: 1, bus: { ioRead: () => 0xff, ioWrite: () => {}, mmioRead: () => 0, mmioWrite: () => {}, interruptAcknowledge: () => -1 } });
    const modules: Uint8Array[] = [];
    cpu.jit!.onModule = (b) => modules.push(b.slice());
    // xor edx, edx; mov ecx, 1000; l: add eax, [ebx]; inc edx; dec ecx; jnz l; hlt (flat 32-bit)
    loadFlat(cpu, new Uint8Array([0x31, 0xd2, 0xb9, 0xe8, 0x03, 0, 0, 0xbb, 0, 0x10, 0, 0, 0x03, 0x03, 0x42, 0x49, 0x75, 0xfa, 0xf4]), 0x100000);
    while (cpu.run(50) === StopReason.Count);
    expect(cpu.state.get('edx')).toBe(1000);
    expect(modules.length).toBeGreaterThan(0);

    const coreFuncs = fields.filter((f) => f.type === 'Func') as Node[];
    const coreImports = fields.filter((f) => f.type === 'ModuleImport' && (f.descr as Node).type === 'FuncImportDescr').length;
    const exported = new Map<string, string>();
    for (const f of fields.filter((x) => x.type === 'ModuleExport' && (x.descr as Node).exportType === 'Func')) {
      const fn = coreFuncs[((f.descr as Node).id as unknown as { value: number }).value - coreImports];
      exported.set(f.name as string, JSON.stringify(fn?.signature ?? null));
    }
    const sig = (s: Node) => JSON.stringify({ type: 'Signature', params: s.params, results: s.results });
    for (const bytes of modules) {
      const gen = (decode(bytes) as { body: Node[] }).body[0].fields as Node[];
      const imports = gen.filter((f) => f.type === 'ModuleImport');
      const mem = imports.filter((f) => (f.descr as Node).type === 'Memory');
      expect(mem.map((f) => `${f.module}.${f.name}`)).toEqual(['e.m']);
      for (const f of imports.filter((x) => (x.descr as Node).type === 'FuncImportDescr')) {
        expect(f.module).toBe('c');
        expect(exported.has(f.name as string), f.name as string).toBe(true);
        expect(sig((f.descr as Node).signature as Node), f.name as string).toBe(exported.get(f.name as string));
      }
      // The core's function table, through which exit sites chain to other compiled blocks.
      expect(imports.filter((f) => (f.descr as Node).type === 'Table').map((f) => `${f.module}.${f.name}`)).toEqual(['e.t']);
      // Each exported block function takes the block's EIP, the chain's depth and the return
      // address a compiled CALL in the chain waits for, and returns the next EIP; the one
      // function not exported is the chain function, which also takes the exit site's slot.
      const funcs = gen.filter((f) => f.type === 'Func');
      const exportedIds = new Set(gen.filter((f) => f.type === 'ModuleExport').map((f) => ((f.descr as Node).id as unknown as { value: number }).value));
      const own = funcs.map((fn, i) => ({ fn, exported: exportedIds.has(imports.filter((x) => (x.descr as Node).type === 'FuncImportDescr').length + i) }));
      expect(own.filter((f) => !f.exported)).toHaveLength(1);
      for (const { fn, exported: isBlock } of own) {
        expect(JSON.stringify((fn.signature as Node).params)).toBe(JSON.stringify(Array(isBlock ? 3 : 4).fill({ valtype: 'i32' })));
        expect((fn.signature as Node).results).toEqual(['i32']);
      }
    }
    // The core calls them through its exported function table.
    expect(fields.some((f) => f.type === 'ModuleExport' && f.name === 'table')).toBe(true);
  });

  it('runs on in the interpreter when the block compiler fails (a host bug never stops the guest)', () => {
    process.env.FTX86_TEST_JIT_FAIL = '1';
    const errors: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => { errors.push(String(chunk)); return true; }) as typeof process.stderr.write;
    try {
      const cpu = new Cpu({ ramBytes: 2 * 1024 * 1024, jitThreshold: 1, bus: { ioRead: () => 0xff, ioWrite: () => {}, mmioRead: () => 0, mmioWrite: () => {}, interruptAcknowledge: () => -1 } });
      loadFlat(cpu, new Uint8Array([0x31, 0xd2, 0xb9, 0xe8, 0x03, 0, 0, 0xbb, 0, 0x10, 0, 0, 0x03, 0x03, 0x42, 0x49, 0x75, 0xfa, 0xf4]), 0x100000);
      while (cpu.run(50) === StopReason.Count);
      expect(cpu.state.get('edx')).toBe(1000);
      expect(cpu.jitFailed).toBe(true);
      expect(errors.join('')).toMatch(/block compiler failed, running on without it/);
    } finally {
      process.stderr.write = write;
      delete process.env.FTX86_TEST_JIT_FAIL;
    }
  });

  it('keeps its static data below the CPU state and instantiates with RAM in linear memory', () => {
    const cpu = new Cpu({ ramBytes: 2 * 1024 * 1024, bus: { ioRead: () => 0xff, ioWrite: () => {}, mmioRead: () => 0, mmioWrite: () => {}, interruptAcknowledge: () => -1 } });
    expect(cpu.ram.length).toBe(2 * 1024 * 1024);
    expect(cpu.state.get('eip')).toBe(0xfff0);
    expect(cpu.state.get('cs')).toBe(0xf000);
  });

  it('refuses bad sizes and register names with clear errors', () => {
    const bus = { ioRead: () => 0xff, ioWrite: () => {}, mmioRead: () => 0, mmioWrite: () => {}, interruptAcknowledge: () => -1 };
    expect(() => new Cpu({ ramBytes: 12345, bus })).toThrow(/multiple of 4 KiB/);
    const cpu = new Cpu({ ramBytes: 1024 * 1024, bus });
    expect(() => cpu.state.get('rax' as never)).toThrow(/unknown register "rax"/);
    expect(() => cpu.state.set('eax', -1)).toThrow(/32-bit unsigned/);
    expect(() => cpu.readPhysical(1024 * 1024 - 2, 4)).toThrow(/outside RAM/);
  });
});
