; x87.asm - the x87 FPU of an i686: loads and stores in every format, integer and
; BCD conversion, arithmetic under each rounding mode and precision control,
; compares, classification, stack and environment management, masked exceptions
; and one unmasked exception delivered as #MF (CR0.NE=1) at FWAIT.
;
; 80-bit values are printed as 20 hex digits (sign+exponent, then the 64-bit
; significand); the status word as 4 hex digits, masked as below.
;
; Masking (SDM Vol. 1 ch. 8, Vol. 2 per instruction):
;   C0 C2 C3 are undefined after arithmetic, loads, stores and conversions; C1
;   there is the round-up indicator. Only compares, FXAM, FTST and FPREM/FPREM1
;   print condition codes (SWM_CC).
;   FPREM/FPREM1 with an exponent difference of 64 or more reduce by an
;   implementation-dependent amount per step (SDM FPREM: "N is between 32 and
;   63"), so those cases loop until C2=0 and print only the remainder.
;   FNSTENV/FNSAVE images: the instruction and data pointers (FIP FCS FOP FDP
;   FDS) are model-specific (P6 fills them all, later parts deprecate FCS/FDS
;   and FOP) and the upper halves of the CW/SW/TW dwords are reserved; the
;   contents of empty registers are not architectural. All of those are zeroed
;   before the image is checksummed.
;   FXAM of an empty register: C1 (the sign of whatever the register holds).
;
; QEMU vs hardware (QEMU 7.2 TCG; each was seen in a probe guest):
;   - C1 is never set for a result that was rounded up (hardware sets it with
;     PE). Masked: C1 is printed only where it is not a rounding indicator.
;   - No stack fault: loading into a full register or reading an empty one
;     raises neither IE nor SF (hardware: IE|SF, and C1 for overflow). Masked by
;     never doing it: every case keeps the stack within 8 and reads only what it
;     loaded (FXAM of an empty register is the only empty read; it faults
;     nowhere).
;   - The denormal-operand flag DE is never set (hardware: set for a denormal
;     operand of arithmetic and of FLD m32/m64). Masked out of every status word.
;   - A pending unmasked exception is taken as #MF only by FWAIT; other waiting
;     x87 instructions (FLD ...) do not check it. The #MF case uses FWAIT.
;   - With an unmasked IE/ZE, QEMU writes the masked response (NaN, infinity) to
;     the destination; hardware leaves the destination unchanged. The #MF case
;     does not print the destination.
;   - An unmasked #O/#U on FST/FSTP m32/m64 still stores the masked response,
;     pops and sets PE (hardware: nothing stored, no pop, PE and C1 clear). Two
;     hwcheck lines.
;   - FNSTENV/FNSAVE store 0 in the reserved upper halves (P6: FFFFh) and FOP=0.
;   - FNSTENV does not mask the exceptions afterwards (SDM FSTENV: "then masks
;     all floating-point exceptions"). An hwcheck line; the guest reloads CW.
;   - FST/FSTP ST(i) into an empty register leave it tagged empty (hardware
;     tags it valid). Masked by storing only into registers in use.
;   - FRNDINT rounds to the precision control as well (SDM Vol. 1 8.1.5.2: PC
;     affects FADD FSUB FMUL FDIV FSQRT only): 1.5*2^64+ulp at PC=24 is rounded
;     and flagged inexact. Masked by running FRNDINT at PC=64 only.
;   - FPREM1 leaves C0 C1 C3 (the low quotient bits) clear. Not printed for
;     FPREM1; an hwcheck line tests one case.
;   - FCOMI/FUCOMI leave OF SF AF as they were; the SDM's operation writes only
;     ZF PF CF, Bochs and AMD's manual clear the other three. Only ZF PF CF are
;     printed.
;   - FSIN FCOS FSINCOS FPTAN FPATAN F2XM1 FYL2X FYL2XP1 are computed through host
;     doubles: they are executed (stack effects checked) but their values and
;     status flags are not printed.

%define GUEST_NAME "x87"
%include "common.inc"

SWM_ARITH equ 0xB8FD                ; B TOP ES SF PE UE OE ZE IE (no C0-C3, no DE)
SWM_CC    equ 0xFFFD                ; also C0-C3 (compares, FXAM, FPREM)

; control words: all exceptions masked, PC in bits 8-9, RC in bits 10-11
CW_N64 equ 0x037F
CW_D64 equ 0x077F
CW_U64 equ 0x0B7F
CW_Z64 equ 0x0F7F
CW_N53 equ 0x027F
CW_N24 equ 0x007F
CW_U24 equ 0x087F
CW_Z53 equ 0x0E7F

; T80 sign_exp, mantissa : an 80-bit value from its two fields
%macro T80 2
    dq %2
    dw %1
%endmacro

main:
    call t_constants
    call t_load_store
    call t_integers
    call t_bcd
    call t_arith
    call t_unary
    call t_special_ops
    call t_compare
    call t_fxam
    call t_fcmov
    call t_stack_mgmt
    call t_env
    call t_unmasked_mf
    call t_transcendental
    ret

; ============================================================================
; printing
; ============================================================================
; pr80: the 80-bit value at [ESI]
pr80:
    PUTHEX [esi + 8], 4
    PUTHEX [esi + 4]
    PUTHEX [esi]
    ret

; print_sw: ` sw=XXXX` of AX masked by EDX
print_sw:
    push eax
    movzx eax, ax
    and eax, edx
    PUTS " sw="
    PUTHEX eax, 4
    pop eax
    ret

; RES "key", swmask : FNSTSW, pop ST0 and print `key: value sw=..`; FNINIT.
%macro RES 2
    fnstsw ax
    fstp tword [res80]
    PUTS {%1, ": "}
    push esi
    mov esi, res80
    call pr80
    pop esi
    push edx
    mov edx, %2
    call print_sw
    pop edx
    call print_nl
    fninit
%endmacro

section .bss
res80:  resb 16
res80b: resb 16
section .text

; ============================================================================
; constants: each under the four rounding modes (the Pentium and later round the
; internal 66-bit+ constants per RC; SDM Vol. 1 8.3.8 and the FLD1/FLDPI
; compatibility note)
; ============================================================================
%macro CONST4 2                     ; name, instruction
    fninit
    fldcw [cw_n64]
    %2
    RES {%1, " rn"}, SWM_ARITH
    fldcw [cw_d64]
    %2
    RES {%1, " rd"}, SWM_ARITH
    fldcw [cw_u64]
    %2
    RES {%1, " ru"}, SWM_ARITH
    fldcw [cw_z64]
    %2
    RES {%1, " rz"}, SWM_ARITH
%endmacro

section .rodata
cw_n64: dw CW_N64
cw_d64: dw CW_D64
cw_u64: dw CW_U64
cw_z64: dw CW_Z64
cw_n53: dw CW_N53
cw_n24: dw CW_N24
section .text

t_constants:
    CONST4 "fld1", fld1
    CONST4 "fldz", fldz
    CONST4 "fldpi", fldpi
    CONST4 "fldl2e", fldl2e
    CONST4 "fldl2t", fldl2t
    CONST4 "fldlg2", fldlg2
    CONST4 "fldln2", fldln2
    fninit
    fldcw [cw_n24]                  ; PC does not apply to constants
    fldpi
    RES "fldpi pc24", SWM_ARITH
    ret

; ============================================================================
; FLD / FST / FSTP in f32, f64, f80
; ============================================================================
section .rodata
align 8
f32vals: dd 11
        dd 0x3F800000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF
        dd 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFA00000, 0x3EAAAAAB
f64vals: dd 9
        dq 0x3FF0000000000000, 0x8000000000000000, 0x0000000000000001, 0x0010000000000000
        dq 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, 0x7FF8000000000000, 0x7FF0000000000001
        dq 0x400921FB54442D18
; values stored to f32/f64: name pointer, then the 80-bit value
st_vals: dd 12
        dd n_third
        T80 0x3FFD, 0xAAAAAAAAAAAAAAAB
        dd n_mthird
        T80 0xBFFD, 0xAAAAAAAAAAAAAAAB
        dd n_max80
        T80 0x7FFE, 0xFFFFFFFFFFFFFFFF
        dd n_mmax80
        T80 0xFFFE, 0xFFFFFFFFFFFFFFFF
        dd n_tiny80
        T80 0x0001, 0x8000000000000000
        dd n_f32den
        T80 0x3F6A, 0xC000000000000001      ; ~1.5*2^-149: a f32 denormal, inexact
        dd n_f64den
        T80 0x3BCD, 0xB000000000000001      ; in the f64 denormal range
        dd n_mzero
        T80 0x8000, 0x0000000000000000
        dd n_inf
        T80 0x7FFF, 0x8000000000000000
        dd n_snan
        T80 0x7FFF, 0x8000000000000123
        dd n_qnan
        T80 0xFFFF, 0xC000000000000456
        dd n_f32half
        T80 0x3FFF, 0x8000008000000000      ; 1 + 2^-24: a tie for f32
n_third:  db "1/3", 0
n_mthird: db "-1/3", 0
n_max80:  db "max80", 0
n_mmax80: db "-max80", 0
n_tiny80: db "minnorm80", 0
n_f32den: db "f32denormal", 0
n_f64den: db "f64denormal", 0
n_mzero:  db "-0", 0
n_inf:    db "inf", 0
n_snan:   db "snan", 0
n_qnan:   db "-qnan", 0
n_f32half: db "1+2^-24", 0
st_modes: dd 4
        dd CW_N64, m_rn, CW_D64, m_rd, CW_U64, m_ru, CW_Z64, m_rz
m_rn: db "rn", 0
m_rd: db "rd", 0
m_ru: db "ru", 0
m_rz: db "rz", 0
section .text

; UNMASKED_STORE "name", control word, 80-bit value, store, exception flag: the
; store must leave scratch64 and TOP alone and report only the flag (and ES, B)
%macro UNMASKED_STORE 5
    fninit
    fldcw [%2]
    fld tword [%3]
    mov dword [scratch64], 0x55555555
    mov dword [scratch64 + 4], 0x55555555
    %4
    fnstsw ax
    fninit
    and ax, 0xBBFF                  ; B TOP C1 ES SF PE UE OE ZE DE IE
    cmp ax, 0xB880 | %5             ; B, TOP = 7 (not popped), ES
    jne %%bad
    cmp dword [scratch64], 0x55555555
    jne %%bad
    cmp dword [scratch64 + 4], 0x55555555
    jne %%bad
    HWCHECK_OK %1
    jmp %%done
%%bad:
    HWCHECK_FAIL %1
%%done:
%endmacro

t_load_store:
    ; FLD m32 / m64: exact widening, SNaN quieted with IE (SDM FLD #IA)
    mov esi, f32vals + 4
    mov ecx, [f32vals]
.l32:
    fninit
    fld dword [esi]
    PUTS "fld m32 "
    PUTHEX [esi]
    RES "", SWM_ARITH
    add esi, 4
    loop .l32
    mov esi, f64vals + 4
    mov ecx, [f64vals]
.l64:
    fninit
    fld qword [esi]
    PUTS "fld m64 "
    PUTHEX [esi + 4]
    PUTHEX [esi]
    RES "", SWM_ARITH
    add esi, 8
    loop .l64
    ; FLD m80 does not signal on an SNaN; FLD ST(i) copies
    fninit
    fld tword [st_vals + 4 + 9 * 14 + 4]
    RES "fld m80 snan", SWM_ARITH
    fninit
    fldpi
    fld1
    fld st1
    RES "fld st1", SWM_ARITH
    ; FST/FSTP m32 and m64 of each value under each rounding mode
    xor ebp, ebp                    ; mode index
.mode:
    mov ebx, st_vals + 4
    mov edi, [st_vals]
.val:
    fninit
    fldcw [st_modes + 4 + ebp * 8]
    fld tword [ebx + 4]
    fst dword [scratch32]
    fnstsw ax
    PUTS "fst m32 "
    PUTSP [ebx]
    call print_sp
    PUTSP [st_modes + 8 + ebp * 8]
    PUTS ": "
    PUTHEX [scratch32]
    mov edx, SWM_ARITH
    call print_sw
    fnclex
    fstp qword [scratch64]
    fnstsw ax
    PUTS " m64 "
    PUTHEX [scratch64 + 4]
    PUTHEX [scratch64]
    call print_sw
    call print_nl
    add ebx, 14
    dec edi
    jnz .val
    inc ebp
    cmp ebp, [st_modes]
    jb .mode
    ; An unmasked #O or #U on a store to memory stores nothing and does not pop,
    ; and the inexact result is not reported: PE and C1 stay clear (SDM Vol. 1
    ; 4.9.1.6, 8.5.4, 8.5.5). hwcheck lines: QEMU stores and pops (see header).
    UNMASKED_STORE "fstp m64 max80, OE unmasked", cw_oe_unmasked, st_vals + 4 + 2 * 14 + 4, {fstp qword [scratch64]}, 0x08
    UNMASKED_STORE "fstp m32 minnorm80, UE unmasked", cw_ue_unmasked, st_vals + 4 + 4 * 14 + 4, {fstp dword [scratch64]}, 0x10
    ; FSTP m80 and FST ST(i)
    fninit
    fldpi
    fld1
    fst st1
    fstp tword [res80]
    PUTS "fst st1: "
    mov esi, res80
    call pr80
    call print_nl
    RES "fst st1 then st0", SWM_ARITH
    ret

section .bss
alignb 8
scratch32: resd 2
scratch64: resq 2
section .rodata
cw_oe_unmasked: dw CW_N64 & ~0x08
cw_ue_unmasked: dw CW_N64 & ~0x10
section .text

; ============================================================================
; integers: FILD/FIST/FISTP m16/m32/m64 - exact round trips of 64-bit
; integers, rounding of non-integers per RC, overflow to the integer
; indefinite with IE (SDM FIST)
; ============================================================================
section .rodata
align 8
i64vals: dd 16
        dq 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0x0020000000000001, 0xFFFFFFFFFFFFFFFF
        dq 0x0000000000000000, 0x0000000000000001, 0x0123456789ABCDEF, 0xFEDCBA9876543210
        dq 0x5555555555555555, 0xAAAAAAAAAAAAAAAA, 0x7FFFFFFFFFFFFC00, 0x8000000000000001
        dq 0x00000000FFFFFFFF, 0xFFFFFFFF00000000, 0x0010000000000001, 0xC000000000000000
; values for FIST under RC: name, 80-bit value
fist_vals: dd 12
        dd fn_2p5
        T80 0x4000, 0xA000000000000000
        dd fn_m2p5
        T80 0xC000, 0xA000000000000000
        dd fn_3p5
        T80 0x4000, 0xE000000000000000
        dd fn_mhalf
        T80 0xBFFE, 0x8000000000000000
        dd fn_32767p5
        T80 0x400D, 0xFFFF000000000000
        dd fn_m32768p5
        T80 0xC00E, 0x8000800000000000
        dd fn_2g
        T80 0x401D, 0xFFFFFFFF00000000      ; 2147483647.5
        dd fn_m2g
        T80 0xC01E, 0x8000000080000000      ; -2147483648.5
        dd fn_2p63
        T80 0x403E, 0x8000000000000000      ; 2^63: overflows int64
        dd fn_m2p63
        T80 0xC03E, 0x8000000000000000      ; -2^63: fits
        dd fn_inf
        T80 0x7FFF, 0x8000000000000000
        dd fn_nan
        T80 0x7FFF, 0xC000000000000000
fn_2p5:   db "2.5", 0
fn_m2p5:  db "-2.5", 0
fn_3p5:   db "3.5", 0
fn_mhalf: db "-0.5", 0
fn_32767p5: db "32767.5", 0
fn_m32768p5: db "-32768.5", 0
fn_2g:    db "2147483647.5", 0
fn_m2g:   db "-2147483648.5", 0
fn_2p63:  db "2^63", 0
fn_m2p63: db "-2^63", 0
fn_inf:   db "inf", 0
fn_nan:   db "qnan", 0
i16vals: dw 0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x1234
i32vals: dd 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00010000, 0x12345678
section .text

t_integers:
    ; FILD m16 / m32
    xor ecx, ecx
.i16:
    fninit
    fild word [i16vals + ecx * 2]
    PUTS "fild m16 "
    movzx eax, word [i16vals + ecx * 2]
    PUTHEX eax, 4
    RES "", SWM_ARITH
    inc ecx
    cmp ecx, 6
    jb .i16
    xor ecx, ecx
.i32:
    fninit
    fild dword [i32vals + ecx * 4]
    PUTS "fild m32 "
    PUTHEX [i32vals + ecx * 4]
    RES "", SWM_ARITH
    inc ecx
    cmp ecx, 5
    jb .i32
    ; FILD m64 -> FISTP m64 round trips: the fixed list, then 32 values of an LCG
    mov esi, i64vals + 4
    mov ecx, [i64vals]
.rt:
    mov eax, [esi]
    mov edx, [esi + 4]
    call fild_fistp64
    add esi, 8
    loop .rt
    mov dword [lcg], 0x2545F491
    mov ecx, 32
.rnd:
    call lcg_next
    mov edx, eax
    call lcg_next
    call fild_fistp64
    loop .rnd
    ; FIST/FISTP under each RC
    xor ebp, ebp
.mode:
    mov ebx, fist_vals + 4
    mov edi, [fist_vals]
.val:
    fninit
    fldcw [st_modes + 4 + ebp * 8]
    fld tword [ebx + 4]
    PUTS "fist "
    PUTSP [ebx]
    call print_sp
    PUTSP [st_modes + 8 + ebp * 8]
    PUTS ":"
    mov edx, SWM_ARITH
    mov dword [scratch64], 0xEEEEEEEE
    fist word [scratch64]
    fnstsw ax
    fnclex
    PUTS " m16 "
    movzx ecx, word [scratch64]
    PUTHEX ecx, 4
    call print_sw
    fist dword [scratch64]
    fnstsw ax
    fnclex
    PUTS " m32 "
    PUTHEX [scratch64]
    call print_sw
    fistp qword [scratch64]
    fnstsw ax
    PUTS " m64 "
    PUTHEX [scratch64 + 4]
    PUTHEX [scratch64]
    call print_sw
    call print_nl
    add ebx, 14
    dec edi
    jnz .val
    inc ebp
    cmp ebp, [st_modes]
    jb .mode
    ret

; fild_fistp64: EDX:EAX -> `fild/fistp64 X: 80-bit Y sw`
fild_fistp64:
    pushad
    mov [scratch64], eax
    mov [scratch64 + 4], edx
    mov [fi_in], eax
    fninit
    fild qword [scratch64]
    fld st0
    fstp tword [res80]
    mov dword [scratch64], 0xEEEEEEEE
    mov dword [scratch64 + 4], 0xEEEEEEEE
    fistp qword [scratch64]
    fnstsw ax
    PUTS "fild/fistp m64 "
    PUTHEX edx
    PUTHEX [fi_in]
    PUTS ": "
    mov esi, res80
    call pr80
    call print_sp
    PUTHEX [scratch64 + 4]
    PUTHEX [scratch64]
    mov edx, SWM_ARITH
    call print_sw
    call print_nl
    popad
    ret

; lcg_next: EAX = next value of a 32-bit LCG (Numerical Recipes constants)
lcg_next:
    push edx
    mov eax, [lcg]
    imul eax, eax, 1664525
    add eax, 1013904223
    mov [lcg], eax
    pop edx
    ret

section .bss
lcg: resd 1
fi_in: resd 1
section .text

; ============================================================================
; FBLD / FBSTP: packed BCD (18 digits + sign byte); FBSTP rounds per RC, and an
; out-of-range or NaN source stores the BCD indefinite with IE (SDM FBSTP)
; ============================================================================
section .rodata
align 4
bcd_vals:
        db 0x78, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x00   ; 123456789012345678
        db 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x80   ; -999999999999999999
        db 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80   ; -0
        db 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00   ; 1
fbst_vals: dd 7
        dd fn_123p5
        T80 0x4005, 0xF700000000000000      ; 123.5
        dd fn_m0p5
        T80 0xBFFE, 0x8000000000000000      ; -0.5
        dd fn_m0
        T80 0x8000, 0x0000000000000000
        dd fn_max18
        T80 0x403A, 0xDE0B6B3A763FFFF0      ; 999999999999999999
        dd fn_1e18
        T80 0x403A, 0xDE0B6B3A76400000      ; 10^18: one digit too many
        dd fn_nan
        T80 0x7FFF, 0xC000000000000000
        dd fn_m2p5
        T80 0xC000, 0xA000000000000000
fn_123p5: db "123.5", 0
fn_m0p5:  db "-0.5", 0
fn_m0:    db "-0", 0
fn_max18: db "999999999999999999", 0
fn_1e18:  db "1e18", 0
section .text

t_bcd:
    xor ecx, ecx
.ld:
    fninit
    lea esi, [bcd_vals + ecx * 8]
    add esi, ecx
    add esi, ecx
    fbld [esi]
    PUTS "fbld "
    call pr80                       ; the BCD bytes, most significant first
    RES "", SWM_ARITH
    inc ecx
    cmp ecx, 4
    jb .ld
    xor ebp, ebp
.mode:
    mov ebx, fbst_vals + 4
    mov edi, [fbst_vals]
.val:
    fninit
    fldcw [st_modes + 4 + ebp * 8]
    fld tword [ebx + 4]
    fbstp [res80]
    fnstsw ax
    PUTS "fbstp "
    PUTSP [ebx]
    call print_sp
    PUTSP [st_modes + 8 + ebp * 8]
    PUTS ": "
    mov esi, res80
    call pr80
    mov edx, SWM_ARITH
    call print_sw
    call print_nl
    add ebx, 14
    dec edi
    jnz .val
    inc ebp
    cmp ebp, [st_modes]
    jb .mode
    ret

; ============================================================================
; arithmetic: FADD FSUB FSUBR FMUL FDIV FDIVR on pairs of operands under RC
; near/down/up/chop at 64-bit precision, and near at 53 and 24 bits (PC applies
; to FADD FSUB FMUL FDIV FSQRT only: SDM Vol. 1 8.1.5.2); masked IE ZE OE UE
; PE with their default results
; ============================================================================
section .rodata
align 4
; pairs: name, a (ST0), b (ST1)
pairs:  dd 15
        dd pn_1_3
        T80 0x3FFF, 0x8000000000000000
        T80 0x4000, 0xC000000000000000
        dd pn_10_3
        T80 0x4002, 0xA000000000000000
        T80 0x4000, 0xC000000000000000
        dd pn_pi_e
        T80 0x4000, 0xC90FDAA22168C235
        T80 0x4000, 0xADF85458A2BB4A9A
        dd pn_1_tiny
        T80 0x3FFF, 0x8000000000000000
        T80 0x3FBF, 0x8000000000000001      ; 2^-64 (+): sums round in the last place
        dd pn_x_mx
        T80 0x4001, 0xB000000000000000
        T80 0xC001, 0xB000000000000000      ; x and -x: the sign of an exact zero follows RC
        dd pn_max_max
        T80 0x7FFE, 0xFFFFFFFFFFFFFFFF
        T80 0x7FFE, 0xFFFFFFFFFFFFFFFF
        dd pn_min_half
        T80 0x0001, 0x8000000000000000
        T80 0x3FFE, 0xC000000000000000      ; 0.75: min normal * or / gives a denormal
        dd pn_1_0
        T80 0x3FFF, 0x8000000000000000
        T80 0x0000, 0x0000000000000000
        dd pn_0_0
        T80 0x0000, 0x0000000000000000
        T80 0x8000, 0x0000000000000000
        dd pn_inf_inf
        T80 0x7FFF, 0x8000000000000000
        T80 0x7FFF, 0x8000000000000000
        dd pn_1_qnan
        T80 0xBFFF, 0x8000000000000000
        T80 0x7FFF, 0xC000000000000ABC
        dd pn_snan_1
        T80 0xFFFF, 0xA000000000000DEF
        T80 0x3FFF, 0x8000000000000000
        dd pn_den_1
        T80 0x0000, 0x0000000000000003      ; a denormal (DE not printed: see header)
        T80 0x3FFE, 0x8000000000000000
        dd pn_big_small
        T80 0x43FF, 0x9876543210FEDCBA
        T80 0x3C00, 0xFEDCBA9876543211
        dd pn_m2p5_1e10
        T80 0xC000, 0xA000000000000000
        T80 0x4020, 0x9502F90000000000
pn_1_3:     db "1,3", 0
pn_10_3:    db "10,3", 0
pn_pi_e:    db "pi,e", 0
pn_1_tiny:  db "1,2^-64+", 0
pn_x_mx:    db "5.5,-5.5", 0
pn_max_max: db "max,max", 0
pn_min_half: db "minnorm,0.75", 0
pn_1_0:     db "1,0", 0
pn_0_0:     db "0,-0", 0
pn_inf_inf: db "inf,inf", 0
pn_1_qnan:  db "-1,qnan", 0
pn_snan_1:  db "-snan,1", 0
pn_den_1:   db "denormal,0.5", 0
pn_big_small: db "2^1024*x,2^-1023*y", 0
pn_m2p5_1e10: db "-2.5,1e10", 0
section .data
modes:  dd 8
        dd CW_N64, mn_n64, CW_D64, mn_d64, CW_U64, mn_u64, CW_Z64, mn_z64
        dd CW_N53, mn_n53, CW_Z53, mn_z53, CW_N24, mn_n24, CW_U24, mn_u24
section .rodata
mn_n64: db "rn64", 0
mn_d64: db "rd64", 0
mn_u64: db "ru64", 0
mn_z64: db "rz64", 0
mn_n53: db "rn53", 0
mn_z53: db "rz53", 0
mn_n24: db "rn24", 0
mn_u24: db "ru24", 0
section .text

section .data
xo_stub:  dd 0
xo_name:  dd 0
xo_table: dd 0
xo_mask:  dd 0
section .text

; pair_run: for every mode and pair: ST0 = a, ST1 = b, call the stub, print ST0
pair_run:
    pushad
    xor ebp, ebp
.mode:
    mov ebx, [xo_table]
    mov edi, [ebx]
    add ebx, 4
.pair:
    fninit
    fldcw [modes + 4 + ebp * 8]
    fld tword [ebx + 14]
    fld tword [ebx + 4]
    call [xo_stub]
    fnstsw ax
    fstp tword [res80]
    fninit
    PUTSP [xo_name]
    call print_sp
    PUTSP [ebx]
    call print_sp
    PUTSP [modes + 8 + ebp * 8]
    PUTS ": "
    mov esi, res80
    call pr80
    mov edx, [xo_mask]
    call print_sw
    call print_nl
    add ebx, 24
    dec edi
    jnz .pair
    inc ebp
    cmp ebp, [modes]
    jb .mode
    popad
    ret

; PAIROP name, table, swmask, insn... : the stub leaves its result in ST0
%macro PAIROP 4-*
    jmp %%go
%%stub:
    %rotate 3
    %rep %0 - 3
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [xo_stub], %%stub
    mov dword [xo_name], %%name
    mov dword [xo_table], %2
    mov dword [xo_mask], %3
    call pair_run
%endmacro

t_arith:
    PUTLN "pair order: a=st0 b=st1"
    PAIROP "fadd", pairs, SWM_ARITH, {fadd st0, st1}
    PAIROP "fsub", pairs, SWM_ARITH, {fsub st0, st1}
    PAIROP "fsubr", pairs, SWM_ARITH, {fsubr st0, st1}
    PAIROP "fmul", pairs, SWM_ARITH, {fmul st0, st1}
    PAIROP "fdiv", pairs, SWM_ARITH, {fdiv st0, st1}
    PAIROP "fdivr", pairs, SWM_ARITH, {fdivr st0, st1}
    ; the other encodings, in the default mode only
    mov dword [modes], 1
    PAIROP "fadd st1,st0;fxch", pairs, SWM_ARITH, {fadd st1, st0}, {fxch}
    PAIROP "faddp", pairs, SWM_ARITH, {faddp st1, st0}
    PAIROP "fsubp st1 (b-a)", pairs, SWM_ARITH, {fsubp st1, st0}
    PAIROP "fsubrp st1 (a-b)", pairs, SWM_ARITH, {fsubrp st1, st0}
    PAIROP "fmulp", pairs, SWM_ARITH, {fmulp st1, st0}
    PAIROP "fdivp st1 (b/a)", pairs, SWM_ARITH, {fdivp st1, st0}
    PAIROP "fdivrp st1 (a/b)", pairs, SWM_ARITH, {fdivrp st1, st0}
    PAIROP "fsub st1,st0;fxch", pairs, SWM_ARITH, {fsub st1, st0}, {fxch}
    PAIROP "fdivr st1,st0;fxch", pairs, SWM_ARITH, {fdivr st1, st0}, {fxch}
    PAIROP "fadd m32 3.0", pairs, SWM_ARITH, {fadd dword [m32_three]}
    PAIROP "fsubr m64 0.1", pairs, SWM_ARITH, {fsubr qword [m64_tenth]}
    PAIROP "fmul m32 1e-30", pairs, SWM_ARITH, {fmul dword [m32_small]}
    PAIROP "fdiv m64 3.0", pairs, SWM_ARITH, {fdiv qword [m64_three]}
    PAIROP "fiadd m16 -7", pairs, SWM_ARITH, {fiadd word [m16_m7]}
    PAIROP "fisub m32 100000", pairs, SWM_ARITH, {fisub dword [m32_100000]}
    PAIROP "fimul m16 -7", pairs, SWM_ARITH, {fimul word [m16_m7]}
    PAIROP "fidivr m32 100000", pairs, SWM_ARITH, {fidivr dword [m32_100000]}
    mov dword [modes], 8
    ret

section .rodata
align 8
m32_three:  dd 0x40400000
m32_small:  dd 0x0DA24260          ; 1e-30
m64_tenth:  dq 0x3FB999999999999A
m64_three:  dq 0x4008000000000000
m16_m7:     dw -7
m32_100000: dd 100000
section .text

; ============================================================================
; one-operand arithmetic: FSQRT (PC applies), FRNDINT (RC applies), FABS, FCHS
; (no exception even for an SNaN); and FSCALE, FXTRACT, FPREM, FPREM1
; ============================================================================
section .rodata
align 4
uvals:  dd 11
        dd un_2
        T80 0x4000, 0x8000000000000000
        T80 0, 0
        dd un_third
        T80 0x3FFD, 0xAAAAAAAAAAAAAAAB
        T80 0, 0
        dd un_m1
        T80 0xBFFF, 0x8000000000000000
        T80 0, 0
        dd un_m0
        T80 0x8000, 0x0000000000000000
        T80 0, 0
        dd un_inf
        T80 0x7FFF, 0x8000000000000000
        T80 0, 0
        dd un_2p5
        T80 0x4000, 0xA000000000000000
        T80 0, 0
        dd un_m2p5
        T80 0xC000, 0xA000000000000000
        T80 0, 0
        dd un_m0p5
        T80 0xBFFE, 0x8000000000000000
        T80 0, 0
        dd un_big
        T80 0x403F, 0xC000000000000001      ; 1.5*2^64+: already an integer
        T80 0, 0
        dd un_den
        T80 0x0000, 0x0000000012345678
        T80 0, 0
        dd un_snan
        T80 0x7FFF, 0x8000000000000001
        T80 0, 0
un_2:    db "2", 0
un_third: db "1/3", 0
un_m1:   db "-1", 0
un_m0:   db "-0", 0
un_inf:  db "inf", 0
un_2p5:  db "2.5", 0
un_m2p5: db "-2.5", 0
un_m0p5: db "-0.5", 0
un_big:  db "2^64*1.5+", 0
un_den:  db "denormal", 0
un_snan: db "snan", 0
; FSCALE: ST0 * 2^trunc(ST1)
scale_pairs: dd 8
        dd sp_1_3p7
        T80 0x3FFF, 0x8000000000000000
        T80 0x4000, 0xECCCCCCCCCCCCCCD      ; 3.7
        dd sp_3_m1p5
        T80 0x4000, 0xC000000000000000
        T80 0xBFFF, 0xC000000000000000      ; -1.5
        dd sp_1_20000
        T80 0x3FFF, 0x8000000000000000
        T80 0x400D, 0x9C40000000000000      ; 20000: overflow
        dd sp_1_m20000
        T80 0x3FFF, 0x8000000000000000
        T80 0xC00D, 0x9C40000000000000      ; -20000: underflow to 0
        dd sp_1_m16400
        T80 0x3FFF, 0xC000000000000000
        T80 0xC00D, 0x8020000000000000      ; -16400: a denormal
        dd sp_0_inf
        T80 0x0000, 0x0000000000000000
        T80 0x7FFF, 0x8000000000000000      ; 0 * 2^inf: invalid
        dd sp_inf_minf
        T80 0x7FFF, 0x8000000000000000
        T80 0xFFFF, 0x8000000000000000      ; inf * 2^-inf: invalid
        dd sp_5_0p9
        T80 0x4001, 0xA000000000000000
        T80 0x3FFE, 0xE666666666666666      ; 0.9 truncates to 0
sp_1_3p7:   db "1,3.7", 0
sp_3_m1p5:  db "3,-1.5", 0
sp_1_20000: db "1,20000", 0
sp_1_m20000: db "1,-20000", 0
sp_1_m16400: db "1.5,-16400", 0
sp_0_inf:   db "0,inf", 0
sp_inf_minf: db "inf,-inf", 0
sp_5_0p9:   db "5,0.9", 0
; FPREM / FPREM1: a (ST0) rem b (ST1); exponent differences below 64
prem_pairs: dd 10
        dd pp_10_3
        T80 0x4002, 0xA000000000000000
        T80 0x4000, 0xC000000000000000
        dd pp_m10_3
        T80 0xC002, 0xA000000000000000
        T80 0x4000, 0xC000000000000000
        dd pp_10_m3
        T80 0x4002, 0xA000000000000000
        T80 0xC000, 0xC000000000000000
        dd pp_5_2
        T80 0x4001, 0xA000000000000000
        T80 0x4000, 0x8000000000000000
        dd pp_7_2
        T80 0x4001, 0xE000000000000000
        T80 0x4000, 0x8000000000000000
        dd pp_pi_e
        T80 0x4000, 0xC90FDAA22168C235
        T80 0x3FFE, 0xADF85458A2BB4A9A
        dd pp_1_inf
        T80 0x3FFF, 0x8000000000000000
        T80 0x7FFF, 0x8000000000000000
        dd pp_inf_1
        T80 0x7FFF, 0x8000000000000000
        T80 0x3FFF, 0x8000000000000000
        dd pp_1_0
        T80 0x3FFF, 0x8000000000000000
        T80 0x0000, 0x0000000000000000
        dd pp_big_pi
        T80 0x403C, 0xFFFFFFFFFFFFFFFF      ; 2^61 * 1.99..: quotient bits exercise C0 C3 C1
        T80 0x4000, 0xC90FDAA22168C235
pp_10_3:  db "10,3", 0
pp_m10_3: db "-10,3", 0
pp_10_m3: db "10,-3", 0
pp_5_2:   db "5,2", 0
pp_7_2:   db "7,2", 0
pp_pi_e:  db "pi,e/4", 0
pp_1_inf: db "1,inf", 0
pp_inf_1: db "inf,1", 0
pp_1_0:   db "1,0", 0
pp_big_pi: db "2^62-,pi", 0
; exponent differences of 64 and more: loop until C2=0, print the remainder only
prem_far: dd 3
        dd pf_1
        T80 0x4100, 0xC90FDAA22168C235
        T80 0x3FFF, 0xB504F333F9DE6484      ; sqrt 2
        dd pf_2
        T80 0x7FFE, 0x8000000000000001
        T80 0x3FFF, 0xC000000000000000
        dd pf_3
        T80 0x4400, 0xFEDCBA9876543210
        T80 0x0001, 0x8000000000000000
pf_1: db "2^258*pi/2,sqrt2", 0
pf_2: db "max-ish,1.5", 0
pf_3: db "2^1025*x,minnorm", 0
section .text

; unary_run: like pair_run, on the unary table (b unused)
t_unary:
    PAIROP "fsqrt", uvals, SWM_ARITH, {fsqrt}
    mov dword [modes], 4            ; RC only: PC does not apply to FRNDINT (see header)
    PAIROP "frndint", uvals, SWM_ARITH, {frndint}
    mov dword [modes], 1
    PAIROP "fabs", uvals, SWM_ARITH, {fabs}
    PAIROP "fchs", uvals, SWM_ARITH, {fchs}
    mov dword [modes], 8
    ret

t_special_ops:
    mov dword [modes], 4            ; RC only; PC does not apply
    PAIROP "fscale", scale_pairs, SWM_ARITH, {fscale}
    mov dword [modes], 1
    ; FXTRACT: ST0 <- significand, then the exponent below it; print both
    PAIROP "fxtract sig", uvals, SWM_ARITH, {fxtract}
    PAIROP "fxtract exp", uvals, SWM_ARITH, {fxtract}, {fstp st0}
    PAIROP "fprem", prem_pairs, SWM_CC, {fprem}
    PAIROP "fprem1", prem_pairs, SWM_CC & ~0x4300, {fprem1}    ; C0 C1 C3: see header
    PAIROP "fprem loop", prem_far, SWM_ARITH, call prem_loop
    PAIROP "fprem1 loop", prem_far, SWM_ARITH, call prem1_loop
    mov dword [modes], 8
    ; FPREM1 10,3: quotient 3 -> C0 C3 C1 = 0 1 1 (SDM FPREM1)
    fninit
    fld tword [prem_pairs + 4 + 14]
    fld tword [prem_pairs + 4 + 4]
    fprem1
    fnstsw ax
    fninit
    and ax, 0x4700
    cmp ax, 0x4200
    jne .q_bad
    HWCHECK_OK "fprem1 quotient bits"
    ret
.q_bad:
    HWCHECK_FAIL "fprem1 quotient bits"
    ret

prem_loop:
    fprem
    fnstsw ax
    test ah, 4                      ; C2: reduction incomplete
    jnz prem_loop
    ret
prem1_loop:
    fprem1
    fnstsw ax
    test ah, 4
    jnz prem1_loop
    ret

; ============================================================================
; compares: condition codes (C3 C2 C0 = 000 >, 001 <, 100 =, 111 unordered) and
; for FCOMI/FUCOMI ZF PF CF (OF SF AF cleared). FCOM* signal IE on any NaN,
; FUCOM* only on an SNaN (SDM FCOM/FUCOM).
; ============================================================================
section .rodata
align 4
cmp_pairs: dd 9
        dd cp_1_2
        T80 0x3FFF, 0x8000000000000000
        T80 0x4000, 0x8000000000000000
        dd cp_2_1
        T80 0x4000, 0x8000000000000000
        T80 0x3FFF, 0x8000000000000000
        dd cp_1_1
        T80 0x3FFF, 0x8000000000000000
        T80 0x3FFF, 0x8000000000000000
        dd cp_0_m0
        T80 0x0000, 0x0000000000000000
        T80 0x8000, 0x0000000000000000
        dd cp_1_qnan
        T80 0x3FFF, 0x8000000000000000
        T80 0x7FFF, 0xC000000000000000
        dd cp_snan_1
        T80 0x7FFF, 0x8000000000000001
        T80 0x3FFF, 0x8000000000000000
        dd cp_minf_inf
        T80 0xFFFF, 0x8000000000000000
        T80 0x7FFF, 0x8000000000000000
        dd cp_den_0
        T80 0x0000, 0x0000000000000001
        T80 0x0000, 0x0000000000000000
        dd cp_m1_m2
        T80 0xBFFF, 0x8000000000000000
        T80 0xC000, 0x8000000000000000
cp_1_2:   db "1,2", 0
cp_2_1:   db "2,1", 0
cp_1_1:   db "1,1", 0
cp_0_m0:  db "0,-0", 0
cp_1_qnan: db "1,qnan", 0
cp_snan_1: db "snan,1", 0
cp_minf_inf: db "-inf,inf", 0
cp_den_0: db "denormal,0", 0
cp_m1_m2: db "-1,-2", 0
section .text

section .data
cmp_stub: dd 0
cmp_name: dd 0
section .text

; cmp_run: for every pair: ST0 = a, ST1 = b, stub, print SW and EFLAGS
cmp_run:
    pushad
    mov ebx, cmp_pairs + 4
    mov edi, [cmp_pairs]
.pair:
    fninit
    fld tword [ebx + 14]
    fld tword [ebx + 4]
    push dword FL_STATUS            ; every status flag set: FCOMI must clear OF SF AF
    popfd
    call [cmp_stub]
    pushfd
    pop ecx
    fnstsw ax
    fninit
    PUTSP [cmp_name]
    call print_sp
    PUTSP [ebx]
    PUTS ":"
    mov edx, SWM_CC
    call print_sw
    PUTS " fl="
    and ecx, ZF|PF|CF               ; OF SF AF: see header
    PUTHEX ecx, 3
    call print_nl
    add ebx, 24
    dec edi
    jnz .pair
    popad
    ret

%macro CMPOP 2-*
    jmp %%go
%%stub:
    %rotate 1
    %rep %0 - 1
    %1
    %rotate 1
    %endrep
    ret
[section .rodata]
%%name: db %1, 0
__?SECT?__
%%go:
    mov dword [cmp_stub], %%stub
    mov dword [cmp_name], %%name
    call cmp_run
%endmacro

t_compare:
    CMPOP "fcom st1", {fcom st1}
    CMPOP "fcomp st1", {fcomp st1}
    CMPOP "fcompp", {fcompp}
    CMPOP "fucom st1", {fucom st1}
    CMPOP "fucomp st1", {fucomp st1}
    CMPOP "fucompp", {fucompp}
    CMPOP "fcomi st1", {fcomi st0, st1}
    CMPOP "fcomip st1", {fcomip st0, st1}
    CMPOP "fucomi st1", {fucomi st0, st1}
    CMPOP "fucomip st1", {fucomip st0, st1}
    CMPOP "ftst", {ftst}
    CMPOP "fcom m32 1.0", {fcom dword [m32_one]}
    CMPOP "fcomp m64 -2.0", {fcomp qword [m64_mtwo]}
    CMPOP "ficom m16 1", {ficom word [m16_one]}
    CMPOP "ficomp m32 -1", {ficomp dword [m32_mone]}
    ret

section .rodata
align 8
m32_one:  dd 0x3F800000
m64_mtwo: dq 0xC000000000000000
m16_one:  dw 1
m32_mone: dd -1
section .text

; ============================================================================
; FXAM: class in C3 C2 C0 and the sign in C1 (SDM FXAM table); pseudo-denormals
; are classed as denormals, unnormals and pseudo-NaN/infinities as unsupported
; ============================================================================
section .rodata
align 4
xam_vals: dd 13
        dd xn_p0
        T80 0x0000, 0x0000000000000000
        dd xn_m0
        T80 0x8000, 0x0000000000000000
        dd xn_den
        T80 0x0000, 0x0000000000000001
        dd xn_mden
        T80 0x8000, 0x7FFFFFFFFFFFFFFF
        dd xn_pden
        T80 0x0000, 0x8000000000000001
        dd xn_norm
        T80 0xBFFF, 0x8000000000000000
        dd xn_inf
        T80 0x7FFF, 0x8000000000000000
        dd xn_minf
        T80 0xFFFF, 0x8000000000000000
        dd xn_qnan
        T80 0x7FFF, 0xC000000000000000
        dd xn_snan
        T80 0xFFFF, 0x8000000000000001
        dd xn_unnorm
        T80 0x4000, 0x4000000000000000
        dd xn_pinf
        T80 0x7FFF, 0x0000000000000000
        dd xn_pnan
        T80 0xFFFF, 0x4000000000000000
xn_p0:   db "+0", 0
xn_m0:   db "-0", 0
xn_den:  db "denormal", 0
xn_mden: db "-denormal", 0
xn_pden: db "pseudo-denormal", 0
xn_norm: db "-1", 0
xn_inf:  db "inf", 0
xn_minf: db "-inf", 0
xn_qnan: db "qnan", 0
xn_snan: db "-snan", 0
xn_unnorm: db "unnormal", 0
xn_pinf: db "pseudo-inf", 0
xn_pnan: db "-pseudo-nan", 0
section .text

t_fxam:
    mov ebx, xam_vals + 4
    mov edi, [xam_vals]
.l:
    fninit
    fld tword [ebx + 4]
    fxam
    fnstsw ax
    PUTS "fxam "
    PUTSP [ebx]
    PUTS ":"
    mov edx, SWM_CC
    call print_sw
    ; the tag an FNSTENV reports for it: 00 valid, 01 zero, 10 special
    fnstenv [env]
    mov eax, [env + 8]
    shr eax, 14
    and eax, 3
    PUTS " tag="
    PUTHEX eax, 1
    call print_nl
    add ebx, 14
    dec edi
    jnz .l
    fninit
    fxam
    fnstsw ax
    PUTS "fxam empty:"
    mov edx, SWM_CC & ~0x0200      ; C1 is the sign of a stale register
    call print_sw
    call print_nl
    ret

; ============================================================================
; FCMOVcc (P6): the eight conditions over CF ZF PF
; ============================================================================
%macro FCMOV_ONE 2                  ; condition, bit
    fninit
    fld1
    fldz
    push edx
    popfd
    fcmov%1 st0, st1
    ftst                            ; C3 = 1 if ST0 is still 0
    fnstsw ax
    test ah, 0x40
    jnz %%n
    or ebx, 1 << %2
%%n:
%endmacro

t_fcmov:
    PUTLN "fcmov bits: b e be u nb ne nbe nu"
    xor ebp, ebp
.l:
    mov edx, 2
    test ebp, 1
    jz .a
    or edx, CF
.a: test ebp, 2
    jz .b
    or edx, ZF
.b: test ebp, 4
    jz .c
    or edx, PF
.c: xor ebx, ebx
    FCMOV_ONE b, 0
    FCMOV_ONE e, 1
    FCMOV_ONE be, 2
    FCMOV_ONE u, 3
    FCMOV_ONE nb, 4
    FCMOV_ONE ne, 5
    FCMOV_ONE nbe, 6
    FCMOV_ONE nu, 7
    PUTS "fcmov fl="
    PUTHEX edx, 3
    PUTS ": "
    PUTHEX ebx, 2
    call print_nl
    inc ebp
    cmp ebp, 8
    jb .l
    fninit
    ret

; ============================================================================
; register stack: FXCH, FFREE, FINCSTP/FDECSTP (move TOP, tags untouched),
; FLD/FST ST(i); each state shown as `cw sw tw st0..st7` from an FNSAVE
; image (empty registers as --), then restored with FRSTOR
; ============================================================================
section .bss
alignb 16
env:    resb 32
save:   resb 112
save2:  resb 112
section .text

; fpu_report "name": FNSAVE, print, FRSTOR (FNSAVE reinitialises the FPU)
%macro FPU_REPORT 1
    PUTS {%1, ":"}
    call fpu_report
%endmacro

fpu_report:
    pushad
    fnsave [save]
    PUTS " cw="
    PUTHEX [save], 4
    PUTS " sw="
    mov eax, [save + 4]
    and eax, SWM_ARITH
    PUTHEX eax, 4
    PUTS " tw="
    PUTHEX [save + 8], 4
    ; ST(i) is physical register (TOP + i) mod 8; its tag is TW bits 2*phys
    movzx ebx, word [save + 4]
    shr ebx, 11
    and ebx, 7                      ; TOP
    xor ecx, ecx
.st:
    PUTS " st"
    mov eax, ecx
    PUTHEX eax, 1
    PUTS "="
    lea edx, [ebx + ecx]
    and edx, 7
    movzx eax, word [save + 8]
    push ecx
    lea ecx, [edx * 2]
    shr eax, cl
    pop ecx
    and eax, 3
    cmp eax, 3
    jne .full
    PUTS "--"
    jmp .next
.full:
    lea esi, [ecx * 4 + ecx]
    lea esi, [save + 28 + esi * 2]
    call pr80
.next:
    inc ecx
    cmp ecx, 8
    jb .st
    call print_nl
    frstor [save]
    popad
    ret

t_stack_mgmt:
    fninit
    fld1
    fldpi
    fldl2e
    FPU_REPORT "3 loads"
    fxch st2
    FPU_REPORT "fxch st2"
    fxch
    FPU_REPORT "fxch"
    fst st2
    FPU_REPORT "fst st2"
    ffree st1
    FPU_REPORT "ffree st1"
    fincstp
    FPU_REPORT "fincstp"
    fdecstp
    fdecstp
    FPU_REPORT "fdecstp x2"
    fld st1                         ; reads only registers in use (see header)
    FPU_REPORT "fld st1"
    fstp st2                        ; ...and stores only into registers in use
    FPU_REPORT "fstp st2"
    fincstp
    FPU_REPORT "fincstp"
    fstp st0
    FPU_REPORT "fstp st0"
    fincstp
    FPU_REPORT "fincstp"
    ; FNSTSW AX / m16 and FNSTCW/FLDCW
    fninit
    fld1
    fldz
    fdiv st0, st0                   ; 0/0: IE (masked)
    fnstsw ax
    movzx eax, ax
    and eax, SWM_ARITH
    KV "fnstsw ax after 0/0", eax, 4
    mov word [scratch32], 0xEEEE
    fnstsw [scratch32]
    movzx eax, word [scratch32]
    and eax, SWM_ARITH
    KV "fnstsw m16", eax, 4
    fnclex
    fnstsw ax
    movzx eax, ax
    and eax, SWM_ARITH
    KV "fnclex then fnstsw", eax, 4
    mov word [scratch32], 0x0E72    ; no reserved bit differs from FNINIT's 037F
    fldcw [scratch32]
    fnstcw [scratch32 + 2]
    movzx eax, word [scratch32 + 2]
    KV "fldcw 0e72/fnstcw", eax, 4
    fninit
    fnstcw [scratch32]
    movzx eax, word [scratch32]
    KV "fninit cw", eax, 4
    fnstsw ax
    movzx eax, ax
    KV "fninit sw", eax, 4
    ret

; ============================================================================
; FNSAVE/FRSTOR, FNSTENV/FLDENV: masked images (see header) checksummed
; ============================================================================
; masked_image_sum: ESI = image, ECX = 28 (env) or 108 (save) -> EAX
masked_image_sum:
    push esi
    push edi
    push ecx
    push ebx
    push edx
    mov edi, save2
    push ecx
    rep movsb
    pop ecx
    mov word [save2 + 2], 0
    mov word [save2 + 6], 0
    mov word [save2 + 10], 0
    mov dword [save2 + 12], 0       ; FIP
    mov dword [save2 + 16], 0       ; FCS, FOP
    mov dword [save2 + 20], 0       ; FDP
    mov dword [save2 + 24], 0       ; FDS
    cmp ecx, 108
    jne .sum
    movzx ebx, word [save2 + 4]
    shr ebx, 11
    and ebx, 7
    xor edx, edx                    ; ST(i)
.reg:
    push ecx
    lea ecx, [ebx + edx]
    and ecx, 7
    add ecx, ecx
    movzx eax, word [save2 + 8]
    shr eax, cl
    pop ecx
    and eax, 3
    cmp eax, 3
    jne .keep
    lea eax, [edx * 4 + edx]
    lea eax, [save2 + 28 + eax * 2]
    mov dword [eax], 0
    mov dword [eax + 4], 0
    mov word [eax + 8], 0
.keep:
    inc edx
    cmp edx, 8
    jb .reg
.sum:
    mov esi, save2
    call adler32
    pop edx
    pop ebx
    pop ecx
    pop edi
    pop esi
    ret

section .rodata
align 4
; an environment to load: CW, SW (TOP=5, C3 C0 set, PE), TW (physical registers
; 3..6 in use: ST0, ST1, ST6, ST7), pointers, with junk in the reserved halves
env_image:
        dd 0xABCD0A7F, 0x12346920, 0x5678C03F
        dd 0x11111111, 0x22222222, 0x33333333, 0x44444444
section .text

t_env:
    fninit
    fldcw [cw_u64]
    fld1
    fldpi
    fld tword [pairs + 4 + 6 * 24 + 4] ; the smallest normal
    fldz
    fld1
    fldz
    fdivp st1, st0                  ; ZE (masked): +inf in ST0
    fnsave [save]
    movzx eax, word [save]
    KV "fnsave cw", eax, 4
    mov eax, [save + 4]
    and eax, SWM_ARITH
    KV "fnsave sw", eax, 4
    movzx eax, word [save + 8]
    KV "fnsave tw", eax, 4
    mov esi, save
    mov ecx, 108
    call masked_image_sum
    KV "fnsave image (masked)", eax
    ; FNSAVE leaves the FPU as FNINIT does
    fnstcw [scratch32]
    movzx eax, word [scratch32]
    KV "cw after fnsave", eax, 4
    fnstsw ax
    movzx eax, ax
    KV "sw after fnsave", eax, 4
    frstor [save]
    FPU_REPORT "after frstor"
    ; FNSTENV then masks every exception (SDM FSTENV). FNCLEX first: unmasking an
    ; exception whose flag is set would leave it pending (SDM FLDCW).
    fnclex
    fldcw [cw_ze_unmasked]
    fnstenv [env]
    movzx eax, word [env]
    KV "fnstenv cw", eax, 4
    mov esi, env
    mov ecx, 28
    call masked_image_sum
    KV "fnstenv image (masked)", eax
    fnstcw [scratch32]
    cmp word [scratch32], 0x037F
    jne .nomask
    HWCHECK_OK "fnstenv masks all exceptions"
    jmp .masked
.nomask:
    HWCHECK_FAIL "fnstenv masks all exceptions"
.masked:
    fldcw [cw_n64]
    ; FLDENV: CW, SW (TOP) and the empty/non-empty tags are loaded; a stored tag
    ; word is recomputed from the register contents. FNINIT leaves the data
    ; registers alone, so they are first given known contents.
    fninit
    fldz
    fld1
    fldpi
    fldl2e
    fld tword [xam_vals + 4 + 2 * 14 + 4]   ; a denormal
    fldl2t
    fldlg2
    fldln2
    fninit
    fldenv [env_image]
    FPU_REPORT "after fldenv"
    fnstenv [env]
    movzx eax, word [env + 8]
    KV "fnstenv tw after fldenv", eax, 4
    fninit
    ret

section .rodata
cw_ze_unmasked: dw 0x037B
section .text

; ============================================================================
; an unmasked exception (ZE, CR0.NE=1): the status word gets ZE ES B, and the
; next FWAIT raises #MF (vector 16) with EIP at the FWAIT (SDM Vol. 1 8.7,
; Vol. 3A 6.15 #MF). The destination is not printed (see header).
; ============================================================================
t_unmasked_mf:
    fninit
    fldcw [cw_ze_unmasked]
    fld1
    fldz
    ; a non-popping form: with the exception unmasked the hardware keeps TOP and
    ; the destination (SDM Vol. 1 8.5.3), QEMU pops and writes
    fdivr st0, st1
    fnstsw ax
    movzx eax, ax
    and eax, SWM_ARITH
    KV "unmasked ze sw", eax, 4
    PUTS "fwait: "
    EXPECT_FAULT .r
    fwait
    NO_FAULT
.r:
    fnstsw ax
    movzx eax, ax
    and eax, SWM_ARITH
    KV "sw in #MF handler", eax, 4
    fnclex
    fwait                           ; nothing pending now
    fnstsw ax
    movzx eax, ax
    and eax, SWM_ARITH
    KV "sw after fnclex", eax, 4
    fninit
    ; a masked exception is never taken, whatever the status word says
    fld1
    fldz
    fdivp st1, st0
    PUTS "masked ze fwait: "
    EXPECT_FAULT .r2
    fwait
    NO_FAULT
.r2:
    fninit
    ret

; ============================================================================
; FSIN FCOS FSINCOS FPTAN FPATAN F2XM1 FYL2X FYL2XP1: executed for their stack
; effects only (see header); FNINIT discards their values and flags
; ============================================================================
t_transcendental:
    fninit
    fld tword [pairs + 4 + 2 * 24 + 4]  ; pi-ish
    fsin
    fcos
    fsincos                         ; pushes: ST0 = cos, ST1 = sin
    fptan                           ; pushes 1.0
    fpatan                          ; pops
    fld1
    fscale
    fld1
    fxch
    f2xm1
    fyl2x                           ; pops
    fld1
    fxch
    fyl2xp1                         ; pops
    fnstsw ax
    shr eax, 11
    and eax, 7
    KV "top after transcendentals", eax, 1
    fninit
    ret
