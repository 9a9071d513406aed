; paging.asm - 32-bit paging of an i686 (SDM Vol. 3A ch. 4, "32-bit paging"):
; 4 KiB pages through page tables and 4 MiB pages (CR4.PSE), page faults with
; CR2 and the error code (P, W/R, U/S) for not-present pages, writes to
; read-only pages from ring 0 with CR0.WP clear and set and from ring 3, ring-3
; access to supervisor pages, accesses and instructions that straddle into a
; not-present page; the accessed and dirty bits; INVLPG and CR3 reloads making
; a changed PTE take effect; global pages (CR4.PGE) dropped by INVLPG and by
; clearing PGE; a not-present PTE made present by the #PF handler
; without invalidation; and self-modifying code through a second mapping.
;
; Only architectural TLB behaviour is tested: every PTE/PDE change that could
; be cached is followed by INVLPG or a CR3 load before it is relied on (SDM
; 4.10.4). Whether a stale translation is used without one is not tested.
;
; Self-modifying code (SDM Vol. 3A 8.1.3 and 11.6): a store to code followed by
; a jump, or by a serializing instruction, guarantees the new code executes,
; also when the store went through another linear address of the same physical
; page (the cache check is by physical address). Without a jump, P6 detects a
; store into already-prefetched instructions only by their linear address, so a
; store through the alias to the very next instruction is NOT tested; the same
; store through the executing linear address is (11.6: "the P6 family ... check
; whether a write to a code segment may modify an instruction that has been
; prefetched for execution ... based on the linear address").
;
; QEMU vs hardware: nothing known in what this guest prints. (QEMU's precise
; self-modifying-code handling also makes the untested alias-without-jump case
; see the new code; hardware need not.)

%define GUEST_NAME "paging"
%include "common.inc"

PTE_P   equ 0x001
PTE_RW  equ 0x002
PTE_US  equ 0x004
PTE_A   equ 0x020
PTE_D   equ 0x040
PDE_PS  equ 0x080
PTE_ADMASK equ 0x0E7                ; P RW US A D PS: what the lines show

TEST_NP     equ 0x00800000          ; not present
TEST_RO     equ 0x00801000          ; user, read-only
TEST_SUP    equ 0x00802000          ; supervisor, read/write
TEST_AD     equ 0x00803000          ; user, read/write: accessed/dirty
TEST_INV    equ 0x00804000          ; remapped between two frames
FRAME_1     equ 0x00805000
FRAME_2     equ 0x00806000
TEST_DEMAND equ 0x00807000          ; not present until the #PF handler maps it
SMC_A       equ 0x00A00000          ; code page, identity mapped
SMC_B       equ 0x00A01000          ; the same physical page, writable alias
RO_DIR_BASE equ 0x00C00000          ; 12-16 MiB: PDE read-only, PTEs writable
BIG_LINEAR  equ 0x01800000          ; a 4 MiB page ...
BIG_PHYS    equ 0x00C00000          ; ... of these 4 MiB, supervisor only

main:
    call setup_paging
    call t_not_present
    call t_protection
    call t_straddle
    call t_accessed_dirty
    call t_invlpg
    call t_global
    call t_demand
    call t_pse
    call t_smc
    ret

; pte_of: EAX = linear address (below 16 MiB) -> EDI = address of its PTE
pte_of:
    mov edi, eax
    shr edi, 12
    lea edi, [page_tables + edi * 4]
    ret

; PTE_SET linear, value : write a PTE and invalidate the translation
%macro PTE_SET 2
    mov eax, %1
    call pte_of
    mov dword [edi], %2
    invlpg [%1]
%endmacro

setup_paging:
    ; identity map 0-16 MiB, user read/write
    mov edi, page_tables
    mov eax, PTE_P | PTE_RW | PTE_US
    mov ecx, 4096
.pt:stosd
    add eax, 0x1000
    loop .pt
    mov edi, page_dir
    xor eax, eax
    mov ecx, 1024
    rep stosd
    mov eax, page_tables + (PTE_P | PTE_RW | PTE_US)
    mov [page_dir + 0 * 4], eax
    add eax, 0x1000
    mov [page_dir + 1 * 4], eax
    add eax, 0x1000
    mov [page_dir + 2 * 4], eax
    add eax, 0x1000
    and eax, ~PTE_RW                ; 12-16 MiB: the directory entry denies writes
    mov [page_dir + 3 * 4], eax
    mov dword [page_dir + (BIG_LINEAR >> 22) * 4], BIG_PHYS | PDE_PS | PTE_P | PTE_RW
    ; the test pages
    mov eax, TEST_NP
    call pte_of
    mov dword [edi], 0
    mov eax, TEST_RO
    call pte_of
    mov dword [edi], TEST_RO | PTE_P | PTE_US
    mov eax, TEST_SUP
    call pte_of
    mov dword [edi], TEST_SUP | PTE_P | PTE_RW
    mov eax, TEST_INV
    call pte_of
    mov dword [edi], FRAME_1 | PTE_P | PTE_RW | PTE_US
    mov eax, TEST_DEMAND
    call pte_of
    mov dword [edi], 0
    mov eax, SMC_B
    call pte_of
    mov dword [edi], SMC_A | PTE_P | PTE_RW | PTE_US
    mov dword [TEST_SUP], 0x50505050
    mov dword [TEST_RO], 0x0F0F0F0F
    mov dword [FRAME_1], 0x11111111
    mov dword [FRAME_2], 0x22222222
    mov dword [TEST_DEMAND], 0xDDDDDDDD
    mov dword [BIG_PHYS + 0x123450], 0xB16B16B1
    ; CR4.PSE before the first use of a PS=1 directory entry
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, page_dir
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp .on                         ; SDM 9.9.1: a jump right after setting PG
.on:
    mov eax, cr0
    KV "cr0", eax
    mov eax, cr4
    KV "cr4", eax
    ret

; TRY "name", insn... : `name: exc: ...` (with CR2 for #PF) or `name: exc: none`
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

; TRY3 "name", label : the same for code run in ring 3
%macro TRY3 2
    PUTS {%1, ": "}
    EXPECT_FAULT %%r
    mov eax, %2
    mov edx, 2
    call call_ring3
    NO_FAULT
%%r:
    push dword SEL_KDATA
    pop ds
    push dword SEL_KDATA
    pop es
%endmacro

; KVPTE "name", linear : `name: pte=... pde=...` (P RW US A D PS bits)
%macro KVPTE 2
    mov eax, %2
    call pte_of
    PUTS {%1, ": pte="}
    mov eax, [edi]
    and eax, PTE_ADMASK
    PUTHEX eax, 3
    PUTS " pde="
    mov eax, [page_dir + (%2 >> 22) * 4]
    and eax, PTE_ADMASK & ~PTE_D    ; D is not used in a PDE that maps a table
    PUTHEX eax, 3
    call print_nl
%endmacro

; ============================================================================
; not present: read, write, fetch; error code P=0 (SDM 4.7)
; ============================================================================
t_not_present:
    TRY "read not present", {mov eax, [TEST_NP]}
    TRY "write not present", {mov dword [TEST_NP + 0x10], 1}
    TRY "fetch not present", {call TEST_NP}
    TRY3 "ring3 read not present", r3_read_np
    ret

r3_read_np:
    mov eax, [TEST_NP + 4]
    int RING3_RETURN_VEC

; ============================================================================
; protection: R/W and U/S of PTE and PDE combine (the most restrictive wins:
; SDM 4.6); supervisor writes ignore R/W while CR0.WP=0
; ============================================================================
t_protection:
    TRY "cpl0 read ro", {mov eax, [TEST_RO]}
    TRY "cpl0 write ro, wp=0", {mov dword [TEST_RO + 8], 0x12345678}
    KV "ro page after the write", [TEST_RO + 8]
    mov eax, cr0
    or eax, 0x10000                 ; WP
    mov cr0, eax
    TRY "cpl0 write ro, wp=1", {mov dword [TEST_RO + 8], 0x9ABCDEF0}
    KV "ro page after the fault", [TEST_RO + 8]
    TRY "cpl0 write ro directory, wp=1", {mov dword [RO_DIR_BASE + 0x100], 1}
    mov eax, cr0
    and eax, ~0x10000
    mov cr0, eax
    TRY "cpl0 write ro directory, wp=0", {mov dword [RO_DIR_BASE + 0x100], 1}
    TRY "cpl0 read supervisor", {mov eax, [TEST_SUP]}
    TRY3 "ring3 read ro", r3_read_ro
    TRY3 "ring3 write ro", r3_write_ro
    TRY3 "ring3 write ro directory", r3_write_rodir
    TRY3 "ring3 read supervisor", r3_read_sup
    TRY3 "ring3 write supervisor", r3_write_sup
    TRY3 "ring3 fetch supervisor", r3_fetch_sup
    TRY3 "ring3 read supervisor 4m page", r3_read_big
    ret

r3_read_ro:
    mov eax, [TEST_RO]
    int RING3_RETURN_VEC
r3_write_ro:
    mov dword [TEST_RO + 12], 1
    int RING3_RETURN_VEC
r3_write_rodir:
    mov dword [RO_DIR_BASE + 0x104], 1
    int RING3_RETURN_VEC
r3_read_sup:
    mov eax, [TEST_SUP]
    int RING3_RETURN_VEC
r3_write_sup:
    mov dword [TEST_SUP], 1
    int RING3_RETURN_VEC
r3_fetch_sup:
    call TEST_SUP
    int RING3_RETURN_VEC
r3_read_big:
    mov eax, [BIG_LINEAR]
    int RING3_RETURN_VEC

; ============================================================================
; an access or an instruction that crosses into a not-present page faults with
; CR2 at the first byte of that page; the EIP of an instruction fault is the
; instruction's start
; ============================================================================
t_straddle:
    TRY "dword read across into not present", {mov eax, [TEST_NP - 2]}
    TRY "word write across into not present", {mov word [TEST_NP - 1], 0x1234}
    ; mov eax, imm32 whose last 2 bytes lie on the not-present page
    mov edi, TEST_NP - 3
    mov byte [edi], 0xB8
    mov word [edi + 1], 0x5A5A
    TRY "instruction across into not present", {call TEST_NP - 3}
    ret

; ============================================================================
; accessed and dirty: a read sets A in the PDE and PTE, a write also D in the
; PTE (SDM 4.8); a 4 MiB page's PDE gets both
; ============================================================================
t_accessed_dirty:
    PTE_SET TEST_AD, TEST_AD | PTE_P | PTE_RW | PTE_US
    and dword [page_dir + (TEST_AD >> 22) * 4], ~PTE_A
    mov eax, cr3                    ; the PDE's A may be cached too
    mov cr3, eax
    KVPTE "a/d before", TEST_AD
    mov eax, [TEST_AD]
    KVPTE "a/d after read", TEST_AD
    mov dword [TEST_AD + 4], eax
    KVPTE "a/d after write", TEST_AD
    PTE_SET TEST_AD, TEST_AD | PTE_P | PTE_RW | PTE_US
    mov dword [TEST_AD + 8], eax
    KVPTE "a/d write first", TEST_AD
    ; the dirty bit of a page written from ring 3
    PTE_SET TEST_AD, TEST_AD | PTE_P | PTE_RW | PTE_US
    mov eax, r3_write_ad
    mov edx, 2
    call call_ring3
    KVPTE "a/d after ring3 write", TEST_AD
    ; a fault sets no dirty bit: a write to the read-only page (WP=1)
    PTE_SET TEST_RO, TEST_RO | PTE_P | PTE_US | PTE_A
    mov eax, cr0
    or eax, 0x10000
    mov cr0, eax
    TRY "write ro for a/d", {mov dword [TEST_RO + 8], 1}
    mov eax, cr0
    and eax, ~0x10000
    mov cr0, eax
    KVPTE "a/d ro after faulting write", TEST_RO
    ret

r3_write_ad:
    mov dword [TEST_AD + 12], 0x33
    int RING3_RETURN_VEC

; ============================================================================
; INVLPG and CR3 loads: a changed PTE takes effect once its translation is
; invalidated (SDM 4.10.4.1)
; ============================================================================
t_invlpg:
    KV "inv read frame 1", [TEST_INV]
    PTE_SET TEST_INV, FRAME_2 | PTE_P | PTE_RW | PTE_US
    KV "inv after invlpg", [TEST_INV]
    mov eax, TEST_INV
    call pte_of
    mov dword [edi], FRAME_1 | PTE_P | PTE_RW | PTE_US
    mov eax, cr3
    mov cr3, eax
    KV "inv after cr3 load", [TEST_INV]
    ; INVLPG of an address whose PTE is not present, and of one never used
    invlpg [TEST_NP]
    invlpg [0x00FFF000]
    KV "inv still frame 1", [TEST_INV]
    ; a page made not present faults after INVLPG
    PTE_SET TEST_INV, 0
    TRY "read after unmapping", {mov eax, [TEST_INV]}
    PTE_SET TEST_INV, FRAME_1 | PTE_P | PTE_RW | PTE_US
    ret

; ============================================================================
; global pages (CR4.PGE, G in the PTE). A CR3 load need not drop a global
; translation and may (not tested, see the header); INVLPG, and a write to CR4
; that changes PGE, must (SDM 4.10.4.1). With PGE on, a CR3 load still drops
; the translations of pages without G.
; ============================================================================
PTE_G   equ 0x100
CR4_PGE equ 0x080

t_global:
    mov eax, cr4
    or eax, CR4_PGE
    mov cr4, eax
    KV "pge read frame 1", [TEST_INV]
    mov eax, TEST_INV
    call pte_of
    mov dword [edi], FRAME_2 | PTE_P | PTE_RW | PTE_US
    mov eax, cr3
    mov cr3, eax
    KV "pge non-global after cr3 load", [TEST_INV]
    PTE_SET TEST_INV, FRAME_1 | PTE_P | PTE_RW | PTE_US | PTE_G
    KV "global read frame 1", [TEST_INV]
    PTE_SET TEST_INV, FRAME_2 | PTE_P | PTE_RW | PTE_US | PTE_G
    KV "global after invlpg", [TEST_INV]
    mov eax, TEST_INV
    call pte_of
    mov dword [edi], FRAME_1 | PTE_P | PTE_RW | PTE_US | PTE_G
    mov eax, cr4
    and eax, ~CR4_PGE
    mov cr4, eax
    KV "global after pge cleared", [TEST_INV]
    PTE_SET TEST_INV, FRAME_1 | PTE_P | PTE_RW | PTE_US
    ret

; ============================================================================
; a not-present PTE is never cached, so making it present needs no INVLPG
; (SDM 4.10.2.3, 4.10.4.3): the #PF handler maps TEST_DEMAND and restarts the
; faulting instruction
; ============================================================================
pf_map_demand:
    cmp dword [ebp + FR_VEC], 14
    jne .no
    mov eax, cr2
    and eax, ~0xFFF
    cmp eax, TEST_DEMAND
    jne .no
    PUTS "demand #pf: err="
    PUTHEX [ebp + FR_ERR], 4
    PUTS " cr2="
    mov eax, cr2
    PUTHEX eax
    call print_nl
    mov eax, TEST_DEMAND
    call pte_of
    mov dword [edi], TEST_DEMAND | PTE_P | PTE_RW | PTE_US
    mov eax, HOOK_RESUME
    ret
.no:
    xor eax, eax
    ret

t_demand:
    mov dword [exc_hook], pf_map_demand
    mov ebx, 0x12345678
    mov eax, [TEST_DEMAND + 0x20]   ; faults, mapped, restarted
    mov ecx, [TEST_DEMAND]
    mov dword [exc_hook], 0
    KV "demand read", ecx
    KV "demand ebx kept", ebx
    KVPTE "demand a/d", TEST_DEMAND
    ret

; ============================================================================
; 4 MiB pages (CR4.PSE, PDE.PS): the offset is the low 22 bits; A and D are set
; in the PDE
; ============================================================================
t_pse:
    and dword [page_dir + (BIG_LINEAR >> 22) * 4], ~(PTE_A | PTE_D)
    invlpg [BIG_LINEAR + 0x123450]
    mov eax, [page_dir + (BIG_LINEAR >> 22) * 4]
    and eax, PTE_ADMASK
    KV "4m pde before", eax, 3
    KV "4m read", [BIG_LINEAR + 0x123450]
    mov eax, [page_dir + (BIG_LINEAR >> 22) * 4]
    and eax, PTE_ADMASK
    KV "4m pde after read", eax, 3
    mov dword [BIG_LINEAR + 0x3FFFFC], 0x4D4D4D4D
    mov eax, [page_dir + (BIG_LINEAR >> 22) * 4]
    and eax, PTE_ADMASK
    KV "4m pde after write", eax, 3
    KV "4m write seen at its frame", [BIG_PHYS + 0x3FFFFC]
    TRY "read just past the 4m page (no pde)", {mov eax, [BIG_LINEAR + 0x400000]}
    ret

; ============================================================================
; self-modifying code (see header). The code page is at SMC_A; SMC_B maps the
; same frame. Each case patches an immediate or an opcode and reports EAX.
; ============================================================================
; copies of these templates run at SMC_A + offset
smc_templates:
; 1: patch through the alias B, then JMP to the patched instruction
smc1:
    mov byte [SMC_B + (smc1.imm - smc_templates)], bl
    jmp short .next
.next:
    db 0xB8                         ; mov eax, imm32
.imm:
    dd 0x11111111
    ret
; 2: patch the very next instruction through its own linear address, no jump
smc2:
    mov byte [SMC_A + (smc2.imm - smc_templates)], bl
    db 0xB8
.imm:
    dd 0x22222222
    ret
; 3: patch an opcode through the alias B, then serialize (CPUID) and fall through
smc3:
    mov byte [SMC_B + (smc3.op - smc_templates)], bl
    push ebx
    xor eax, eax
    cpuid
    pop ebx
    mov eax, 0x30
.op:
    inc eax                         ; 0x40; patched to 0x48 (dec eax)
    ret
; 4: a function patched from outside between calls (a CALL is a jump)
smc4:
    mov eax, 0x44444444
    ret
smc_templates_end:

SMC4_IMM equ smc4 - smc_templates + 1

; run the template at label %1 from its SMC_A copy with BL = %2; print EAX
%macro SMC_RUN 3
    mov bl, %2
    mov eax, SMC_A + (%1 - smc_templates)
    call eax
    KV %3, eax
%endmacro

t_smc:
    mov esi, smc_templates
    mov edi, SMC_B                  ; written through the alias
    mov ecx, smc_templates_end - smc_templates
    rep movsb
    ; each runs twice: first with its own bytes (the code is now translated or
    ; cached), then with a new patch value
    SMC_RUN smc1, 0x11, "smc alias+jmp first"
    SMC_RUN smc1, 0xA1, "smc alias+jmp patched"
    SMC_RUN smc2, 0x22, "smc next insn first"
    SMC_RUN smc2, 0xA2, "smc next insn patched"
    SMC_RUN smc3, 0x40, "smc alias+cpuid inc"
    SMC_RUN smc3, 0x48, "smc alias+cpuid dec"
    mov eax, SMC_A + (smc4 - smc_templates)
    call eax
    KV "smc call first", eax
    mov dword [SMC_B + SMC4_IMM], 0x4A4A4A4A
    mov eax, SMC_A + (smc4 - smc_templates)
    call eax
    KV "smc call after patch via alias", eax
    ; a loop whose body is patched by its own last iteration
    mov ecx, 3
    xor edx, edx
    mov eax, SMC_A + (smc4 - smc_templates)
.loop:
    push ecx
    call eax
    add edx, eax
    mov dword [SMC_B + SMC4_IMM], 1
    mov eax, SMC_A + (smc4 - smc_templates)
    pop ecx
    loop .loop
    KV "smc loop sum", edx
    ret

section .bss
alignb 4096
page_dir:    resb 4096
page_tables: resb 4 * 4096
