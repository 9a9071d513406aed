; The built-in default guest of `ftx86 run`: a Multiboot program that talks to the console
; on COM1 like a real guest would (16550 polled transmit), does a little work so the CPU is
; seen doing something (counting primes below 50,000 with trial division), then powers the
; machine off.
;
; Build: nasm -f bin -o hello.bin hello.asm   (guests/build.sh builds all small guests)
bits 32
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ 0x00010000          ; a.out kludge: the load addresses follow
COM1     equ 0x3f8

header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, end_load, end_bss, start

start:
  mov esp, stack_top
  call uart_init
  mov esi, banner
  call puts
  ; CPUID vendor string
  xor eax, eax
  cpuid
  mov [vendor], ebx
  mov [vendor + 4], edx
  mov [vendor + 8], ecx
  mov esi, cpu_msg
  call puts
  mov esi, vendor
  call puts
  mov esi, newline
  call puts

  ; count primes below LIMIT
  mov ebx, 2                     ; candidate
  xor edi, edi                   ; count
.next:
  cmp ebx, 50000
  jae .done
  mov ecx, 2
.trial:
  mov eax, ecx
  mul ecx
  cmp eax, ebx
  ja .prime
  mov eax, ebx
  xor edx, edx
  div ecx
  test edx, edx
  jz .composite
  inc ecx
  jmp .trial
.prime:
  inc edi
.composite:
  inc ebx
  jmp .next
.done:
  mov esi, primes_msg
  call puts
  mov eax, edi
  call putdec
  mov esi, newline
  call puts
  mov esi, bye
  call puts
  ; Power off through ACPI: SLP_TYP = 5 (S5) with SLP_EN on the PM1a control block.
  mov dx, 0x604
  mov ax, (5 << 10) | (1 << 13)
  out dx, ax
  ; Without our ACPI (QEMU's S5 sleep type differs), leave through the debug-exit port
  ; (QEMU isa-debug-exit), and failing that, stop for good.
  mov al, 0
  out 0xf4, al
  cli
  hlt

uart_init:
  mov dx, COM1 + 3
  mov al, 0x80                   ; DLAB
  out dx, al
  mov dx, COM1
  mov al, 1                      ; 115200 baud
  out dx, al
  mov dx, COM1 + 1
  xor al, al
  out dx, al
  mov dx, COM1 + 3
  mov al, 0x03                   ; 8N1
  out dx, al
  ret

; putc: AL to COM1 once the transmitter holding register is empty (LSR bit 5).
putc:
  push edx
  push eax
  mov dx, COM1 + 5
.wait:
  in al, dx
  test al, 0x20
  jz .wait
  pop eax
  mov dx, COM1
  out dx, al
  pop edx
  ret

puts:
  lodsb
  test al, al
  jz .end
  cmp al, 10
  jne .plain
  mov al, 13
  call putc
  mov al, 10
.plain:
  call putc
  jmp puts
.end:
  ret

putdec:
  mov ecx, 10
  xor ebx, ebx
.div:
  xor edx, edx
  div ecx
  push edx
  inc ebx
  test eax, eax
  jnz .div
.out:
  pop eax
  add al, '0'
  call putc
  dec ebx
  jnz .out
  ret

banner:     db 'Hello from ftx86: an i686 PC in TypeScript and WebAssembly.', 10, 0
cpu_msg:    db 'CPU vendor: ', 0
primes_msg: db 'Primes below 50000: ', 0
bye:        db 'Powering off.', 10, 0
newline:    db 10, 0
end_load:
vendor:     resb 16
            resb 4096
stack_top:
end_bss:
