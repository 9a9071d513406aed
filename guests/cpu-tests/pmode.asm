; pmode.asm - protection in 32-bit protected mode: privilege levels and their
; transfers (IRET, call gates with parameter copying, interrupt and trap gates,
; far CALL/RET with the TSS stack switch, conforming code), selector loading and
; its faults, segment limits, the system instructions (LAR LSL VERR VERW ARPL
; SGDT SIDT SLDT STR SMSW LMSW), hardware task switches (JMP, CALL, INT through
; TSS descriptors and task gates, back link, NT, busy bits, IRET back) and a #DF
; delivered through a task gate as Linux's doublefault_tss does.
;
; Ring 3 code has IOPL 0 and so cannot print: it leaves its results in r3_out
; and ring 0 prints them after `int RING3_RETURN_VEC`.
;
; Masked (SDM Vol. 2): LAR's bits 16-19 (the "X" nibble of the 00FxFF00h mask);
; SMSW r32's upper half; the padding above CS in a far CALL's frame. CPUID
; results are never printed.
;
; QEMU vs hardware (QEMU 7.2 TCG, seen in probe guests):
;   - Segment limits, types and the null selector are checked when a segment
;     register is loaded and on far transfers, but not on data and stack
;     accesses: reading beyond a data segment's limit, through an expand-down
;     segment below its limit, through a null DS, or beyond SS's limit, and
;     writing through a read-only data or a code segment, all proceed instead of
;     raising #GP(0)/#SS(0).
;     Those cases print `hwcheck` lines (the guest's own verdict against the SDM,
;     which the harness keeps out of the QEMU comparison).
;   - Loading CS (far JMP/CALL, IRET) does not set the accessed bit of the code
;     descriptor (data segment loads do; SDM Vol. 3A 3.4.5.1: every load sets
;     it). LAR results are printed without bit 8; an hwcheck line tests it.
;   - A near JMP past CS's limit was seen both to fault and not to, depending
;     on how QEMU had translated the code; its line is an hwcheck.
;   - EFLAGS.RF is not set in the image pushed for a fault (P6 and later set it
;     for every fault but an instruction breakpoint). The handlers never print
;     pushed EFLAGS unmasked.

%define GUEST_NAME "pmode"
%include "common.inc"

SEL_CGATE3   equ 0x30 | 3           ; call gate DPL3 -> ring 0, 3 parameters
SEL_CONF0    equ 0x38               ; conforming code DPL0
SEL_CONF3    equ 0x40               ; conforming code DPL3
SEL_NPDATA   equ 0x48               ; writable data, not present
SEL_RODATA   equ 0x50               ; read-only data
SEL_XCODE    equ 0x58               ; execute-only code
SEL_LIMDATA  equ 0x60               ; data, limit FFFh
SEL_EXPDOWN  equ 0x68               ; expand-down data, limit FFFh, B=1
SEL_LIMSTACK equ 0x70               ; stack: 4 MiB, page granular
SEL_TSSB     equ 0x78
SEL_TASKGATE equ 0x80               ; task gate -> SEL_TSSB
SEL_TSSDF    equ 0x88
SEL_LDT      equ 0x90
SEL_NPCODE   equ 0x98               ; code, not present
SEL_CGATE0   equ 0xA0               ; call gate DPL0
SEL_TSSBAD   equ 0xA8               ; TSS descriptor whose limit is too small
SEL_LIMCODE  equ 0xB0               ; code ending just before limit_edge
SEL_DATA0_3  equ SEL_KDATA | 3      ; a DPL0 segment named with RPL 3

VEC_INTR3    equ 0x43               ; interrupt gate, DPL3
VEC_TRAP3    equ 0x44               ; trap gate, DPL3
VEC_INTR0    equ 0x42               ; DPL0: INT from ring 3 is #GP
VEC_TASK     equ 0x50               ; task gate -> SEL_TSSB

main:
    call setup
    call t_sysregs
    call t_lar_lsl
    call t_selectors
    call t_rings
    call t_gates_if
    call t_conforming
    call t_limits
    call t_tasks
    call t_double_fault
    call t_cpuid
    ret

; ============================================================================
; descriptors
; ============================================================================
; DESC selector, base, limit, access|flags
%macro DESC 4
    mov edi, %1
    mov eax, %2
    mov ebx, %3
    mov ecx, %4
    call gdt_set
%endmacro

; CALLGATE selector, target, attribute, parameter count
%macro CALLGATE 4
    mov edi, gdt + (%1 & ~7)
    mov ebx, %2
    mov edx, SEL_KCODE
    mov cl, %3
    mov ch, %4
    call gate_write
%endmacro

setup:
    CALLGATE SEL_CGATE3, cg_handler, GATE_CALL | DPL3, 3
    CALLGATE SEL_CGATE0, cg_handler, GATE_CALL, 3
    DESC SEL_CONF0, 0, 0xFFFFF, 0x9E | FL_G | FL_D
    DESC SEL_CONF3, 0, 0xFFFFF, 0xFE | FL_G | FL_D
    DESC SEL_NPDATA, 0, 0xFFFFF, 0x12 | FL_G | FL_D
    DESC SEL_RODATA, 0, 0xFFFFF, 0x90 | FL_G | FL_D
    DESC SEL_XCODE, 0, 0xFFFFF, 0x98 | FL_G | FL_D
    DESC SEL_LIMDATA, 0, 0xFFF, ACC_DATA0 | FL_D
    DESC SEL_EXPDOWN, 0, 0xFFF, 0x96 | FL_D
    DESC SEL_LIMSTACK, 0, 0x3FF, ACC_DATA0 | FL_G | FL_D
    DESC SEL_NPCODE, 0, 0xFFFFF, 0x1A | FL_G | FL_D
    DESC SEL_TSSB, tss_b, 103, ACC_TSS
    DESC SEL_TSSDF, tss_df, 103, ACC_TSS
    DESC SEL_TSSBAD, tss_c, 0x50, ACC_TSS
    DESC SEL_LDT, ldt, 15, ACC_LDT
    ; a code segment whose limit ends at the page boundary limit_edge; the limit
    ; is computed in EDX because DESC's expansion loads EAX with the base first
    mov edx, limit_edge
    shr edx, 12
    dec edx
    DESC SEL_LIMCODE, 0, edx, ACC_CODE0 | FL_G | FL_D
    ; task gate: only the selector field matters
    mov edi, gdt + SEL_TASKGATE
    xor ebx, ebx
    mov edx, SEL_TSSB
    mov cl, GATE_TASK
    mov ch, 0
    call gate_write
    ; LDT: 0x04 flat data DPL3, 0x0C flat code DPL0
    mov dword [ldt], 0x0000FFFF
    mov dword [ldt + 4], 0x00CFF200
    mov dword [ldt + 8], 0x0000FFFF
    mov dword [ldt + 12], 0x00CF9A00
    ; IDT gates
    mov eax, VEC_INTR3
    mov ebx, int_probe
    mov ecx, GATE_INTR | DPL3
    mov edx, SEL_KCODE
    call idt_set
    mov eax, VEC_TRAP3
    mov ecx, GATE_TRAP | DPL3
    call idt_set
    mov eax, VEC_TASK
    xor ebx, ebx
    mov ecx, GATE_TASK
    mov edx, SEL_TSSB
    call idt_set
    ; task state segments
    mov edi, tss_b
    mov eax, task_b
    mov ebx, tss_b_stack_top
    call tss_init
    mov edi, tss_df
    mov eax, df_task
    mov ebx, tss_df_stack_top
    call tss_init
    mov edi, tss_c
    mov eax, task_b
    mov ebx, tss_b_stack_top
    call tss_init
    ret

; tss_init: EDI = TSS, EAX = EIP, EBX = ESP; ring 0, flat, interrupts off
tss_init:
    push eax
    push ecx
    push edi
    push eax
    xor eax, eax
    mov ecx, 104 / 4
    rep stosd
    pop eax
    pop edi
    mov [edi + 32], eax             ; EIP
    mov dword [edi + 36], 2         ; EFLAGS
    mov [edi + 56], ebx             ; ESP
    mov eax, cr3
    mov [edi + 28], eax
    mov dword [edi + 4], kstack_top ; ESP0
    mov dword [edi + 8], SEL_KDATA
    mov dword [edi + 72], SEL_KDATA ; ES
    mov dword [edi + 76], SEL_KCODE ; CS
    mov dword [edi + 80], SEL_KDATA ; SS
    mov dword [edi + 84], SEL_KDATA ; DS
    mov dword [edi + 88], SEL_KDATA ; FS
    mov dword [edi + 92], SEL_KDATA ; GS
    mov word [edi + 102], 104       ; no I/O bitmap
    mov dword [edi + 40], 0xA0A0A0A0 ; EAX: shows which state a task starts with
    pop ecx
    pop eax
    ret

; reset_segs: flat kernel data in DS ES FS GS
reset_segs:
    push eax
    mov ax, SEL_KDATA
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    pop eax
    ret

; TRY "name", insn... : `name: exc: ...` or `name: exc: none`
%macro TRY 2-*
    PUTS {%1, ": "}
    EXPECT_FAULT %%r
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    NO_FAULT
%%r:
    call reset_segs
%endmacro

; TRY3 "name", label : run label in ring 3 (IOPL 0, IF 0) and report as TRY
%macro TRY3 2
    PUTS {%1, ": "}
    EXPECT_FAULT %%r
    mov eax, %2
    mov edx, 2
    call call_ring3
    NO_FAULT
%%r:
    call reset_segs
%endmacro

section .bss
alignb 16
ldt:        resb 16
r3_out:     resd 16
tss_b:      resb 104
tss_df:     resb 104
tss_c:      resb 104
            resb 4096
tss_b_stack_top:
            resb 4096
tss_df_stack_top:
section .text

; ============================================================================
; SGDT SIDT SLDT STR SMSW LMSW
; ============================================================================
t_sysregs:
    sgdt [r3_out]
    movzx eax, word [r3_out]
    KV "sgdt limit", eax, 4
    mov eax, [r3_out + 2]
    sub eax, gdt
    KV "sgdt base-gdt", eax
    sidt [r3_out]
    movzx eax, word [r3_out]
    KV "sidt limit", eax, 4
    mov eax, [r3_out + 2]
    sub eax, idt
    KV "sidt base-idt", eax
    sldt ax
    movzx eax, ax
    KV "sldt (none)", eax, 4
    mov ax, SEL_LDT
    lldt ax
    mov eax, 0xFFFFFFFF
    sldt eax                        ; a register destination: zero-extended (P6+)
    KV "sldt after lldt", eax
    str ax
    movzx eax, ax
    KV "str", eax, 4
    mov eax, 0xFFFFFFFF
    smsw eax
    and eax, 0xFFFF                 ; upper half undefined for SMSW r32
    KV "smsw r32 (low 16)", eax, 4
    mov word [r3_out], 0xEEEE
    smsw [r3_out]
    movzx eax, word [r3_out]
    KV "smsw m16", eax, 4
    ; LMSW loads PE MP EM TS only, and cannot clear PE (SDM LMSW)
    mov ax, 0x000A                  ; MP TS, PE clear
    lmsw ax
    mov eax, cr0
    KV "cr0 after lmsw 000a", eax
    clts
    mov eax, cr0
    KV "cr0 after clts", eax
    mov ax, 0xFFF0
    lmsw ax
    mov eax, cr0
    KV "cr0 after lmsw fff0", eax
    ; an LDT selector works once LDTR holds a table
    TRY "mov ds, ldt 0x07", {mov ax, 0x07}, {mov ds, ax}, {mov eax, [r3_out]}
    ret

; ============================================================================
; LAR LSL VERR VERW (ZF, and for LAR/LSL the value) from ring 0 and ring 3; ARPL
; ============================================================================
section .rodata
align 2
lar_sels: dw SEL_KCODE, SEL_KDATA, SEL_UCODE, SEL_UDATA, SEL_TSS, SEL_LDT, SEL_CGATE3
          dw SEL_TASKGATE, SEL_NPDATA, SEL_CONF0, SEL_EXPDOWN, SEL_XCODE, SEL_LIMDATA
          dw 0, 0xFFF8, SEL_DATA0_3, 0x07
LAR_COUNT equ ($ - lar_sels) / 2
section .text

; lar_one: BX = selector; EDI = r3_out slot (5 dwords): LAR value, ZF, LSL value,
; ZF, VERR ZF | VERW ZF << 1
lar_one:
    mov eax, 0xEEEEEEEE
    lar eax, bx
    setz cl
    mov [edi], eax
    movzx ecx, cl
    mov [edi + 4], ecx
    mov eax, 0xEEEEEEEE
    lsl eax, bx
    setz cl
    mov [edi + 8], eax
    movzx ecx, cl
    mov [edi + 12], ecx
    verr bx
    setz cl
    verw bx
    setz ch
    shl ch, 1
    or cl, ch
    movzx ecx, cl
    mov [edi + 16], ecx
    ret

lar_print:
    PUTS " lar="
    mov eax, [edi + 4]
    PUTHEX eax, 1
    PUTS "/"
    mov eax, [edi]
    and eax, 0x00F0FE00             ; bits 16-19 undefined; A (bit 8): see header
    cmp dword [edi + 4], 0
    jne .l1
    mov eax, [edi]                  ; unchanged when ZF=0
.l1:PUTHEX eax
    PUTS " lsl="
    mov eax, [edi + 12]
    PUTHEX eax, 1
    PUTS "/"
    PUTHEX [edi + 8]
    PUTS " verr,verw="
    PUTHEX [edi + 16], 1
    call print_nl
    ret

r3_lar:
    mov edi, r3_out
    mov bx, [r3_lar_sel]
    call lar_one
    int RING3_RETURN_VEC

section .bss
r3_lar_sel: resw 2
section .text

t_lar_lsl:
    xor esi, esi
.l0:
    movzx ebx, word [lar_sels + esi * 2]
    mov edi, r3_out
    call lar_one
    PUTS "cpl0 sel="
    PUTHEX ebx, 4
    call lar_print
    inc esi
    cmp esi, LAR_COUNT
    jb .l0
    xor esi, esi
.l3:
    movzx ebx, word [lar_sels + esi * 2]
    or ebx, 3                       ; RPL 3 as ring 3 would name it
    test ebx, 0xFFFC
    jnz .sel
    xor ebx, ebx                    ; keep the null selector null
.sel:
    mov [r3_lar_sel], bx
    mov eax, r3_lar
    mov edx, 2
    call call_ring3
    mov edi, r3_out
    PUTS "cpl3 sel="
    PUTHEX ebx, 4
    call lar_print
    inc esi
    cmp esi, LAR_COUNT
    jb .l3
    ; ARPL: raise the destination's RPL to the source's, ZF=1 if it changed
    mov ax, 0x0010
    mov bx, 0x0023
    arpl ax, bx
    setz cl
    movzx ecx, cl
    movzx eax, ax
    KV "arpl 0010,0023", eax, 4
    KV "arpl 0010,0023 zf", ecx, 1
    mov ax, 0x0013
    mov bx, 0x0021
    arpl ax, bx
    setz cl
    movzx ecx, cl
    movzx eax, ax
    KV "arpl 0013,0021", eax, 4
    KV "arpl 0013,0021 zf", ecx, 1
    ret

; ============================================================================
; loading selectors: the checks of MOV sreg / far JMP / LLDT / LTR and the error
; code (the selector, TI included, RPL bits replaced by EXT/IDT = 0: SDM Vol. 3A
; 6.13) of #GP, #NP, #SS
; ============================================================================
t_selectors:
    ; (a case that leaves DS unusable reloads it before TRY's own memory access)
    TRY "mov ds, null", {xor eax, eax}, {mov ds, ax}, {mov ax, SEL_KDATA}, {mov ds, ax}
    TRY "mov ss, null", {xor eax, eax}, {mov ss, ax}
    TRY "mov ds, beyond gdt limit", {mov ax, 0xFFF8}, {mov ds, ax}
    TRY "mov ds, execute-only code", {mov ax, SEL_XCODE}, {mov ds, ax}
    TRY "mov ds, readable conforming code", {mov ax, SEL_CONF0}, {mov ds, ax}, {mov eax, [r3_out]}, {mov ax, SEL_KDATA}, {mov ds, ax}
    TRY "mov ds, not present", {mov ax, SEL_NPDATA}, {mov ds, ax}
    TRY "mov es, tss", {mov ax, SEL_TSS}, {mov es, ax}
    TRY "mov fs, call gate", {mov ax, SEL_CGATE3}, {mov fs, ax}
    TRY "mov ss, read-only data", {mov ax, SEL_RODATA}, {mov ss, ax}
    TRY "mov ss, not present", {mov ax, SEL_NPDATA}, {mov ss, ax}
    TRY "mov ss, dpl3 data", {mov ax, SEL_UDATA}, {mov ss, ax}
    TRY "mov ss, rpl3 of dpl0", {mov ax, SEL_DATA0_3}, {mov ss, ax}
    TRY "mov gs, ldt selector 0x0c code", {mov ax, 0x0C}, {mov gs, ax}
    TRY "mov ds, ldt selector beyond ldt", {mov ax, 0x1C}, {mov ds, ax}
    TRY "jmp far not-present code", {jmp SEL_NPCODE:0}
    TRY "jmp far data segment", {jmp SEL_KDATA:0}
    TRY "jmp far null", {jmp 0:0}
    TRY "jmp far conforming dpl3 from cpl0", {jmp SEL_CONF3:0}
    TRY "lldt data segment", {mov ax, SEL_KDATA}, {lldt ax}
    TRY "ltr busy tss", {mov ax, SEL_TSS}, {ltr ax}
    TRY "ltr ldt", {mov ax, SEL_LDT}, {ltr ax}
    TRY3 "cpl3 mov ds, dpl0 data", r3_load_kdata
    TRY3 "cpl3 cli", r3_cli
    TRY3 "cpl3 hlt", r3_hlt
    TRY3 "cpl3 mov eax, cr0", r3_mov_cr0
    TRY3 "cpl3 in al, 80h (no bitmap)", r3_in
    TRY3 "cpl3 lgdt", r3_lgdt
    ret

r3_load_kdata:
    mov ax, SEL_DATA0_3
    mov ds, ax
    int RING3_RETURN_VEC
r3_cli:
    cli
    int RING3_RETURN_VEC
r3_hlt:
    hlt
    int RING3_RETURN_VEC
r3_mov_cr0:
    mov eax, cr0
    int RING3_RETURN_VEC
r3_in:
    in al, 0x80
    int RING3_RETURN_VEC
r3_lgdt:
    lgdt [gdtr]
    int RING3_RETURN_VEC

; ============================================================================
; rings: IRET to ring 3 (data registers naming more privileged segments become
; null, SDM IRET), a call gate from ring 3 with 3 parameters copied to the ring-0
; stack from TSS.ESP0 (SDM Vol. 3A 5.8.5), RETF imm back; INT n from ring 3 with
; the gate DPL check (#GP(vector*8+2)); far CALL/RET in the same ring
; ============================================================================
t_rings:
    call iret_to_r3_segs
    KV "ring3 ds", [r3_out], 4
    KV "ring3 es", [r3_out + 4], 4
    KV "ring3 fs", [r3_out + 8], 4
    KV "ring3 gs", [r3_out + 12], 4
    KV "ring3 cs", [r3_out + 16], 4
    KV "ring3 ss", [r3_out + 20], 4

    ; the call gate
    mov eax, r3_callgate
    mov edx, 2
    call call_ring3
    mov eax, [r3_out]
    sub eax, ustack_top
    KV "after call gate: ring3 esp-top", eax
    KV "after call gate: ring3 cs", [r3_out + 4], 4
    TRY3 "cpl3 call through dpl0 call gate", r3_callgate0

    ; INT n from ring 3: DPL3 gates are taken, DPL0 ones are #GP(vector*8+2|2)
    TRY3 "cpl3 int 42h (dpl0 gate)", r3_int42
    TRY3 "cpl3 int3 (dpl0 gate)", r3_int3
    TRY3 "cpl3 into with of=1 (dpl0 gate)", r3_into
    TRY3 "cpl3 int 43h (dpl3 gate)", r3_int43
    ; an exception in ring 3 is delivered through a DPL0 gate: no DPL check
    TRY3 "cpl3 #DE", r3_div0

    ; far CALL/RETF in ring 0: EIP and CS pushed as two dwords (the upper half
    ; of the CS slot is padding of unspecified value: only CS is printed)
    call SEL_KCODE:far_fn
    KV "far call pushed cs", [r3_out], 4
    KV "far call esp delta", [r3_out + 4]
    ret

far_fn:
    movzx eax, word [esp + 4]
    mov [r3_out], eax
    lea eax, [esp + 8]
    sub eax, esp
    mov [r3_out + 4], eax
    retf

; IRET to ring 3 with DS = user data (kept), ES = kernel data (nulled), FS =
; conforming code DPL0 (kept), GS = kernel data (nulled)
iret_to_r3_segs:
    mov [ring3_saved_esp], esp
    push dword SEL_UDATA
    push dword ustack_top
    push dword 2
    push dword SEL_UCODE
    push dword r3_segs
    mov ax, SEL_UDATA
    mov ds, ax
    mov ax, SEL_KDATA
    mov es, ax
    mov ax, SEL_CONF0
    mov fs, ax
    mov ax, SEL_KDATA
    mov gs, ax
    iretd

r3_segs:
    mov [r3_out], ds
    mov [r3_out + 4], es
    mov [r3_out + 8], fs
    mov [r3_out + 12], gs
    mov [r3_out + 16], cs
    mov [r3_out + 20], ss
    int RING3_RETURN_VEC

r3_callgate:
    push dword 0x11111111
    push dword 0x22222222
    push dword 0x33333333
    call SEL_CGATE3:0
    mov [r3_out], esp
    mov [r3_out + 4], cs
    int RING3_RETURN_VEC

r3_callgate0:
    call SEL_CGATE0:0
    int RING3_RETURN_VEC

; the call gate's ring-0 side: the new stack holds EIP, CS, the 3 parameters in
; their order, ESP, SS of the caller
cg_handler:
    push ebp
    mov ebp, esp
    PUTS "call gate: esp0-top="
    lea eax, [ebp + 4]
    sub eax, kstack_top
    PUTHEX eax
    PUTS " cs="
    PUTHEX [ebp + 8], 4
    PUTS " params="
    PUTHEX [ebp + 12]
    call print_sp
    PUTHEX [ebp + 16]
    call print_sp
    PUTHEX [ebp + 20]
    PUTS " caller esp-top="
    mov eax, [ebp + 24]
    sub eax, ustack_top
    PUTHEX eax
    PUTS " ss="
    PUTHEX [ebp + 28], 4
    mov eax, cs
    PUTS " cpl cs="
    PUTHEX eax, 4
    mov eax, ss
    PUTS " ss="
    PUTHEX eax, 4
    call print_nl
    pop ebp
    retf 12

r3_int42:
    int VEC_INTR0
    int RING3_RETURN_VEC
r3_int3:
    int3
    int RING3_RETURN_VEC
r3_into:
    mov al, 0x7F
    add al, 1                       ; OF=1
    into
    int RING3_RETURN_VEC
r3_int43:
    mov eax, 0x43434343
    int VEC_INTR3
    mov [r3_out + 40], eax
    int RING3_RETURN_VEC
r3_div0:
    xor edx, edx
    xor eax, eax
    div eax
    int RING3_RETURN_VEC

; ============================================================================
; interrupt gates clear IF, trap gates keep it (SDM Vol. 3A 6.12.1.3); from ring 0
; and from ring 3 (stack switch: the frame holds the ring-3 SS:ESP)
; ============================================================================
; int_probe: prints the frame and EFLAGS.IF inside the handler
int_probe:
    push ebp
    mov ebp, esp                    ; [ebp+4] EIP, +8 CS, +12 EFLAGS, +16 ESP, +20 SS
    push eax
    pushfd
    pop eax
    and eax, IF
    PUTS "int handler: if="
    shr eax, 9
    PUTHEX eax, 1
    PUTS " frame cs="
    PUTHEX [ebp + 8], 4
    PUTS " frame if="
    mov eax, [ebp + 12]
    and eax, IF
    shr eax, 9
    PUTHEX eax, 1
    test dword [ebp + 8], 3
    jz .same
    PUTS " frame esp-top="
    mov eax, [ebp + 16]
    sub eax, ustack_top
    PUTHEX eax
    PUTS " frame ss="
    PUTHEX [ebp + 20], 4
    PUTS " esp-esp0="
    lea eax, [ebp + 4]
    sub eax, kstack_top
    PUTHEX eax
.same:
    call print_nl
    pop eax
    pop ebp
    iretd

t_gates_if:
    sti                             ; the PIC masks every line (common.inc)
    int VEC_INTR3
    int VEC_TRAP3
    cli
    mov eax, r3_gates
    mov edx, 0x202                  ; ring 3 with IF=1
    call call_ring3
    ret

r3_gates:
    int VEC_INTR3
    int VEC_TRAP3
    int RING3_RETURN_VEC

; ============================================================================
; conforming code: callable from an outer ring without a gate, CPL unchanged
; (CS.RPL = 3) and no stack switch; a conforming segment of DPL 3 is not
; callable from CPL 0 (DPL > CPL: #GP) (SDM Vol. 3A 5.8.1.2)
; ============================================================================
t_conforming:
    mov eax, r3_conf
    mov edx, 2
    call call_ring3
    KV "conforming from cpl3: cs", [r3_out], 4
    mov eax, [r3_out + 4]
    sub eax, ustack_top
    KV "conforming from cpl3: esp-top", eax
    call SEL_CONF0:conf_fn
    KV "conforming dpl0 from cpl0: cs", [r3_out], 4
    TRY "call conforming dpl3 from cpl0", {call SEL_CONF3:conf_fn}
    ret

r3_conf:
    call SEL_CONF0:conf_fn
    int RING3_RETURN_VEC

conf_fn:
    mov [r3_out], cs
    mov [r3_out + 4], esp
    retf

; ============================================================================
; segment limits: QEMU checks them only on loads and far transfers, so these
; compare against the SDM themselves (see header)
; ============================================================================
section .bss
hw_vec: resd 1
hw_err: resd 1
section .text

hw_record:
    mov eax, [ebp + FR_VEC]
    mov [hw_vec], eax
    mov eax, [ebp + FR_ERR]
    mov [hw_err], eax
    mov eax, HOOK_RECOVER
    ret

; HWFAULT "name", vector (-1: none), error code, insn... : run quietly, then
; `hwcheck name: ok` or `hwcheck name: FAIL vec=.. err=..`
%macro HWFAULT 4-*
    mov dword [hw_vec], -1
    mov dword [hw_err], 0
    mov dword [exc_hook], hw_record
    EXPECT_FAULT %%r
    %rotate 3
    %rep %0 - 3
    %1
    %rotate 1
    %endrep
    mov dword [recover_eip], 0
%%r:
    mov dword [exc_hook], 0
    mov ax, SEL_KDATA
    mov ss, ax
    call reset_segs
    cmp dword [hw_vec], %2
    jne %%fail
    cmp dword [hw_err], %3
    jne %%fail
    HWCHECK_OK %1
    jmp %%done
%%fail:
    PUTS {"hwcheck ", %1, ": FAIL vec="}
    PUTHEX [hw_vec], 2
    PUTS " err="
    PUTHEX [hw_err], 4
    call print_nl
%%done:
%endmacro

t_limits:
    ; checked on the far transfer, by QEMU too: printed normally
    TRY "jmp far beyond cs limit", {jmp SEL_LIMCODE:limit_edge}
    HWFAULT "read beyond data limit", 13, 0, {mov ax, SEL_LIMDATA}, {mov es, ax}, {mov eax, [es:0x1000]}
    HWFAULT "dword straddling data limit", 13, 0, {mov ax, SEL_LIMDATA}, {mov es, ax}, {mov eax, [es:0xFFE]}
    HWFAULT "read at data limit", -1, 0, {mov ax, SEL_LIMDATA}, {mov es, ax}, {mov al, [es:0xFFF]}
    HWFAULT "expand-down below limit", 13, 0, {mov ax, SEL_EXPDOWN}, {mov es, ax}, {mov eax, [es:0x800]}
    HWFAULT "expand-down above limit", -1, 0, {mov ax, SEL_EXPDOWN}, {mov es, ax}, {mov eax, [es:0x1000]}
    HWFAULT "read through null ds", 13, 0, {xor eax, eax}, {mov ds, ax}, {mov eax, [0x1000]}
    HWFAULT "write through read-only data segment", 13, 0, {mov ax, SEL_RODATA}, {mov es, ax}, {mov [es:r3_out], eax}
    HWFAULT "write through readable code segment", 13, 0, {mov ax, SEL_CONF0}, {mov es, ax}, {mov [es:r3_out], eax}
    HWFAULT "read through readable code segment", -1, 0, {mov ax, SEL_CONF0}, {mov es, ax}, {mov eax, [es:r3_out]}
    HWFAULT "ss-relative read beyond ss limit", 12, 0, {mov ax, SEL_LIMSTACK}, {mov ss, ax}, {mov ebp, 0x500000}, {mov eax, [ebp]}
    HWFAULT "near jmp beyond cs limit", 13, 0, {jmp SEL_LIMCODE:.in_lim}, {.in_lim: jmp limit_edge}
    ; that far JMP loaded SEL_LIMCODE into CS: its descriptor is now accessed
    test byte [gdt + SEL_LIMCODE + 5], 1
    jz .not_accessed
    HWCHECK_OK "cs load sets the accessed bit"
    ret
.not_accessed:
    HWCHECK_FAIL "cs load sets the accessed bit"
    ret

; the first byte beyond SEL_LIMCODE; reached only where a near jump ignores the
; limit: back to the flat code segment and to the HWFAULT's continuation
align 4096
limit_edge:
    jmp SEL_KCODE:.flat
.flat:
    mov eax, [recover_eip]
    mov dword [recover_eip], 0
    jmp eax

; ============================================================================
; hardware task switches (SDM Vol. 3A 7.3): CALL sets NT and the back link and
; keeps the caller busy; IRET with NT returns through the link and clears the
; callee's busy bit; JMP does neither; every switch sets CR0.TS.
; ============================================================================
; busy bits of the two TSS descriptors, as "a=. b=."
print_busy:
    PUTS " busy a="
    movzx eax, byte [gdt + SEL_TSS + 5]
    shr eax, 1
    and eax, 1
    PUTHEX eax, 1
    PUTS " b="
    movzx eax, byte [gdt + SEL_TSSB + 5]
    shr eax, 1
    and eax, 1
    PUTHEX eax, 1
    ret

task_b:
    PUTS "task b: link="
    PUTHEX [tss_b], 4
    pushfd
    pop eax
    and eax, NT
    shr eax, 14
    PUTS " nt="
    PUTHEX eax, 1
    PUTS " tr="
    str ax
    movzx eax, ax
    PUTHEX eax, 4
    mov eax, cr0
    shr eax, 3
    and eax, 1
    PUTS " ts="
    PUTHEX eax, 1
    call print_busy
    call print_nl
    clts
    pushfd
    test dword [esp], NT
    lea esp, [esp + 4]
    jz .jmp_back
    mov eax, 0xB1B1B1B1             ; seen by A in B's saved state
    iretd                           ; NT: back through the link
    jmp task_b                      ; the next switch to B resumes here
.jmp_back:
    mov eax, 0xB2B2B2B2
    jmp SEL_TSS:0
    jmp task_b

; after_switch "name": what task A sees when it runs again
%macro AFTER_SWITCH 1
    PUTS {%1, ": back in a: nt="}
    pushfd
    pop eax
    and eax, NT
    shr eax, 14
    PUTHEX eax, 1
    mov eax, cr0
    shr eax, 3
    and eax, 1
    PUTS " ts="
    PUTHEX eax, 1
    call print_busy
    PUTS " b.eax="
    PUTHEX [tss_b + 40]
    call print_nl
    clts
%endmacro

t_tasks:
    mov dword [tss_b + 36], 2
    call SEL_TSSB:0
    AFTER_SWITCH "call tss"
    call SEL_TASKGATE:0
    AFTER_SWITCH "call task gate"
    int VEC_TASK
    AFTER_SWITCH "int task gate"
    jmp SEL_TSSB:0
    AFTER_SWITCH "jmp tss"
    ; the state A saved in its own TSS at the last switch (a JMP: no link)
    mov eax, [main_tss + 32]
    sub eax, t_tasks
    KV "a's saved eip - t_tasks", eax
    KV "a's saved cs", [main_tss + 76], 4
    TRY "call busy tss (own)", {call SEL_TSS:0}
    TRY "call tss with limit < 103", {call SEL_TSSBAD:0}
    TRY "jmp tss from cpl3", {call r3_task}
    ret

r3_task:
    mov eax, .r3
    mov edx, 2
    jmp call_ring3
.r3:
    jmp SEL_TSSB:0                  ; TSS DPL 0 < CPL 3: #GP(SEL_TSSB)

; ============================================================================
; #DF through a task gate: the #GP gate is made not present, a #GP is raised,
; its delivery faults (#NP, contributory on contributory: SDM Vol. 3A 6.15
; Table 6-5) and the #DF gate switches to tss_df; that task reports, points the
; faulting task at a recovery point and IRETs back through the link.
; ============================================================================
section .bss
df_recover_esp: resd 1
section .text

df_task:
    pop ecx                         ; the error code, pushed on the new task's stack
    PUTS "df task: err="
    PUTHEX ecx, 4
    PUTS " link="
    PUTHEX [tss_df], 4
    pushfd
    pop eax
    and eax, NT
    shr eax, 14
    PUTS " nt="
    PUTHEX eax, 1
    PUTS " esp-top="
    mov eax, esp
    sub eax, tss_df_stack_top
    PUTHEX eax
    call print_nl
    clts
    ; repair the #GP gate, resume the old task at t_double_fault.recovered
    mov eax, 13
    mov ebx, exc_stubs + 13 * 16
    mov ecx, GATE_INTR
    mov edx, SEL_KCODE
    call idt_set
    mov dword [main_tss + 32], t_double_fault.recovered
    mov eax, [df_recover_esp]
    mov [main_tss + 56], eax
    mov dword [main_tss + 36], 2
    iretd
    jmp df_task

t_double_fault:
    mov eax, 8
    xor ebx, ebx
    mov ecx, GATE_TASK
    mov edx, SEL_TSSDF
    call idt_set
    mov byte [idt + 13 * 8 + 5], 0x0E   ; #GP gate: not present
    mov [df_recover_esp], esp
    mov ax, 0xFFF8
    mov ds, ax                      ; #GP(FFF8) -> #NP(gate 13) -> #DF
    PUTLN "df: not taken"
.recovered:
    call reset_segs
    mov eax, cr0
    shr eax, 3
    and eax, 1
    KV "df: back in a, cr0.ts", eax, 1
    clts
    PUTS "df: after"
    call print_busy
    call print_nl
    ret

; ============================================================================
; EFLAGS.ID toggles where CPUID exists (SDM Vol. 1 20.1.1 / 3.4.3.3); CPUID
; leaves 0 and 1 run but are not printed
; ============================================================================
t_cpuid:
    pushfd
    pop eax
    mov ecx, eax
    xor eax, ID
    push eax
    popfd
    pushfd
    pop eax
    xor eax, ecx
    and eax, ID
    KV "eflags.id toggles", eax
    push ecx
    popfd
    xor eax, eax
    cpuid
    mov eax, 1
    cpuid
    PUTLN "cpuid 0 and 1 executed"
    ret
