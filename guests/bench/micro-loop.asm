; The tightest loop: DEC + JNZ, 2 instructions per iteration.
%include "micro.inc"
  micro_start
outer:
  mov ecx, 1000000
inner:
  dec ecx
  jnz inner
  dec ebp
  jnz outer
  micro_exit
