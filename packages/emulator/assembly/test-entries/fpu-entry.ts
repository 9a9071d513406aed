// The x87 layer with the core's memory and register code, for test/fpu.test.ts: the test
// sets up CPU state and guest RAM in linear memory and calls fpu_exec like the dispatcher.
export { fpu_exec, fpu_reset, fpu_init, fpu_wait } from '../fpu';
export { get_eflags, set_eflags_raw } from '../state';
export * from '../layout';
