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
