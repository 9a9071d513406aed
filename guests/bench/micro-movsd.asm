; REP MOVSD of 4 KiB between two buffers, 6 instructions per iteration (the REP MOVSD
; counts as one): measured in bytes copied.
%include "micro.inc"
  micro_start
outer:
  mov esi, src
  mov edi, dst
  mov ecx, 1024
  cld
  rep movsd
  dec ebp
  jnz outer
  micro_exit
align 4096
src: times 4096 db 0x5a
dst: times 4096 db 0
