; v86.asm - virtual-8086 mode (SDM Vol. 3A ch. 20) under a small ring-0 monitor:
; entry by IRET with EFLAGS.VM, real-mode addressing (segment*16 + offset,
; 16-bit addressing forms, far CALL/RETF), CLI/STI/PUSHF/POPF that act on IF
; directly at IOPL 3 and trap (#GP(0)) to the monitor at IOPL 0, INT n taken
; through the protected-mode IDT at IOPL 3 (with the gate's DPL checked:
; #GP(vector*8+2)) and trapped at IOPL 0 (the monitor reflects it through the
; real-mode vector table and emulates the handler's IRET; INT3 is not
; IOPL-sensitive and meets the gate DPL check instead: SDM INT n), the I/O permission
; bitmap of the TSS (checked in V86 whatever IOPL is: 20.2.8.1) with port E9h
; allowed so the V86 code prints for itself, HLT trapped, and leaving to the
; monitor and entering again.
;
; The V86 code is assembled in this image and copied to V86_SEG:0 (linear
; 20000h); its labels are used through VOFF().
;
; Masked: EFLAGS images are printed without RF and TF (QEMU does not set RF in
; a fault's frame, see pmode.asm).
;
; QEMU vs hardware: nothing known in what this guest prints. (The 64 KiB limit
; of V86 segments is not checked by QEMU, see pmode.asm; this guest does not
; go near it.)

%define GUEST_NAME "v86"
%include "common.inc"

V86_SEG     equ 0x2000
V86_STACK_SEG equ 0x2800
V86_SP      equ 0x8000
SEL_V86TSS  equ SEL_FREE
VEC_EXIT    equ 0x30                ; leave to the monitor
VEC_PMINT   equ 0x31                ; DPL3 gate: taken from V86 at IOPL 3
VEC_DPL0    equ 0x32                ; DPL0 gate: #GP from V86
FRAME_FLAGS equ 0x3FFFF & ~(RF | TF)

%define VOFF(x) ((x) - v86_code)

main:
    call setup
    PUTLN "monitor: session 1, iopl 3"
    mov eax, VOFF(v86_s1)
    mov edx, VM | IOPL3 | 2
    call enter_v86
    PUTLN "monitor: session 2, iopl 0"
    mov eax, VOFF(v86_s2)
    mov edx, VM | 2
    call enter_v86
    PUTLN "monitor: session 3, iopl 3 again"
    mov eax, VOFF(v86_s3)
    mov edx, VM | IOPL3 | IF | 2
    call enter_v86
    KV "monitor: #gp traps handled", [gp_count]
    ret

setup:
    ; the V86 code at V86_SEG:0
    mov esi, v86_code
    mov edi, V86_SEG * 16
    mov ecx, v86_code_end - v86_code
    rep movsb
    ; real-mode vector 21h -> the V86 handler
    mov word [0x21 * 4], VOFF(v_int21)
    mov word [0x21 * 4 + 2], V86_SEG
    ; a TSS with an I/O bitmap: every port denied but E9h (SDM Vol. 1 18.5.2);
    ; the byte after the bitmap must be FFh
    mov edi, v86_tss
    xor eax, eax
    mov ecx, 104 / 4
    rep stosd
    mov dword [v86_tss + 4], kstack_top
    mov dword [v86_tss + 8], SEL_KDATA
    mov word [v86_tss + 102], 104
    mov edi, v86_tss + 104
    mov al, 0xFF
    mov ecx, 8192 + 1
    rep stosb
    and byte [v86_tss + 104 + (0xE9 >> 3)], ~(1 << (0xE9 & 7))
    mov edi, SEL_V86TSS
    mov eax, v86_tss
    mov ebx, 104 + 8192
    mov ecx, ACC_TSS
    call gdt_set
    mov ax, SEL_V86TSS
    ltr ax
    ; gates: VEC_EXIT and VEC_PMINT DPL3 (callable from V86 at IOPL 3), VEC_DPL0 not
    mov eax, VEC_EXIT
    mov ebx, v86_exit_gate
    mov ecx, GATE_INTR | DPL3
    mov edx, SEL_KCODE
    call idt_set
    mov eax, VEC_PMINT
    mov ebx, v86_pm_int
    call idt_set
    mov eax, VEC_DPL0
    mov ecx, GATE_INTR
    call idt_set
    mov dword [exc_hook], v86_monitor
    ret

; enter_v86: EAX = IP, EDX = EFLAGS (with VM); returns when the session ends
enter_v86:
    pushad
    mov dword [vif], 1
    EXPECT_FAULT .done              ; the end of a session recovers here
    push dword V86_SEG              ; GS
    push dword V86_SEG              ; FS
    push dword V86_SEG              ; DS
    push dword V86_SEG              ; ES
    push dword V86_STACK_SEG        ; SS
    push dword V86_SP               ; ESP
    push edx                        ; EFLAGS
    push dword V86_SEG              ; CS
    push eax                        ; EIP
    iretd                           ; CPL 0, VM in the image: to V86 (SDM IRET)
.done:
    popad
    ret

; ============================================================================
; the ring-0 side
; ============================================================================
; INT 30h from V86 at IOPL 3: the session ends
v86_exit_gate:
    push dword SEL_KDATA
    pop ds
    PUTLN "monitor: int 30h through the idt: session over"
    jmp exc_common.recover

; INT 31h from V86 at IOPL 3 (SDM 20.3.1.1): the frame holds GS FS DS ES SS ESP
; EFLAGS CS EIP of V86, and DS..GS themselves are null in the handler
v86_pm_int:
    push ebp
    mov ebp, esp
    push eax
    mov eax, ds                     ; still the null selector: read before reloading
    push dword SEL_KDATA
    pop ds
    PUTS "pm int 31h from v86: handler ds="
    PUTHEX eax, 4
    mov eax, es
    PUTS " es="
    PUTHEX eax, 4
    PUTS " cs:ip="
    PUTHEX [ebp + 8], 4
    PUTS ":"
    PUTHEX [ebp + 4], 4
    PUTS " flags="
    mov eax, [ebp + 12]
    and eax, FRAME_FLAGS
    PUTHEX eax, 5
    PUTS " ss:sp="
    PUTHEX [ebp + 20], 4
    PUTS ":"
    PUTHEX [ebp + 16], 4
    PUTS " es,ds,fs,gs="
    PUTHEX [ebp + 24], 4
    PUTS ","
    PUTHEX [ebp + 28], 4
    PUTS ","
    PUTHEX [ebp + 32], 4
    PUTS ","
    PUTHEX [ebp + 36], 4
    PUTS " handler flags="
    pushfd
    pop eax
    and eax, FRAME_FLAGS | NT
    PUTHEX eax, 5
    call print_nl
    ; hand a value back in AX and change DS in the frame: IRET reloads both
    mov eax, [ebp - 4]
    add eax, 0x1000
    mov [ebp - 4], eax
    mov dword [ebp + 28], 0x3000
    pop eax
    pop ebp
    iretd                           ; VM in the image: back to V86, DS..GS from the frame

; linear address of the V86 stack top -> EDI
v86_stack_linear:
    movzx edi, word [ebp + FR_USS]
    shl edi, 4
    movzx eax, word [ebp + FR_UESP]
    add edi, eax
    ret

; the #GP handler's V86 half (an exc_hook): decode at CS:IP, emulate, resume
v86_monitor:
    cmp dword [ebp + FR_VEC], 13
    jne .not_ours
    test dword [ebp + FR_EFL], VM
    jz .not_ours
    inc dword [gp_count]
    movzx esi, word [ebp + FR_CS]
    shl esi, 4
    movzx eax, word [ebp + FR_EIP]
    add esi, eax
    movzx ebx, byte [esi]
    PUTS "monitor: #gp err="
    PUTHEX [ebp + FR_ERR], 4
    PUTS " at "
    PUTHEX [ebp + FR_CS], 4
    PUTS ":"
    PUTHEX [ebp + FR_EIP], 4
    PUTS " op="
    PUTHEX ebx, 2
    cmp bl, 0xCD
    je .int
    cmp bl, 0xCC                    ; INT3: not IOPL-sensitive, this is its gate's DPL check
    je .skip1
    cmp bl, 0xFA
    je .cli
    cmp bl, 0xFB
    je .sti
    cmp bl, 0x9C
    je .pushf
    cmp bl, 0x9D
    je .popf
    cmp bl, 0xCF
    je .iret
    cmp bl, 0xF4
    je .skip1
    cmp bl, 0xE6
    je .skip2
    cmp bl, 0xE7
    je .skip2
    cmp bl, 0xE4
    je .skip2
    cmp bl, 0xE5
    je .skip2
    cmp bl, 0xEE
    je .skip1
    cmp bl, 0xEF
    je .skip1
    call print_nl
.not_ours:
    xor eax, eax                    ; HOOK_DEFAULT: report and end the session
    ret

.int:
    movzx ecx, byte [esi + 1]
    PUTS " int "
    PUTHEX ecx, 2
    cmp ecx, VEC_EXIT
    jne .int_go
    PUTLN ": session over"
    mov eax, HOOK_RECOVER
    ret
.int_go:
    cmp dword [ebp + FR_ERR], 0
    jne .skip2                      ; a gate DPL fault (IOPL 3): just skip the INT
    ; IOPL < 3: reflect through the real-mode vector table: push FLAGS (with
    ; the virtual IF), CS, IP of the next instruction; IF off; CS:IP <- vector
    call v86_stack_linear
    sub edi, 6
    sub word [ebp + FR_UESP], 6
    call flags_image
    mov [edi + 4], ax
    mov ax, [ebp + FR_CS]
    mov [edi + 2], ax
    mov ax, [ebp + FR_EIP]
    add ax, 2
    mov [edi], ax
    mov ax, [ecx * 4]
    mov [ebp + FR_EIP], eax
    and dword [ebp + FR_EIP], 0xFFFF
    movzx eax, word [ecx * 4 + 2]
    mov [ebp + FR_CS], eax
    mov dword [vif], 0
    PUTS ": reflected to "
    PUTHEX [ebp + FR_CS], 4
    PUTS ":"
    PUTHEX [ebp + FR_EIP], 4
    jmp .resume

.cli:
    mov dword [vif], 0
    PUTS " cli: vif=0"
    jmp .skip1
.sti:
    mov dword [vif], 1
    PUTS " sti: vif=1"
    jmp .skip1
.pushf:
    call v86_stack_linear
    sub edi, 2
    sub word [ebp + FR_UESP], 2
    call flags_image
    mov [edi], ax
    PUTS " pushf: pushed "
    PUTHEX eax, 4
    jmp .skip1
.popf:
    call v86_stack_linear
    movzx eax, word [edi]
    add word [ebp + FR_UESP], 2
    PUTS " popf: popped "
    PUTHEX eax, 4
    call take_flags
    jmp .skip1
.iret:
    call v86_stack_linear
    movzx eax, word [edi]
    mov [ebp + FR_EIP], eax
    movzx eax, word [edi + 2]
    mov [ebp + FR_CS], eax
    movzx eax, word [edi + 4]
    add word [ebp + FR_UESP], 6
    call take_flags
    PUTS " iret to "
    PUTHEX [ebp + FR_CS], 4
    PUTS ":"
    PUTHEX [ebp + FR_EIP], 4
    jmp .resume

.skip2:
    inc word [ebp + FR_EIP]
.skip1:
    inc word [ebp + FR_EIP]
    PUTS " (skipped)"
.resume:
    PUTS " vif="
    PUTHEX [vif], 1
    call print_nl
    mov eax, HOOK_RESUME
    ret

; flags_image -> AX: the V86 FLAGS as its code should see them (virtual IF)
flags_image:
    mov eax, [ebp + FR_EFL]
    and eax, 0xFFFF & ~(IF | TF)
    cmp dword [vif], 0
    je .r
    or eax, IF
.r: ret

; take_flags: AX = a FLAGS image popped by V86 code: the status flags and DF go
; to the real EFLAGS, IF to the virtual one; IOPL, TF, NT stay the monitor's
take_flags:
    push eax
    and eax, CF | PF | AF | ZF | SF | DF | OF
    and dword [ebp + FR_EFL], ~(CF | PF | AF | ZF | SF | DF | OF)
    or [ebp + FR_EFL], eax
    pop eax
    and eax, IF
    shr eax, 9
    mov [vif], eax
    ret

section .data
hma_word: dw 0x1234, 0
vif:      dd 1
gp_count: dd 0

section .bss
alignb 16
v86_tss: resb 104 + 8192 + 16

; ============================================================================
; the V86 code (copied to V86_SEG:0; position independent but for VOFF)
; ============================================================================
section .text
align 16
bits 16
v86_code:

; ---- helpers: print through port E9h, which the I/O bitmap allows ----
v_putc:                             ; AL
    out 0xE9, al
    ret
v_nl:
    push ax
    mov al, 10
    out 0xE9, al
    pop ax
    ret
v_puts:                             ; CS:SI
    push ax
    push si
.l: mov al, [cs:si]
    test al, al
    jz .e
    out 0xE9, al
    inc si
    jmp .l
.e: pop si
    pop ax
    ret
v_puthex16:                         ; AX
    push ax
    push bx
    push cx
    mov cx, 4
.l: rol ax, 4
    mov bx, ax
    and bx, 0x000F
    push ax
    mov al, [cs:bx + VOFF(v_hexdigits)]
    out 0xE9, al
    pop ax
    loop .l
    pop cx
    pop bx
    pop ax
    ret

%macro VPUTS 1
    push si
    mov si, VOFF(%%s)
    call v_puts
    pop si
    jmp %%e
%%s: db %1, 0
%%e:
%endmacro

; VKV "key", value : `key: XXXX`
%macro VKV 2
    VPUTS {%1, ": "}
    push ax
    mov ax, %2
    call v_puthex16
    pop ax
    call v_nl
%endmacro

v_farfn:
    mov ax, cs
    retf

; ---- session 1: IOPL 3 ----
v86_s1:
    VKV "v86 hello, cs", cs
    mov ax, sp
    VKV "v86 sp", ax
    mov ax, ss
    VKV "v86 ss", ax
    ; segment*16 + offset: 3000:0010 and 3001:0000 are the same byte
    mov ax, 0x3000
    mov ds, ax
    mov word [0x0010], 0xBEEF
    mov ax, 0x3001
    mov es, ax
    mov ax, [es:0x0000]
    VKV "v86 3001:0000 after writing 3000:0010", ax
    mov bx, 0x0010
    mov si, 0x0006
    mov ax, [bx + si - 6]
    VKV "v86 [bx+si-6]", ax
    mov bp, 0x0010
    mov ax, 0x3000
    mov ss, ax                      ; [bp] uses SS
    mov sp, 0x8000
    mov ax, [bp]
    VKV "v86 ss:[bp]", ax
    mov ax, V86_STACK_SEG
    mov ss, ax
    mov sp, V86_SP
    ; FFFF:xxxx reaches above 1 MiB (A20 is on: no 8086 wrap); hma_word is a
    ; word of this image there, set to 1234h by the monitor
    mov ax, 0xFFFF
    mov es, ax
    mov ax, [es:hma_word - 0xFFFF0]
    VKV "v86 ffff:hma_word", ax
    call V86_SEG:VOFF(v_farfn)
    VKV "v86 far call: cs", ax
    ; IOPL 3: CLI/STI/PUSHF/POPF act on the real IF; POPF cannot change IOPL
    cli
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 iopl3 cli: flags", ax
    sti
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 iopl3 sti: flags", ax
    push word 0x0000
    popf
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 iopl3 popf 0: flags", ax
    ; INT 31h: through the protected-mode IDT; the handler adds 1000h to AX and
    ; sets DS to 3000h in the frame
    mov ax, V86_SEG
    mov ds, ax
    mov ax, 0x1234
    int VEC_PMINT
    VKV "v86 after int 31h: ax", ax
    mov ax, ds
    VKV "v86 after int 31h: ds", ax
    ; INT 32h: gate DPL 0 < 3: #GP(32h*8+2) to the monitor, which skips it
    int VEC_DPL0
    ; I/O bitmap: port 80h denied; a word OUT at E9h also needs E9h+1: denied
    mov al, 0x55
    out 0x80, al
    mov dx, 0xE9
    mov ax, 0x0A21
    out dx, ax
    mov al, '!'
    out dx, al
    call v_nl
    hlt
    int VEC_EXIT

; ---- session 2: IOPL 0: the monitor emulates ----
v86_s2:
    VKV "v86 iopl0, cs", cs
    cli
    sti
    cli
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 iopl0 pushf after cli", ax
    push word 0x0200 | 0x0001
    popf
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 iopl0 pushf after popf 201", ax
    mov ah, 0x09
    int 0x21
    VKV "v86 back from int 21h: ax", ax
    int3
    out 0x80, al
    int VEC_EXIT

v_int21:
    VKV "v86 int 21h handler: ah", ax
    mov ax, 0x2121
    iret

; ---- session 3: IOPL 3 again, IF on ----
v86_s3:
    pushf
    pop ax
    and ax, 0x7FD5
    VKV "v86 again: flags", ax
    mov ax, V86_SEG
    mov ds, ax
    mov ax, 0x0001
    int VEC_PMINT
    int VEC_EXIT

v_hexdigits: db "0123456789abcdef"
v86_code_end:
bits 32
