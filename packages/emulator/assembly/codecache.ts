// The decoded-code cache: 32-bit code is decoded once into 16-byte instruction records,
// grouped in blocks of straight-line code keyed by physical address, and run by one dense
// switch (run_cached). Instructions it does not know end a block with a U_INTERP record,
// which runs them through step() from their bytes; 16-bit code always runs in step().
// DESIGN.md: pre-decoded blocks ran at ~1.6x a full decode per instruction in the toy
// interpreter; here the Linux boot went from 24 to over 100 M instructions per second.
//
// Correctness rests on three rules:
// - A block's bytes lie in one fetch window (one physical page, inside CS.limit) at decode
//   time and again at every run (checked on entry), so CS, paging and limits are those of
//   the interpreter's fetch.
// - A block is valid while its page's code generation (memory.ts, CODE_PAGE) is the one it
//   was decoded under. Any write into the page (CPU, through any alias, or host DMA) drops
//   the generation and sets block_stop, so a running block returns before its next
//   instruction and the next lookup decodes the new bytes.
// - Records hold only what the bytes say; registers, segments, flags, privilege and paging
//   are read when the record runs, through the interpreter's own helpers, so a record
//   behaves as step() would on the same bytes, faults included (raise() unwinds from here
//   as from anywhere, with EIP_START and ESP_START of the instruction).

import {
  CPU_STATE, REG_EIP, REG_EFLAGS, EIP_START, INSTR_COUNT, CODE32, STACK32, RAM, EA_ZERO,
  INTR_LINE, NMI_PENDING, HALTED, SHUTDOWN, HOST_REQUEST, CODE_CACHE_OFF,
  BLOCK_HASH, BLOCK_HASH_ENTRIES, BLOCK_ARENA, BLOCK_ARENA_END, LF_RES, LF_KIND, LF_MASK,
  JIT_THRESHOLD, JIT_QUEUE, JIT_QUEUE_COUNT, JIT_QUEUE_MAX, JIT_RESUME, JIT_FLUSHES, JIT_LIMIT, JIT_RETIRED, JIT_SITE,
  JIT_SLOT_EIP, JIT_SLOT_FN, JIT_SLOT_TAG, JIT_SLOT_GEN,
} from './layout';
import {
  reg32, set_reg32, reg16, set_reg16, reg8, set_reg8, test_cc_inline, seg_attr, get_cf, FLAG_TF, FLAG_IF,
  FLAG_CF, FLAG_OF, FLAG_AF, FLAG_ZF, FLAG_SF, FLAG_PF, LF_LOGIC, ESP, EBP, EAX, EDX, SS, DS, ATTR_DB,
} from './state';
import {
  vread32, read8, read16, read32, write8, write16, write32, seg_check_fast, seg_fast_refresh,
  check_write_lin_fast, ATTR_READ_OK, ATTR_WRITE_OK, SF_READ, SF_WRITE, SF_RMW, fw_lo, fw_len,
  fw_host, fetch_window_try, fetch_window_walk, TLB_VALID_BIT, V_BLOCK_STOP, block_stop, clear_block_stop, set_in_block, code_page_gen, code_page_register, code_pages_clear,
} from './memory';
import { push32, pop32, sp, sp_add, set_sp, reset_prefixes, set_prefix_seg } from './decode';
import { string_op } from './string';
import { io_read, io_write, io_check } from './io';
import {
  alu_inline, inc, dec, neg, shift_op, imul_trunc, mul32, imul32, div32, idiv32, test_flags,
} from './arith';
import { step } from './exec';

// ---------------------------------------------------------------------------------------
// Records. Registers are named by their byte offset in CPU_STATE (an 8-bit register by the
// offset of its byte), so running a record never decodes a register number.

export const R_UOP: u32 = 0;
/** Bytes of the instruction, prefixes included; 0 for U_INTERP (step() fetches it). */
export const R_LEN: u32 = 1;
export const R_DST: u32 = 2;
export const R_SRC: u32 = 3;
/**
 * Effective address: [base] + ([index] << scale) + disp, base and index EA_ZERO when absent;
 * the index byte holds the scale in its low two bits (register offsets are multiples of 4).
 */
export const R_BASE: u32 = 4;
export const R_INDEX_SCALE: u32 = 5;
/** Segment register number * 16: its entry in SEG_FAST. */
export const R_SEG: u32 = 6;
/** The uop's sub-operation: ALU kind, shift kind, condition, group-3 operation. */
export const R_SUB: u32 = 7;
export const R_DISP: u32 = 8;
/** Immediate operand, relative branch displacement, or shift count. */
export const R_IMM: u32 = 12;
export const RECORD_SIZE: u32 = 16;

/** Longest block, in instructions. */
const BLOCK_MAX: u32 = 32;

// Uops: the operations records name. Sizes are in the name (8, 16, 32); R = register,
// M = memory, I = immediate, C = CL. The sub field carries the ALU kind (as arith.alu),
// shift kind (as shift_op), condition code, or group-3 operation.
export const U_INTERP: u32 = 0;
export const U_MOV_RR32: u32 = 1; export const U_MOV_RR16: u32 = 2; export const U_MOV_RR8: u32 = 3;
export const U_LOAD32: u32 = 4; export const U_LOAD16: u32 = 5; export const U_LOAD8: u32 = 6;
export const U_STORE32: u32 = 7; export const U_STORE16: u32 = 8; export const U_STORE8: u32 = 9;
export const U_MOV_RI32: u32 = 10; export const U_MOV_RI16: u32 = 11; export const U_MOV_RI8: u32 = 12;
export const U_STORE_I32: u32 = 13; export const U_STORE_I16: u32 = 14; export const U_STORE_I8: u32 = 15;
export const U_LEA: u32 = 16;
export const U_MOVZX8_R: u32 = 17; export const U_MOVZX8_M: u32 = 18; export const U_MOVZX16_R: u32 = 19; export const U_MOVZX16_M: u32 = 20;
export const U_MOVSX8_R: u32 = 21; export const U_MOVSX8_M: u32 = 22; export const U_MOVSX16_R: u32 = 23; export const U_MOVSX16_M: u32 = 24;
// 16- and 8-bit ALU operations, the kind in the sub field (32-bit ones are below, by kind).
export const U_ALU_RR16: u32 = 25; export const U_ALU_RR8: u32 = 26;
export const U_ALU_RM16: u32 = 27; export const U_ALU_RM8: u32 = 28;
export const U_ALU_MR32: u32 = 29; export const U_ALU_MR16: u32 = 30; export const U_ALU_MR8: u32 = 31;
export const U_ALU_RI16: u32 = 32; export const U_ALU_RI8: u32 = 33;
export const U_ALU_MI32: u32 = 34; export const U_ALU_MI16: u32 = 35; export const U_ALU_MI8: u32 = 36;
export const U_TEST_RR32: u32 = 37; export const U_TEST_RR16: u32 = 38; export const U_TEST_RR8: u32 = 39;
export const U_TEST_MR32: u32 = 40; export const U_TEST_MR16: u32 = 41; export const U_TEST_MR8: u32 = 42;
export const U_TEST_RI32: u32 = 43; export const U_TEST_RI16: u32 = 44; export const U_TEST_RI8: u32 = 45;
export const U_TEST_MI32: u32 = 46; export const U_TEST_MI16: u32 = 47; export const U_TEST_MI8: u32 = 48;
/** INC (sub 0) or DEC (sub 1). */
export const U_INCDEC_R32: u32 = 49; export const U_INCDEC_R16: u32 = 50; export const U_INCDEC_R8: u32 = 51;
export const U_INCDEC_M32: u32 = 52; export const U_INCDEC_M16: u32 = 53; export const U_INCDEC_M8: u32 = 54;
/** F7 /2../7 with a 32-bit operand: NOT NEG MUL IMUL DIV IDIV (sub = ModRM.reg). */
export const U_GRP3_R32: u32 = 55; export const U_GRP3_M32: u32 = 56;
export const U_SHIFT_RI32: u32 = 57; export const U_SHIFT_RI16: u32 = 58; export const U_SHIFT_RI8: u32 = 59;
export const U_SHIFT_RC32: u32 = 60; export const U_SHIFT_RC16: u32 = 61; export const U_SHIFT_RC8: u32 = 62;
export const U_SHIFT_MI32: u32 = 63; export const U_SHIFT_MI16: u32 = 64; export const U_SHIFT_MI8: u32 = 65;
export const U_SHIFT_MC32: u32 = 66; export const U_SHIFT_MC16: u32 = 67; export const U_SHIFT_MC8: u32 = 68;
// Control transfers end a block (and the sixteen U_JCC below).
export const U_JMP: u32 = 69; export const U_CALL: u32 = 70; export const U_RET: u32 = 71; export const U_RET_IMM: u32 = 72;
export const U_JMP_R: u32 = 73; export const U_JMP_M: u32 = 74; export const U_CALL_R: u32 = 75; export const U_CALL_M: u32 = 76;
export const U_PUSH_R: u32 = 77; export const U_PUSH_I: u32 = 78; export const U_PUSH_M: u32 = 79; export const U_POP_R: u32 = 80;
export const U_LEAVE: u32 = 81;
export const U_IMUL_RR: u32 = 82; export const U_IMUL_RM: u32 = 83; export const U_IMUL_RRI: u32 = 84; export const U_IMUL_RMI: u32 = 85;
export const U_SETCC_R: u32 = 86; export const U_SETCC_M: u32 = 87; export const U_CMOV_RR: u32 = 88; export const U_CMOV_RM: u32 = 89;
export const U_XCHG_RR: u32 = 90; export const U_XCHG_MR: u32 = 91;
export const U_CWDE: u32 = 92; export const U_CDQ: u32 = 93; export const U_NOP: u32 = 94;
// The hottest uops come in one variant per condition or ALU kind, so that running one
// takes a single indirect branch (the dispatch) instead of two.
// (Named one by one: a switch case must be a plain constant to land in the br_table.)
/** U_JCC + cc. */
export const U_JCC: u32 = 95;
export const U_JO: u32 = 95; export const U_JNO: u32 = 96; export const U_JB: u32 = 97; export const U_JAE: u32 = 98;
export const U_JE: u32 = 99; export const U_JNE: u32 = 100; export const U_JBE: u32 = 101; export const U_JA: u32 = 102;
export const U_JS: u32 = 103; export const U_JNS: u32 = 104; export const U_JP: u32 = 105; export const U_JNP: u32 = 106;
export const U_JL: u32 = 107; export const U_JGE: u32 = 108; export const U_JLE: u32 = 109; export const U_JG: u32 = 110;
/** U_ALU_*32 + kind (ADD OR ADC SBB AND SUB XOR CMP). */
export const U_ALU_RR32: u32 = 111;
export const U_ADD_RR32: u32 = 111; export const U_OR_RR32: u32 = 112; export const U_ADC_RR32: u32 = 113;
export const U_SBB_RR32: u32 = 114; export const U_AND_RR32: u32 = 115; export const U_SUB_RR32: u32 = 116;
export const U_XOR_RR32: u32 = 117; export const U_CMP_RR32: u32 = 118;
export const U_ALU_RI32: u32 = 119;
export const U_ADD_RI32: u32 = 119; export const U_OR_RI32: u32 = 120; export const U_ADC_RI32: u32 = 121;
export const U_SBB_RI32: u32 = 122; export const U_AND_RI32: u32 = 123; export const U_SUB_RI32: u32 = 124;
export const U_XOR_RI32: u32 = 125; export const U_CMP_RI32: u32 = 126;
export const U_ALU_RM32: u32 = 127;
export const U_ADD_RM32: u32 = 127; export const U_OR_RM32: u32 = 128; export const U_ADC_RM32: u32 = 129;
export const U_SBB_RM32: u32 = 130; export const U_AND_RM32: u32 = 131; export const U_SUB_RM32: u32 = 132;
export const U_XOR_RM32: u32 = 133; export const U_CMP_RM32: u32 = 134;
/** Ends a block that does not end in a control transfer: on to the next block. */
export const U_END: u32 = 135;
// A compare, test or decrement and the conditional jump after it, fused into one record
// (decode_block): the jump's condition comes from the operands, not from flags stored and
// read back, and the pair takes one dispatch. The record's R_BASE holds the jump's length,
// R_DISP its displacement. The flags are still recorded for later readers.
export const U_CMP_RR32_JB: u32 = 136; export const U_CMP_RR32_JAE: u32 = 137;
export const U_CMP_RR32_JE: u32 = 138; export const U_CMP_RR32_JNE: u32 = 139;
export const U_CMP_RR32_JBE: u32 = 140; export const U_CMP_RR32_JA: u32 = 141;
export const U_CMP_RR32_JL: u32 = 142; export const U_CMP_RR32_JGE: u32 = 143;
export const U_CMP_RR32_JLE: u32 = 144; export const U_CMP_RR32_JG: u32 = 145;
export const U_CMP_RI32_JB: u32 = 146; export const U_CMP_RI32_JAE: u32 = 147;
export const U_CMP_RI32_JE: u32 = 148; export const U_CMP_RI32_JNE: u32 = 149;
export const U_CMP_RI32_JBE: u32 = 150; export const U_CMP_RI32_JA: u32 = 151;
export const U_CMP_RI32_JL: u32 = 152; export const U_CMP_RI32_JGE: u32 = 153;
export const U_CMP_RI32_JLE: u32 = 154; export const U_CMP_RI32_JG: u32 = 155;
export const U_TEST_RR32_JE: u32 = 156; export const U_TEST_RR32_JNE: u32 = 157;
export const U_TEST_RI32_JE: u32 = 158; export const U_TEST_RI32_JNE: u32 = 159;
export const U_DEC_R32_JNE: u32 = 160;
/** MOVS CMPS STOS LODS SCAS without REP: string_op() with sub = kind and R_DST = size. */
export const U_STRING: u32 = 161;
// IN and OUT, the port in R_IMM or DX, sub = size. A device may raise an interrupt line or
// ask the host loop to stop, so they end the block and the run goes on only as run() would.
export const U_IN_I: u32 = 162; export const U_IN_D: u32 = 163; export const U_OUT_I: u32 = 164; export const U_OUT_D: u32 = 165;
/**
 * An instruction left to step() that cannot change what a block depends on (no control
 * transfer, no segment, mode, paging, privilege or IF/TF change): bit tests, CMPXCHG, XADD,
 * BSWAP, BSF/BSR, SHLD/SHRD, flag ops, RDTSC, the x87, 8- and 16-bit MUL/DIV, LOCK forms and
 * REP strings. The interpreter runs it as U_INTERP and ends the block there (R_LEN is 0, so
 * EIP stays on it); the decoder goes on after it (its length in R_IMM), so that compiled code
 * can run it through step() (jit_step) and carry on in the block.
 */
export const U_STEP: u32 = 166;

// ---------------------------------------------------------------------------------------
// The decode table: one entry per opcode, 0x000-0x0FF and 0F xx at 0x100-0x1FF. It says
// how to decode an opcode (ModRM, immediate, operand size) and which form of uop it makes;
// an opcode that is not here (F_NONE) ends the block and runs in the interpreter. A later
// translator can read the same table.

// Forms.
const F_NONE: u32 = 0;
const F_ALU_EG: u32 = 1;   // op Eb,Gb / Ev,Gv
const F_ALU_GE: u32 = 2;   // op Gb,Eb / Gv,Ev
const F_ALU_AI: u32 = 3;   // op AL,Ib / eAX,Iz
const F_GRP1: u32 = 4;     // 80-83: op Ev,imm (kind = ModRM.reg)
const F_TEST_EG: u32 = 5;
const F_TEST_AI: u32 = 6;
const F_MOV_EG: u32 = 7;
const F_MOV_GE: u32 = 8;
const F_MOV_EI: u32 = 9;   // C6/C7 /0
const F_MOV_RI: u32 = 10;  // B0-BF
const F_MOV_AO: u32 = 11;  // A0/A1: accumulator <- moffs
const F_MOV_OA: u32 = 12;  // A2/A3: moffs <- accumulator
const F_LEA: u32 = 13;
const F_INC_R: u32 = 14;
const F_DEC_R: u32 = 15;
const F_GRP4: u32 = 16;    // FE: INC/DEC Eb
const F_GRP5: u32 = 17;    // FF: INC DEC CALL JMP PUSH Ev
const F_GRP2: u32 = 18;    // shifts; sub: count from imm8 (0), 1 (1) or CL (2)
const F_GRP3: u32 = 19;    // F6/F7
const F_JCC: u32 = 20;
const F_JMP: u32 = 21;
const F_CALL: u32 = 22;
const F_RET: u32 = 23;
const F_RET_IMM: u32 = 24;
const F_PUSH_R: u32 = 25;
const F_POP_R: u32 = 26;
const F_PUSH_I: u32 = 27;
const F_MOVX: u32 = 28;    // sub: MOVZX Gv,Eb (0), Gv,Ew (1), MOVSX Gv,Eb (2), Gv,Ew (3)
const F_IMUL_GE: u32 = 29;
const F_IMUL_GEI: u32 = 30;
const F_SETCC: u32 = 31;
const F_CMOV: u32 = 32;
const F_XCHG_EG: u32 = 33;
const F_XCHG_AR: u32 = 34;
const F_NOP: u32 = 35;
const F_CWDE: u32 = 36;
const F_CDQ: u32 = 37;
const F_LEAVE: u32 = 38;
const F_STRING: u32 = 39;  // sub: the string.ts kind
const F_IN_I: u32 = 40;    // IN from an imm8 port
const F_IN_D: u32 = 41;    // IN from port DX
const F_OUT_I: u32 = 42;
const F_OUT_D: u32 = 43;
const F_STEP: u32 = 44;    // U_STEP: decoded for its length only

// Entry bits: form in 0-7, sub in 8-11, immediate kind in 12-14, flags above.
const IB: u32 = 1 << 12;   // imm8
const IBS: u32 = 2 << 12;  // imm8 sign-extended to the operand size
const IZ: u32 = 3 << 12;   // imm16 or imm32 by operand size
const IW: u32 = 4 << 12;   // imm16
const IMO: u32 = 5 << 12;  // moffs32
const M: u32 = 1 << 15;    // has a ModRM byte
const B: u32 = 1 << 16;    // byte operands
const W: u32 = 1 << 17;    // may take a 0x66 prefix (16-bit operands)

const DECODE_TABLE: StaticArray<u32> = [
  // 0x00: ADD .. 0x07
  F_ALU_EG | M | B | W, F_ALU_EG | M | W, F_ALU_GE | M | B | W, F_ALU_GE | M | W, F_ALU_AI | IB | B | W, F_ALU_AI | IZ | W, 0, 0,
  // 0x08: OR
  F_ALU_EG | M | B | W | 0x100, F_ALU_EG | M | W | 0x100, F_ALU_GE | M | B | W | 0x100, F_ALU_GE | M | W | 0x100,
  F_ALU_AI | IB | B | W | 0x100, F_ALU_AI | IZ | W | 0x100, 0, 0,
  // 0x10: ADC
  F_ALU_EG | M | B | W | 0x200, F_ALU_EG | M | W | 0x200, F_ALU_GE | M | B | W | 0x200, F_ALU_GE | M | W | 0x200,
  F_ALU_AI | IB | B | W | 0x200, F_ALU_AI | IZ | W | 0x200, 0, 0,
  // 0x18: SBB
  F_ALU_EG | M | B | W | 0x300, F_ALU_EG | M | W | 0x300, F_ALU_GE | M | B | W | 0x300, F_ALU_GE | M | W | 0x300,
  F_ALU_AI | IB | B | W | 0x300, F_ALU_AI | IZ | W | 0x300, 0, 0,
  // 0x20: AND
  F_ALU_EG | M | B | W | 0x400, F_ALU_EG | M | W | 0x400, F_ALU_GE | M | B | W | 0x400, F_ALU_GE | M | W | 0x400,
  F_ALU_AI | IB | B | W | 0x400, F_ALU_AI | IZ | W | 0x400, 0, 0,
  // 0x28: SUB
  F_ALU_EG | M | B | W | 0x500, F_ALU_EG | M | W | 0x500, F_ALU_GE | M | B | W | 0x500, F_ALU_GE | M | W | 0x500,
  F_ALU_AI | IB | B | W | 0x500, F_ALU_AI | IZ | W | 0x500, 0, 0,
  // 0x30: XOR
  F_ALU_EG | M | B | W | 0x600, F_ALU_EG | M | W | 0x600, F_ALU_GE | M | B | W | 0x600, F_ALU_GE | M | W | 0x600,
  F_ALU_AI | IB | B | W | 0x600, F_ALU_AI | IZ | W | 0x600, 0, 0,
  // 0x38: CMP
  F_ALU_EG | M | B | W | 0x700, F_ALU_EG | M | W | 0x700, F_ALU_GE | M | B | W | 0x700, F_ALU_GE | M | W | 0x700,
  F_ALU_AI | IB | B | W | 0x700, F_ALU_AI | IZ | W | 0x700, 0, 0,
  // 0x40: INC r, 0x48: DEC r
  F_INC_R | W, F_INC_R | W, F_INC_R | W, F_INC_R | W, F_INC_R | W, F_INC_R | W, F_INC_R | W, F_INC_R | W,
  F_DEC_R | W, F_DEC_R | W, F_DEC_R | W, F_DEC_R | W, F_DEC_R | W, F_DEC_R | W, F_DEC_R | W, F_DEC_R | W,
  // 0x50: PUSH r, 0x58: POP r
  F_PUSH_R, F_PUSH_R, F_PUSH_R, F_PUSH_R, F_PUSH_R, F_PUSH_R, F_PUSH_R, F_PUSH_R,
  F_POP_R, F_POP_R, F_POP_R, F_POP_R, F_POP_R, F_POP_R, F_POP_R, F_POP_R,
  // 0x60
  0, 0, 0, 0, 0, 0, 0, 0,
  F_PUSH_I | IZ, F_IMUL_GEI | M | IZ, F_PUSH_I | IBS, F_IMUL_GEI | M | IBS, 0, 0, 0, 0,
  // 0x70: Jcc rel8
  F_JCC | IBS, F_JCC | IBS | 0x100, F_JCC | IBS | 0x200, F_JCC | IBS | 0x300,
  F_JCC | IBS | 0x400, F_JCC | IBS | 0x500, F_JCC | IBS | 0x600, F_JCC | IBS | 0x700,
  F_JCC | IBS | 0x800, F_JCC | IBS | 0x900, F_JCC | IBS | 0xa00, F_JCC | IBS | 0xb00,
  F_JCC | IBS | 0xc00, F_JCC | IBS | 0xd00, F_JCC | IBS | 0xe00, F_JCC | IBS | 0xf00,
  // 0x80
  F_GRP1 | M | IB | B | W, F_GRP1 | M | IZ | W, F_GRP1 | M | IB | B | W, F_GRP1 | M | IBS | W,
  F_TEST_EG | M | B | W, F_TEST_EG | M | W, 0, F_XCHG_EG | M,
  F_MOV_EG | M | B | W, F_MOV_EG | M | W, F_MOV_GE | M | B | W, F_MOV_GE | M | W, 0, F_LEA | M, 0, 0,
  // 0x90
  F_NOP | W, F_XCHG_AR, F_XCHG_AR, F_XCHG_AR, F_XCHG_AR, F_XCHG_AR, F_XCHG_AR, F_XCHG_AR,
  F_CWDE, F_CDQ, 0, F_STEP | W, 0, 0, F_STEP | W, F_STEP | W,
  // 0xA0
  F_MOV_AO | IMO | B | W, F_MOV_AO | IMO | W, F_MOV_OA | IMO | B | W, F_MOV_OA | IMO | W,
  F_STRING | B | W, F_STRING | W, F_STRING | B | W | 0x100, F_STRING | W | 0x100,
  F_TEST_AI | IB | B | W, F_TEST_AI | IZ | W, F_STRING | B | W | 0x200, F_STRING | W | 0x200,
  F_STRING | B | W | 0x300, F_STRING | W | 0x300, F_STRING | B | W | 0x400, F_STRING | W | 0x400,
  // 0xB0: MOV r8, imm8; 0xB8: MOV r, imm
  F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W,
  F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W, F_MOV_RI | IB | B | W,
  F_MOV_RI | IZ | W, F_MOV_RI | IZ | W, F_MOV_RI | IZ | W, F_MOV_RI | IZ | W,
  F_MOV_RI | IZ | W, F_MOV_RI | IZ | W, F_MOV_RI | IZ | W, F_MOV_RI | IZ | W,
  // 0xC0
  F_GRP2 | M | IB | B | W, F_GRP2 | M | IB | W, F_RET_IMM | IW, F_RET, 0, 0, F_MOV_EI | M | IB | B | W, F_MOV_EI | M | IZ | W,
  0, F_LEAVE, 0, 0, 0, 0, 0, 0,
  // 0xD0
  F_GRP2 | M | B | W | 0x100, F_GRP2 | M | W | 0x100, F_GRP2 | M | B | W | 0x200, F_GRP2 | M | W | 0x200, 0, 0, 0, 0,
  // 0xD8: the x87
  F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W,
  // 0xE0
  0, 0, 0, 0, F_IN_I | IB | B | W, F_IN_I | IB | W, F_OUT_I | IB | B | W, F_OUT_I | IB | W,
  F_CALL | IZ, F_JMP | IZ, 0, F_JMP | IBS, F_IN_D | B | W, F_IN_D | W, F_OUT_D | B | W, F_OUT_D | W,
  // 0xF0
  0, 0, 0, 0, 0, F_STEP | W, F_GRP3 | M | B | W, F_GRP3 | M | W,
  F_STEP | W, F_STEP | W, 0, 0, F_STEP | W, F_STEP | W, F_GRP4 | M | B | W, F_GRP5 | M | W,

  // 0F 00 .. 0F 3F
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  // 0F 31: RDTSC
  0, F_STEP | W, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  // 0F 40: CMOVcc
  F_CMOV | M, F_CMOV | M | 0x100, F_CMOV | M | 0x200, F_CMOV | M | 0x300,
  F_CMOV | M | 0x400, F_CMOV | M | 0x500, F_CMOV | M | 0x600, F_CMOV | M | 0x700,
  F_CMOV | M | 0x800, F_CMOV | M | 0x900, F_CMOV | M | 0xa00, F_CMOV | M | 0xb00,
  F_CMOV | M | 0xc00, F_CMOV | M | 0xd00, F_CMOV | M | 0xe00, F_CMOV | M | 0xf00,
  // 0F 50 .. 0F 7F
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  // 0F 80: Jcc rel32
  F_JCC | IZ, F_JCC | IZ | 0x100, F_JCC | IZ | 0x200, F_JCC | IZ | 0x300,
  F_JCC | IZ | 0x400, F_JCC | IZ | 0x500, F_JCC | IZ | 0x600, F_JCC | IZ | 0x700,
  F_JCC | IZ | 0x800, F_JCC | IZ | 0x900, F_JCC | IZ | 0xa00, F_JCC | IZ | 0xb00,
  F_JCC | IZ | 0xc00, F_JCC | IZ | 0xd00, F_JCC | IZ | 0xe00, F_JCC | IZ | 0xf00,
  // 0F 90: SETcc
  F_SETCC | M, F_SETCC | M | 0x100, F_SETCC | M | 0x200, F_SETCC | M | 0x300,
  F_SETCC | M | 0x400, F_SETCC | M | 0x500, F_SETCC | M | 0x600, F_SETCC | M | 0x700,
  F_SETCC | M | 0x800, F_SETCC | M | 0x900, F_SETCC | M | 0xa00, F_SETCC | M | 0xb00,
  F_SETCC | M | 0xc00, F_SETCC | M | 0xd00, F_SETCC | M | 0xe00, F_SETCC | M | 0xf00,
  // 0F A0: BT, SHLD, BTS, SHRD
  0, 0, 0, F_STEP | M | W, F_STEP | M | IB | W, F_STEP | M | W, 0, 0,
  0, 0, 0, F_STEP | M | W, F_STEP | M | IB | W, F_STEP | M | W, 0, F_IMUL_GE | M,
  // 0F B0: CMPXCHG, BTR, group 8 (BT* imm8), BTC, BSF, BSR
  F_STEP | M | W, F_STEP | M | W, 0, F_STEP | M | W, 0, 0, F_MOVX | M, F_MOVX | M | 0x100,
  0, 0, F_STEP | M | IB | W, F_STEP | M | W, F_STEP | M | W, F_STEP | M | W, F_MOVX | M | 0x200, F_MOVX | M | 0x300,
  // 0F C0: XADD, CMPXCHG8B, BSWAP
  F_STEP | M | W, F_STEP | M | W, 0, 0, 0, 0, 0, F_STEP | M | W,
  F_STEP | W, F_STEP | W, F_STEP | W, F_STEP | W, F_STEP | W, F_STEP | W, F_STEP | W, F_STEP | W,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/** The decode-table entry of opcode `op` (0x000-0x1FF). */
@inline export function decode_entry(op: u32): u32 { return unchecked(DECODE_TABLE[op]); }

// ---------------------------------------------------------------------------------------
// Decoding one instruction into a record.

/** Byte offset in CPU_STATE of register r as an operand of `sh` (7, 15, 31). */
@inline function reg_off(r: u32, sh: u32): u32 {
  return sh == 7 ? ((r & 3) << 2) | ((r >> 2) & 1) : r << 2;
}

// Decoder state for the instruction being decoded: its bytes at host address dp, of which
// davail lie in the fetch window.
let dp: u32 = 0;
let davail: u32 = 0;
let di: u32 = 0;
let dbad: bool = false;

@inline function dbyte(): u32 {
  const i = di++;
  if (i >= davail) { dbad = true; return 0; }
  return load<u8>(dp + i);
}
function dword(): u32 {
  const lo = dbyte() | (dbyte() << 8);
  return lo | (dbyte() << 16) | (dbyte() << 24);
}

/** An ALU uop: by kind for 32 bits, else the 16-bit one (the 8-bit one follows it). */
@inline function alu_uop(base32: u32, base16: u32, sh: u32, kind: u32): u32 {
  return sh == 31 ? base32 + kind : sh == 15 ? base16 : base16 + 1;
}

/**
 * Decode the instruction at host address `p` (with `avail` bytes before the end of the
 * fetch window) into the record at `rec`. Returns its length, or 0 if it must run in the
 * interpreter (an opcode or prefix the table does not cover, or bytes beyond the window).
 */
function decode_insn(p: u32, avail: u32, rec: u32): u32 {
  dp = p; davail = avail; di = 0; dbad = false;
  let seg: i32 = -1;
  let o16 = false;
  let repz = false;
  let repnz = false;
  let lock = false;
  let op: u32 = 0;
  while (true) {
    const b = dbyte();
    if (b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e) { seg = <i32>((b >> 3) & 3); continue; }
    if (b == 0x64 || b == 0x65) { seg = <i32>(b - 0x60); continue; }
    if (b == 0x66) { o16 = true; continue; }
    if (b == 0xf3) { repz = true; continue; }
    if (b == 0xf2) { repnz = true; continue; }
    if (b == 0xf0) { lock = true; continue; }
    op = b == 0x0f ? 0x100 | dbyte() : b;
    break;
  }
  if (dbad || di > 4) return 0;
  const e = decode_entry(op);
  const form = e & 0xff;
  if (form == F_NONE || (o16 && (e & W) == 0)) return 0;
  // F3 90 is PAUSE, a NOP here; REP strings are U_STEP; REP on anything else is left to
  // the interpreter.
  if ((repz || repnz) && form != F_STRING && !(repz && !repnz && op == 0x90)) return 0;
  let sub = (e >> 8) & 15;
  const sh: u32 = (e & B) ? 7 : o16 ? 15 : 31;

  // ModRM and the effective address (SDM Vol. 2, 2.1.5, 32-bit addressing).
  let mod: u32 = 3, reg: u32 = 0, rm: u32 = 0;
  let base: u32 = EA_ZERO, index: u32 = EA_ZERO, scale: u32 = 0, disp: u32 = 0;
  let dseg: i32 = DS;
  if (e & M) {
    const m = dbyte();
    mod = m >> 6; reg = (m >> 3) & 7; rm = m & 7;
    if (mod != 3) {
      if (rm == 4) {
        const sib = dbyte();
        scale = sib >> 6;
        const ix = (sib >> 3) & 7;
        const bs = sib & 7;
        if (bs == 5 && mod == 0) {
          disp = dword();
        } else {
          base = bs << 2;
          if (bs == 4 || bs == 5) dseg = SS;
        }
        if (ix != 4) index = ix << 2;
      } else if (rm == 5 && mod == 0) {
        disp = dword();
      } else {
        base = rm << 2;
        if (rm == 5) dseg = SS;
      }
      if (mod == 1) disp += <u32>(<i32>(<i8>dbyte()));
      else if (mod == 2) disp += dword();
    }
  }

  // Group opcodes pick their operation by ModRM.reg; F6/F7 /0 alone has an immediate.
  let ikind = e & (7 << 12);
  if (form == F_GRP1 || form == F_GRP5 || form == F_GRP4) sub = reg;
  else if (form == F_GRP2) sub = sub | (reg << 2);
  else if (form == F_GRP3) { sub = reg; if (reg < 2) ikind = (e & B) ? IB : IZ; }

  let imm: u32 = 0;
  if (ikind == IB) imm = dbyte();
  else if (ikind == IBS) imm = <u32>(<i32>(<i8>dbyte())) & (sh == 15 ? 0xffff : 0xffffffff);
  else if (ikind == IZ) imm = sh == 15 ? dbyte() | (dbyte() << 8) : dword();
  else if (ikind == IW) imm = dbyte() | (dbyte() << 8);
  else if (ikind == IMO) { disp = dword(); mod = 0; }
  const len = di;
  if (dbad || len > 15) return 0;

  const isMem = mod != 3;
  const szIdx: u32 = sh == 31 ? 0 : sh == 15 ? 1 : 2; // uop families list sizes 32, 16, 8
  let uop: u32 = U_INTERP;
  let dst: u32 = 0;
  let src: u32 = 0;
  switch (form) {
    case F_ALU_EG:
      if (isMem) { uop = U_ALU_MR32 + szIdx; src = reg_off(reg, sh); }
      else { uop = alu_uop(U_ALU_RR32, U_ALU_RR16, sh, sub); dst = reg_off(rm, sh); src = reg_off(reg, sh); }
      break;
    case F_ALU_GE:
      dst = reg_off(reg, sh);
      if (isMem) uop = alu_uop(U_ALU_RM32, U_ALU_RM16, sh, sub);
      else { uop = alu_uop(U_ALU_RR32, U_ALU_RR16, sh, sub); src = reg_off(rm, sh); }
      break;
    case F_ALU_AI: uop = alu_uop(U_ALU_RI32, U_ALU_RI16, sh, sub); dst = 0; break;
    case F_GRP1:
      if (isMem) uop = U_ALU_MI32 + szIdx; else { uop = alu_uop(U_ALU_RI32, U_ALU_RI16, sh, sub); dst = reg_off(rm, sh); }
      break;
    case F_TEST_EG:
      src = reg_off(reg, sh);
      if (isMem) uop = U_TEST_MR32 + szIdx; else { uop = U_TEST_RR32 + szIdx; dst = reg_off(rm, sh); }
      break;
    case F_TEST_AI: uop = U_TEST_RI32 + szIdx; dst = 0; break;
    case F_MOV_EG:
      src = reg_off(reg, sh);
      if (isMem) uop = U_STORE32 + szIdx; else { uop = U_MOV_RR32 + szIdx; dst = reg_off(rm, sh); }
      break;
    case F_MOV_GE:
      dst = reg_off(reg, sh);
      if (isMem) uop = U_LOAD32 + szIdx; else { uop = U_MOV_RR32 + szIdx; src = reg_off(rm, sh); }
      break;
    case F_MOV_EI:
      if (reg != 0) return 0;
      if (isMem) uop = U_STORE_I32 + szIdx; else { uop = U_MOV_RI32 + szIdx; dst = reg_off(rm, sh); }
      break;
    case F_MOV_RI: uop = U_MOV_RI32 + szIdx; dst = reg_off(op & 7, sh); break;
    case F_MOV_AO: uop = U_LOAD32 + szIdx; dst = 0; break;
    case F_MOV_OA: uop = U_STORE32 + szIdx; src = 0; break;
    case F_LEA:
      if (!isMem) return 0;
      uop = U_LEA; dst = reg_off(reg, 31);
      break;
    case F_INC_R: uop = U_INCDEC_R32 + szIdx; dst = reg_off(op & 7, sh); sub = 0; break;
    case F_DEC_R: uop = U_INCDEC_R32 + szIdx; dst = reg_off(op & 7, sh); sub = 1; break;
    case F_GRP4:
      if (reg > 1) return 0;
      if (isMem) uop = U_INCDEC_M8; else { uop = U_INCDEC_R8; dst = reg_off(rm, 7); }
      break;
    case F_GRP5:
      if (reg <= 1) {
        if (isMem) uop = U_INCDEC_M32 + szIdx; else { uop = U_INCDEC_R32 + szIdx; dst = reg_off(rm, sh); }
      } else if (o16) {
        return 0;
      } else if (reg == 2) {
        if (isMem) uop = U_CALL_M; else { uop = U_CALL_R; src = reg_off(rm, 31); }
      } else if (reg == 4) {
        if (isMem) uop = U_JMP_M; else { uop = U_JMP_R; src = reg_off(rm, 31); }
      } else if (reg == 6) {
        if (isMem) uop = U_PUSH_M; else { uop = U_PUSH_R; src = reg_off(rm, 31); }
      } else {
        return 0;
      }
      break;
    case F_GRP2: {
      // sub: shift kind in bits 2-4 (from ModRM.reg), count source in bits 0-1.
      const how = sub & 3;
      const kind = sub >> 2;
      if (how == 1) imm = 1;
      const byCl = how == 2;
      if (isMem) uop = (byCl ? U_SHIFT_MC32 : U_SHIFT_MI32) + szIdx;
      else { uop = (byCl ? U_SHIFT_RC32 : U_SHIFT_RI32) + szIdx; dst = reg_off(rm, sh); }
      sub = kind;
      break;
    }
    case F_GRP3:
      if (reg < 2) {
        if (isMem) uop = U_TEST_MI32 + szIdx; else { uop = U_TEST_RI32 + szIdx; dst = reg_off(rm, sh); }
      } else if (sh != 31) {
        uop = U_STEP;
      } else if (isMem) {
        uop = U_GRP3_M32;
      } else {
        uop = U_GRP3_R32; dst = reg_off(rm, 31);
      }
      break;
    case F_JCC: uop = U_JCC + sub; break;
    case F_JMP: uop = U_JMP; break;
    case F_CALL: uop = U_CALL; break;
    case F_RET: uop = U_RET; break;
    case F_RET_IMM: uop = U_RET_IMM; break;
    case F_PUSH_R: uop = U_PUSH_R; src = reg_off(op & 7, 31); break;
    case F_POP_R: uop = U_POP_R; dst = reg_off(op & 7, 31); break;
    case F_PUSH_I: uop = U_PUSH_I; break;
    case F_MOVX: {
      dst = reg_off(reg, 31);
      const from: u32 = (sub & 1) ? 15 : 7;
      if (isMem) uop = sub == 0 ? U_MOVZX8_M : sub == 1 ? U_MOVZX16_M : sub == 2 ? U_MOVSX8_M : U_MOVSX16_M;
      else {
        uop = sub == 0 ? U_MOVZX8_R : sub == 1 ? U_MOVZX16_R : sub == 2 ? U_MOVSX8_R : U_MOVSX16_R;
        src = reg_off(rm, from);
      }
      break;
    }
    case F_IMUL_GE:
      dst = reg_off(reg, 31);
      if (isMem) uop = U_IMUL_RM; else { uop = U_IMUL_RR; src = reg_off(rm, 31); }
      break;
    case F_IMUL_GEI:
      dst = reg_off(reg, 31);
      if (isMem) uop = U_IMUL_RMI; else { uop = U_IMUL_RRI; src = reg_off(rm, 31); }
      break;
    case F_SETCC:
      if (isMem) uop = U_SETCC_M; else { uop = U_SETCC_R; dst = reg_off(rm, 7); }
      break;
    case F_CMOV:
      dst = reg_off(reg, 31);
      if (isMem) uop = U_CMOV_RM; else { uop = U_CMOV_RR; src = reg_off(rm, 31); }
      break;
    case F_XCHG_EG:
      src = reg_off(reg, 31);
      if (isMem) uop = U_XCHG_MR; else { uop = U_XCHG_RR; dst = reg_off(rm, 31); }
      break;
    case F_XCHG_AR: uop = U_XCHG_RR; dst = 0; src = reg_off(op & 7, 31); break;
    case F_NOP: uop = U_NOP; break;
    case F_CWDE: uop = U_CWDE; break;
    case F_CDQ: uop = U_CDQ; break;
    case F_LEAVE: uop = U_LEAVE; break;
    case F_STRING: uop = repz || repnz ? U_STEP : U_STRING; dst = (sh + 1) >> 3; break;
    case F_STEP: uop = U_STEP; break;
    case F_IN_I: uop = U_IN_I; sub = (sh + 1) >> 3; break;
    case F_IN_D: uop = U_IN_D; sub = (sh + 1) >> 3; break;
    case F_OUT_I: uop = U_OUT_I; sub = (sh + 1) >> 3; break;
    case F_OUT_D: uop = U_OUT_D; sub = (sh + 1) >> 3; break;
    default: return 0;
  }
  // LOCK: step() runs the forms that can take it (a read-modify-write of a memory operand)
  // and raises #UD for the others; anything else with LOCK is left to the interpreter.
  if (lock) {
    if (!isMem || !(form == F_ALU_EG || form == F_GRP1 || form == F_GRP3 || form == F_GRP4 ||
      form == F_GRP5 || form == F_XCHG_EG || form == F_STEP)) return 0;
    uop = U_STEP;
  }
  // U_STEP keeps its length in R_IMM: R_LEN 0 leaves EIP on it for the interpreter.
  const step = uop == U_STEP;
  store<u8>(rec + R_UOP, <u8>uop);
  store<u8>(rec + R_LEN, <u8>(step ? 0 : len));
  store<u8>(rec + R_DST, <u8>dst);
  store<u8>(rec + R_SRC, <u8>src);
  store<u8>(rec + R_BASE, <u8>base);
  store<u8>(rec + R_INDEX_SCALE, <u8>(index | scale));
  store<u8>(rec + R_SEG, <u8>((seg >= 0 ? <u32>seg : <u32>dseg) << 4));
  store<u8>(rec + R_SUB, <u8>sub);
  store<u32>(rec + R_DISP, disp);
  store<u32>(rec + R_IMM, step ? len : imm);
  return len;
}

@inline function ends_block(uop: u32): bool {
  return (uop >= U_JMP && uop <= U_CALL_M) || (uop >= U_JCC && uop < U_JCC + 16) ||
    (uop > U_END && uop <= U_DEC_R32_JNE) || (uop >= U_IN_I && uop <= U_OUT_D);
}

// ---------------------------------------------------------------------------------------
// Blocks. BLOCK_HASH is two-way set-associative by physical address (a block found in the
// second way stays there; a new block takes the first way and moves the first way's block
// to the second, so two hot blocks whose addresses collide both stay); an entry is the address, the
// page's code generation at decode time, the first record, and the instruction count and
// byte length. Records are bump-allocated in BLOCK_ARENA; when it fills, all decoded code
// is forgotten at once.

// A block's records follow a header record: B_RUNS counts its runs in the interpreter
// until it is queued for compiling, B_FUNC is its compiled function's index in the
// function table (0: none). The host's compiler reads the records from the header on.
export const B_RUNS: u32 = 0;
export const B_FUNC: u32 = 4;
/** The block's physical address. */
export const B_PHYS: u32 = 8;
// Two records before the header (at hdr - SUCC_SIZE) remember the blocks the records went
// on to after this one, so that the next lookup from here usually skips the block hash (a
// cache miss in 4 MiB): the two EIPs last seen (S0 the newer) with their blocks' headers
// (0: none), and this block's page generation and shape for the checks a successor takes.
// A successor found here is checked as a hash entry is (same physical address, the page's
// current generation); a block's successors are read and written only while no flush has
// come since it was looked up (JIT_FLUSHES), so they always point at headers of the current
// arena.
const SUCC_SIZE: u32 = 2 * RECORD_SIZE;
const S0_EIP: u32 = 0;
const S0_HDR: u32 = 4;
const S1_EIP: u32 = 8;
const S1_HDR: u32 = 12;
/** The page's code generation at decode time, as the hash entry's H_GEN. */
const S_GEN: u32 = 16;
/** As H_SHAPE. */
const S_SHAPE: u32 = 20;

export const H_PHYS: u32 = 0;
export const H_GEN: u32 = 4;
export const H_RECORDS: u32 = 8;
/** Instructions in bits 0-7, bytes covered (U_INTERP excluded) in bits 8-23. */
export const H_SHAPE: u32 = 12;

let arena_next: u32 = BLOCK_ARENA;
const HASH_BITS: u32 = 31 - clz<u32>(BLOCK_HASH_ENTRIES);

@inline function hash_entry(phys: u32): u32 {
  // Fibonacci hashing: the product's top bits, as many as the table has index bits, less
  // the lowest (the way).
  return BLOCK_HASH + (((phys * 0x9e3779b1) >>> (32 - HASH_BITS)) & ~1) * 16;
}

/** Forget all decoded code (reset, restore, running out of arena or generations). */
export function code_cache_flush(): void {
  memory.fill(BLOCK_HASH, 0, BLOCK_HASH_ENTRIES * 16);
  arena_next = BLOCK_ARENA;
  store<u32>(JIT_QUEUE_COUNT, 0);
  store<u32>(JIT_FLUSHES, load<u32>(JIT_FLUSHES) + 1);
  code_pages_clear();
}

/** The fused uop for the record at `rec` followed by a Jcc with condition `cc`, or 0 if none. */
function fuse_jcc(rec: u32, cc: u32): u32 {
  switch (<u32>load<u8>(rec + R_UOP)) {
    case U_CMP_RR32:
      switch (cc) { case 2: return U_CMP_RR32_JB; case 3: return U_CMP_RR32_JAE; case 4: return U_CMP_RR32_JE; case 5: return U_CMP_RR32_JNE; case 6: return U_CMP_RR32_JBE; case 7: return U_CMP_RR32_JA; case 12: return U_CMP_RR32_JL; case 13: return U_CMP_RR32_JGE; case 14: return U_CMP_RR32_JLE; case 15: return U_CMP_RR32_JG; }
      return 0;
    case U_CMP_RI32:
      switch (cc) { case 2: return U_CMP_RI32_JB; case 3: return U_CMP_RI32_JAE; case 4: return U_CMP_RI32_JE; case 5: return U_CMP_RI32_JNE; case 6: return U_CMP_RI32_JBE; case 7: return U_CMP_RI32_JA; case 12: return U_CMP_RI32_JL; case 13: return U_CMP_RI32_JGE; case 14: return U_CMP_RI32_JLE; case 15: return U_CMP_RI32_JG; }
      return 0;
    case U_TEST_RR32: return cc == 4 ? U_TEST_RR32_JE : cc == 5 ? U_TEST_RR32_JNE : 0;
    case U_TEST_RI32: return cc == 4 ? U_TEST_RI32_JE : cc == 5 ? U_TEST_RI32_JNE : 0;
    case U_INCDEC_R32: return load<u8>(rec + R_SUB) == 1 && cc == 5 ? U_DEC_R32_JNE : 0;
    default: return 0;
  }
}

/**
 * The block at `eip` (physical `phys`, page generation `gen`, `avail` bytes left in the
 * window) when the first way of its hash entries `h` does not hold it: the second way's, or
 * a new one decoded into the first way, whose block moves to the second. Returns its entry.
 * (Out of run_cached, whose loop V8 compiles worse for every path added to it.)
 */
function block_miss(h: u32, phys: u32, gen: u32, eip: u32, avail: u32): u32 {
  if (gen != 0 && load<u32>(h + 16 + H_GEN) == gen && load<u32>(h + 16 + H_PHYS) == phys) return h + 16;
  store<u64>(h + 16, load<u64>(h));
  store<u64>(h + 24, load<u64>(h + 8));
  decode_block(h, phys, eip, avail);
  return h;
}

/** Decode the block at `eip` (physical `phys`, `avail` bytes left in the window) into entry `h`. */
function decode_block(h: u32, phys: u32, eip: u32, avail: u32): void {
  const host = fw_host() + eip;
  if (arena_next + SUCC_SIZE + (BLOCK_MAX + 2) * RECORD_SIZE > BLOCK_ARENA_END) code_cache_flush();
  let gen = code_page_gen(phys >>> 12);
  if (gen == 0) {
    gen = code_page_register(phys >>> 12);
    if (gen == 0) { code_cache_flush(); gen = code_page_register(phys >>> 12); }
  }
  const pre = arena_next;
  store<u64>(pre + S0_EIP, 0);
  store<u64>(pre + S1_EIP, 0);
  store<u32>(pre + S_GEN, gen);
  // The block's header record, before its first: runs so far and its compiled function.
  const hdr = pre + SUCC_SIZE;
  store<u32>(hdr, 0, B_RUNS);
  store<u32>(hdr, 0, B_FUNC);
  store<u32>(hdr, phys, B_PHYS);
  const first = hdr + RECORD_SIZE;
  let rec = first;
  let n: u32 = 0;
  let off: u32 = 0;
  let last: u32 = U_END;
  while (n < BLOCK_MAX) {
    const len = decode_insn(host + off, avail - off, rec);
    n++;
    if (len == 0) {
      store<u8>(rec + R_UOP, <u8>U_INTERP);
      store<u8>(rec + R_LEN, 0);
      rec += RECORD_SIZE;
      last = U_INTERP;
      break;
    }
    off += len;
    last = load<u8>(rec + R_UOP);
    if (rec != first && last >= U_JCC && last < U_JCC + 16) {
      const fused = fuse_jcc(rec - RECORD_SIZE, last - U_JCC);
      if (fused != 0) {
        rec -= RECORD_SIZE;
        store<u8>(rec + R_UOP, <u8>fused);
        store<u8>(rec + R_BASE, <u8>len);
        store<u32>(rec + R_DISP, load<u32>(rec + RECORD_SIZE + R_IMM));
      }
    }
    rec += RECORD_SIZE;
    if (ends_block(last) || off >= avail) break;
  }
  if (!ends_block(last) && last != U_INTERP) {
    store<u8>(rec + R_UOP, <u8>U_END);
    store<u8>(rec + R_LEN, 0);
    rec += RECORD_SIZE;
  }
  arena_next = rec;
  store<u32>(h + H_PHYS, phys);
  store<u32>(h + H_GEN, gen);
  store<u32>(h + H_RECORDS, first);
  store<u32>(h + H_SHAPE, n | (off << 8));
  store<u32>(pre + S_SHAPE, n | (off << 8));
}

// ---------------------------------------------------------------------------------------
// Running records.

// Record fields. CPU_STATE goes in the load's offset immediate: one addressing mode.
@inline function sub_of(rec: u32): u32 { return load<u8>(rec, R_SUB); }
@inline function dst_of(rec: u32): u32 { return load<u8>(rec, R_DST); }
@inline function src_of(rec: u32): u32 { return load<u8>(rec, R_SRC); }
@inline function imm_of(rec: u32): u32 { return load<u32>(rec, R_IMM); }
@inline function ea_of(rec: u32): u32 {
  const ix = <u32>load<u8>(rec, R_INDEX_SCALE);
  return load<u32>(<u32>load<u8>(rec, R_BASE), CPU_STATE) +
    (load<u32>(ix & 0xfc, CPU_STATE) << (ix & 3)) + load<u32>(rec, R_DISP);
}

// Operands of size `sh` (7, 15, 31; a constant at every use, so these fold away).
@inline function get_r(off: u32, sh: u32): u32 {
  if (sh == 31) return load<u32>(off, CPU_STATE);
  if (sh == 15) return load<u16>(off, CPU_STATE);
  return load<u8>(off, CPU_STATE);
}
@inline function set_r(off: u32, sh: u32, v: u32): void {
  if (sh == 31) store<u32>(off, v, CPU_STATE);
  else if (sh == 15) store<u16>(off, <u16>v, CPU_STATE);
  else store<u8>(off, <u8>v, CPU_STATE);
}

/** The linear address of the record's memory operand of size `sh`, segment-checked for `kind`. */
@inline function lin_of(rec: u32, sh: u32, kind: u32, need: u32): u32 {
  return seg_check_fast(load<u8>(rec, R_SEG), ea_of(rec), (sh + 1) >> 3, kind, need);
}
@inline function mem_read(rec: u32, sh: u32): u32 {
  return lin_read(lin_of(rec, sh, SF_READ, ATTR_READ_OK), sh);
}
@inline function mem_write(rec: u32, sh: u32, v: u32): void {
  lin_write(lin_of(rec, sh, SF_WRITE, ATTR_WRITE_OK), sh, v);
}
/** A read-modify-write operand: checked writable first, so the store cannot fault (as rmw_read*). */
@inline function rmw_lin(rec: u32, sh: u32): u32 {
  const lin = lin_of(rec, sh, SF_RMW, ATTR_WRITE_OK | ATTR_READ_OK);
  check_write_lin_fast(lin, (sh + 1) >> 3);
  return lin;
}
@inline function lin_read(lin: u32, sh: u32): u32 {
  if (sh == 31) return read32(lin);
  if (sh == 15) return read16(lin);
  return read8(lin);
}
@inline function lin_write(lin: u32, sh: u32, v: u32): void {
  if (sh == 31) write32(lin, v);
  else if (sh == 15) write16(lin, v);
  else write8(lin, v);
}

// ALU operations; `k` is the kind, a constant for the 32-bit uops and sub_of(rec) else.
@inline function alu_rr(rec: u32, sh: u32, k: u32): void {
  const d = dst_of(rec);
  const r = alu_inline(k, get_r(d, sh), get_r(src_of(rec), sh), sh);
  if (k != 7) set_r(d, sh, r);
}
@inline function alu_rm(rec: u32, sh: u32, k: u32): void {
  const d = dst_of(rec);
  const r = alu_inline(k, get_r(d, sh), mem_read(rec, sh), sh);
  if (k != 7) set_r(d, sh, r);
}
@inline function alu_ri(rec: u32, sh: u32, k: u32): void {
  const d = dst_of(rec);
  const r = alu_inline(k, get_r(d, sh), imm_of(rec), sh);
  if (k != 7) set_r(d, sh, r);
}
/** Memory destination, `b` the other operand; CMP only reads. */
@inline function alu_m(rec: u32, sh: u32, b: u32): void {
  const k = sub_of(rec);
  if (k == 7) { alu_inline(7, mem_read(rec, sh), b, sh); return; }
  const lin = rmw_lin(rec, sh);
  lin_write(lin, sh, alu_inline(k, lin_read(lin, sh), b, sh));
}
@inline function incdec_r(rec: u32, sh: u32): void {
  const d = dst_of(rec);
  const a = get_r(d, sh);
  if (sub_of(rec) == 0) { set_r(d, sh, a + 1); inc(a, sh); } else { set_r(d, sh, a - 1); dec(a, sh); }
}
@inline function incdec_m(rec: u32, sh: u32): void {
  const lin = rmw_lin(rec, sh);
  const a = lin_read(lin, sh);
  if (sub_of(rec) == 0) { lin_write(lin, sh, a + 1); inc(a, sh); } else { lin_write(lin, sh, a - 1); dec(a, sh); }
}
/** Shifts and rotates (grp2): a zero count changes nothing, a memory operand is still checked. */
@inline function shift_r(rec: u32, sh: u32, count: u32): void {
  if ((count & 31) == 0) return;
  const d = dst_of(rec);
  set_r(d, sh, shift_fast(sub_of(rec), get_r(d, sh), count & 31, sh));
}
@inline function shift_m(rec: u32, sh: u32, count: u32): void {
  const lin = rmw_lin(rec, sh);
  const a = lin_read(lin, sh);
  if ((count & 31) == 0) return;
  lin_write(lin, sh, shift_fast(sub_of(rec), a, count & 31, sh));
}

/**
 * arith.shift_op() with SHL, SHR and SAR by less than the operand size worked out in line
 * and their flags left lazy: CF and OF (AF cleared) go to EFLAGS, ZF SF PF stay to be
 * computed from the result as after a logical operation. `count` is 1-31.
 */
@inline function shift_fast(op: u32, a: u32, count: u32, sh: u32): u32 {
  if (op < 4 || count > sh) return shift_op(op, a, count, sh);
  let r: u32, cf: u32, ov: u32;
  if (op == 5) {
    r = a >>> count;
    cf = (a >>> (count - 1)) & 1;
    ov = (a >>> sh) & 1;
  } else if (op == 7) {
    const sa = sh == 31 ? <i32>a : sh == 15 ? <i32>(<i16>a) : <i32>(<i8>a);
    r = <u32>(sa >> count) & (sh == 31 ? 0xffffffff : sh == 15 ? 0xffff : 0xff);
    cf = <u32>(sa >> (count - 1)) & 1;
    ov = 0;
  } else {
    // SHL and its alias SAL (/6).
    r = (a << count) & (sh == 31 ? 0xffffffff : sh == 15 ? 0xffff : 0xff);
    cf = (a >>> (sh + 1 - count)) & 1;
    ov = ((r >>> sh) ^ cf) & 1;
  }
  const fl = load<u32>(CPU_STATE + REG_EFLAGS) & ~(FLAG_CF | FLAG_OF | FLAG_AF);
  store<u32>(CPU_STATE + REG_EFLAGS, fl | cf | (ov << 11));
  store<u32>(CPU_STATE + LF_RES, r);
  store<u32>(CPU_STATE + LF_KIND, LF_LOGIC | (sh << 8));
  store<u32>(CPU_STATE + LF_MASK, FLAG_ZF | FLAG_SF | FLAG_PF);
  return r;
}

/** F7 /2../7 (NOT NEG MUL IMUL DIV IDIV) on a 32-bit register or memory operand. */
function grp3_32(rec: u32, isMem: bool): void {
  const op = sub_of(rec);
  if (op <= 3) {
    let lin: u32 = 0;
    let a: u32;
    if (isMem) { lin = rmw_lin(rec, 31); a = read32(lin); } else a = get_r(dst_of(rec), 31);
    const r = op == 2 ? ~a : 0 - a;
    if (isMem) write32(lin, r); else set_r(dst_of(rec), 31, r);
    if (op == 3) neg(a, 31);
    return;
  }
  const v = isMem ? mem_read(rec, 31) : get_r(dst_of(rec), 31);
  if (op == 4) mul32(v);
  else if (op == 5) imul32(v);
  else if (op == 6) div32(v);
  else idiv32(v);
}

// PUSH and POP of 32 bits, as decode.ts push32/pop32, with SS checked through SEG_FAST.
@inline function spush32(v: u32): void {
  if (load<u32>(CPU_STATE + STACK32) == 0) { push32(v); return; }
  const s = load<u32>(<u32>ESP << 2, CPU_STATE) - 4;
  write32(seg_check_fast(<u32>SS << 4, s, 4, SF_WRITE, ATTR_WRITE_OK), v);
  store<u32>(<u32>ESP << 2, s, CPU_STATE);
}
@inline function spop32(): u32 {
  if (load<u32>(CPU_STATE + STACK32) == 0) return pop32();
  const s = load<u32>(<u32>ESP << 2, CPU_STATE);
  const v = read32(seg_check_fast(<u32>SS << 4, s, 4, SF_READ, ATTR_READ_OK));
  store<u32>(<u32>ESP << 2, s + 4, CPU_STATE);
  return v;
}

/** LEAVE with a 32-bit operand (exec.ts leave()). */
function leave32(): void {
  const big = (seg_attr(SS) & ATTR_DB) != 0;
  const bp = big ? reg32(EBP) : reg16(EBP);
  const v = vread32(SS, bp);
  set_sp(sp_add(bp, 4));
  set_reg32(EBP, v);
}

/**
 * Whether decoded blocks may run now, many instructions with no look at interrupts in
 * between: with no single-step trap due, and no interrupt that could be taken before the
 * block would end anyway (a block cannot set IF); not halted, shut down or asked to stop.
 */
@inline export function blocks_may_run(): bool {
  const fl = load<u32>(CPU_STATE + REG_EFLAGS);
  const nmi = load<u32>(CPU_STATE + NMI_PENDING);
  return (fl & FLAG_TF) == 0 &&
    ((load<u32>(CPU_STATE + INTR_LINE) | nmi) == 0 || ((fl & FLAG_IF) == 0 && nmi == 0)) &&
    (load<u32>(CPU_STATE + HALTED) | load<u32>(CPU_STATE + SHUTDOWN) |
      load<u32>(CPU_STATE + HOST_REQUEST) | load<u32>(CODE_CACHE_OFF)) == 0;
}

/**
 * Run decoded blocks from the current EIP, one after another, while each fits in what is
 * left of `budget` instructions; returns the number of instructions retired (0: use
 * step()). The caller has checked blocks_may_run(); within a block only a host call can
 * change what it says (block_stop ends the run), and after an instruction run by step()
 * (U_INTERP) it is asked again.
 *
 * Per instruction: EIP_START for fault delivery (ESP_START comes from raise(), see
 * in_block), and the counter once it retires. EIP lives in `eip` (past the instruction
 * while it runs, as step() leaves it for CALL and relative jumps) and is stored when the
 * run ends or step() needs it.
 */
export function run_cached(budget: u64): u32 {
  if (load<u32>(CPU_STATE + CODE32) == 0) return 0;
  const start = load<u64>(CPU_STATE + INSTR_COUNT);
  const limit = start + budget;
  let eip = load<u32>(CPU_STATE + REG_EIP);
  let go = true;
  // The block last run: a loop that jumps back to its own start (a delay loop, a copy
  // loop) runs again without a lookup, as nothing it depends on can change without
  // block_stop or a step(), which end this run.
  let blockEip = ~eip;
  let first: u32 = 0;
  let n: u32 = 0;
  // The block the records ran last (its pre-header), and JIT_FLUSHES then: where to
  // remember the block looked up next as its successor.
  let last: u32 = 0;
  let lastFlushes: u32 = 0;
  clear_block_stop();
  seg_fast_refresh();
  set_in_block(true);
  store<u64>(JIT_LIMIT, limit);
  store<u32>(JIT_SITE, 0);
  while (go) {
    if (eip != blockEip) {
      let rel = eip - fw_lo();
      if (rel >= fw_len()) {
        // Another code page: open its window if the TLB has it, else leave it to step().
        if (!fetch_window_try(eip) && !fetch_window_walk(eip)) break;
        rel = eip - fw_lo();
      }
      const phys = fw_host() + eip - RAM;
      const gen = code_page_gen(phys >>> 12);
      let pre: u32 = 0;
      if (last != 0 && load<u32>(JIT_FLUSHES) == lastFlushes) {
        if (load<u32>(last, S0_EIP) == eip) pre = load<u32>(last, S0_HDR);
        else if (load<u32>(last, S1_EIP) == eip) pre = load<u32>(last, S1_HDR);
        if (pre != 0) {
          pre -= SUCC_SIZE;
          if (load<u32>(pre, S_GEN) != gen || load<u32>(pre, SUCC_SIZE + B_PHYS) != phys) pre = 0;
        }
      }
      if (pre == 0) {
        let h = hash_entry(phys);
        if (gen == 0 || load<u32>(h + H_GEN) != gen || load<u32>(h + H_PHYS) != phys) {
          h = block_miss(h, phys, gen, eip, fw_len() - rel);
        }
        pre = load<u32>(h + H_RECORDS) - RECORD_SIZE - SUCC_SIZE;
        if (last != 0 && load<u32>(JIT_FLUSHES) == lastFlushes) {
          store<u64>(last + S1_EIP, load<u64>(last + S0_EIP));
          store<u32>(last, eip, S0_EIP);
          store<u32>(last, pre + SUCC_SIZE, S0_HDR);
        }
      }
      const shape = load<u32>(pre, S_SHAPE);
      // The window may be shorter now than at decode time (another CS limit), or gone.
      if (rel + (shape >> 8) > fw_len()) break;
      blockEip = eip;
      first = pre + SUCC_SIZE + RECORD_SIZE;
      n = shape & 0xff;
      last = pre;
      lastFlushes = load<u32>(JIT_FLUSHES);
    }
    if (load<u64>(CPU_STATE + INSTR_COUNT) + <u64>n > limit) break;
    const hdr = first - RECORD_SIZE;
    let rec = hdr;
    const fn = load<u32>(hdr, B_FUNC);
    if (fn != 0) {
      // Compiled: it runs the block as the records below would and returns the next EIP,
      // or the EIP of a record it leaves to them (JIT_RESUME). It may go straight on into
      // other compiled blocks (chaining, src/jit) through the slots of its exit sites; a
      // site that could not names its slot in JIT_SITE, filled here with this block.
      const site = load<u32>(JIT_SITE);
      if (site != 0) {
        store<u32>(JIT_SITE, 0);
        const phys = fw_host() + eip - RAM;
        store<u32>(site, eip, JIT_SLOT_EIP);
        store<u32>(site, fn, JIT_SLOT_FN);
        store<u32>(site, (phys & 0xfffff000) | TLB_VALID_BIT, JIT_SLOT_TAG);
        store<u32>(site, code_page_gen(phys >>> 12), JIT_SLOT_GEN);
      }
      store<u32>(JIT_RESUME, 0);
      const before = load<u64>(CPU_STATE + INSTR_COUNT);
      eip = call_indirect<u32>(fn, eip, 0, 0);
      store<u64>(JIT_RETIRED, load<u64>(JIT_RETIRED) + load<u64>(CPU_STATE + INSTR_COUNT) - before);
      // A chained block may have opened another code page's window: look the next block up.
      blockEip = ~eip;
      const resume = load<u32>(JIT_RESUME);
      if (resume == 0) {
        if (block_stop()) break;
        continue;
      }
      rec = resume - RECORD_SIZE;
    } else {
      const runs = load<u32>(hdr, B_RUNS) + 1;
      store<u32>(hdr, runs, B_RUNS);
      if (runs == load<u32>(JIT_THRESHOLD)) jit_enqueue(hdr);
    }
    // Each case ends the one way its uop allows: go on with the next record, go on unless
    // block_stop was set (uops that touch memory, which can write code or reach MMIO), or
    // leave the block (control transfers, U_END, U_INTERP).
    while (true) {
      rec += RECORD_SIZE;
      const at = eip;
      eip += load<u8>(rec, R_LEN);
      switch (<u32>load<u8>(rec, R_UOP)) {
        case U_INTERP: case U_STEP: {
          // step() sets EIP_START and ESP_START itself.
          store<u32>(CPU_STATE + REG_EIP, eip);
          set_in_block(false);
          step();
          retire();
          eip = load<u32>(CPU_STATE + REG_EIP);
          // It may have changed anything the run depends on (IF, TF, CS, segments, paging,
          // a device's interrupt line): go on only as run() would let blocks start.
          go = blocks_may_run() && load<u32>(CPU_STATE + CODE32) != 0;
          seg_fast_refresh();
          set_in_block(true);
          break;
        }
        case U_MOV_RR32: set_r(dst_of(rec), 31, get_r(src_of(rec), 31)); retire(); continue;
        case U_MOV_RR16: set_r(dst_of(rec), 15, get_r(src_of(rec), 15)); retire(); continue;
        case U_MOV_RR8: set_r(dst_of(rec), 7, get_r(src_of(rec), 7)); retire(); continue;
        case U_LOAD32: may_fault(at); set_r(dst_of(rec), 31, mem_read(rec, 31)); retire(); if (block_stop()) break; continue;
        case U_LOAD16: may_fault(at); set_r(dst_of(rec), 15, mem_read(rec, 15)); retire(); if (block_stop()) break; continue;
        case U_LOAD8: may_fault(at); set_r(dst_of(rec), 7, mem_read(rec, 7)); retire(); if (block_stop()) break; continue;
        case U_STORE32: may_fault(at); mem_write(rec, 31, get_r(src_of(rec), 31)); retire(); if (block_stop()) break; continue;
        case U_STORE16: may_fault(at); mem_write(rec, 15, get_r(src_of(rec), 15)); retire(); if (block_stop()) break; continue;
        case U_STORE8: may_fault(at); mem_write(rec, 7, get_r(src_of(rec), 7)); retire(); if (block_stop()) break; continue;
        case U_MOV_RI32: set_r(dst_of(rec), 31, imm_of(rec)); retire(); continue;
        case U_MOV_RI16: set_r(dst_of(rec), 15, imm_of(rec)); retire(); continue;
        case U_MOV_RI8: set_r(dst_of(rec), 7, imm_of(rec)); retire(); continue;
        case U_STORE_I32: may_fault(at); mem_write(rec, 31, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_STORE_I16: may_fault(at); mem_write(rec, 15, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_STORE_I8: may_fault(at); mem_write(rec, 7, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_LEA: set_r(dst_of(rec), 31, ea_of(rec)); retire(); continue;
        case U_MOVZX8_R: set_r(dst_of(rec), 31, get_r(src_of(rec), 7)); retire(); continue;
        case U_MOVZX8_M: may_fault(at); set_r(dst_of(rec), 31, mem_read(rec, 7)); retire(); if (block_stop()) break; continue;
        case U_MOVZX16_R: set_r(dst_of(rec), 31, get_r(src_of(rec), 15)); retire(); continue;
        case U_MOVZX16_M: may_fault(at); set_r(dst_of(rec), 31, mem_read(rec, 15)); retire(); if (block_stop()) break; continue;
        case U_MOVSX8_R: set_r(dst_of(rec), 31, <u32>(<i32>(<i8>get_r(src_of(rec), 7)))); retire(); continue;
        case U_MOVSX8_M: may_fault(at); set_r(dst_of(rec), 31, <u32>(<i32>(<i8>mem_read(rec, 7)))); retire(); if (block_stop()) break; continue;
        case U_MOVSX16_R: set_r(dst_of(rec), 31, <u32>(<i32>(<i16>get_r(src_of(rec), 15)))); retire(); continue;
        case U_MOVSX16_M: may_fault(at); set_r(dst_of(rec), 31, <u32>(<i32>(<i16>mem_read(rec, 15)))); retire(); if (block_stop()) break; continue;
        case U_ALU_RR16: alu_rr(rec, 15, sub_of(rec)); retire(); continue;
        case U_ALU_RR8: alu_rr(rec, 7, sub_of(rec)); retire(); continue;
        case U_ALU_RM16: may_fault(at); alu_rm(rec, 15, sub_of(rec)); retire(); if (block_stop()) break; continue;
        case U_ALU_RM8: may_fault(at); alu_rm(rec, 7, sub_of(rec)); retire(); if (block_stop()) break; continue;
        case U_ALU_MR32: may_fault(at); alu_m(rec, 31, get_r(src_of(rec), 31)); retire(); if (block_stop()) break; continue;
        case U_ALU_MR16: may_fault(at); alu_m(rec, 15, get_r(src_of(rec), 15)); retire(); if (block_stop()) break; continue;
        case U_ALU_MR8: may_fault(at); alu_m(rec, 7, get_r(src_of(rec), 7)); retire(); if (block_stop()) break; continue;
        case U_ALU_RI16: alu_ri(rec, 15, sub_of(rec)); retire(); continue;
        case U_ALU_RI8: alu_ri(rec, 7, sub_of(rec)); retire(); continue;
        case U_ALU_MI32: may_fault(at); alu_m(rec, 31, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_ALU_MI16: may_fault(at); alu_m(rec, 15, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_ALU_MI8: may_fault(at); alu_m(rec, 7, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_TEST_RR32: test_flags(get_r(dst_of(rec), 31) & get_r(src_of(rec), 31), 31); retire(); continue;
        case U_TEST_RR16: test_flags(get_r(dst_of(rec), 15) & get_r(src_of(rec), 15), 15); retire(); continue;
        case U_TEST_RR8: test_flags(get_r(dst_of(rec), 7) & get_r(src_of(rec), 7), 7); retire(); continue;
        case U_TEST_MR32: may_fault(at); test_flags(mem_read(rec, 31) & get_r(src_of(rec), 31), 31); retire(); if (block_stop()) break; continue;
        case U_TEST_MR16: may_fault(at); test_flags(mem_read(rec, 15) & get_r(src_of(rec), 15), 15); retire(); if (block_stop()) break; continue;
        case U_TEST_MR8: may_fault(at); test_flags(mem_read(rec, 7) & get_r(src_of(rec), 7), 7); retire(); if (block_stop()) break; continue;
        case U_TEST_RI32: test_flags(get_r(dst_of(rec), 31) & imm_of(rec), 31); retire(); continue;
        case U_TEST_RI16: test_flags(get_r(dst_of(rec), 15) & imm_of(rec), 15); retire(); continue;
        case U_TEST_RI8: test_flags(get_r(dst_of(rec), 7) & imm_of(rec), 7); retire(); continue;
        case U_TEST_MI32: may_fault(at); test_flags(mem_read(rec, 31) & imm_of(rec), 31); retire(); if (block_stop()) break; continue;
        case U_TEST_MI16: may_fault(at); test_flags(mem_read(rec, 15) & imm_of(rec), 15); retire(); if (block_stop()) break; continue;
        case U_TEST_MI8: may_fault(at); test_flags(mem_read(rec, 7) & imm_of(rec), 7); retire(); if (block_stop()) break; continue;
        case U_INCDEC_R32: incdec_r(rec, 31); retire(); continue;
        case U_INCDEC_R16: incdec_r(rec, 15); retire(); continue;
        case U_INCDEC_R8: incdec_r(rec, 7); retire(); continue;
        case U_INCDEC_M32: may_fault(at); incdec_m(rec, 31); retire(); if (block_stop()) break; continue;
        case U_INCDEC_M16: may_fault(at); incdec_m(rec, 15); retire(); if (block_stop()) break; continue;
        case U_INCDEC_M8: may_fault(at); incdec_m(rec, 7); retire(); if (block_stop()) break; continue;
        case U_GRP3_R32: may_fault(at); grp3_32(rec, false); retire(); continue;
        case U_GRP3_M32: may_fault(at); grp3_32(rec, true); retire(); if (block_stop()) break; continue;
        case U_SHIFT_RI32: shift_r(rec, 31, imm_of(rec)); retire(); continue;
        case U_SHIFT_RI16: shift_r(rec, 15, imm_of(rec)); retire(); continue;
        case U_SHIFT_RI8: shift_r(rec, 7, imm_of(rec)); retire(); continue;
        case U_SHIFT_RC32: shift_r(rec, 31, reg8(1)); retire(); continue;
        case U_SHIFT_RC16: shift_r(rec, 15, reg8(1)); retire(); continue;
        case U_SHIFT_RC8: shift_r(rec, 7, reg8(1)); retire(); continue;
        case U_SHIFT_MI32: may_fault(at); shift_m(rec, 31, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_SHIFT_MI16: may_fault(at); shift_m(rec, 15, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_SHIFT_MI8: may_fault(at); shift_m(rec, 7, imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_SHIFT_MC32: may_fault(at); shift_m(rec, 31, reg8(1)); retire(); if (block_stop()) break; continue;
        case U_SHIFT_MC16: may_fault(at); shift_m(rec, 15, reg8(1)); retire(); if (block_stop()) break; continue;
        case U_SHIFT_MC8: may_fault(at); shift_m(rec, 7, reg8(1)); retire(); if (block_stop()) break; continue;
        case U_JMP: eip += imm_of(rec); retire(); break;
        case U_CALL: may_fault(at); spush32(eip); eip += imm_of(rec); retire(); break;
        case U_RET: may_fault(at); eip = spop32(); retire(); break;
        case U_RET_IMM: {
          may_fault(at);
          const t = spop32();
          set_sp(sp_add(sp(), imm_of(rec)));
          eip = t;
          retire(); break;
        }
        case U_JMP_R: eip = get_r(src_of(rec), 31); retire(); break;
        case U_JMP_M: may_fault(at); eip = mem_read(rec, 31); retire(); break;
        case U_CALL_R: { may_fault(at); const t = get_r(src_of(rec), 31); spush32(eip); eip = t; retire(); break; }
        case U_CALL_M: { may_fault(at); const t = mem_read(rec, 31); spush32(eip); eip = t; retire(); break; }
        case U_PUSH_R: may_fault(at); spush32(get_r(src_of(rec), 31)); retire(); if (block_stop()) break; continue;
        case U_PUSH_I: may_fault(at); spush32(imm_of(rec)); retire(); if (block_stop()) break; continue;
        case U_PUSH_M: { may_fault(at); const v = mem_read(rec, 31); spush32(v); retire(); if (block_stop()) break; continue; }
        case U_POP_R: { may_fault(at); const v = spop32(); set_r(dst_of(rec), 31, v); retire(); if (block_stop()) break; continue; }
        case U_LEAVE: may_fault(at); leave32(); retire(); continue;
        case U_IMUL_RR: { const d = dst_of(rec); set_r(d, 31, imul_trunc(get_r(d, 31), get_r(src_of(rec), 31), 31)); retire(); continue; }
        case U_IMUL_RM: { may_fault(at); const b = mem_read(rec, 31); const d = dst_of(rec); set_r(d, 31, imul_trunc(get_r(d, 31), b, 31)); retire(); if (block_stop()) break; continue; }
        case U_IMUL_RRI: set_r(dst_of(rec), 31, imul_trunc(get_r(src_of(rec), 31), imm_of(rec), 31)); retire(); continue;
        case U_IMUL_RMI: { may_fault(at); const a = mem_read(rec, 31); set_r(dst_of(rec), 31, imul_trunc(a, imm_of(rec), 31)); retire(); if (block_stop()) break; continue; }
        case U_SETCC_R: set_r(dst_of(rec), 7, test_cc_inline(sub_of(rec)) ? 1 : 0); retire(); continue;
        case U_SETCC_M: may_fault(at); mem_write(rec, 7, test_cc_inline(sub_of(rec)) ? 1 : 0); retire(); if (block_stop()) break; continue;
        case U_CMOV_RR: { const v = get_r(src_of(rec), 31); if (test_cc_inline(sub_of(rec))) set_r(dst_of(rec), 31, v); retire(); continue; }
        case U_CMOV_RM: { may_fault(at); const v = mem_read(rec, 31); if (test_cc_inline(sub_of(rec))) set_r(dst_of(rec), 31, v); retire(); if (block_stop()) break; continue; }
        case U_XCHG_RR: {
          const d = dst_of(rec), s = src_of(rec);
          const a = get_r(d, 31);
          set_r(d, 31, get_r(s, 31));
          set_r(s, 31, a);
          retire(); continue;
        }
        case U_XCHG_MR: {
          may_fault(at);
          const lin = rmw_lin(rec, 31);
          const a = read32(lin);
          const s = src_of(rec);
          write32(lin, get_r(s, 31));
          set_r(s, 31, a);
          retire(); if (block_stop()) break; continue;
        }
        case U_CWDE: set_reg32(EAX, <u32>(<i32>(<i16>reg16(EAX)))); retire(); continue;
        case U_CDQ: set_reg32(EDX, (reg32(EAX) >> 31) ? 0xffffffff : 0); retire(); continue;
        case U_NOP: retire(); continue;
        case U_JO: if (test_cc_inline(0)) eip += imm_of(rec); retire(); break;
        case U_JNO: if (test_cc_inline(1)) eip += imm_of(rec); retire(); break;
        case U_JB: if (test_cc_inline(2)) eip += imm_of(rec); retire(); break;
        case U_JAE: if (test_cc_inline(3)) eip += imm_of(rec); retire(); break;
        case U_JE: if (test_cc_inline(4)) eip += imm_of(rec); retire(); break;
        case U_JNE: if (test_cc_inline(5)) eip += imm_of(rec); retire(); break;
        case U_JBE: if (test_cc_inline(6)) eip += imm_of(rec); retire(); break;
        case U_JA: if (test_cc_inline(7)) eip += imm_of(rec); retire(); break;
        case U_JS: if (test_cc_inline(8)) eip += imm_of(rec); retire(); break;
        case U_JNS: if (test_cc_inline(9)) eip += imm_of(rec); retire(); break;
        case U_JP: if (test_cc_inline(10)) eip += imm_of(rec); retire(); break;
        case U_JNP: if (test_cc_inline(11)) eip += imm_of(rec); retire(); break;
        case U_JL: if (test_cc_inline(12)) eip += imm_of(rec); retire(); break;
        case U_JGE: if (test_cc_inline(13)) eip += imm_of(rec); retire(); break;
        case U_JLE: if (test_cc_inline(14)) eip += imm_of(rec); retire(); break;
        case U_JG: if (test_cc_inline(15)) eip += imm_of(rec); retire(); break;
        case U_ADD_RR32: alu_rr(rec, 31, 0); retire(); continue;
        case U_OR_RR32: alu_rr(rec, 31, 1); retire(); continue;
        case U_ADC_RR32: alu_rr(rec, 31, 2); retire(); continue;
        case U_SBB_RR32: alu_rr(rec, 31, 3); retire(); continue;
        case U_AND_RR32: alu_rr(rec, 31, 4); retire(); continue;
        case U_SUB_RR32: alu_rr(rec, 31, 5); retire(); continue;
        case U_XOR_RR32: alu_rr(rec, 31, 6); retire(); continue;
        case U_CMP_RR32: alu_rr(rec, 31, 7); retire(); continue;
        case U_ADD_RI32: alu_ri(rec, 31, 0); retire(); continue;
        case U_OR_RI32: alu_ri(rec, 31, 1); retire(); continue;
        case U_ADC_RI32: alu_ri(rec, 31, 2); retire(); continue;
        case U_SBB_RI32: alu_ri(rec, 31, 3); retire(); continue;
        case U_AND_RI32: alu_ri(rec, 31, 4); retire(); continue;
        case U_SUB_RI32: alu_ri(rec, 31, 5); retire(); continue;
        case U_XOR_RI32: alu_ri(rec, 31, 6); retire(); continue;
        case U_CMP_RI32: alu_ri(rec, 31, 7); retire(); continue;
        case U_ADD_RM32: may_fault(at); alu_rm(rec, 31, 0); retire(); if (block_stop()) break; continue;
        case U_OR_RM32: may_fault(at); alu_rm(rec, 31, 1); retire(); if (block_stop()) break; continue;
        case U_ADC_RM32: may_fault(at); alu_rm(rec, 31, 2); retire(); if (block_stop()) break; continue;
        case U_SBB_RM32: may_fault(at); alu_rm(rec, 31, 3); retire(); if (block_stop()) break; continue;
        case U_AND_RM32: may_fault(at); alu_rm(rec, 31, 4); retire(); if (block_stop()) break; continue;
        case U_SUB_RM32: may_fault(at); alu_rm(rec, 31, 5); retire(); if (block_stop()) break; continue;
        case U_XOR_RM32: may_fault(at); alu_rm(rec, 31, 6); retire(); if (block_stop()) break; continue;
        case U_CMP_RM32: may_fault(at); alu_rm(rec, 31, 7); retire(); if (block_stop()) break; continue;
        case U_END: break;
        case U_CMP_RR32_JB: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JB); retire2(); break;
        case U_CMP_RR32_JAE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JAE); retire2(); break;
        case U_CMP_RR32_JE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JE); retire2(); break;
        case U_CMP_RR32_JNE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JNE); retire2(); break;
        case U_CMP_RR32_JBE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JBE); retire2(); break;
        case U_CMP_RR32_JA: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JA); retire2(); break;
        case U_CMP_RR32_JL: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JL); retire2(); break;
        case U_CMP_RR32_JGE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JGE); retire2(); break;
        case U_CMP_RR32_JLE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JLE); retire2(); break;
        case U_CMP_RR32_JG: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), get_r(src_of(rec), 31), JG); retire2(); break;
        case U_CMP_RI32_JB: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JB); retire2(); break;
        case U_CMP_RI32_JAE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JAE); retire2(); break;
        case U_CMP_RI32_JE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JE); retire2(); break;
        case U_CMP_RI32_JNE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JNE); retire2(); break;
        case U_CMP_RI32_JBE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JBE); retire2(); break;
        case U_CMP_RI32_JA: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JA); retire2(); break;
        case U_CMP_RI32_JL: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JL); retire2(); break;
        case U_CMP_RI32_JGE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JGE); retire2(); break;
        case U_CMP_RI32_JLE: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JLE); retire2(); break;
        case U_CMP_RI32_JG: eip = cmp_jcc(rec, eip, get_r(dst_of(rec), 31), imm_of(rec), JG); retire2(); break;
        case U_TEST_RR32_JE: {
          const r = get_r(dst_of(rec), 31) & get_r(src_of(rec), 31);
          test_flags(r, 31);
          eip = jump_if(rec, eip, (r == 0) == true);
          retire2(); break;
        }
        case U_TEST_RR32_JNE: {
          const r = get_r(dst_of(rec), 31) & get_r(src_of(rec), 31);
          test_flags(r, 31);
          eip = jump_if(rec, eip, (r == 0) == false);
          retire2(); break;
        }
        case U_TEST_RI32_JE: {
          const r = get_r(dst_of(rec), 31) & imm_of(rec);
          test_flags(r, 31);
          eip = jump_if(rec, eip, (r == 0) == true);
          retire2(); break;
        }
        case U_TEST_RI32_JNE: {
          const r = get_r(dst_of(rec), 31) & imm_of(rec);
          test_flags(r, 31);
          eip = jump_if(rec, eip, (r == 0) == false);
          retire2(); break;
        }
        case U_DEC_R32_JNE: {
          const d = dst_of(rec);
          const a = get_r(d, 31);
          set_r(d, 31, a - 1);
          dec(a, 31);
          eip = jump_if(rec, eip, a != 1);
          retire2(); break;
        }
        case U_STRING: {
          may_fault(at);
          // string_op() reads the prefixes from the interpreter's decode state.
          reset_prefixes(true);
          set_prefix_seg(<i32>(load<u8>(rec, R_SEG) >> 4));
          string_op(sub_of(rec), dst_of(rec));
          retire(); if (block_stop()) break; continue;
        }
        case U_IN_I: case U_IN_D: {
          may_fault(at);
          const port = load<u8>(rec, R_UOP) == U_IN_D ? reg16(EDX) : imm_of(rec);
          const size = sub_of(rec);
          io_check(port, size);
          const v = io_read(port, size);
          if (size == 1) set_reg8(0, v); else if (size == 2) set_reg16(EAX, v); else set_reg32(EAX, v);
          retire();
          go = blocks_may_run();
          break;
        }
        case U_OUT_I: case U_OUT_D: {
          may_fault(at);
          const port = load<u8>(rec, R_UOP) == U_OUT_D ? reg16(EDX) : imm_of(rec);
          const size = sub_of(rec);
          io_check(port, size);
          io_write(port, size, size == 1 ? reg8(0) : size == 2 ? reg16(EAX) : reg32(EAX));
          retire();
          go = blocks_may_run();
          break;
        }
        default: unreachable();
      }
      break;
    }
    if (block_stop()) break;
  }
  store<u32>(CPU_STATE + REG_EIP, eip);
  set_in_block(false);
  return <u32>(load<u64>(CPU_STATE + INSTR_COUNT) - start);
}

/**
 * Queue a hot block for the host to compile (it reads JIT_QUEUE after run() returns, at
 * most a slice later). With the queue full the block starts counting again.
 */
function jit_enqueue(hdr: u32): void {
  const n = load<u32>(JIT_QUEUE_COUNT);
  if (n >= JIT_QUEUE_MAX) { store<u32>(hdr, 0, B_RUNS); return; }
  store<u32>(JIT_QUEUE + (n << 2), hdr);
  store<u32>(JIT_QUEUE_COUNT, n + 1);
}

/**
 * The instruction that started at `at` can fault from here: deliver_fault() restarts it
 * at EIP_START. Uops that cannot fault skip the store.
 */
@inline function may_fault(at: u32): void { store<u32>(CPU_STATE + EIP_START, at); }

// Fused compare-and-branch: the Jcc follows at `eip` (R_BASE bytes, displacement R_DISP).
@inline function jump_if(rec: u32, eip: u32, taken: bool): u32 {
  const next = eip + load<u8>(rec, R_BASE);
  return taken ? next + load<u32>(rec, R_DISP) : next;
}
/** CMP a, b and a Jcc with a condition named as a constant (JB JAE JE JNE JBE JA JL JGE JLE JG). */
@inline function cmp_jcc(rec: u32, eip: u32, a: u32, b: u32, cc: u32): u32 {
  alu_inline(7, a, b, 31);
  let taken: bool;
  if (cc == JB) taken = a < b;
  else if (cc == JAE) taken = a >= b;
  else if (cc == JE) taken = a == b;
  else if (cc == JNE) taken = a != b;
  else if (cc == JBE) taken = a <= b;
  else if (cc == JA) taken = a > b;
  else if (cc == JL) taken = <i32>a < <i32>b;
  else if (cc == JGE) taken = <i32>a >= <i32>b;
  else if (cc == JLE) taken = <i32>a <= <i32>b;
  else taken = <i32>a > <i32>b;
  return jump_if(rec, eip, taken);
}
// Condition codes (SDM Vol. 1, B.1).
const JB: u32 = 2; const JAE: u32 = 3; const JE: u32 = 4; const JNE: u32 = 5; const JBE: u32 = 6;
const JA: u32 = 7; const JL: u32 = 12; const JGE: u32 = 13; const JLE: u32 = 14; const JG: u32 = 15;

/** One more instruction retired. */
@inline function retire(): void {
  store<u64>(CPU_STATE + INSTR_COUNT, load<u64>(CPU_STATE + INSTR_COUNT) + 1);
}
@inline function retire2(): void {
  store<u64>(CPU_STATE + INSTR_COUNT, load<u64>(CPU_STATE + INSTR_COUNT) + 2);
}

// ---------------------------------------------------------------------------------------
// Helpers for compiled blocks (src/jit): what their code calls out of line, each the same
// code the records above run, so a compiled block behaves as its records would.

/** seg_check_fast()'s slow side: `seg` the segment register, `need` ATTR_* bits. */
export function jit_seg(seg: i32, off: u32, len: u32, need: u32): u32 {
  return seg_check_fast(<u32>seg << 4, off, len, need == ATTR_READ_OK ? SF_READ : need == ATTR_WRITE_OK ? SF_WRITE : SF_RMW, need);
}
export function jit_read8(lin: u32): u32 { return read8(lin); }
export function jit_read16(lin: u32): u32 { return read16(lin); }
export function jit_read32(lin: u32): u32 { return read32(lin); }
export function jit_write8(lin: u32, v: u32): void { write8(lin, v); }
export function jit_write16(lin: u32, v: u32): void { write16(lin, v); }
export function jit_write32(lin: u32, v: u32): void { write32(lin, v); }
/** A read-modify-write operand whose TLB entry did not allow the write in line. */
export function jit_check_write(lin: u32, len: u32): void { check_write_lin_fast(lin, len); }
export function jit_test_cc(cc: u32): u32 { return test_cc_inline(cc) ? 1 : 0; }
export function jit_alu(op: u32, a: u32, b: u32, sh: u32): u32 { return alu_inline(op, a, b, sh); }
/** Before an in-line INC or DEC: CF, if still lazy, into EFLAGS (as set_lazy_keep_cf()). */
export function jit_keep_cf(): void {
  const cf = get_cf();
  const fl = load<u32>(CPU_STATE + REG_EFLAGS);
  store<u32>(CPU_STATE + REG_EFLAGS, (fl & ~FLAG_CF) | (cf ? FLAG_CF : 0));
}
/** Shift or rotate `op` of `a` by `count` (1-31). */
export function jit_shift(op: u32, a: u32, count: u32, sh: u32): u32 { return shift_fast(op, a, count, sh); }
export function jit_imul(a: u32, b: u32): u32 { return imul_trunc(a, b, 31); }
export function jit_grp3(rec: u32, isMem: u32): void { grp3_32(rec, isMem != 0); }
export function jit_push32(v: u32): void { spush32(v); }
export function jit_pop32(): u32 { return spop32(); }
export function jit_leave(): void { leave32(); }
/** RET imm16's release of the stack, after its pop. */
export function jit_sp_add(n: u32): void { set_sp(sp_add(sp(), n)); }
/**
 * A U_STEP or U_STRING record in compiled code (REG_EIP set to its first byte, CPU_STATE up
 * to date): step() runs it. Returns nonzero when the block must not go on to `next`: EIP is
 * elsewhere (REG_EIP says where: a REP chunk restarting itself), or block_stop is set, which
 * this also sets when the run must return to run() (an interrupt line raised).
 */
export function jit_step(next: u32): u32 {
  set_in_block(false);
  step();
  set_in_block(true);
  if (!blocks_may_run()) store<u32>(V_BLOCK_STOP, 1);
  return load<u32>(CPU_STATE + REG_EIP) != next || block_stop() ? 1 : 0;
}

