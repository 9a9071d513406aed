; Near CALL/RET with a frame: CALL, PUSH, MOV, POP, RET, DEC, JNZ per iteration (7).
%include "micro.inc"
  micro_start
outer:
  mov ecx, 100000
inner:
  call leaf
  dec ecx
  jnz inner
  dec ebp
  jnz outer
  micro_exit
leaf:
  push ebp
  mov ebp, esp
  pop ebp
  ret
