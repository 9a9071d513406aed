; A CPU-bound mixed workload for bench/cpu.ts: integer ALU, loads and stores, calls and
; string ops, in 32-bit flat protected mode with paging on (like a Linux guest).
; Multiboot (a.out kludge), loaded at 1 MiB; reports a checksum on port 0xE9 and exits 0.
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 0x00010000
header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, end_load, end_bss, start
start:
  mov esp, stack_top
  ; identity-map the first 8 MiB with 4 KiB pages
  mov edi, page_dir
  mov eax, page_tab0 + 3
  mov [edi], eax
  mov eax, page_tab1 + 3
  mov [edi + 4], eax
  mov edi, page_tab0
  mov eax, 3
  mov ecx, 2048
.map:
  mov [edi], eax
  add eax, 4096
  add edi, 4
  dec ecx
  jnz .map
  mov eax, page_dir
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax

  mov ebp, 3000          ; outer iterations
  xor esi, esi           ; checksum
outer:
  mov ecx, 1000
  mov edi, buffer
inner:
  mov eax, ecx
  imul eax, eax, 2654435761
  xor eax, esi
  rol eax, 5
  add esi, eax
  mov [edi], eax
  add edi, 4
  call leaf
  movzx edx, byte [edi - 3]
  add esi, edx
  test ecx, 1
  jz .even
  sub esi, 7
.even:
  dec ecx
  jnz inner
  ; a string copy per outer iteration
  push esi
  mov esi, buffer
  mov edi, buffer2
  mov ecx, 256
  rep movsd
  pop esi
  dec ebp
  jnz outer

  ; print checksum as hex
  mov ecx, 8
.hex:
  rol esi, 4
  mov eax, esi
  and eax, 15
  mov al, [hexdigits + eax]
  out 0xe9, al
  dec ecx
  jnz .hex
  mov al, 10
  out 0xe9, al
  mov al, 0
  out 0xf4, al
  hlt

leaf:
  push ebx
  mov ebx, [edi - 4]
  shr ebx, 3
  add esi, ebx
  pop ebx
  ret

hexdigits: db '0123456789abcdef'
end_load:
align 4096
page_dir: resb 4096
page_tab0: resb 4096
page_tab1: resb 4096
buffer: resb 4096
buffer2: resb 4096
resb 8192
stack_top:
end_bss:
