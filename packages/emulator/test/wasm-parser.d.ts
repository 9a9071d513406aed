// @webassemblyjs/wasm-parser ships no types; the test walks its AST as plain objects.
declare module '@webassemblyjs/wasm-parser' {
  export function decode(buf: Uint8Array, opts?: Record<string, unknown>): unknown;
}
