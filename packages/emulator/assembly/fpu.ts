// PLACEHOLDER written by the core's author so the core compiles: the x87 engineer owns
// this file and replaces it entirely. The core calls exactly these two exports:
//   fpu_exec(op 0xD8..0xDF, modrm, seg (-1 when mod == 3), offset, o32) for every x87
//     escape after the core has checked CR0.EM/TS (#NM) and decoded the ModRM/EA;
//   fpu_wait() for FWAIT/WAIT (0x9B): raise a pending unmasked x87 exception (#MF with
//     CR0.NE, FERR otherwise); the core has not checked CR0.TS/MP for it.
// Flags for FCOMI & co: set_arith_flags_zpc(zf, pf, cf) in state.ts.
// Memory: vread8/16/32, vwrite8/16/32, vcheck_write/vcheck_read (seg, offset) in memory.ts.
// Faults: raise(vector, hasError, error) in memory.ts; EXC_MF, EXC_NM there too.

import { ud } from './memory';

export function fpu_exec(op: u32, modrm: u32, seg: i32, offset: u32, o32: bool): void {
  ud();
}
export function fpu_wait(): void {}
export function fpu_reset(): void {}
