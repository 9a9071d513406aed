; A guest for VM state and virtual clock tests: it lives on timer interrupts and the disk,
; the two things hello.bin and mix.bin never touch.
;
; Multiboot (a.out kludge), loaded at 1 MiB. It sets up its own GDT and IDT, programs the
; PIC and the PIT (channel 0, mode 2, 1 kHz) and then sleeps in HLT between ticks, so under
; the virtual clock the machine skips from deadline to deadline. On every 4th tick it
; writes a sector of the virtio-blk disk (tick count, TSC, PIT count, RTC seconds and a
; pattern) and reads another one back, folding what it read into a checksum; every 100
; ticks it prints a line on COM1. Bytes received on COM1 are echoed and folded into the
; checksum too. After TICKS ticks it prints the checksum and exits through port 0xF4
; (status 0, exit code 1). Without a disk (nothing at PCI 00:03.0) it only ticks.
;
; Build: guests/build.sh (nasm -f bin -Ox; NASM 2.16.01; the image is committed)
bits 32
org 0x100000

MB_MAGIC     equ 0x1BADB002
MB_FLAGS     equ 0x00010000
COM1         equ 0x3f8
TICKS        equ 1000
PIT_DIVISOR  equ 1193          ; 1.193182 MHz / 1193 = 1 kHz
DISK_SLOT    equ 3             ; pc.ts puts virtio-blk at 00:03.0
QUEUE_SIZE   equ 256
; Legacy virtio PCI registers (virtio 0.9.5, "Virtio Header")
VIO_GUEST_FEATURES equ 0x04
VIO_QUEUE_PFN      equ 0x08
VIO_QUEUE_NUM      equ 0x0c
VIO_QUEUE_SEL      equ 0x0e
VIO_QUEUE_NOTIFY   equ 0x10
VIO_STATUS         equ 0x12
VIO_ISR            equ 0x13
VIO_CAPACITY       equ 0x14   ; device config (no MSI-X): u64 capacity in sectors
VIRTQ_DESC_F_NEXT  equ 1
VIRTQ_DESC_F_WRITE equ 2
VIRTIO_BLK_T_IN    equ 0
VIRTIO_BLK_T_OUT   equ 1

header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, end_load, end_bss, start

start:
  cli
  mov esp, stack_top
  lgdt [gdt_desc]
  jmp 0x08:.flat
.flat:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  call idt_init
  call uart_init
  call pic_init
  call disk_init
  mov esi, banner
  call puts
  ; PIT channel 0: mode 2 (rate generator), lobyte/hibyte
  mov al, 0x34
  out 0x43, al
  mov al, PIT_DIVISOR & 0xff
  out 0x40, al
  mov al, PIT_DIVISOR >> 8
  out 0x40, al
  sti

main_loop:
  hlt
  call poll_serial
  mov eax, [ticks]
  cmp eax, [seen]
  je main_loop
  mov [seen], eax
  test eax, 3
  jnz .no_disk
  call disk_work
.no_disk:
  mov eax, [seen]
  xor edx, edx
  mov ecx, 100
  div ecx
  test edx, edx
  jnz .no_print
  mov esi, tick_msg
  call puts
  mov eax, [seen]
  call putdec
  mov esi, newline
  call puts
.no_print:
  cmp dword [seen], TICKS
  jb main_loop
  cli
  mov esi, sum_msg
  call puts
  mov eax, [checksum]
  call puthex
  mov esi, newline
  call puts
  mov al, 0
  out 0xf4, al                   ; exit status 0: exit code (0 << 1) | 1
  hlt

; ---- interrupts -------------------------------------------------------------------------

idt_init:
  mov edi, idt
  xor ecx, ecx
.gate:
  mov eax, fatal_isr
  cmp ecx, 0x20
  jb .set
  mov eax, spurious_isr
  cmp ecx, 0x20
  jne .set
  mov eax, irq0_isr
.set:
  mov [edi], ax
  mov word [edi + 2], 0x08
  mov word [edi + 4], 0x8e00     ; present, DPL 0, 32-bit interrupt gate
  shr eax, 16
  mov [edi + 6], ax
  add edi, 8
  inc ecx
  cmp ecx, 256
  jne .gate
  lidt [idt_desc]
  ret

pic_init:
  mov al, 0x11                   ; ICW1: edge, cascade, ICW4
  out 0x20, al
  out 0xa0, al
  mov al, 0x20                   ; ICW2: vectors 0x20 and 0x28
  out 0x21, al
  mov al, 0x28
  out 0xa1, al
  mov al, 4                      ; ICW3
  out 0x21, al
  mov al, 2
  out 0xa1, al
  mov al, 1                      ; ICW4: 8086 mode
  out 0x21, al
  out 0xa1, al
  mov al, 0xfe                   ; only IRQ0
  out 0x21, al
  mov al, 0xff
  out 0xa1, al
  ret

irq0_isr:
  push eax
  inc dword [ticks]
  mov al, 0x20
  out 0x20, al
  pop eax
  iret

spurious_isr:
  push eax
  mov al, 0x20
  out 0xa0, al
  out 0x20, al
  pop eax
  iret

fatal_isr:
  mov al, '!'
  out 0xe9, al
  mov al, 2
  out 0xf4, al                   ; exit status 2: exit code 5
  cli
  hlt

; ---- disk -------------------------------------------------------------------------------

; Find virtio-blk at 00:03.0 and set up its one queue; [vio] stays 0 without a disk.
disk_init:
  mov eax, 0x80000000 | (DISK_SLOT << 11)
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  cmp eax, 0x10011af4
  jne .none
  mov eax, 0x80000000 | (DISK_SLOT << 11) | 0x10
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  and eax, 0xfffc
  mov [vio], eax
  mov edx, eax
  add dx, VIO_STATUS
  xor al, al
  out dx, al                     ; reset
  mov al, 1
  out dx, al                     ; ACKNOWLEDGE
  mov al, 3
  out dx, al                     ; DRIVER
  mov edx, [vio]
  add dx, VIO_GUEST_FEATURES
  xor eax, eax
  out dx, eax                    ; no features: plain split ring
  mov edx, [vio]
  add dx, VIO_QUEUE_SEL
  xor ax, ax
  out dx, ax
  mov edx, [vio]
  add dx, VIO_QUEUE_NUM
  in ax, dx
  cmp ax, QUEUE_SIZE
  jne fatal_isr
  mov edx, [vio]
  add dx, VIO_QUEUE_PFN
  mov eax, vq
  shr eax, 12
  out dx, eax
  mov edx, [vio]
  add dx, VIO_STATUS
  mov al, 7
  out dx, al                     ; DRIVER_OK
  mov edx, [vio]
  add dx, VIO_CAPACITY
  in eax, dx
  mov [sectors], eax
  test eax, eax
  jz .none
  ; the request chain never changes shape: header -> data -> status
  mov dword [vq_desc + 0], req_header
  mov dword [vq_desc + 8], 16
  mov word [vq_desc + 12], VIRTQ_DESC_F_NEXT
  mov word [vq_desc + 14], 1
  mov dword [vq_desc + 16 + 0], sector_buf
  mov dword [vq_desc + 16 + 8], 512
  mov word [vq_desc + 16 + 14], 2
  mov dword [vq_desc + 32 + 0], req_status
  mov dword [vq_desc + 32 + 8], 1
  mov word [vq_desc + 32 + 12], VIRTQ_DESC_F_WRITE
  ret
.none:
  mov dword [vio], 0
  ret

; One request: EAX type, EBX sector, data in sector_buf. Completes at the notify.
disk_request:
  mov [req_header], eax
  mov dword [req_header + 4], 0
  mov [req_header + 8], ebx
  mov dword [req_header + 12], 0
  mov word [vq_desc + 16 + 12], VIRTQ_DESC_F_NEXT
  cmp eax, VIRTIO_BLK_T_IN
  jne .out
  mov word [vq_desc + 16 + 12], VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE
.out:
  mov byte [req_status], 0xff
  movzx ecx, word [vq_avail + 2]
  mov edx, ecx
  and edx, QUEUE_SIZE - 1
  mov word [vq_avail + 4 + edx * 2], 0
  inc ecx
  mov [vq_avail + 2], cx
  mov edx, [vio]
  add dx, VIO_QUEUE_NOTIFY
  xor ax, ax
  out dx, ax
  mov edx, [vio]
  add dx, VIO_ISR
  in al, dx                      ; reading ISR lowers the interrupt
  cmp byte [req_status], 0
  jne fatal_isr
  ret

; Write a sector describing this moment, read another back into the checksum.
disk_work:
  cmp dword [vio], 0
  je .done
  mov edi, sector_buf
  mov eax, [seen]
  stosd
  rdtsc
  stosd
  mov eax, edx
  stosd
  xor al, al
  out 0x43, al                   ; latch channel 0
  in al, 0x40
  mov ah, al
  in al, 0x40
  xchg al, ah
  movzx eax, ax
  stosd
  xor al, al
  out 0x70, al                   ; RTC seconds
  in al, 0x71
  movzx eax, al
  stosd
  mov ecx, 123
  mov eax, [seen]
  imul eax, eax, 0x01010101
.fill:
  xor eax, ecx
  rol eax, 3
  stosd
  loop .fill
  ; write sector 8 + (tick / 4) % 64
  mov eax, [seen]
  shr eax, 2
  and eax, 63
  lea ebx, [eax + 8]
  mov eax, VIRTIO_BLK_T_OUT
  call disk_request
  ; read sector (tick * 7) % capacity
  mov eax, [seen]
  imul eax, eax, 7
  xor edx, edx
  div dword [sectors]
  mov ebx, edx
  mov eax, VIRTIO_BLK_T_IN
  call disk_request
  mov eax, [checksum]
  rol eax, 5
  xor eax, [sector_buf]
  xor eax, [sector_buf + 8]
  xor eax, [sector_buf + 508]
  mov [checksum], eax
.done:
  ret

; ---- serial -----------------------------------------------------------------------------

uart_init:
  mov dx, COM1 + 3
  mov al, 0x80
  out dx, al
  mov dx, COM1
  mov al, 1
  out dx, al
  mov dx, COM1 + 1
  xor al, al
  out dx, al
  mov dx, COM1 + 3
  mov al, 0x03
  out dx, al
  ret

; Echo every byte waiting in the receiver, folding each into the checksum.
poll_serial:
  mov dx, COM1 + 5
  in al, dx
  test al, 1
  jz .done
  mov dx, COM1
  in al, dx
  movzx eax, al
  mov ecx, [checksum]
  rol ecx, 7
  xor ecx, eax
  xor ecx, [ticks]
  mov [checksum], ecx
  call putc
  jmp poll_serial
.done:
  ret

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
.emit:
  pop eax
  add al, '0'
  call putc
  dec ebx
  jnz .emit
  ret

puthex:
  mov ecx, 8
.digit:
  rol eax, 4
  push eax
  and al, 0x0f
  add al, '0'
  cmp al, '9'
  jbe .ok
  add al, 'a' - '9' - 1
.ok:
  call putc
  pop eax
  loop .digit
  ret

; ---- data -------------------------------------------------------------------------------

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff           ; 0x08: code, flat 4 GiB
  dq 0x00cf92000000ffff           ; 0x10: data, flat 4 GiB
gdt_desc:
  dw gdt_desc - gdt - 1
  dd gdt
idt_desc:
  dw 256 * 8 - 1
  dd idt

banner:   db "ticks: PIT at 1 kHz, HLT between ticks, a sector written every 4th", 10, 0
tick_msg: db "tick ", 0
sum_msg:  db "checksum ", 0
newline:  db 10, 0

end_load:

section .bss align=4096
alignb 4096
vq:
vq_desc:  resb 16 * QUEUE_SIZE
vq_avail: resb 4096                ; flags, idx, ring[256], used_event: padded to the page
vq_used:  resb 4096
idt:      resb 256 * 8
ticks:    resd 1
seen:     resd 1
checksum: resd 1
vio:      resd 1
sectors:  resd 1
req_header: resb 16
req_status: resb 4
sector_buf: resb 512
          resb 16384
stack_top:
end_bss:
