; alu.asm - the integer instruction set of an i686, in 32-bit protected mode.
;
; Each line is one instruction over a set of inputs: results (the whole 32-bit
; register, so that 8/16-bit forms are seen to keep the upper bits) and EFLAGS
; masked to the flags the SDM (Vol. 2, "Flags Affected" of each instruction)
; defines for that case. Flags are printed as three hex digits (OF..CF).
;
; Undefined results and flags, masked here (SDM Vol. 2 per instruction):
;   AND/OR/XOR/TEST: AF.  MUL/IMUL: SF ZF AF PF.  DIV/IDIV: all flags.
;   SHL/SHR/SAR: AF for a non-zero count; OF unless the count is 1; CF of SHL/SHR
;   when the count >= the operand size. ROL/ROR/RCL/RCR: OF unless the count is 1.
;   SHLD/SHRD: AF; OF unless the count is 1; result and all flags when the count
;   exceeds the operand size (16-bit forms). BT*: all but CF (older SDMs list ZF
;   as undefined, newer ones as unchanged; P6 is an older part). BSF/BSR: all but
;   ZF, and the destination for a zero source. DAA/DAS: OF. AAA/AAS: OF SF ZF PF.
;   AAM/AAD: OF AF CF. CMPXCHG8B: only ZF is written. PUSH sreg with a 32-bit
;   operand: the upper half of the slot (SDM: "either zero-extended or written
;   with a 16-bit move"), so only the low 16 bits are printed.
;
; QEMU vs hardware: no known difference in what this guest prints. (QEMU sets the
; undefined flags by its own rules, e.g. BSF/BSR leave the destination unchanged
; and MUL sets SF/ZF/PF from the low half; all of those are masked above.)

%define GUEST_NAME "alu"
%include "common.inc"

K_SHIFT equ 1                       ; SHL SHR
K_SAR   equ 2
K_ROT   equ 3                       ; ROL ROR RCL RCR
K_SHD   equ 4                       ; SHLD SHRD

LOW_SRC equ 0x8000                  ; buffers below 64 KiB for 16-bit addressing
LOW_DST equ 0x9000

main:
    call t_binops
    call t_unops
    call t_mul
    call t_div
    call t_shifts
    call t_shd
    call t_bt
    call t_bitscan
    call t_xadd_cmpxchg
    call t_cc
    call t_bcd
    call t_lea
    call t_extend
    call t_xlat
    call t_enter
    call t_bound
    call t_flags
    call t_stack
    call t_string
    call t_loop
    call t_prefixes
    ret

; ============================================================================
; drivers
; ============================================================================
section .data
drv_stub:   dd 0
drv_avals:  dd 0                    ; table: count, then values
drv_bvals:  dd 0
drv_name:   dd 0
drv_fin:    dd 0                    ; EFLAGS loaded before the instruction
drv_mask:   dd 0
drv_digits: dd 0                    ; hex digits of the input in the line key
drv_fill_a: dd 0                    ; ORed into operand a (upper bits of the register)
drv_fill_b: dd 0
drv_ecx:    dd 0                    ; ECX given to the stub
drv_second: dd 0                    ; 0: print EAX; 1: EDX:EAX; 2: EBX,EAX
drv_kind:   dd 0
drv_size:   dd 0
drv_i:      dd 0
drv_j:      dd 0
section .text

; Run the stub with EAX = fill_a|a, EBX = fill_b|b, ECX = [drv_ecx], EDX = fill,
; EFLAGS = [drv_fin]; print the result (per drv_second) and masked flags.
drv_call_print:
    push dword [drv_fin]
    popfd
    call [drv_stub]
    pushfd
    pop esi
    and esi, [drv_mask]
    call print_sp
    cmp dword [drv_second], 1
    jne .n1
    PUTHEX edx
    PUTS ":"
.n1:
    cmp dword [drv_second], 2
    jne .n2
    PUTHEX ebx
    PUTS ","
.n2:
    PUTHEX eax
    PUTS "/"
    PUTHEX esi, 3
    ret

; binop_run: one line per a value: `name a=.. fl=..: r/f r/f ...` over b values.
binop_run:
    pushad
    mov dword [drv_i], 0
.li:
    mov esi, [drv_avals]
    mov eax, [drv_i]
    cmp eax, [esi]
    jae .done
    PUTSP [drv_name]
    PUTS " a="
    mov eax, [esi + 4 + eax * 4]
    PUTHEX eax, [drv_digits]
    PUTS " fl="
    PUTHEX [drv_fin], 3
    PUTS ":"
    mov dword [drv_j], 0
.lj:
    mov esi, [drv_bvals]
    mov ecx, [drv_j]
    cmp ecx, [esi]
    jae .endj
    mov ebx, [esi + 4 + ecx * 4]
    or ebx, [drv_fill_b]
    mov esi, [drv_avals]
    mov ecx, [drv_i]
    mov eax, [esi + 4 + ecx * 4]
    or eax, [drv_fill_a]
    mov ecx, [drv_ecx]
    mov edx, 0xD5D5D5D5
    call drv_call_print
    inc dword [drv_j]
    jmp .lj
.endj:
    call print_nl
    inc dword [drv_i]
    jmp .li
.done:
    popad
    ret

; unop_run: one line `name fl=..: r/f ...` over the a values (EBX = fill_b).
unop_run:
    pushad
    PUTSP [drv_name]
    PUTS " fl="
    PUTHEX [drv_fin], 3
    PUTS ":"
    mov dword [drv_i], 0
.li:
    mov esi, [drv_avals]
    mov ecx, [drv_i]
    cmp ecx, [esi]
    jae .done
    mov eax, [esi + 4 + ecx * 4]
    or eax, [drv_fill_a]
    mov ebx, [drv_fill_b]
    mov ecx, [drv_ecx]
    mov edx, 0xD5D5D5D5
    call drv_call_print
    inc dword [drv_i]
    jmp .li
.done:
    call print_nl
    popad
    ret

; shift_run: one line per a value over the counts in drv_bvals (given in CL, with
; junk in the rest of ECX); EBX = fill_b (the SHLD/SHRD source). The flag mask and
; whether the result is defined follow from kind, size and count (see header).
shift_run:
    pushad
    mov dword [drv_i], 0
.li:
    mov esi, [drv_avals]
    mov eax, [drv_i]
    cmp eax, [esi]
    jae .done
    PUTSP [drv_name]
    PUTS " a="
    mov eax, [esi + 4 + eax * 4]
    PUTHEX eax, [drv_digits]
    PUTS " fl="
    PUTHEX [drv_fin], 3
    PUTS ":"
    mov dword [drv_j], 0
.lj:
    mov esi, [drv_bvals]
    mov ecx, [drv_j]
    cmp ecx, [esi]
    jae .endj
    mov ecx, [esi + 4 + ecx * 4]
    call shift_mask                 ; -> [drv_mask], EDI = 1 if the result is undefined
    mov esi, [drv_avals]
    mov eax, [drv_i]
    mov eax, [esi + 4 + eax * 4]
    or eax, [drv_fill_a]
    mov ebx, [drv_fill_b]
    or ecx, 0x5A5A5A00
    push dword [drv_fin]
    popfd
    call [drv_stub]
    pushfd
    pop esi
    and esi, [drv_mask]
    test edi, edi
    jz .def
    xor eax, eax
.def:
    call print_sp
    PUTHEX eax
    PUTS "/"
    PUTHEX esi, 3
    inc dword [drv_j]
    jmp .lj
.endj:
    call print_nl
    inc dword [drv_i]
    jmp .li
.done:
    popad
    ret

; shift_mask: ECX = count -> [drv_mask]; EDI = 1 when the result is undefined.
shift_mask:
    push ecx
    push edx
    xor edi, edi
    and ecx, 31                     ; every form masks the count to 5 bits
    mov edx, FL_STATUS
    jecxz .store                    ; count 0: no flag changes
    cmp dword [drv_kind], K_ROT
    je .ovf
    and edx, ~AF
    cmp dword [drv_kind], K_SHIFT
    jne .notshift
    cmp ecx, [drv_size]
    jb .ovf
    and edx, ~CF
    jmp .ovf
.notshift:
    cmp dword [drv_kind], K_SHD
    jne .ovf
    cmp ecx, [drv_size]
    jbe .ovf
    xor edx, edx
    mov edi, 1
.ovf:
    cmp ecx, 1
    je .store
    and edx, ~OF
.store:
    mov [drv_mask], edx
    pop edx
    pop ecx
    ret

; ---- macros that wrap instructions into a stub and run a driver ----
; The instructions come last, one per parameter ({} around those with commas).

; BINOP name, avals, bvals, digits, fill_a, fill_b, fin, mask, insn...
%macro BINOP 9-*
    jmp %%go
%%stub:
    %rotate 8
    %rep %0 - 8
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_avals], %2
    mov dword [drv_bvals], %3
    mov dword [drv_digits], %4
    mov dword [drv_fill_a], %5
    mov dword [drv_fill_b], %6
    mov dword [drv_fin], %7
    mov dword [drv_mask], %8
    mov dword [drv_second], 0
    call binop_run
%endmacro

; BINOP2 second, ...: as BINOP, printing EDX:EAX (1) or EBX,EAX (2)
%macro BINOP2 10-*
    jmp %%go
%%stub:
    %rotate 9
    %rep %0 - 9
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %2, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_avals], %3
    mov dword [drv_bvals], %4
    mov dword [drv_digits], %5
    mov dword [drv_fill_a], %6
    mov dword [drv_fill_b], %7
    mov dword [drv_fin], %8
    mov dword [drv_mask], %9
    mov dword [drv_second], %1
    call binop_run
%endmacro

; UNOP name, avals, fill_a, fin, mask, insn...
%macro UNOP 6-*
    jmp %%go
%%stub:
    %rotate 5
    %rep %0 - 5
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_avals], %2
    mov dword [drv_fill_a], %3
    mov dword [drv_fill_b], 0xC3C3C3C3
    mov dword [drv_fin], %4
    mov dword [drv_mask], %5
    mov dword [drv_second], 0
    mov dword [drv_ecx], 0xE1E1E1E1
    call unop_run
%endmacro

; SHIFT name, avals, counts, digits, fill_a, fill_b, fin, kind, size, insn...
%macro SHIFT 10-*
    jmp %%go
%%stub:
    %rotate 9
    %rep %0 - 9
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_avals], %2
    mov dword [drv_bvals], %3
    mov dword [drv_digits], %4
    mov dword [drv_fill_a], %5
    mov dword [drv_fill_b], %6
    mov dword [drv_fin], %7
    mov dword [drv_kind], %8
    mov dword [drv_size], %9
    call shift_run
%endmacro

; CASE "name", {insn}, {insn}... : registers preset, instructions, DUMP.
%define CASE_MASK FL_STATUS
%macro CASE 2-*
    call preset
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    %rotate 1
    DUMP %1, CASE_MASK
%endmacro

; Known register and flag values before each CASE.
preset:
    mov eax, 0x01234567
    mov ebx, 0x89ABCDEF
    mov ecx, 0x02468ACE
    mov edx, 0x13579BDF
    mov esi, 0x0000F0F0
    mov edi, 0x00001000
    mov ebp, 0x00002000
    push dword 2
    popfd
    ret

section .rodata
align 4
v8:     dd 7, 0x00, 0x01, 0x0F, 0x10, 0x7F, 0x80, 0xFF
v8h:    dd 7, 0x0000, 0x0100, 0x0F00, 0x1000, 0x7F00, 0x8000, 0xFF00
v16:    dd 7, 0x0000, 0x0001, 0x000F, 0x00FF, 0x7FFF, 0x8000, 0xFFFF
v32:    dd 7, 0x00000000, 0x00000001, 0x0000000F, 0x0000FFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF
vmul8:  dd 6, 0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF
vmul16: dd 6, 0x0000, 0x0001, 0x0002, 0x7FFF, 0x8000, 0xFFFF
vmul32: dd 7, 0x00000000, 0x00000001, 0x00000002, 0x0000FFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF
vsh8:   dd 3, 0x81, 0x7F, 0x01
vsh16:  dd 3, 0x8001, 0x7FFF, 0x00C3
vsh32:  dd 3, 0x80000001, 0x7FFFFFFF, 0x12345678
counts: dd 11, 0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33
vscan:  dd 8, 0x00000000, 0x00000001, 0x80000000, 0x00010000, 0xFFFFFFFF, 0x12345678, 0x00000100, 0x7FFFFFFF
vscan16: dd 6, 0x0000, 0x0001, 0x8000, 0x0100, 0xFFFF, 0x1230
vbtoff: dd 7, 0, 5, 15, 16, 31, 32, 63
vbt:    dd 2, 0x00000000, 0xFFFFFFFF
section .text

; ============================================================================
; ADD ADC SUB SBB AND OR XOR CMP TEST, 8/16/32-bit, register and memory forms
; ============================================================================
%define LOGIC (FL_STATUS & ~AF)

; ARITH name8, name16, name32, mnemonic, mask : the op at each size, with all
; status flags clear and then set on input (CF in for ADC/SBB, and to see that
; the other flags are written, not merged).
%macro ARITH 5
    BINOP %1, v8, v8, 2, 0x5A5A5A00, 0xC3C3C300, 0, %5, {%4 al, bl}
    BINOP %1, v8, v8, 2, 0x5A5A5A00, 0xC3C3C300, FL_STATUS, %5, {%4 al, bl}
    BINOP %2, v16, v16, 4, 0x5A5A0000, 0xC3C30000, 0, %5, {%4 ax, bx}
    BINOP %2, v16, v16, 4, 0x5A5A0000, 0xC3C30000, FL_STATUS, %5, {%4 ax, bx}
    BINOP %3, v32, v32, 8, 0, 0, 0, %5, {%4 eax, ebx}
    BINOP %3, v32, v32, 8, 0, 0, FL_STATUS, %5, {%4 eax, ebx}
%endmacro

t_binops:
    mov dword [drv_ecx], 0xE1E1E1E1
    ARITH "add8", "add16", "add32", add, FL_STATUS
    ARITH "adc8", "adc16", "adc32", adc, FL_STATUS
    ARITH "sub8", "sub16", "sub32", sub, FL_STATUS
    ARITH "sbb8", "sbb16", "sbb32", sbb, FL_STATUS
    ARITH "cmp8", "cmp16", "cmp32", cmp, FL_STATUS
    ARITH "and8", "and16", "and32", and, LOGIC
    ARITH "or8", "or16", "or32", or, LOGIC
    ARITH "xor8", "xor16", "xor32", xor, LOGIC
    ARITH "test8", "test16", "test32", test, LOGIC
    ; high-byte registers (ModRM reg 4-7 name AH CH DH BH in 8-bit forms)
    BINOP "add8.ah,bh", v8h, v8h, 4, 0x5A5A005A, 0xC3C300C3, 0, FL_STATUS, {add ah, bh}
    BINOP "sbb8.ah,bl", v8h, v8, 4, 0x5A5A005A, 0xC3C3C300, CF, FL_STATUS, {sbb ah, bl}
    ; memory destination and memory source forms
    BINOP "adc32.m,r", v32, v32, 8, 0, 0, CF, FL_STATUS, {mov [scratch], eax}, {adc [scratch], ebx}, {mov eax, [scratch]}
    BINOP "sub16.r,m", v16, v16, 4, 0x5A5A0000, 0, 0, FL_STATUS, {mov [scratch], ebx}, {sub ax, [scratch]}
    BINOP "xor8.m,r", v8, v8, 2, 0, 0, 0, LOGIC, {mov [scratch], eax}, {xor [scratch], bl}, {mov eax, [scratch]}
    ; the accumulator/immediate forms (04/05/0D/3C/A8...) and group 1 (80/81/83)
    UNOP "add8.al,imm 7f", v8, 0x5A5A5A00, 0, FL_STATUS, {add al, 0x7F}
    UNOP "sub16.ax,imm 8000", v16, 0x5A5A0000, 0, FL_STATUS, {sub ax, 0x8000}
    UNOP "adc32.eax,imm -1", v32, 0, CF, FL_STATUS, {adc eax, 0xFFFFFFFF}
    UNOP "sbb32.r,simm8 -2", v32, 0, CF, FL_STATUS, {sbb eax, byte -2}
    UNOP "and16.r,simm8 -16", v16, 0x5A5A0000, 0, LOGIC, {and ax, byte -16}
    UNOP "or8.r,imm 81", v8, 0x5A5A5A00, 0, LOGIC, {or bl, 0x81}, {mov al, bl}
    UNOP "cmp32.m,simm8 -1", v32, 0, 0, FL_STATUS, {mov [scratch], eax}, {cmp dword [scratch], byte -1}
    UNOP "test8.al,imm 81", v8, 0x5A5A5A00, 0, LOGIC, {test al, 0x81}
    UNOP "test32.m,imm", v32, 0, 0, LOGIC, {mov [scratch], eax}, {test dword [scratch], 0x80000001}
    ret

; ============================================================================
; INC DEC NEG NOT (INC/DEC keep CF: run with CF clear and set)
; ============================================================================
t_unops:
    UNOP "inc8", v8, 0x5A5A5A00, 0, FL_STATUS, {inc al}
    UNOP "inc8", v8, 0x5A5A5A00, FL_STATUS, FL_STATUS, {inc al}
    UNOP "inc16", v16, 0x5A5A0000, 0, FL_STATUS, {inc ax}
    UNOP "inc32", v32, 0, CF, FL_STATUS, {inc eax}
    UNOP "dec8", v8, 0x5A5A5A00, 0, FL_STATUS, {dec al}
    UNOP "dec16", v16, 0x5A5A0000, CF, FL_STATUS, {dec ax}
    UNOP "dec32", v32, 0, 0, FL_STATUS, {dec eax}
    UNOP "dec32", v32, 0, FL_STATUS, FL_STATUS, {dec eax}
    UNOP "inc32.m", v32, 0, CF, FL_STATUS, {mov [scratch], eax}, {inc dword [scratch]}, {mov eax, [scratch]}
    UNOP "dec8.m", v8, 0, 0, FL_STATUS, {mov [scratch], eax}, {dec byte [scratch]}, {mov eax, [scratch]}
    UNOP "neg8", v8, 0x5A5A5A00, 0, FL_STATUS, {neg al}
    UNOP "neg16", v16, 0x5A5A0000, FL_STATUS, FL_STATUS, {neg ax}
    UNOP "neg32", v32, 0, 0, FL_STATUS, {neg eax}
    UNOP "neg32.m", v32, 0, 0, FL_STATUS, {mov [scratch], eax}, {neg dword [scratch]}, {mov eax, [scratch]}
    UNOP "not8", v8, 0x5A5A5A00, FL_STATUS, FL_STATUS, {not al}
    UNOP "not16", v16, 0x5A5A0000, 0, FL_STATUS, {not ax}
    UNOP "not32", v32, 0, FL_STATUS, FL_STATUS, {not eax}
    UNOP "not16.m", v16, 0, 0, FL_STATUS, {mov [scratch], eax}, {not word [scratch]}, {mov eax, [scratch]}
    ret

section .bss
alignb 8
scratch: resd 4
section .text

; ============================================================================
; MUL IMUL (CF=OF say whether the high half is significant; SF ZF AF PF undefined)
; ============================================================================
t_mul:
    mov dword [drv_ecx], 0xE1E1E1E1
    BINOP "mul8", vmul8, vmul8, 2, 0x5A5A5A00, 0xC3C3C300, 0, CF|OF, {mul bl}
    BINOP "imul8", vmul8, vmul8, 2, 0x5A5A5A00, 0xC3C3C300, 0, CF|OF, {imul bl}
    BINOP2 1, "mul16", vmul16, vmul16, 4, 0x5A5A0000, 0xC3C30000, 0, CF|OF, {mul bx}
    BINOP2 1, "imul16", vmul16, vmul16, 4, 0x5A5A0000, 0xC3C30000, 0, CF|OF, {imul bx}
    BINOP2 1, "mul32", vmul32, vmul32, 8, 0, 0, 0, CF|OF, {mul ebx}
    BINOP2 1, "imul32", vmul32, vmul32, 8, 0, 0, 0, CF|OF, {imul ebx}
    BINOP2 1, "mul32.m", vmul32, vmul32, 8, 0, 0, 0, CF|OF, {mov [scratch], ebx}, {mul dword [scratch]}
    BINOP "imul16.r,r", vmul16, vmul16, 4, 0x5A5A0000, 0xC3C30000, 0, CF|OF, {imul ax, bx}
    BINOP "imul32.r,r", vmul32, vmul32, 8, 0, 0, 0, CF|OF, {imul eax, ebx}
    BINOP "imul32.r,m", vmul32, vmul32, 8, 0, 0, 0, CF|OF, {mov [scratch], ebx}, {imul eax, [scratch]}
    UNOP "imul32.r,r,simm8 -3", vmul32, 0, 0, CF|OF, {imul eax, eax, byte -3}
    UNOP "imul32.r,m,imm32 10001", vmul32, 0, 0, CF|OF, {mov [scratch], eax}, {imul eax, [scratch], 0x10001}
    UNOP "imul16.r,r,imm16 4001", vmul16, 0x5A5A0000, 0, CF|OF, {imul bx, ax, 0x4001}, {mov eax, ebx}
    UNOP "mul8.m fe", vmul8, 0x5A5A5A00, 0, CF|OF, {mov byte [scratch], 0xFE}, {mul byte [scratch]}
    ret

; ============================================================================
; DIV IDIV: quotient/remainder, and #DE (vector 0, a fault: EIP of the DIV) for a
; zero divisor and for a quotient that does not fit (SDM Vol. 2 DIV/IDIV). All
; flags are undefined and not printed.
; ============================================================================
; div_run: [drv_avals] = count, then (EDX, EAX, EBX) triples
div_run:
    pushad
    mov dword [drv_i], 0
.l:
    mov esi, [drv_avals]
    mov ecx, [drv_i]
    cmp ecx, [esi]
    jae .done
    lea ecx, [ecx * 3]
    lea esi, [esi + 4 + ecx * 4]
    PUTSP [drv_name]
    call print_sp
    PUTHEX [esi]
    PUTS ":"
    PUTHEX [esi + 4]
    PUTS "/"
    PUTHEX [esi + 8]
    PUTS ": "
    mov edx, [esi]
    mov eax, [esi + 4]
    mov ebx, [esi + 8]
    EXPECT_FAULT .next
    call [drv_stub]
    mov dword [recover_eip], 0
    PUTHEX edx
    PUTS ":"
    PUTHEX eax
    call print_nl
.next:
    inc dword [drv_i]
    jmp .l
.done:
    popad
    ret

%macro DIVOP 3-*
    jmp %%go
%%stub:
    %rotate 2
    %rep %0 - 2
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_avals], %2
    call div_run
%endmacro

section .rodata
align 4
F equ 0xD5D5D5D5
dv8:    dd 6, F, 0x5A5A0064, 0xC3C3C307,  F, 0x5A5AFFFF, 0xC3C3C3FF,  F, 0x5A5A00FF, 0xC3C3C3FF
        dd    F, 0x5A5A1234, 0xC3C3C300,  F, 0x5A5A7F00, 0xC3C3C380,  F, 0x5A5AFEFF, 0xC3C3C3FF
idv8:   dd 7, F, 0x5A5AFF80, 0xC3C3C3FF,  F, 0x5A5AFF00, 0xC3C3C302,  F, 0x5A5A0081, 0xC3C3C3FF
        dd    F, 0x5A5A0007, 0xC3C3C3FE,  F, 0x5A5AFFF9, 0xC3C3C302,  F, 0x5A5A7F00, 0xC3C3C380
        dd    F, 0x5A5A3F80, 0xC3C3C380
dv16:   dd 5, 0xD5D50000, 0x5A5AFFFF, 0xC3C30001,  0xD5D50001, 0x5A5A0000, 0xC3C30001
        dd    0xD5D51234, 0x5A5A5678, 0xC3C31235,  0xD5D50000, 0x5A5A0005, 0xC3C30000
        dd    0xD5D5FFFE, 0x5A5AFFFF, 0xC3C3FFFF
idv16:  dd 5, 0xD5D5FFFF, 0x5A5A8000, 0xC3C3FFFF,  0xD5D5FFFF, 0x5A5A8000, 0xC3C30001
        dd    0xD5D5FFFF, 0x5A5AFFF9, 0xC3C30002,  0xD5D50000, 0x5A5A0007, 0xC3C3FFFE
        dd    0xD5D53FFF, 0x5A5AFFFF, 0xC3C37FFF
dv32:   dd 5, 0, 0xFFFFFFFF, 1,  1, 0, 1,  0x12345678, 0x9ABCDEF0, 0x87654321
        dd    0, 1, 0,  0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFF
idv32:  dd 6, 0xFFFFFFFF, 0x80000000, 0xFFFFFFFF,  0xFFFFFFFF, 0x80000000, 1
        dd    0, 7, 0xFFFFFFFE,  0xFFFFFFFF, 0xFFFFFFF9, 2,  0x3FFFFFFF, 0xFFFFFFFF, 0x7FFFFFFF
        dd    0xFFFFFFFF, 0x00000001, 0x00000000
section .text

t_div:
    DIVOP "div8", dv8, {div bl}
    DIVOP "idiv8", idv8, {idiv bl}
    DIVOP "div16", dv16, {div bx}
    DIVOP "idiv16", idv16, {idiv bx}
    DIVOP "div32", dv32, {div ebx}
    DIVOP "idiv32", idv32, {idiv ebx}
    DIVOP "div32.m", dv32, {mov [scratch], ebx}, {div dword [scratch]}
    DIVOP "idiv8.m", idv8, {mov [scratch], ebx}, {idiv byte [scratch]}
    ret

; ============================================================================
; shifts and rotates by CL over counts 0..33 (the CPU masks CL to 5 bits; RCL/RCR
; then take it mod 9 / mod 17 for 8/16 bits), by 1 and by imm8
; ============================================================================
%macro SHIFTS 3                     ; mnemonic, name, kind
    SHIFT {%2, "8"}, vsh8, counts, 2, 0x5A5A5A00, 0xC3C3C3C3, 0, %3, 8, {%1 al, cl}
    SHIFT {%2, "8"}, vsh8, counts, 2, 0x5A5A5A00, 0xC3C3C3C3, FL_STATUS, %3, 8, {%1 al, cl}
    SHIFT {%2, "16"}, vsh16, counts, 4, 0x5A5A0000, 0xC3C3C3C3, 0, %3, 16, {%1 ax, cl}
    SHIFT {%2, "16"}, vsh16, counts, 4, 0x5A5A0000, 0xC3C3C3C3, FL_STATUS, %3, 16, {%1 ax, cl}
    SHIFT {%2, "32"}, vsh32, counts, 8, 0, 0xC3C3C3C3, 0, %3, 32, {%1 eax, cl}
    SHIFT {%2, "32"}, vsh32, counts, 8, 0, 0xC3C3C3C3, FL_STATUS, %3, 32, {%1 eax, cl}
%endmacro

section .rodata
align 4
cnt1:   dd 1, 1
cnt4:   dd 1, 4
cnt7:   dd 1, 7
cnt17:  dd 1, 17
cnt33:  dd 1, 33
section .text

t_shifts:
    PUTLN "shift counts: 00 01 07 08 09 0f 10 11 1f 20 21"
    SHIFTS shl, "shl", K_SHIFT
    SHIFTS shr, "shr", K_SHIFT
    SHIFTS sar, "sar", K_SAR
    SHIFTS rol, "rol", K_ROT
    SHIFTS ror, "ror", K_ROT
    SHIFTS rcl, "rcl", K_ROT
    SHIFTS rcr, "rcr", K_ROT
    ; D0/D1 (by 1) and C0/C1 (imm8, also masked to 5 bits) encodings
    SHIFT "shl32 by1", vsh32, cnt1, 8, 0, 0, 0, K_SHIFT, 32, {shl eax, 1}
    SHIFT "sar8 by1", vsh8, cnt1, 2, 0x5A5A5A00, 0, FL_STATUS, K_SAR, 8, {sar al, 1}
    SHIFT "rcr16 by1", vsh16, cnt1, 4, 0x5A5A0000, 0, CF, K_ROT, 16, {rcr ax, 1}
    SHIFT "rol8 by1", vsh8, cnt1, 2, 0x5A5A5A00, 0, 0, K_ROT, 8, {rol al, 1}
    SHIFT "shr16 imm7", vsh16, cnt7, 4, 0x5A5A0000, 0, 0, K_SHIFT, 16, {shr ax, 7}
    SHIFT "sar32 imm4", vsh32, cnt4, 8, 0, 0, 0, K_SAR, 32, {sar eax, 4}
    SHIFT "rcl16 imm17", vsh16, cnt17, 4, 0x5A5A0000, 0, CF, K_ROT, 16, {rcl ax, 17}
    SHIFT "ror32 imm33", vsh32, cnt33, 8, 0, 0, 0, K_ROT, 32, {ror eax, 33}
    SHIFT "shl8.m imm7", vsh8, cnt7, 2, 0x5A5A5A00, 0, 0, K_SHIFT, 8, {mov [scratch], eax}, {shl byte [scratch], 7}, {mov eax, [scratch]}
    SHIFT "rcr32.m cl", vsh32, counts, 8, 0, 0, CF, K_ROT, 32, {mov [scratch], eax}, {rcr dword [scratch], cl}, {mov eax, [scratch]}
    ret

; SHLD/SHRD: EAX is the destination, EBX (fill_b) the source of the bits shifted in
t_shd:
    PUTLN "shd counts: 00 01 07 08 09 0f 10 11 1f 20 21"
    SHIFT "shld16", vsh16, counts, 4, 0x5A5A0000, 0xC3C39BDF, 0, K_SHD, 16, {shld ax, bx, cl}
    SHIFT "shld16", vsh16, counts, 4, 0x5A5A0000, 0xC3C39BDF, FL_STATUS, K_SHD, 16, {shld ax, bx, cl}
    SHIFT "shrd16", vsh16, counts, 4, 0x5A5A0000, 0xC3C39BDF, 0, K_SHD, 16, {shrd ax, bx, cl}
    SHIFT "shrd16", vsh16, counts, 4, 0x5A5A0000, 0xC3C39BDF, FL_STATUS, K_SHD, 16, {shrd ax, bx, cl}
    SHIFT "shld32", vsh32, counts, 8, 0, 0x9BDF1357, 0, K_SHD, 32, {shld eax, ebx, cl}
    SHIFT "shld32", vsh32, counts, 8, 0, 0x9BDF1357, FL_STATUS, K_SHD, 32, {shld eax, ebx, cl}
    SHIFT "shrd32", vsh32, counts, 8, 0, 0x9BDF1357, 0, K_SHD, 32, {shrd eax, ebx, cl}
    SHIFT "shrd32", vsh32, counts, 8, 0, 0x9BDF1357, FL_STATUS, K_SHD, 32, {shrd eax, ebx, cl}
    SHIFT "shld32 imm4", vsh32, cnt4, 8, 0, 0x9BDF1357, 0, K_SHD, 32, {shld eax, ebx, 4}
    SHIFT "shrd16 imm7", vsh16, cnt7, 4, 0x5A5A0000, 0xC3C39BDF, 0, K_SHD, 16, {shrd ax, bx, 7}
    SHIFT "shrd32.m cl", vsh32, counts, 8, 0, 0x9BDF1357, 0, K_SHD, 32, {mov [scratch], eax}, {shrd [scratch], ebx, cl}, {mov eax, [scratch]}
    ret

; ============================================================================
; BT BTS BTR BTC. Register forms take the offset mod the operand size. Memory
; forms with a register offset address the bit string at base + (offset SAR 3),
; reaching before and beyond the operand (SDM Vol. 2 BT, "bit offset operand");
; the immediate form takes the offset mod the operand size.
; ============================================================================
section .rodata
align 4
vbtv:   dd 3, 0x00000000, 0xFFFFFFFF, 0x5AA55AA5
vbto:   dd 7, 0, 5, 15, 16, 31, 32, 63
section .bss
bt_buf: resb 128
BT_BASE equ bt_buf + 64
section .text

; BTMEM "name", offset, insn : fresh buffer, EBX = offset, CF=0 ZF=1 in, insn;
; prints CF and a checksum of the whole buffer.
%macro BTMEM 3
    call bt_reset
    mov ebx, %2
    push dword ZF
    popfd
    %3
    pushfd
    pop eax
    PUTS {%1, " off="}
    PUTHEX ebx
    PUTS ": cf="
    and eax, CF
    PUTHEX eax, 1
    PUTS " buf="
    mov esi, bt_buf
    mov ecx, 128
    call adler32
    PUTHEX eax
    call print_nl
%endmacro

bt_reset:
    pushad
    mov edi, bt_buf
    mov ecx, 128
    mov al, 0x35
.l: mov [edi], al
    add al, 0x1D
    inc edi
    loop .l
    popad
    ret

t_bt:
    mov dword [drv_ecx], 0xE1E1E1E1
    BINOP "bt32.r,r", vbtv, vbto, 8, 0, 0, ZF, CF, {bt eax, ebx}
    BINOP "bts32.r,r", vbtv, vbto, 8, 0, 0, ZF, CF, {bts eax, ebx}
    BINOP "btr32.r,r", vbtv, vbto, 8, 0, 0, 0, CF, {btr eax, ebx}
    BINOP "btc32.r,r", vbtv, vbto, 8, 0, 0, 0, CF, {btc eax, ebx}
    BINOP "bt16.r,r", vbtv, vbto, 8, 0, 0, 0, CF, {bt ax, bx}
    BINOP "bts16.r,r", vbtv, vbto, 8, 0, 0, 0, CF, {bts ax, bx}
    BINOP "btr16.r,r", vbtv, vbto, 8, 0, 0, ZF, CF, {btr ax, bx}
    BINOP "btc16.r,r", vbtv, vbto, 8, 0, 0, 0, CF, {btc ax, bx}
    UNOP "bts32.r,imm 33", vbtv, 0, 0, CF, {bts eax, 33}
    UNOP "btc16.r,imm 17", vbtv, 0, 0, CF, {btc ax, 17}
    UNOP "bt32.r,imm 31", vbtv, 0, 0, CF, {bt eax, 31}
    BTMEM "bt32.m,r", 0, {bt [BT_BASE], ebx}
    BTMEM "bt32.m,r", 100, {bt [BT_BASE], ebx}
    BTMEM "bt32.m,r", -1, {bt [BT_BASE], ebx}
    BTMEM "bts32.m,r", 31, {bts [BT_BASE], ebx}
    BTMEM "bts32.m,r", 32, {bts [BT_BASE], ebx}
    BTMEM "bts32.m,r", -33, {bts [BT_BASE], ebx}
    BTMEM "btr32.m,r", 511, {btr [BT_BASE], ebx}
    BTMEM "btr32.m,r", -512, {btr [BT_BASE], ebx}
    BTMEM "btc32.m,r", 100, {btc [BT_BASE], ebx}
    BTMEM "btc32.m,r", -100, {btc [BT_BASE], ebx}
    BTMEM "bt16.m,r", 0x0000FFFF, {bt [BT_BASE], bx}
    BTMEM "bts16.m,r", 0xABCD01F0, {bts [BT_BASE], bx}
    BTMEM "btr16.m,r", 0x0000FE00, {btr [BT_BASE], bx}
    BTMEM "btc16.m,r", 17, {btc [BT_BASE], bx}
    BTMEM "bt32.m,imm 35", 0, {bt dword [BT_BASE], 35}
    BTMEM "bts16.m,imm 20", 0, {bts word [BT_BASE], 20}
    BTMEM "btr32.m,imm 63", 0, {btr dword [BT_BASE], 63}
    BTMEM "btc16.m,imm 15", 0, {btc word [BT_BASE], 15}
    ret

; ============================================================================
; BSF BSR (ZF; destination undefined for a zero source: printed as eeeeeeee), BSWAP
; ============================================================================
t_bitscan:
    UNOP "bsf32", vscan, 0, 0, ZF, {mov edx, 0xEEEEEEEE}, {bsf ecx, eax}, {cmovz ecx, edx}, {mov eax, ecx}
    UNOP "bsr32", vscan, 0, ZF, ZF, {mov edx, 0xEEEEEEEE}, {bsr ecx, eax}, {cmovz ecx, edx}, {mov eax, ecx}
    UNOP "bsf16", vscan16, 0x5A5A0000, 0, ZF, {mov edx, 0xEEEEEEEE}, {mov ecx, 0x3C3C3C3C}, {bsf cx, ax}, {cmovz ecx, edx}, {mov eax, ecx}
    UNOP "bsr16", vscan16, 0x5A5A0000, 0, ZF, {mov edx, 0xEEEEEEEE}, {mov ecx, 0x3C3C3C3C}, {bsr cx, ax}, {cmovz ecx, edx}, {mov eax, ecx}
    UNOP "bsr32.m", vscan, 0, 0, ZF, {mov [scratch], eax}, {mov edx, 0xEEEEEEEE}, {bsr ecx, [scratch]}, {cmovz ecx, edx}, {mov eax, ecx}
    UNOP "bswap eax", vscan, 0, FL_STATUS, FL_STATUS, {bswap eax}
    UNOP "bswap esi", vscan, 0, 0, FL_STATUS, {mov esi, eax}, {bswap esi}, {mov eax, esi}
    UNOP "bswap edi", vscan, 0, 0, FL_STATUS, {mov edi, eax}, {bswap edi}, {mov eax, edi}
    ret

; ============================================================================
; XADD CMPXCHG CMPXCHG8B
; ============================================================================
t_xadd_cmpxchg:
    mov dword [drv_ecx], 0x0C0C0C0C
    BINOP2 2, "xadd8", v8, v8, 2, 0x5A5A5A00, 0xC3C3C300, 0, FL_STATUS, {xadd al, bl}
    BINOP2 2, "xadd16.m", v16, v16, 4, 0x5A5A0000, 0xC3C30000, 0, FL_STATUS, {mov [scratch], eax}, {xadd [scratch], bx}, {mov eax, [scratch]}
    BINOP2 2, "xadd32", v32, v32, 8, 0, 0, FL_STATUS, FL_STATUS, {xadd eax, ebx}
    ; CMPXCHG dest=EBX src=ECX: flags of CMP accumulator,dest; equal -> dest=src,
    ; else accumulator=dest
    BINOP2 2, "cmpxchg8", v8, v8, 2, 0x5A5A5A00, 0xC3C3C300, 0, FL_STATUS, {cmpxchg bl, cl}
    BINOP2 2, "cmpxchg16", v16, v16, 4, 0x5A5A0000, 0xC3C30000, 0, FL_STATUS, {cmpxchg bx, cx}
    BINOP2 2, "cmpxchg32", v32, v32, 8, 0, 0, 0, FL_STATUS, {cmpxchg ebx, ecx}
    BINOP2 2, "cmpxchg32.m", v32, v32, 8, 0, 0, 0, FL_STATUS, {mov [scratch], ebx}, {cmpxchg [scratch], ecx}, {mov ebx, [scratch]}
    ; CMPXCHG8B writes ZF only: CF set before must survive
    mov dword [scratch], 0x55667788
    mov dword [scratch + 4], 0x11223344
    CASE "cmpxchg8b eq", {mov eax, 0x55667788}, {mov edx, 0x11223344}, {stc}, {cmpxchg8b [scratch]}, {mov esi, [scratch]}, {mov edi, [scratch + 4]}
    CASE "cmpxchg8b ne", {mov eax, 0x55667788}, {mov edx, 0x11223345}, {stc}, {cmpxchg8b [scratch]}, {mov esi, [scratch]}, {mov edi, [scratch + 4]}
    CASE "cmpxchg8b ne lo", {mov eax, 0x12345678}, {mov edx, 0x89ABCDEF}, {cmpxchg8b [scratch]}, {mov esi, [scratch]}, {mov edi, [scratch + 4]}
    ret

; ============================================================================
; Jcc / SETcc / CMOVcc over the 32 combinations of CF PF ZF SF OF: one bit per
; condition code in encoding order (SDM Vol. 1 B.1).
; ============================================================================
%macro CC_EACH 1
    %1 o, 0
    %1 no, 1
    %1 b, 2
    %1 ae, 3
    %1 e, 4
    %1 ne, 5
    %1 be, 6
    %1 a, 7
    %1 s, 8
    %1 ns, 9
    %1 p, 10
    %1 np, 11
    %1 l, 12
    %1 ge, 13
    %1 le, 14
    %1 g, 15
%endmacro
%macro DO_SET 2
    push edx
    popfd
    set%1 al
    movzx eax, al
    shl eax, %2
    or ebx, eax
%endmacro
%macro DO_SETM 2
    push edx
    popfd
    set%1 byte [scratch + %2]
%endmacro
%macro DO_CMOV 2
    mov eax, ebx
    mov ecx, ebx
    or ecx, 1 << %2
    push edx
    popfd
    cmov%1 eax, ecx
    mov ebx, eax
%endmacro
%macro DO_CMOV16M 2
    mov [scratch], bx
    or word [scratch], 1 << %2
    push edx
    popfd
    cmov%1 bx, [scratch]
%endmacro
%macro DO_JCC 2
    push edx
    popfd
    j%1 short %%t
    jmp %%n
%%t:
    or ebx, 1 << %2
%%n:
%endmacro
%macro DO_JCCN 2
    push edx
    popfd
    j%1 near %%t
    jmp %%n
%%t:
    or ebx, 1 << %2
%%n:
%endmacro

t_cc:
    PUTLN "cc bits: o no b ae e ne be a s ns p np l ge le g (bit 0 first)"
    xor ebp, ebp
.l:
    mov edx, 2
    test ebp, 1
    jz .n0
    or edx, CF
.n0:test ebp, 2
    jz .n1
    or edx, PF
.n1:test ebp, 4
    jz .n2
    or edx, ZF
.n2:test ebp, 8
    jz .n3
    or edx, SF
.n3:test ebp, 16
    jz .n4
    or edx, OF
.n4:
    PUTS "cc fl="
    PUTHEX edx, 3
    xor ebx, ebx
    CC_EACH DO_SET
    PUTS ": set="
    PUTHEX ebx, 4
    CC_EACH DO_SETM
    mov esi, scratch
    xor ebx, ebx
    xor ecx, ecx
.m: movzx eax, byte [esi + ecx]
    shl eax, cl
    or ebx, eax
    inc ecx
    cmp ecx, 16
    jb .m
    PUTS " setm="
    PUTHEX ebx, 4
    xor ebx, ebx
    CC_EACH DO_CMOV
    PUTS " cmov="
    PUTHEX ebx, 4
    mov ebx, 0xA5A50000
    CC_EACH DO_CMOV16M
    PUTS " cmov16m="
    PUTHEX ebx
    xor ebx, ebx
    CC_EACH DO_JCC
    PUTS " j="
    PUTHEX ebx, 4
    xor ebx, ebx
    CC_EACH DO_JCCN
    PUTS " jnear="
    PUTHEX ebx, 4
    call print_nl
    inc ebp
    cmp ebp, 32
    jb .l
    ret

; ============================================================================
; BCD: DAA DAS AAA AAS over every AL with each AF/CF input; AAM/AAD with several
; bases; AAM 0 is #DE. Masks: see the header.
; ============================================================================
; sweep_run: 16 lines of 16: EAX = fill_a | AL, printed as AX/flags
sweep_run:
    pushad
    xor ebp, ebp                    ; AL
.line:
    PUTSP [drv_name]
    PUTS " fl="
    PUTHEX [drv_fin], 3
    PUTS " ax="
    mov eax, [drv_fill_a]
    or eax, ebp
    PUTHEX eax, 4
    PUTS "+:"
.e: mov eax, [drv_fill_a]
    or eax, ebp
    push dword [drv_fin]
    popfd
    call [drv_stub]
    pushfd
    pop esi
    and esi, [drv_mask]
    call print_sp
    PUTHEX eax, 4
    PUTS "/"
    PUTHEX esi, 3
    inc ebp
    test ebp, 15
    jnz .e
    call print_nl
    cmp ebp, 256
    jb .line
    popad
    ret

; SWEEP name, fill_a, fin, mask, insn...
%macro SWEEP 5-*
    jmp %%go
%%stub:
    %rotate 4
    %rep %0 - 4
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [drv_stub], %%stub
    mov dword [drv_name], %%name
    mov dword [drv_fill_a], %2
    mov dword [drv_fin], %3
    mov dword [drv_mask], %4
    call sweep_run
%endmacro

%macro SWEEP4 4                     ; name, fill, mask, insn: with AF/CF = 00 01 10 11
    SWEEP %1, %2, 0, %3, {%4}
    SWEEP %1, %2, CF, %3, {%4}
    SWEEP %1, %2, AF, %3, {%4}
    SWEEP %1, %2, AF|CF, %3, {%4}
%endmacro

t_bcd:
    SWEEP4 "daa", 0x5A5A1200, FL_STATUS & ~OF, daa
    SWEEP4 "das", 0x5A5A1200, FL_STATUS & ~OF, das
    SWEEP4 "aaa", 0x5A5A1200, AF|CF, aaa
    SWEEP4 "aas", 0x5A5A1200, AF|CF, aas
    SWEEP "aaa", 0x5A5AFF00, AF, AF|CF, aaa
    SWEEP "aas", 0x5A5A0000, AF, AF|CF, aas
    SWEEP "aam 0a", 0x5A5A3400, 0, SF|ZF|PF, {aam 10}
    SWEEP "aam 10", 0x5A5A3400, 0, SF|ZF|PF, {aam 16}
    SWEEP "aam 07", 0x5A5A3400, 0, SF|ZF|PF, {aam 7}
    SWEEP "aad 0a", 0x5A5A0900, 0, SF|ZF|PF, {aad 10}
    SWEEP "aad 10", 0x5A5A0900, 0, SF|ZF|PF, {aad 16}
    SWEEP "aad 07", 0x5A5A0900, 0, SF|ZF|PF, {aad 7}
    SWEEP "aad 0a", 0x5A5AFF00, 0, SF|ZF|PF, {aad 10}
    PUTS "aam 0: "
    EXPECT_FAULT .r
    mov eax, 0x1234
    aam 0
    NO_FAULT
.r:
    ret

; ============================================================================
; LEA: every ModRM/SIB shape of 32-bit addressing, 16-bit addressing (0x67) with
; its wrap at 64 KiB, and the operand-size truncation (SDM Vol. 2 LEA table).
; ============================================================================
; LEAC "name", insn... : preset registers, run, print EAX
%macro LEAC 2-*
    call preset
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    %rotate 1
    KV %1, eax
%endmacro

t_lea:
    LEAC "lea [eax]", {lea eax, [eax]}
    LEAC "lea [ebx+7f]", {lea eax, [ebx + 0x7F]}
    LEAC "lea [ecx-80]", {lea eax, [ecx - 0x80]}
    LEAC "lea [edx+disp32]", {lea eax, [edx + 0x12345678]}
    LEAC "lea [disp32]", {lea eax, [0x0BADF00D]}
    LEAC "lea [ebp]", {lea eax, [ebp]}
    LEAC "lea [esi+edi]", {lea eax, [esi + edi]}
    LEAC "lea [ebp+esi*2]", {lea eax, [ebp + esi * 2]}
    LEAC "lea [esi*4+10]", {lea eax, [nosplit esi * 4 + 0x10]}
    LEAC "lea [edi*2] nosplit", {lea eax, [nosplit edi * 2]}
    LEAC "lea [eax+ebx*8-1]", {lea eax, [eax + ebx * 8 - 1]}
    LEAC "lea [ebx+ebx*8+fffffff0] wraps", {lea eax, [dword ebx + ebx * 8 + 0xFFFFFFF0]}
    LEAC "lea [ebp+edx*4+12345678]", {lea eax, [ebp + edx * 4 + 0x12345678]}
    LEAC "lea [esp+ecx*2+8]-esp", {lea eax, [esp + ecx * 2 + 8]}, {sub eax, esp}
    LEAC "lea [esp]-esp", {lea eax, [esp]}, {sub eax, esp}
    LEAC "lea [fs:ebx+4]", {lea eax, [fs:ebx + 4]}
    ; 16-bit addressing: BX=cdef SI=f0f0 DI=1000 BP=2000 (the high halves are ignored)
    LEAC "lea a16 [bx+si]", {lea eax, [bx + si]}
    LEAC "lea a16 [bx+di+10]", {lea eax, [bx + di + 0x10]}
    LEAC "lea a16 [bp+si-1]", {lea eax, [bp + si - 1]}
    LEAC "lea a16 [bp+di+1234]", {lea eax, [bp + di + 0x1234]}
    LEAC "lea a16 [si]", {lea eax, [si]}
    LEAC "lea a16 [di+ffff]", {lea eax, [word di + 0xFFFF]}
    LEAC "lea a16 [bp]", {lea eax, [bp]}
    LEAC "lea a16 [disp16]", {lea eax, [word 0x1234]}
    LEAC "lea a16 [bx+8000]", {lea eax, [bx + 0x8000]}
    LEAC "lea o16 [ebx+ecx]", {lea ax, [ebx + ecx]}
    LEAC "lea o16 a16 [bx+si+7]", {lea ax, [bx + si + 7]}
    ret

; ============================================================================
; MOVZX MOVSX CBW CWDE CWD CDQ
; ============================================================================
t_extend:
    CASE "movzx r32,r8", {mov bl, 0x80}, {movzx eax, bl}
    CASE "movzx r32,r8h", {mov bh, 0xFF}, {movzx ecx, bh}
    CASE "movzx r16,r8", {mov bl, 0x80}, {movzx ax, bl}
    CASE "movzx r32,m16", {mov word [scratch], 0x8765}, {movzx esi, word [scratch]}
    CASE "movsx r32,r8 80", {mov bl, 0x80}, {movsx eax, bl}
    CASE "movsx r32,r8 7f", {mov bl, 0x7F}, {movsx eax, bl}
    CASE "movsx r16,r8", {mov dl, 0xF0}, {movsx cx, dl}
    CASE "movsx r32,r16", {mov bx, 0x8000}, {movsx edx, bx}
    CASE "movsx r32,m8", {mov byte [scratch], 0x81}, {movsx edi, byte [scratch]}
    CASE "cbw 80", {mov al, 0x80}, {cbw}
    CASE "cbw 7f", {mov al, 0x7F}, {cbw}
    CASE "cwde 8000", {mov ax, 0x8000}, {cwde}
    CASE "cwd 8000", {mov ax, 0x8000}, {cwd}
    CASE "cwd 7fff", {mov ax, 0x7FFF}, {cwd}
    CASE "cdq 80000000", {mov eax, 0x80000000}, {cdq}
    CASE "cdq 7fffffff", {mov eax, 0x7FFFFFFF}, {cdq}
    ret

; ============================================================================
; XLAT: AL <- [seg:(E)BX + unsigned AL]; with 0x67 the sum wraps at 64 KiB
; ============================================================================
XLAT_LOW equ 0x7000

t_xlat:
    mov edi, xlat_tab
    mov esi, XLAT_LOW
    xor ecx, ecx
.f: mov al, cl
    imul eax, eax, 7
    add al, 3
    mov [edi + ecx], al
    xor al, 0xFF
    mov [esi + ecx], al
    inc ecx
    cmp ecx, 256
    jb .f
    mov byte [0x0010], 0x77         ; where BX=fff0 + AL=20 wraps to
    CASE "xlat 10", {mov ebx, xlat_tab}, {mov al, 0x10}, {xlatb}
    CASE "xlat ff", {mov ebx, xlat_tab}, {mov al, 0xFF}, {xlatb}
    CASE "xlat a16", {mov ebx, 0xABCD0000 | XLAT_LOW}, {mov al, 0x80}, {a16 xlatb}
    CASE "xlat a16 wrap", {mov ebx, 0xABCDFFF0}, {mov al, 0x20}, {a16 xlatb}
    ret

section .bss
xlat_tab: resb 256
section .text

; ============================================================================
; ENTER (levels 0, 1, 3: level-1 frame pointers copied from the old frame, SDM
; Vol. 1 6.5) and LEAVE. ESP/EBP are printed relative to a private stack top.
; ============================================================================
section .bss
alignb 16
        resb 0x2000                 ; ENTER 1234h,0 allocates below
enter_stack_top:
        resb 64                     ; what the report shows above a shallow ESP
enter_saved_esp: resd 1
er_esp: resd 1
er_ebp: resd 1
er_snap: resd 8
section .text

; ENTER_CASE "name", insn... : on a fresh private stack whose old frame (EBP =
; top-40h) holds frame pointers F1F1F1F1, F2F2F2F2, F3F3F3F3 at [EBP-4..-12],
; run the instructions; print EBP and ESP relative to the top and the 8 dwords
; from ESP (snapshotted before anything else is pushed).
%macro ENTER_CASE 2-*
    mov edi, enter_stack_top - 0x2000
    mov ecx, (0x2000 + 64) / 4
    xor eax, eax
    rep stosd
    mov dword [enter_stack_top - 0x44], 0xF1F1F1F1
    mov dword [enter_stack_top - 0x48], 0xF2F2F2F2
    mov dword [enter_stack_top - 0x4C], 0xF3F3F3F3
    mov esp, enter_stack_top
    mov ebp, enter_stack_top - 0x40
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    %rotate 1
    mov [er_esp], esp
    mov [er_ebp], ebp
    mov esi, esp
    mov edi, er_snap
    mov ecx, 8
    rep movsd
    PUTS {%1, ":"}
    call enter_report
%endmacro

enter_report:
    pushad
    PUTS " ebp="
    mov eax, [er_ebp]
    sub eax, enter_stack_top
    PUTHEX eax
    PUTS " esp="
    mov eax, [er_esp]
    sub eax, enter_stack_top
    PUTHEX eax
    PUTS " stack="
    xor esi, esi
.l: call print_sp
    mov eax, [er_snap + esi * 4]
    PUTHEX eax
    inc esi
    cmp esi, 8
    jb .l
    call print_nl
    popad
    ret

t_enter:
    pop dword [enter_ret]           ; the cases below move ESP away
    mov [enter_saved_esp], esp
    ENTER_CASE "enter 8,0", {enter 8, 0}
    ENTER_CASE "enter 8,0; leave", {enter 8, 0}, {leave}
    ENTER_CASE "enter 8,1", {enter 8, 1}
    ENTER_CASE "enter 8,1; leave", {enter 8, 1}, {leave}
    ENTER_CASE "enter 12,3", {enter 12, 3}
    ENTER_CASE "enter 12,3; leave", {enter 12, 3}, {leave}
    ENTER_CASE "enter 0,2", {enter 0, 2}
    ENTER_CASE "enter 1234,0", {enter 0x1234, 0}
    ENTER_CASE "enter o16 4,2", {o16 enter 4, 2}
    ENTER_CASE "enter o16 4,2; leave o16", {o16 enter 4, 2}, {o16 leave}
    mov esp, [enter_saved_esp]
    jmp [enter_ret]

section .bss
enter_ret: resd 1
section .text

; ============================================================================
; BOUND: signed bounds, inclusive; out of range is #BR (vector 5, a fault)
; ============================================================================
; TRY "name", insn... : prints `name: exc: ...` or `name: exc: none`
%macro TRY 2-*
    PUTS {%1, ": "}
    EXPECT_FAULT %%r
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    NO_FAULT
%%r:
%endmacro

section .rodata
align 4
bnd32:  dd -5, 10
bnd16:  dw -5, 10
section .text

t_bound:
    TRY "bound32 3", {mov eax, 3}, {bound eax, [bnd32]}
    TRY "bound32 -5", {mov eax, -5}, {bound eax, [bnd32]}
    TRY "bound32 10", {mov eax, 10}, {bound eax, [bnd32]}
    TRY "bound32 -6", {mov eax, -6}, {bound eax, [bnd32]}
    TRY "bound32 11", {mov eax, 11}, {bound eax, [bnd32]}
    TRY "bound16 ffff", {mov eax, 0x1234FFFF}, {bound ax, [bnd16]}
    TRY "bound16 000b", {mov eax, 0x0000000B}, {bound ax, [bnd16]}
    TRY "bound16 fffa", {mov eax, 0x0000FFFA}, {bound ax, [bnd16]}
    ret

; ============================================================================
; LAHF SAHF PUSHF POPF. SAHF writes SF ZF AF PF CF only; LAHF reads bit 1 as 1 and
; bits 3, 5 as 0. POPF at CPL 0 writes every flag but RF (cleared), VM, VIP, VIF
; (SDM Vol. 2 POPF); TF and IF are left out here (single-step, interrupts).
; ============================================================================
t_flags:
    CASE "sahf ff", {mov ah, 0xFF}, {sahf}, {lahf}
    CASE "sahf 00 keeps of", {mov al, 0x7F}, {add al, 1}, {mov ah, 0}, {sahf}, {lahf}
    CASE "lahf after sub", {mov al, 0}, {sub al, 1}, {mov eax, 0}, {lahf}
    %define CASE_MASK 0xFFFFFFFF
    CASE "popf fffffcff", {push dword 0xFFFFFCFF}, {popfd}
    CASE "popf 00000000", {push dword 0}, {popfd}
    CASE "popfw fcff", {push dword 0xFFFFFCFF}, {popfd}, {push word 0x00C4}, {popfw}
    CASE "pushfw", {stc}, {std}, {pushfw}, {movzx eax, word [esp]}, {add esp, 2}
    CASE "cld clc cmc", {std}, {stc}, {cld}, {clc}, {cmc}
    %define CASE_MASK FL_STATUS
    ; EFLAGS.ID toggles on a CPU with CPUID (SDM Vol. 1 20.1.1 / CPUID identification)
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
    ret

; ============================================================================
; stack: PUSHA/POPA (the pushed ESP is the value before the first push; POPA
; discards it), 16-bit forms, PUSH imm, PUSH sreg, PUSH ESP, POP [ESP]
; ============================================================================
t_stack:
    call preset
    pushad
    PUTS "pushad:"
    mov ecx, 8
    xor esi, esi
.l1:call print_sp
    mov eax, [esp + esi]
    cmp esi, 12                     ; the ESP slot: print it relative to ESP now
    jne .p1
    sub eax, esp
.p1:PUTHEX eax
    add esi, 4
    loop .l1
    call print_nl
    add esp, 32

    call preset
    pushaw
    PUTS "pushaw:"
    mov ecx, 8
    xor esi, esi
.l2:call print_sp
    movzx eax, word [esp + esi]
    cmp esi, 6
    jne .p2
    sub ax, sp
.p2:PUTHEX eax, 4
    add esi, 2
    loop .l2
    call print_nl
    add esp, 16

    push dword 0x11111111           ; EAX
    push dword 0x22222222           ; ECX
    push dword 0x33333333           ; EDX
    push dword 0x44444444           ; EBX
    push dword 0x55555555           ; ESP (ignored)
    push dword 0x66666666           ; EBP
    push dword 0x77777777           ; ESI
    push dword 0x88888888           ; EDI
    mov [scratch], esp
    popad
    DUMP "popad"
    mov eax, esp
    sub eax, [scratch]
    KV "popad esp delta", eax
    call preset
    push word 0x1111
    push word 0x2222
    push word 0x3333
    push word 0x4444
    push word 0x5555
    push word 0x6666
    push word 0x7777
    push word 0x8888
    popaw
    DUMP "popaw"
    call preset
    mov ebx, esp
    push byte -2
    pop eax
    push word -3
    pop cx
    push dword 0x80
    pop edx
    sub ebx, esp
    DUMP "push imm"
    mov dword [esp - 4], 0xDEADBEEF
    mov ebx, esp
    push ds
    sub ebx, esp
    movzx eax, word [esp]           ; the upper half is model-specific (see header)
    add esp, 4
    KV "push ds esp delta", ebx
    KV "push ds low16", eax
    mov ebx, esp
    o16 push es
    sub ebx, esp
    movzx eax, word [esp]
    add esp, 2
    KV "push o16 es esp delta", ebx
    KV "push o16 es", eax
    ; PUSH ESP pushes the value before the decrement
    push esp
    pop eax
    sub eax, esp
    KV "push esp - esp", eax
    ; POP m with an ESP base: the address uses ESP after the increment (SDM POP)
    push dword 0x11111111
    push dword 0x22222222
    pop dword [esp]
    pop eax
    KV "pop [esp]", eax
    push dword 0xCCCCCCCC
    push dword 0xAAAAAAAA
    push dword 0xBBBBBBBB
    pop dword [esp + 4]             ; ESP is already +4 when [esp+4] is formed
    pop eax
    pop ecx
    KV "pop [esp+4] next", eax
    KV "pop [esp+4] target", ecx
    push dword 0xCCCCCCCC
    push dword [esp]
    pop eax
    pop ecx
    KV "push [esp]", eax
    ret

; ============================================================================
; string instructions: MOVS CMPS SCAS LODS STOS in all sizes, REP/REPE/REPNE,
; DF=0/1, ECX=0, and 16-bit addressing (0x67: SI/DI/CX, wrapping at 64 KiB,
; upper halves of ESI/EDI/ECX untouched). Buffers sit below 64 KiB so that the
; same addresses serve both address sizes.
; ============================================================================
; the source holds 64 distinct bytes; the destination is filled with EEh, or
; (str_reset_cmp) a copy of the source that differs at byte 5 and bytes 9..11
str_reset:
    pushad
    mov edi, LOW_SRC
    mov ecx, 64
    mov al, 0x41
.s: mov [edi], al
    add al, 3
    inc edi
    loop .s
    mov edi, LOW_DST
    mov ecx, 64
    mov al, 0xEE
.d: mov [edi], al
    inc edi
    loop .d
    popad
    ret

str_reset_cmp:
    call str_reset
    pushad
    mov esi, LOW_SRC
    mov edi, LOW_DST
    mov ecx, 64
.c: mov al, [esi]
    mov [edi], al
    inc esi
    inc edi
    loop .c
    mov byte [LOW_DST + 5], 0x00
    mov dword [LOW_DST + 8], 0xEEEEEEEE
    popad
    ret

; STR "name", insn... : fresh buffers, ESI = src, EDI = dst, ECX/EAX preset, then
; `name: esi=.. edi=.. ecx=.. eax=.. fl=.. dst=adler`
%macro STR 2-*
    call str_reset
    call str_preset
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    %rotate 1
    DUMP_STR %1
%endmacro
%macro STRC 2-*
    call str_reset_cmp
    call str_preset
    %rep %0 - 1
    %rotate 1
    %1
    %endrep
    %rotate 1
    DUMP_STR %1
%endmacro
%macro DUMP_STR 1
[section .rodata]
%%s: db %1, 0
__?SECT?__
    pushfd
    push dword %%s
    call str_report
    popfd
    cld
%endmacro

str_preset:
    mov esi, LOW_SRC
    mov edi, LOW_DST
    mov ecx, 0xC3C3C3C3
    mov eax, 0x5A5A5A5A
    push dword 2
    popfd
    ret

; [esp+4] = name, [esp+8] = EFLAGS
str_report:
    pushad
    mov ebp, esp
    cld
    PUTSP [ebp + 36]
    PUTS ": esi="
    PUTHEX [ebp + 4]
    PUTS " edi="
    PUTHEX [ebp]
    PUTS " ecx="
    PUTHEX [ebp + 24]
    PUTS " eax="
    PUTHEX [ebp + 28]
    PUTS " fl="
    mov eax, [ebp + 40]
    and eax, FL_STATUS | DF
    PUTHEX eax, 3
    PUTS " dst="
    mov esi, LOW_DST
    mov ecx, 64
    call adler32
    PUTHEX eax
    call print_nl
    popad
    ret 4

t_string:
    STR "rep movsb 13", {mov ecx, 13}, {rep movsb}
    STR "rep movsw 7", {mov ecx, 7}, {rep movsw}
    STR "rep movsd 5", {mov ecx, 5}, {rep movsd}
    STR "movsb", {movsb}
    STR "movsd", {movsd}
    STR "rep movsb 0 keeps flags", {stc}, {xor ecx, ecx}, {rep movsb}
    STR "std rep movsb 9", {std}, {add esi, 31}, {add edi, 31}, {mov ecx, 9}, {rep movsb}
    STR "std rep movsw 4", {std}, {add esi, 30}, {add edi, 30}, {mov ecx, 4}, {rep movsw}
    STR "std rep movsd 3", {std}, {add esi, 28}, {add edi, 28}, {mov ecx, 3}, {rep movsd}
    STR "rep stosb 10", {mov ecx, 10}, {rep stosb}
    STR "rep stosw 5", {mov ecx, 5}, {mov eax, 0x12345678}, {rep stosw}
    STR "rep stosd 3", {mov ecx, 3}, {mov eax, 0x12345678}, {rep stosd}
    STR "std stosd", {std}, {add edi, 8}, {stosd}
    STR "lodsb", {lodsb}
    STR "lodsw", {lodsw}
    STR "lodsd", {lodsd}
    STR "rep lodsb 3", {mov ecx, 3}, {rep lodsb}
    STR "std lodsw", {std}, {add esi, 10}, {lodsw}
    STRC "repe cmpsb 16", {mov ecx, 16}, {repe cmpsb}
    STRC "repne cmpsb 16", {mov ecx, 16}, {repne cmpsb}
    STRC "repe cmpsw 8", {mov ecx, 8}, {repe cmpsw}
    STRC "repe cmpsd 4", {mov ecx, 4}, {repe cmpsd}
    STRC "cmpsb", {cmpsb}
    STRC "repe cmpsd 0 keeps flags", {stc}, {xor ecx, ecx}, {repe cmpsd}
    STRC "std repe cmpsb", {std}, {add esi, 7}, {add edi, 7}, {mov ecx, 8}, {repe cmpsb}
    STR "repne scasb", {mov edi, LOW_SRC}, {mov al, 0x41 + 3 * 9}, {mov ecx, 40}, {repne scasb}
    STR "repne scasb miss", {mov edi, LOW_SRC}, {mov al, 0x40}, {mov ecx, 20}, {repne scasb}
    STR "repe scasb", {mov al, 0xEE}, {mov ecx, 8}, {repe scasb}
    STR "repe scasw", {mov edi, LOW_SRC}, {mov ax, 0x4441}, {mov ecx, 8}, {repe scasw}
    STR "repne scasd", {mov eax, 0xEEEEEEEE}, {mov ecx, 4}, {repne scasd}
    STR "std repne scasb", {std}, {mov edi, LOW_SRC + 20}, {mov al, 0x41}, {mov ecx, 30}, {repne scasb}
    ; 0x67: SI/DI/CX only
    STR "a16 rep movsb 5", {mov esi, 0xABCD0000 | LOW_SRC}, {mov edi, 0x12340000 | LOW_DST}, {mov ecx, 0xFFFF0005}, {a16 rep movsb}
    STR "a16 rep movsd 3", {mov esi, 0xABCD0000 | LOW_SRC}, {mov edi, 0x12340000 | LOW_DST}, {mov ecx, 0x00010003}, {a16 rep movsd}
    STR "a16 rep movsb wraps si", {call str_low_wrap}, {mov esi, 0xABCDFFFE}, {mov ecx, 4}, {a16 rep movsb}
    STR "a16 std rep stosw", {std}, {mov edi, 0x12340000 | (LOW_DST + 8)}, {mov ecx, 0x55550003}, {a16 rep stosw}
    STRC "a16 repe cmpsb", {mov ecx, 0xFFFF0010}, {a16 repe cmpsb}
    STR "a16 repne scasb", {mov edi, 0xFFFF0000 | LOW_SRC}, {mov al, 0x41 + 3 * 4}, {mov ecx, 0x00000020}, {a16 repne scasb}
    STR "a16 lodsd", {mov esi, 0x7777FFFC}, {call str_low_wrap}, {a16 lodsd}
    ; a segment override applies to the source (DS) only; ES:EDI cannot be overridden
    STR "fs rep movsb", {call str_fs_setup}, {mov esi, LOW_SRC - 0x1000 + 8}, {mov ecx, 4}, {fs rep movsb}, {call str_fs_restore}
    ret

; bytes at FFFE, FFFF, 0000, 0001 for the wrapping cases
str_low_wrap:
    mov dword [0xFFFC], 0x44332211
    mov dword [0x0000], 0x88776655
    ret

str_fs_setup:
    push edi
    push eax
    push ebx
    push ecx
    mov edi, SEL_FREE
    mov eax, 0x1000
    mov ebx, 0xFFFFF
    mov ecx, ACC_DATA0 | FL_G | FL_D
    call gdt_set
    mov ax, SEL_FREE
    mov fs, ax
    pop ecx
    pop ebx
    pop eax
    pop edi
    ret

str_fs_restore:
    push eax
    mov ax, SEL_KDATA
    mov fs, ax
    pop eax
    ret

; ============================================================================
; LOOP LOOPE LOOPNE JECXZ JCXZ (0x67 uses CX); none of them changes flags
; ============================================================================
t_loop:
    call preset
    mov ecx, 5
    xor eax, eax
.l1:inc eax
    loop .l1
    DUMP "loop 5"
    call preset
    mov ecx, 0x12340003
    xor eax, eax
.l2:inc eax
    loop .l2, cx
    DUMP "loop a16 cx=3"
    ; LOOPE: continue while ZF=1 and ECX != 0
    mov dword [scratch], 0
    mov dword [scratch + 4], 0x00010000
    call preset
    mov ecx, 8
    mov esi, scratch
.l3:lodsb
    cmp al, 0
    loope .l3
    sub esi, scratch
    DUMP "loope"
    call preset
    mov ecx, 10
    xor eax, eax
.l4:inc eax
    cmp eax, 4
    loopne .l4
    DUMP "loopne"
    call preset
    mov ecx, 3
    xor eax, eax
    stc
.l5:inc eax
    loopne .l5                      ; INC leaves CF; ZF=0 until ECX runs out
    DUMP "loopne to ecx=0 keeps cf"
    call preset
    xor ecx, ecx
    mov eax, 1
    jecxz .j1
    mov eax, 2
.j1:DUMP "jecxz 0"
    call preset
    mov ecx, 0x00010000
    mov eax, 1
    jecxz .j2
    mov eax, 2
.j2:mov ebx, 1
    jcxz .j3
    mov ebx, 2
.j3:DUMP "jecxz/jcxz 10000"
    ret

; ============================================================================
; prefixes in 32-bit code: segment overrides (FS/GS/ES with non-zero bases),
; operand size with immediates of 16 bits, address and operand size together
; ============================================================================
t_prefixes:
    mov dword [0x1010], 0xF5F5F5F5
    mov dword [0x2020], 0x6A6A6A6A
    mov dword [0x1000 + LOW_SRC], 0x0BADC0DE
    call str_fs_setup
    mov edi, SEL_FREE + 8
    mov eax, 0x2000
    mov ebx, 0xFFFFF
    mov ecx, ACC_DATA0 | FL_G | FL_D
    call gdt_set
    mov ax, SEL_FREE + 8
    mov gs, ax
    CASE "fs:[10] (base 1000)", {mov eax, [fs:0x10]}
    CASE "gs:[20] (base 2000)", {mov eax, [gs:0x20]}
    CASE "fs:[bx+si] a16", {mov ebx, 0x12340000 | LOW_SRC}, {mov esi, 0xFFFF0000}, {mov eax, [fs:bx + si]}
    CASE "gs xlat", {mov ebx, 0x20}, {mov al, 0}, {gs xlatb}
    CASE "o16 mov m,imm16", {mov dword [scratch], 0xA5A5A5A5}, {mov word [scratch], 0x1234}, {mov eax, [scratch]}
    CASE "o16 add m,imm16", {mov dword [scratch], 0xA5A5FFFF}, {add word [scratch], 0x8001}, {mov eax, [scratch]}
    CASE "o16 push imm16", {mov ebx, esp}, {push word 0x8765}, {sub ebx, esp}, {movzx eax, word [esp]}, {add esp, 2}
    CASE "o16 a16 mov r,m", {mov ebx, 0xFFFF0000 | LOW_SRC}, {mov esi, 2}, {mov dword [LOW_SRC + 4], 0xCAFEBABE}, {mov ax, [bx + si + 2]}
    CASE "o16 inc", {mov eax, 0x1234FFFF}, {inc ax}
    CASE "o16 xchg", {xchg ax, bx}
    %define CASE_MASK CF|OF
    CASE "o16 imul r,m,imm8", {mov word [scratch], 0x4000}, {imul cx, [scratch], 4}
    %define CASE_MASK FL_STATUS
    CASE "o16 movzx r16,m8", {mov byte [scratch], 0xF0}, {movzx dx, byte [scratch]}
    mov ax, SEL_KDATA
    mov fs, ax
    mov gs, ax
    ret
