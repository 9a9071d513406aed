// The core's exports: entry points for the host and the layout constants (as globals).

export * from './layout';
export { reset, run, state_loaded, dirty_clear_all, code_cache_enable } from './cpu';
export { deliver_fault } from './system';
export { mark_dirty_range, dirty_reset, tlb_flush, translate } from './memory';
export { get_eflags, set_eflags_raw } from './state';
export { step } from './exec';

/** AssemblyScript's abort hook: the core never allocates, so reaching this is a core bug. */
export function abort_handler(message: usize, fileName: usize, line: u32, column: u32): void {
  unreachable();
}

/** End of AssemblyScript's static data: must stay below CPU_STATE (checked by the host). */
export function heap_base(): usize { return __heap_base; }

// The block compiler's view of the decoded records and its helpers (src/jit).
export {
  RECORD_SIZE, B_PHYS, H_PHYS, H_GEN, H_RECORDS, H_SHAPE, R_UOP, R_LEN, R_DST, R_SRC, R_BASE, R_INDEX_SCALE, R_SEG, R_SUB, R_DISP, R_IMM, B_RUNS, B_FUNC,
  jit_seg, jit_read8, jit_read16, jit_read32, jit_write8, jit_write16, jit_write32, jit_check_write,
  jit_test_cc, jit_alu, jit_keep_cf, jit_shift, jit_imul, jit_grp3, jit_push32, jit_pop32, jit_leave, jit_sp_add, jit_step,
} from './codecache';
export {
  SF_BASE, SF_READ, SF_WRITE, SF_RMW, ATTR_READ_OK, ATTR_WRITE_OK, V_TLB_READ_MASK, V_TLB_WRITE_MASK, V_BLOCK_STOP, TLB_VALID_BIT,
} from './memory';
export { LF_ADD, LF_SUB, LF_LOGIC, LF_BORROW_IN, FLAGS_ARITH } from './state';
// Uop numbers, for the compiler to read the records by.
export {
  U_INTERP, U_MOV_RR32, U_MOV_RR16, U_MOV_RR8, U_LOAD32, U_LOAD16, U_LOAD8, U_STORE32, U_STORE16,
  U_STORE8, U_MOV_RI32, U_MOV_RI16, U_MOV_RI8, U_STORE_I32, U_STORE_I16, U_STORE_I8, U_LEA,
  U_MOVZX8_R, U_MOVZX8_M, U_MOVZX16_R, U_MOVZX16_M, U_MOVSX8_R, U_MOVSX8_M, U_MOVSX16_R,
  U_MOVSX16_M, U_ALU_RR16, U_ALU_RR8, U_ALU_RM16, U_ALU_RM8, U_ALU_MR32, U_ALU_MR16, U_ALU_MR8,
  U_ALU_RI16, U_ALU_RI8, U_ALU_MI32, U_ALU_MI16, U_ALU_MI8, U_TEST_RR32, U_TEST_RR16, U_TEST_RR8,
  U_TEST_MR32, U_TEST_MR16, U_TEST_MR8, U_TEST_RI32, U_TEST_RI16, U_TEST_RI8, U_TEST_MI32,
  U_TEST_MI16, U_TEST_MI8, U_INCDEC_R32, U_INCDEC_R16, U_INCDEC_R8, U_INCDEC_M32, U_INCDEC_M16,
  U_INCDEC_M8, U_GRP3_R32, U_GRP3_M32, U_SHIFT_RI32, U_SHIFT_RI16, U_SHIFT_RI8, U_SHIFT_RC32,
  U_SHIFT_RC16, U_SHIFT_RC8, U_SHIFT_MI32, U_SHIFT_MI16, U_SHIFT_MI8, U_SHIFT_MC32, U_SHIFT_MC16,
  U_SHIFT_MC8, U_JMP, U_CALL, U_RET, U_RET_IMM, U_JMP_R, U_JMP_M, U_CALL_R, U_CALL_M, U_PUSH_R,
  U_PUSH_I, U_PUSH_M, U_POP_R, U_LEAVE, U_IMUL_RR, U_IMUL_RM, U_IMUL_RRI, U_IMUL_RMI, U_SETCC_R,
  U_SETCC_M, U_CMOV_RR, U_CMOV_RM, U_XCHG_RR, U_XCHG_MR, U_CWDE, U_CDQ, U_NOP, U_JCC, U_JO, U_JNO,
  U_JB, U_JAE, U_JE, U_JNE, U_JBE, U_JA, U_JS, U_JNS, U_JP, U_JNP, U_JL, U_JGE, U_JLE, U_JG,
  U_ALU_RR32, U_ADD_RR32, U_OR_RR32, U_ADC_RR32, U_SBB_RR32, U_AND_RR32, U_SUB_RR32, U_XOR_RR32,
  U_CMP_RR32, U_ALU_RI32, U_ADD_RI32, U_OR_RI32, U_ADC_RI32, U_SBB_RI32, U_AND_RI32, U_SUB_RI32,
  U_XOR_RI32, U_CMP_RI32, U_ALU_RM32, U_ADD_RM32, U_OR_RM32, U_ADC_RM32, U_SBB_RM32, U_AND_RM32,
  U_SUB_RM32, U_XOR_RM32, U_CMP_RM32, U_END, U_CMP_RR32_JB, U_CMP_RR32_JAE, U_CMP_RR32_JE,
  U_CMP_RR32_JNE, U_CMP_RR32_JBE, U_CMP_RR32_JA, U_CMP_RR32_JL, U_CMP_RR32_JGE, U_CMP_RR32_JLE,
  U_CMP_RR32_JG, U_CMP_RI32_JB, U_CMP_RI32_JAE, U_CMP_RI32_JE, U_CMP_RI32_JNE, U_CMP_RI32_JBE,
  U_CMP_RI32_JA, U_CMP_RI32_JL, U_CMP_RI32_JGE, U_CMP_RI32_JLE, U_CMP_RI32_JG, U_TEST_RR32_JE,
  U_TEST_RR32_JNE, U_TEST_RI32_JE, U_TEST_RI32_JNE, U_DEC_R32_JNE, U_STRING, U_IN_I, U_IN_D,
  U_OUT_I, U_OUT_D, U_STEP,
} from './codecache';
