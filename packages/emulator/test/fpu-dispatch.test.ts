// x87 machine code run by the whole core (decoder, dispatcher, fpu.ts): small real-mode
// programs, including #MF delivery through the interrupt vector table.
import { describe, it, expect, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';

const pkgDir = fileURLToPath(new URL('..', import.meta.url));
const FAULT = new Error('core fault');
const RAM_BYTES = 1 << 20;

let wasm: Uint8Array<ArrayBuffer>;
beforeAll(async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'ftx86-core-')), 'core.wasm');
  const stderr: string[] = [];
  const { error } = await asc.main(
    ['assembly/index.ts', '-o', out, '--optimizeLevel', '3', '--noAssert', '--runtime', 'stub', '--importMemory',
      '--initialMemory', '1', '--use', 'abort=assembly/index/abort_handler', '--baseDir', pkgDir],
    { stderr: { write: (s: string) => { stderr.push(String(s)); return true; } } as never },
  );
  if (error) throw new Error(`asc failed: ${error.message}\n${stderr.join('')}`);
  wasm = new Uint8Array(readFileSync(out));
});

interface Machine {
  dv: DataView;
  ram: (a: number) => number;
  G: Record<string, number>;
  X: Record<string, (...a: number[]) => number>;
  ferr: number[];
  run(): number;
}

function boot(code: number[], at = 0x7c00): Machine {
  const memory = new WebAssembly.Memory({ initial: (32 << 4) + (RAM_BYTES >> 16), maximum: (32 << 4) + (RAM_BYTES >> 16) }); // RAM at 32 MiB
  const ferr: number[] = [];
  const inst = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
    env: { memory },
    host: {
      raise: () => { throw FAULT; },
      io_read: () => 0xff, io_write: () => {}, mmio_read: () => 0xffffffff, mmio_write: () => {},
      intr_ack: () => -1,
      fpu_ferr: (level: number) => { ferr.push(level); },
      // RDTSC/WRMSR 0x10 with a live TSC (exec.ts); these programs use neither.
      tsc: () => 0n, tsc_write: () => {},
    },
  });
  const X = inst.exports as unknown as Record<string, (...a: number[]) => number>;
  const G: Record<string, number> = {};
  for (const [k, v] of Object.entries(inst.exports)) if (v instanceof WebAssembly.Global) G[k] = v.value as number;
  X.reset(RAM_BYTES);
  const dv = new DataView(memory.buffer);
  const cpu = (o: number) => G.CPU_STATE + o;
  // CS = 0, IP = `at`; SP = 0x7000.
  const cs = cpu(G.SEG_BASE_OFF + 1 * G.SEG_SIZE);
  dv.setUint32(cs, 0, true);
  dv.setUint32(cs + 4, 0, true);
  dv.setUint32(cpu(G.REG_EIP), at, true);
  dv.setUint32(cpu(G.REG_EAX + 4 * 4), 0x7000, true);
  X.state_loaded();
  const ram = (a: number) => G.RAM + a;
  code.forEach((b, i) => dv.setUint8(ram(at + i), b));
  dv.setBigUint64(cpu(G.RUN_TARGET), 100000n, true);
  return {
    dv, ram, G, X, ferr,
    run() {
      for (;;) {
        try { return X.run(); } catch (e) { if (e !== FAULT) throw e; X.deliver_fault(); }
      }
    },
  };
}

const STOP_HALT = 1;

describe('x87 programs through the decoder', () => {
  it('FNINIT; FLDCW; FLD m64; FSQRT; FSTP m64; FNSTSW AX', () => {
    const m = boot([
      0xdb, 0xe3, // fninit
      0xd9, 0x2e, 0x00, 0x80, // fldcw [0x8000]
      0xdd, 0x06, 0x08, 0x80, // fld qword [0x8008]
      0xd9, 0xfa, // fsqrt
      0xdd, 0x1e, 0x10, 0x80, // fstp qword [0x8010]
      0xdf, 0xe0, // fnstsw ax
      0xf4, // hlt
    ]);
    m.dv.setUint16(m.ram(0x8000), 0x027f, true);
    m.dv.setFloat64(m.ram(0x8008), 2, true);
    expect(m.run()).toBe(STOP_HALT);
    expect(m.dv.getFloat64(m.ram(0x8010), true)).toBe(Math.SQRT2);
    expect(m.dv.getUint16(m.G.CPU_STATE + m.G.REG_EAX, true) & 0x3f).toBe(0x20); // PE
  });

  it('a loop summing 1..10 with FADD, FADDP, FILD and FCOMIP/JAE', () => {
    const m = boot([
      0xdb, 0xe3, // fninit
      0xd9, 0xee, // fldz            sum
      0xd9, 0xe8, // fld1            i
      // loop:
      0xdc, 0xc1, // fadd st1, st0   sum += i
      0xd9, 0xe8, // fld1
      0xde, 0xc1, // faddp st1, st0  i += 1
      0xdf, 0x06, 0x00, 0x81, // fild word [0x8100]   limit
      0xdf, 0xf1, // fcomip st0, st1 limit vs i, pop
      0x73, 0xf2, // jae loop
      0xdd, 0xd8, // fstp st0
      0xdd, 0x1e, 0x10, 0x81, // fstp qword [0x8110]
      0xf4,
    ]);
    m.dv.setUint16(m.ram(0x8100), 10, true);
    expect(m.run()).toBe(STOP_HALT);
    expect(m.dv.getFloat64(m.ram(0x8110), true)).toBe(55);
  });

  it('an unmasked divide-by-zero faults with #MF at the FWAIT, pointing at it; FIP points at FDIVP', () => {
    const code = [
      0xdb, 0xe3, // 7c00 fninit
      0xd9, 0x2e, 0x00, 0x80, // 7c02 fldcw [0x8000]
      0xd9, 0xe8, // 7c06 fld1
      0xd9, 0xee, // 7c08 fldz
      0xde, 0xf9, // 7c0a fdivp st1, st0
      0x9b, // 7c0c fwait -> #MF
      0xf4, // not reached
    ];
    const m = boot(code);
    // CR0.NE: report through #MF; IVT[16] -> 0000:7E00 (fnclex; hlt).
    const cr0 = m.G.CPU_STATE + m.G.REG_CR0;
    m.dv.setUint32(cr0, m.dv.getUint32(cr0, true) | 0x20, true);
    m.dv.setUint16(m.ram(16 * 4), 0x7e00, true);
    m.dv.setUint16(m.ram(16 * 4 + 2), 0, true);
    [0xdb, 0xe2, 0xf4].forEach((b, i) => m.dv.setUint8(m.ram(0x7e00 + i), b));
    m.dv.setUint16(m.ram(0x8000), 0x037b, true);
    expect(m.run()).toBe(STOP_HALT);
    expect(m.dv.getUint32(m.G.CPU_STATE + m.G.REG_EIP, true)).toBe(0x7e03);
    // The return address on the stack is the FWAIT itself.
    expect(m.dv.getUint16(m.ram(0x7000 - 6), true)).toBe(0x7c0c);
    const f = m.G.CPU_STATE + m.G.FPU_STATE;
    expect(m.dv.getUint32(f + 0x88, true)).toBe(0x7c0a); // FIP
    expect(m.dv.getUint16(f + 0x86, true)).toBe(0x6f9); // FOP = DE F9
    expect(m.dv.getUint16(f + 0x82, true) & 0x80ff).toBe(0); // cleared by the handler's FNCLEX
  });
});
