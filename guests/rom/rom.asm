; A tiny firmware image for `ftx86 run --bios`: 64 KiB, mapped at the top of 4 GiB and
; aliased at 0xF0000. The CPU starts at the reset vector F000:FFF0 (linear 0xFFFFFFF0), jumps
; into the alias in real mode, prints on the 0xE9 debug console, checks that RAM works, and
; exits through port 0xF4 with the number of lines it printed.
bits 16
org 0
start:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  mov ds, ax
  mov si, msg + 0xf0000 - 0xf0000
  push cs
  pop ds
  mov si, msg
.print:
  lodsb
  test al, al
  jz .ram
  out 0xe9, al
  jmp .print
.ram:
  ; Write a pattern to low RAM and read it back.
  xor ax, ax
  mov es, ax
  mov word [es:0x500], 0xbeef
  cmp word [es:0x500], 0xbeef
  jne .fail
  mov al, 'o'
  out 0xe9, al
  mov al, 'k'
  out 0xe9, al
  mov al, 10
  out 0xe9, al
  mov al, 2
  out 0xf4, al
  hlt
.fail:
  mov al, 0x7f
  out 0xf4, al
  hlt
msg: db 'ftx86 ROM: running from F000 after the reset vector', 10, 0

  times 0xfff0 - ($ - $$) db 0xff
reset_vector:
  jmp 0xf000:start
  times 0x10000 - ($ - $$) db 0xff
