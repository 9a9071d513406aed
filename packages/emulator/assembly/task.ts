// Hardware task switching (SDM Vol. 3, 7.3). Linux reaches it through the #DF task gate.

import { gp } from './memory';

export const TS_JMP: u32 = 0;
export const TS_CALL: u32 = 1;
export const TS_IRET: u32 = 2;
export const TS_INT: u32 = 3;

/** Switch to the task whose TSS selector is `sel`. Not implemented yet: #GP. */
export function task_switch(sel: u32, reason: u32, hasError: bool, error: u32): void {
  gp(sel & 0xfffc);
}
