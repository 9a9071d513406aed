// A small WebAssembly binary writer: just what the block compiler emits (one memory import,
// function imports, functions of i32/i64 locals, the MVP instructions plus sign extension).
// Layout per the WebAssembly core specification, 5 (binary format).

export const I32 = 0x7f;
export const I64 = 0x7e;

/** Opcodes used by the compiler. */
export const Op = {
  unreachable: 0x00, block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, br_if: 0x0d,
  return: 0x0f, call: 0x10, call_indirect: 0x11, drop: 0x1a, select: 0x1b,
  local_get: 0x20, local_set: 0x21, local_tee: 0x22,
  i32_load: 0x28, i64_load: 0x29, i32_load8_s: 0x2c, i32_load8_u: 0x2d, i32_load16_s: 0x2e, i32_load16_u: 0x2f,
  i32_store: 0x36, i64_store: 0x37, i32_store8: 0x3a, i32_store16: 0x3b,
  i32_const: 0x41, i64_const: 0x42,
  i32_eqz: 0x45, i32_eq: 0x46, i32_ne: 0x47, i32_lt_s: 0x48, i32_lt_u: 0x49, i32_gt_s: 0x4a, i32_gt_u: 0x4b,
  i32_le_s: 0x4c, i32_le_u: 0x4d, i32_ge_s: 0x4e, i32_ge_u: 0x4f,
  i32_add: 0x6a, i32_sub: 0x6b, i32_mul: 0x6c, i32_and: 0x71, i32_or: 0x72, i32_xor: 0x73,
  i32_shl: 0x74, i32_shr_s: 0x75, i32_shr_u: 0x76,
  i64_add: 0x7c, i64_gt_u: 0x56, br_table: 0x0e, i32_extend8_s: 0xc0, i32_extend16_s: 0xc1,
  i32_popcnt: 0x69, i32_rotl: 0x77, i32_rotr: 0x78, i64_mul: 0x7e, i64_shr_s: 0x87, i32_wrap_i64: 0xa7, i64_extend_i32_s: 0xac,
} as const;

/** Block type of an `if`/`block` with no result, or with an i32 result. */
export const VOID = 0x40;

export function uleb(out: number[], v: number): void {
  v >>>= 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
}

/** Signed LEB128 of a 32-bit value (taken as signed). */
export function sleb(out: number[], v: number): void {
  v |= 0;
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

function name(out: number[], s: string): void {
  const bytes = Buffer.from(s, 'utf8');
  uleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

function section(out: number[], id: number, body: number[]): void {
  out.push(id);
  uleb(out, body.length);
  for (let i = 0; i < body.length; i++) out.push(body[i]!);
}

export interface FuncType { params: number[]; results: number[] }

export interface ImportedFunc { module: string; name: string; type: FuncType }

export interface FuncBody {
  type: FuncType;
  /** Local groups after the parameters: [count, valtype]. */
  locals: [number, number][];
  /** The instructions, without the final `end`. */
  code: number[];
  export?: string;
}

export interface ModuleSpec {
  memory: { module: string; name: string; minPages: number };
  /** An imported funcref table (table 0), for call_indirect. */
  table?: { module: string; name: string };
  /** Types to number first (0, 1, ...), so that code can name them before encoding. */
  types?: FuncType[];
  imports: ImportedFunc[];
  funcs: FuncBody[];
}

function typeKey(t: FuncType): string { return `${t.params.join(',')}>${t.results.join(',')}`; }

/** The module's bytes. Imported functions take indices 0.., the module's own follow. */
export function encodeModule(spec: ModuleSpec): Uint8Array<ArrayBuffer> {
  const types: FuncType[] = [];
  const typeIndex = new Map<string, number>();
  const typeOf = (t: FuncType): number => {
    const k = typeKey(t);
    let i = typeIndex.get(k);
    if (i === undefined) {
      i = types.length;
      types.push(t);
      typeIndex.set(k, i);
    }
    return i;
  };
  for (const t of spec.types ?? []) typeOf(t);
  for (const f of spec.imports) typeOf(f.type);
  for (const f of spec.funcs) typeOf(f.type);

  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const typeSec: number[] = [];
  uleb(typeSec, types.length);
  for (const t of types) {
    typeSec.push(0x60);
    uleb(typeSec, t.params.length);
    typeSec.push(...t.params);
    uleb(typeSec, t.results.length);
    typeSec.push(...t.results);
  }
  section(out, 1, typeSec);

  const importSec: number[] = [];
  uleb(importSec, spec.imports.length + 1 + (spec.table ? 1 : 0));
  name(importSec, spec.memory.module);
  name(importSec, spec.memory.name);
  importSec.push(0x02, 0x00);
  uleb(importSec, spec.memory.minPages);
  if (spec.table) {
    name(importSec, spec.table.module);
    name(importSec, spec.table.name);
    importSec.push(0x01, 0x70, 0x00, 0x00); // funcref, no minimum
  }
  for (const f of spec.imports) {
    name(importSec, f.module);
    name(importSec, f.name);
    importSec.push(0x00);
    uleb(importSec, typeOf(f.type));
  }
  section(out, 2, importSec);

  const funcSec: number[] = [];
  uleb(funcSec, spec.funcs.length);
  for (const f of spec.funcs) uleb(funcSec, typeOf(f.type));
  section(out, 3, funcSec);

  const exported = spec.funcs.map((f, i) => [f, i] as const).filter(([f]) => f.export !== undefined);
  const exportSec: number[] = [];
  uleb(exportSec, exported.length);
  for (const [f, i] of exported) {
    name(exportSec, f.export!);
    exportSec.push(0x00);
    uleb(exportSec, spec.imports.length + i);
  }
  section(out, 7, exportSec);

  // The code section is most of the module: its bodies are copied once, straight from
  // each function's code array into the module's bytes.
  const heads: number[][] = [];
  const bodySizes: number[] = [];
  let codeSize = ulebLength(spec.funcs.length);
  for (const f of spec.funcs) {
    const head: number[] = [];
    uleb(head, f.locals.length);
    for (const [n, t] of f.locals) {
      uleb(head, n);
      head.push(t);
    }
    const size = head.length + f.code.length + 1; // + end
    heads.push(head);
    bodySizes.push(size);
    codeSize += ulebLength(size) + size;
  }
  const codeHead: number[] = [10];
  uleb(codeHead, codeSize);
  uleb(codeHead, spec.funcs.length);

  const bytes = new Uint8Array(out.length + codeHead.length + codeSize - ulebLength(spec.funcs.length));
  bytes.set(out, 0);
  let at = out.length;
  bytes.set(codeHead, at);
  at += codeHead.length;
  const sizeBytes: number[] = [];
  for (let i = 0; i < spec.funcs.length; i++) {
    sizeBytes.length = 0;
    uleb(sizeBytes, bodySizes[i]!);
    bytes.set(sizeBytes, at);
    at += sizeBytes.length;
    bytes.set(heads[i]!, at);
    at += heads[i]!.length;
    bytes.set(spec.funcs[i]!.code, at);
    at += spec.funcs[i]!.code.length;
    bytes[at++] = Op.end;
  }
  if (at !== bytes.length) throw new Error(`wasm-writer: module size ${at}, planned ${bytes.length}`);
  return bytes;
}

function ulebLength(v: number): number {
  let n = 1;
  for (v >>>= 0; v >= 0x80; v >>>= 7) n++;
  return n;
}
