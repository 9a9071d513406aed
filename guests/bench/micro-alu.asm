; Register ALU with memory loads and stores through ModRM/SIB addressing, 12 instructions
; per iteration.
%include "micro.inc"
  micro_start
  xor edx, edx
outer:
  mov ecx, 100000
  mov esi, buf
inner:
  mov eax, [esi]
  add eax, ecx
  xor eax, 0x5a5a5a5a
  mov [esi + 4], eax
  lea ebx, [eax + ecx * 2]
  and ebx, 0xfc
  add edx, [esi + ebx]
  cmp eax, edx
  adc edx, 0
  mov [esi + ebx + 8], edx
  dec ecx
  jnz inner
  dec ebp
  jnz outer
  micro_exit
align 4096
buf: times 1024 db 0
