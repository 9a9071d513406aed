import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { decode } from '@webassemblyjs/wasm-parser';
import { CORE_WASM_PATH, CORE_IMPORTS, Cpu } from '../src/cpu.ts';

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
