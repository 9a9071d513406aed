// Protected-mode system behaviour of the core, pinned by tiny guests assembled here with
// nasm: each builds its GDT/IDT/TSS, exercises one mechanism (task switches, gates, rings,
// V86, the I/O bitmap, double and triple faults) and prints what the architecture says it
// must see on the 0xE9 debug console. Expected values are the SDM's (Vol. 3 chapters 5-7
// and 20, the Vol. 2 pseudocode), not another emulator's. QEMU 7.2 prints the same for
// all of them but two: it leaves EXT out of error codes raised while delivering an
// exception, and after a task switch's commit point it corrupts state differently (the
// SDM allows any corruption there; the core follows Bochs).
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTestGuest, type TestGuestResult } from '../src/testbed.ts';
import { Machine } from '../src/machine.ts';
import { DebugConsole, DebugExit } from '../src/devices/debug-ports.ts';
import { loadMultiboot } from '../src/loaders/multiboot.ts';

let hasNasm = true;
try {
  execFileSync('nasm', ['-v'], { stdio: 'ignore' });
} catch {
  hasNasm = false;
}

function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-pm-'));
  try {
    writeFileSync(join(dir, 'guest.asm'), source);
    try {
      execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 'guest.bin'), join(dir, 'guest.asm')], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { stderr?: Buffer };
      throw new Error(`nasm failed:\n${err.stderr?.toString() ?? e}`);
    }
    return new Uint8Array(readFileSync(join(dir, 'guest.bin')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The scaffolding every guest shares, loaded flat at 1 MiB and entered in 32-bit flat
 * protected mode. GDT: 0x08 ring-0 code, 0x10 ring-0 data, 0x1B ring-3 code, 0x23 ring-3
 * data (the SYSENTER layout), 0x28 the main 32-bit TSS (with a full I/O bitmap, all ports
 * denied), then the test's own descriptors from 0x30. Every IDT vector starts as a ring-0
 * interrupt gate that reports "unexpected" and exits with status 0x7f; vector 0x7F (DPL 3)
 * returns from call_ring3.
 */
const PRELUDE = String.raw`
bits 32
org 0x100000
%define ABS(x) ((x) - $$ + 0x100000)

SEL_C0 equ 0x08
SEL_D0 equ 0x10
SEL_C3 equ 0x1b
SEL_D3 equ 0x23
SEL_TSS equ 0x28
NT equ 0x4000
VM equ 0x20000

; DESC base, limit (20 bits), access byte, flags nibble (8 = G, 4 = D/B)
%macro DESC 4
  dw (%2) & 0xffff
  dw (%1) & 0xffff
  db ((%1) >> 16) & 0xff
  db %3
  db (((%2) >> 16) & 0x0f) | ((%4) << 4)
  db ((%1) >> 24) & 0xff
%endmacro

; GATE selector, offset, type/attribute byte, parameter count
%macro GATE 4
  dw (%2) & 0xffff
  dw %1
  db %4
  db %3
  dw ((%2) >> 16) & 0xffff
%endmacro

; SETGATE vector, selector, offset, attribute byte: rewrite an IDT entry at run time
%macro SETGATE 4
  push eax
  mov eax, %3
  mov [idt + (%1) * 8], ax
  shr eax, 16
  mov [idt + (%1) * 8 + 6], ax
  mov word [idt + (%1) * 8 + 2], %2
  mov word [idt + (%1) * 8 + 4], (%4) << 8
  pop eax
%endmacro

%macro PUTS 1
  jmp %%over
  %%s: db %1, 0
  %%over:
  push esi
  mov esi, %%s
  call print_str
  pop esi
%endmacro

; KV "key", value: one line "key=xxxxxxxx" (value: any 32-bit source, not ESP-relative)
%macro KV 2
  PUTS %1
  PUTS "="
  push eax
  mov eax, %2
  call print_hex
  pop eax
  PUTS {10}
%endmacro

%macro EXIT 1
  mov al, %1
  out 0xf4, al
  cli
  hlt
%endmacro

; Multiboot header (a.out kludge): the same image boots under QEMU's -kernel.
  jmp start
align 4
mb_header:
  dd 0x1badb002, 0x00010000, -(0x1badb002 + 0x00010000)
  dd mb_header, 0x100000, image_end, 0, start

start:
  cli
  lgdt [gdtr]
  lidt [idtr]
  jmp SEL_C0:.cs
.cs:
  mov ax, SEL_D0
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  mov ss, ax
  mov esp, stack0_top
  call init_idt
  mov dword [main_tss + 4], kstack_top
  mov dword [main_tss + 8], SEL_D0
  mov word [main_tss + 0x66], 0x68
  mov ax, SEL_TSS
  ltr ax
  call test_main
  PUTS {"end", 10}
  EXIT 0

print_str:                      ; ESI: NUL-terminated string; preserves everything
  pushad
  pushfd
.l:
  lodsb
  test al, al
  jz .d
  out 0xe9, al
  jmp .l
.d:
  popfd
  popad
  ret

print_hex:                      ; EAX: printed as 8 lowercase hex digits
  pushad
  pushfd
  mov ecx, 8
.l:
  rol eax, 4
  mov ebx, eax
  and ebx, 15
  mov dl, [hexdigits + ebx]
  push eax
  mov al, dl
  out 0xe9, al
  pop eax
  loop .l
  popfd
  popad
  ret
hexdigits: db "0123456789abcdef"

init_idt:
  pushad
  xor ecx, ecx
  mov ebx, exc_stubs
.l:
  mov [idt + ecx * 8], bx
  mov word [idt + ecx * 8 + 2], SEL_C0
  mov word [idt + ecx * 8 + 4], 0x8e00
  mov eax, ebx
  shr eax, 16
  mov [idt + ecx * 8 + 6], ax
  add ebx, 16
  inc ecx
  cmp ecx, 256
  jb .l
  SETGATE 0x7f, SEL_C0, ring3_done, 0xee
  popad
  ret

; init_tss32: EDI = TSS, EBX = EIP, ECX = ESP. A ring-0 flat task, EFLAGS = 2, no LDT,
; no I/O bitmap, ring-0 stack = the task's own.
init_tss32:
  pushad
  push edi
  push ecx
  mov ecx, 0x68 / 4
  xor eax, eax
  rep stosd
  pop ecx
  pop edi
  mov [edi + 0x04], ecx
  mov dword [edi + 0x08], SEL_D0
  mov [edi + 0x20], ebx
  mov dword [edi + 0x24], 2
  mov [edi + 0x38], ecx
  mov dword [edi + 0x48], SEL_D0
  mov dword [edi + 0x4c], SEL_C0
  mov dword [edi + 0x50], SEL_D0
  mov dword [edi + 0x54], SEL_D0
  mov dword [edi + 0x58], SEL_D0
  mov dword [edi + 0x5c], SEL_D0
  mov word [edi + 0x66], 0x68
  popad
  ret

; call_ring3: EBX = entry. Runs it at CPL 3 (IOPL 0, DS = ES = ring-3 data) on ustack.
; It comes back with "int 0x7f": the general registers are then the ring-3 code's.
call_ring3:
  pushad
  mov [saved_esp], esp
  mov ax, SEL_D3
  mov ds, ax
  mov es, ax
  push dword SEL_D3
  push dword ustack_top
  push dword 2
  push dword SEL_C3
  push ebx
  iret
ring3_done:
  mov esp, [ss:saved_esp]
  push eax
  mov ax, SEL_D0
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  pop eax
  add esp, 32
  ret

; Default handlers: [esp] = vector, then the error code (0 when the CPU pushes none).
exc_stubs:
%assign v 0
%rep 256
  align 16
  %if v = 8 || (v >= 10 && v <= 14) || v = 17
  push dword v
  %else
  push dword 0
  push dword v
  %endif
  jmp unexpected
%assign v v+1
%endrep
unexpected:
  mov ebp, esp
  mov ax, SEL_D0
  mov ds, ax
  mov es, ax
  PUTS "unexpected "
  KV "vec", [ebp]
  KV "err", [ebp + 4]
  KV "eip", [ebp + 8]
  KV "cs", [ebp + 12]
  EXIT 0x7f
`;

const EPILOGUE = (gdt: string, data: string) => String.raw`
align 8
gdt:
  dq 0
  DESC 0, 0xfffff, 0x9a, 0xc
  DESC 0, 0xfffff, 0x92, 0xc
  DESC 0, 0xfffff, 0xfa, 0xc
  DESC 0, 0xfffff, 0xf2, 0xc
  DESC ABS(main_tss), 0x68 + 0x2000, 0x89, 0
${gdt}
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt

align 8
idt: times 256 dq 0
idtr:
  dw 256 * 8 - 1
  dd idt

saved_esp: dd 0
${data}

align 16
main_tss: times 0x68 db 0
iomap: times 0x2000 db 0xff
  db 0xff
align 16
  times 4096 db 0
stack0_top:
  times 4096 db 0
kstack_top:
  times 4096 db 0
ustack_top:
image_end:
`;

interface GuestSource {
  /** Code: must define test_main (called at CPL 0 with flat segments, returns to print "end"). */
  code: string;
  /** GDT entries after the common ones, from selector 0x30. */
  gdt?: string;
  data?: string;
}

function guest(src: GuestSource): Uint8Array {
  return assemble(PRELUDE + src.code + EPILOGUE(src.gdt ?? '', src.data ?? ''));
}

/**
 * FTX86_PM_DUMP=dir writes each guest image there, named after its test: the images are
 * Multiboot kernels, so they boot unchanged under QEMU's -kernel for a comparison.
 */
const DUMP_DIR = process.env.FTX86_PM_DUMP;

function run(src: GuestSource): TestGuestResult {
  const img = guest(src);
  if (DUMP_DIR) {
    const name = (expect.getState().currentTestName ?? 'guest').replace(/[^a-z0-9]+/gi, '_').slice(0, 60);
    writeFileSync(join(DUMP_DIR, `${name}.bin`), img);
  }
  return runTestGuest(img, { memoryBytes: 8 * 1024 * 1024, maxInstructions: 5_000_000 });
}

/** The transcript as lines, for comparison with the expected ones. */
function lines(r: TestGuestResult): string[] {
  return r.output.split('\n').filter((l) => l !== '');
}

// A second 32-bit TSS descriptor at 0x30 and a data area for it.
const TSS_B_GDT = String.raw`
  DESC ABS(tss_b), 0x67, 0x89, 0        ; 0x30
`;
const TSS_B_DATA = String.raw`
align 16
tss_b: times 0x68 db 0
  times 1024 db 0
stackb_top:
`;

describe.skipIf(!hasNasm)('protected mode', () => {
  it('switches tasks with JMP: old task left not busy, new one busy, state saved and restored', () => {
    const r = run({
      gdt: TSS_B_GDT,
      data: TSS_B_DATA,
      code: String.raw`
test_main:
  mov edi, tss_b
  mov ebx, task_b
  mov ecx, stackb_top
  call init_tss32
  mov dword [tss_b + 0x28], 0x11111111   ; B's EAX
  clts
  mov eax, 0xaaaaaaaa
  jmp 0x30:0
after_jmp:
  KV "a.eax", eax
  xor eax, eax
  str ax
  KV "a.tr", eax
  movzx eax, byte [gdt + 0x28 + 5]
  KV "a.desc_a", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "a.desc_b", eax
  mov eax, [tss_b + 0x20]
  sub eax, b_resume
  KV "b.saved_eip_rel", eax
  KV "b.saved_eax", [tss_b + 0x28]
  ret

task_b:
  KV "b.eax", eax
  xor eax, eax
  str ax
  KV "b.tr", eax
  pushfd
  pop eax
  and eax, NT
  KV "b.nt", eax
  mov eax, cr0
  and eax, 8
  KV "b.cr0_ts", eax
  movzx eax, byte [gdt + 0x28 + 5]
  KV "b.desc_a", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "b.desc_b", eax
  mov eax, [main_tss + 0x20]
  sub eax, after_jmp
  KV "a.saved_eip_rel", eax
  KV "a.saved_eax", [main_tss + 0x28]
  movzx eax, word [tss_b]
  KV "b.link", eax
  mov eax, 0x22222222
  jmp SEL_TSS:0
b_resume:
  jmp b_resume
`,
    });
    expect(lines(r)).toEqual([
      'b.eax=11111111', 'b.tr=00000030', 'b.nt=00000000', 'b.cr0_ts=00000008',
      'b.desc_a=00000089', 'b.desc_b=0000008b', 'a.saved_eip_rel=00000000', 'a.saved_eax=aaaaaaaa',
      'b.link=00000000',
      'a.eax=aaaaaaaa', 'a.tr=00000028', 'a.desc_a=0000008b', 'a.desc_b=00000089',
      'b.saved_eip_rel=00000000', 'b.saved_eax=22222222', 'end',
    ]);
    expect(r.exitStatus).toBe(1);
  });

  it('nests a task with CALL (back link, NT, both busy) and returns with IRET', () => {
    const r = run({
      gdt: TSS_B_GDT,
      data: TSS_B_DATA,
      code: String.raw`
test_main:
  mov edi, tss_b
  mov ebx, task_b
  mov ecx, stackb_top
  call init_tss32
  mov eax, 0xaaaaaaaa
  call 0x30:0
  KV "a.eax", eax
  pushfd
  pop eax
  and eax, NT
  KV "a.nt", eax
  movzx eax, byte [gdt + 0x28 + 5]
  KV "a.desc_a", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "a.desc_b", eax
  mov eax, [tss_b + 0x24]
  and eax, NT
  KV "b.saved_nt", eax
  mov eax, [tss_b + 0x20]
  sub eax, b_again
  KV "b.saved_eip_rel", eax
  call 0x30:0                      ; B resumes after its IRET
  ret

task_b:
  pushfd
  pop eax
  and eax, NT
  KV "b.nt", eax
  movzx eax, word [tss_b]
  KV "b.link", eax
  movzx eax, byte [gdt + 0x28 + 5]
  KV "b.desc_a", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "b.desc_b", eax
  iret
b_again:
  PUTS {"b.again", 10}
  iret
`,
    });
    expect(lines(r)).toEqual([
      'b.nt=00004000', 'b.link=00000028', 'b.desc_a=0000008b', 'b.desc_b=0000008b',
      'a.eax=aaaaaaaa', 'a.nt=00000000', 'a.desc_a=0000008b', 'a.desc_b=00000089',
      'b.saved_nt=00000000', 'b.saved_eip_rel=00000000', 'b.again', 'end',
    ]);
  });

  it('delivers an exception through a task gate with its error code on the new task stack', () => {
    const r = run({
      gdt: TSS_B_GDT,
      data: TSS_B_DATA,
      code: String.raw`
test_main:
  mov edi, tss_b
  mov ebx, gp_task
  mov ecx, stackb_top
  call init_tss32
  mov word [idt + 13 * 8 + 2], 0x30     ; #GP: task gate to TSS 0x30
  mov word [idt + 13 * 8 + 4], 0x8500
  mov ax, 0x1230                        ; beyond the GDT limit: #GP(0x1230)
fault_insn:
  mov ds, ax
after_fault:
  xor eax, eax
  mov ax, ds
  KV "a.ds", eax
  ret

gp_task:
  pop eax
  KV "err", eax
  mov eax, esp
  sub eax, stackb_top
  KV "esp_rel", eax
  pushfd
  pop eax
  and eax, NT
  KV "nt", eax
  movzx eax, word [tss_b]
  KV "link", eax
  mov eax, [main_tss + 0x20]
  sub eax, fault_insn
  KV "a.saved_eip_rel", eax
  mov dword [main_tss + 0x20], after_fault
  iret
`,
    });
    expect(lines(r)).toEqual([
      'err=00001230', 'esp_rel=00000000', 'nt=00004000', 'link=00000028', 'a.saved_eip_rel=00000000',
      'a.ds=00000010', 'end',
    ]);
  });

  it('escalates a fault during delivery to #DF, handled by a task gate like Linux', () => {
    const r = run({
      gdt: TSS_B_GDT,
      data: TSS_B_DATA,
      code: String.raw`
test_main:
  mov edi, tss_b
  mov ebx, df_task
  mov ecx, stackb_top
  call init_tss32
  mov word [idt + 8 * 8 + 2], 0x30      ; #DF: task gate to TSS 0x30
  mov word [idt + 8 * 8 + 4], 0x8500
  mov word [idt + 13 * 8 + 4], 0x0e00   ; #GP gate not present: #GP becomes #NP, then #DF
  mov esi, 0x5eed
  mov ax, 0x1230
fault_insn:
  mov ds, ax
  PUTS {"not reached", 10}
  ret

df_task:
  pop eax
  KV "df.err", eax
  movzx eax, word [tss_b]
  KV "df.link", eax
  mov eax, [main_tss + 0x20]
  sub eax, fault_insn
  KV "a.saved_eip_rel", eax
  KV "a.saved_esi", [main_tss + 0x40]
  movzx eax, byte [gdt + 0x28 + 5]
  KV "a.desc", eax
  PUTS {"end", 10}
  EXIT 0
`,
    });
    expect(lines(r)).toEqual([
      'df.err=00000000', 'df.link=00000028', 'a.saved_eip_rel=00000000', 'a.saved_esi=00005eed',
      'a.desc=0000008b', 'end',
    ]);
    expect(r.exitStatus).toBe(1);
  });

  it('turns a kernel stack overflow (#PF while delivering #PF) into #DF on a task gate with its own stack', () => {
    const r = run({
      gdt: TSS_B_GDT,
      code: String.raw`
test_main:
  mov eax, cr4
  or eax, 0x10                  ; PSE: one 4 MiB page maps 0-4 MiB, nothing above
  mov cr4, eax
  mov eax, pd
  mov cr3, eax
  mov edi, tss_b
  mov ebx, df_task
  mov ecx, stackb_top
  call init_tss32
  mov [tss_b + 0x1c], eax       ; the #DF task's CR3
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov word [idt + 8 * 8 + 2], 0x30
  mov word [idt + 8 * 8 + 4], 0x8500
  mov esp, 0x500000             ; an unmapped stack
overflow:
  push eax
  ret

df_task:
  pop eax
  KV "df.err", eax
  mov eax, cr2
  KV "cr2", eax
  KV "a.saved_esp", [main_tss + 0x38]
  mov eax, [main_tss + 0x20]
  sub eax, overflow
  KV "a.saved_eip_rel", eax
  PUTS {"end", 10}
  EXIT 0
`,
      data: TSS_B_DATA + String.raw`
align 4096
pd: dd 0x83
  times 1023 dd 0
`,
    });
    expect(lines(r)).toEqual(['df.err=00000000', 'cr2=004ffffc', 'a.saved_esp=00500000', 'a.saved_eip_rel=00000000', 'end']);
    expect(r.exitStatus).toBe(1);
  });

  it('takes an interrupt from ring 3 to ring 0 on the TSS stack and IRETs back', () => {
    const r = run({
      code: String.raw`
test_main:
  SETGATE 0x80, SEL_C0, int80, 0xee     ; DPL 3 interrupt gate
  SETGATE 0x81, SEL_C0, int80, 0x8e     ; DPL 0: INT 0x81 from ring 3 is #GP
  SETGATE 13, SEL_C0, gp_handler, 0x8e
  mov ebx, ring3
  call call_ring3
  KV "r3.eax", eax
  KV "r3.ebx", ebx
  KV "r3.ecx", ecx
  KV "gp.err", [gp_err]
  ret

ring3:
  mov eax, 0x1234
  int 0x80
r3_after:
  mov ebx, eax                  ; the handler's answer
  mov ecx, cs
  int 0x81
  int 0x7f

int80:                          ; ring 0, on kstack
  mov ebp, esp
  push eax
  mov ax, SEL_D0
  mov ds, ax
  pop eax
  KV "int.eax", eax
  mov eax, [ebp]
  sub eax, r3_after
  KV "int.eip_rel", eax
  KV "int.cs", [ebp + 4]
  mov eax, [ebp + 8]
  and eax, 0x3202
  KV "int.eflags", eax
  mov eax, [ebp + 12]
  sub eax, ustack_top
  KV "int.esp_rel", eax
  KV "int.ss", [ebp + 16]
  mov eax, ebp
  sub eax, kstack_top
  KV "int.kesp_rel", eax
  mov eax, cs
  KV "int.mycs", eax
  mov eax, ss
  KV "int.myss", eax
  mov ax, SEL_D3
  mov ds, ax
  mov eax, 0x4321
  iret

gp_handler:
  pop dword [ss:gp_err]
  add dword [esp], 2            ; skip the INT 0x81
  iret
`,
      data: 'gp_err: dd 0',
    });
    expect(lines(r)).toEqual([
      'int.eax=00001234', 'int.eip_rel=00000000', 'int.cs=0000001b', 'int.eflags=00000002',
      'int.esp_rel=00000000', 'int.ss=00000023', 'int.kesp_rel=ffffffec', 'int.mycs=00000008',
      'int.myss=00000010',
      'r3.eax=00004321', 'r3.ebx=00004321', 'r3.ecx=0000001b', 'gp.err=0000040a', 'end',
    ]);
  });

  it('calls an inner ring through a call gate, copying parameters, and returns with RETF n', () => {
    const r = run({
      gdt: String.raw`
  GATE SEL_C0, ABS(gate_target), 0xec, 2   ; 0x30: 32-bit call gate, DPL 3, 2 parameters
`,
      code: String.raw`
test_main:
  mov ebx, ring3
  call call_ring3
  KV "r3.esp_delta", esi
  KV "r3.cs", ecx
  ret

ring3:
  mov esi, esp
  push dword 0xaaaa0001
  push dword 0xbbbb0002
  call 0x33:0
r3_ret:
  sub esi, esp                  ; 0: RETF 8 released the parameters
  mov ecx, cs
  int 0x7f

gate_target:                    ; CPL 0, on the TSS ring-0 stack
  mov ebp, esp
  mov eax, [ebp]
  sub eax, r3_ret
  KV "g.eip_rel", eax
  KV "g.cs", [ebp + 4]
  KV "g.p0", [ebp + 8]
  KV "g.p1", [ebp + 12]
  mov eax, [ebp + 16]
  sub eax, ustack_top
  KV "g.esp_rel", eax
  KV "g.ss", [ebp + 20]
  mov eax, ebp
  sub eax, kstack_top
  KV "g.kesp_rel", eax
  mov eax, cs
  KV "g.mycs", eax
  retf 8
`,
    });
    expect(lines(r)).toEqual([
      'g.eip_rel=00000000', 'g.cs=0000001b', 'g.p0=bbbb0002', 'g.p1=aaaa0001', 'g.esp_rel=fffffff8',
      'g.ss=00000023', 'g.kesp_rel=ffffffe8', 'g.mycs=00000008',
      'r3.esp_delta=00000000', 'r3.cs=0000001b', 'end',
    ]);
  });

  it('runs a V86 task whose INT n and CLI trap to the monitor (#GP) while INT3 goes through its gate', () => {
    const r = run({
      code: String.raw`
test_main:
  SETGATE 13, SEL_C0, v86_gp, 0x8e
  SETGATE 3, SEL_C0, v86_bp, 0xee
  mov esi, v86_code
  mov edi, 0x8000
  mov ecx, v86_end - v86_code
  rep movsb
  mov [saved_esp], esp
  push dword 0                  ; GS
  push dword 0                  ; FS
  push dword 0x0900             ; DS
  push dword 0x0a00             ; ES
  push dword 0x0700             ; SS
  push dword 0x0ffe             ; ESP
  push dword VM | 2             ; EFLAGS: IOPL 0
  push dword 0x0800             ; CS
  push dword 0                  ; EIP
  iret

v86_gp:
  mov ebp, esp
  push eax
  mov eax, ds
  mov [ss:entry_ds], eax
  mov ax, SEL_D0
  mov ds, ax
  mov es, ax
  pop eax
  movzx edx, word [ebp + 8]
  shl edx, 4
  add edx, [ebp + 4]
  movzx ecx, byte [edx]
  cmp cl, 0xcd
  je .int
  cmp cl, 0xfa
  je .cli
  cmp cl, 0xf4
  je .hlt
  KV "bad opcode", ecx
  EXIT 0x7e
.int:
  KV "gp.err", [ebp]
  movzx ecx, byte [edx + 1]
  KV "int.vec", ecx
  movzx ecx, ax
  KV "v86.ax", ecx
  KV "entry.ds", [entry_ds]
  KV "frame.es", [ebp + 24]
  KV "frame.ds", [ebp + 28]
  KV "frame.fs", [ebp + 32]
  KV "frame.ss", [ebp + 20]
  KV "frame.esp", [ebp + 16]
  mov ecx, [ebp + 12]
  and ecx, VM | 0x3202
  KV "frame.eflags", ecx
  mov ax, 0x5678                ; the emulated service's answer
  add dword [ebp + 4], 2
  add esp, 4
  iret
.cli:
  PUTS {"cli trapped", 10}
  inc dword [ebp + 4]
  add esp, 4
  iret
.hlt:
  movzx ecx, bx
  KV "v86.bx", ecx
  mov esp, [saved_esp]
  ret

v86_bp:                         ; INT3 from V86 through a DPL 3 gate: no #GP
  mov ebp, esp
  push eax
  mov ax, SEL_D0
  mov ds, ax
  pop eax
  KV "bp.eip", [ebp]
  KV "bp.cs", [ebp + 4]
  iret

v86_code:
bits 16
  mov ax, 0x1234
  int 0x21
  int3
  cli
  mov bx, ax
  hlt
bits 32
v86_end:
`,
      data: 'entry_ds: dd 0xffffffff',
    });
    expect(lines(r)).toEqual([
      'gp.err=00000000', 'int.vec=00000021', 'v86.ax=00001234', 'entry.ds=00000000',
      'frame.es=00000a00', 'frame.ds=00000900', 'frame.fs=00000000', 'frame.ss=00000700',
      'frame.esp=00000ffe', 'frame.eflags=00020002',
      'bp.eip=00000006', 'bp.cs=00000800', 'cli trapped', 'v86.bx=00005678', 'end',
    ]);
  });

  it('checks ring-3 port I/O against the TSS I/O permission bitmap', () => {
    const r = run({
      code: String.raw`
test_main:
  SETGATE 13, SEL_C0, gp_handler, 0x8e
  and byte [iomap + 0xe9 / 8], ~(1 << (0xe9 & 7))
  mov ebx, ring3
  call call_ring3
  KV "in.e9", edi
  KV "gp.count", [gp_count]
  KV "gp.err", [gp_err]
  ret

ring3:
  mov al, "R"
  out 0xe9, al                  ; allowed
  mov al, 10
  out 0xe9, al
  mov dx, 0xe9
  in al, dx                     ; allowed
  movzx edi, al
  mov dword [resume], .a
  out 0x80, al                  ; denied
.a:
  mov dword [resume], .b
  out 0xe9, ax                  ; 0xE9 allowed, 0xEA denied: the whole access faults
.b:
  int 0x7f

gp_handler:
  pop dword [ss:gp_err]
  inc dword [ss:gp_count]
  push eax
  mov eax, [ss:resume]
  mov [esp + 4], eax
  pop eax
  iret
`,
      data: 'gp_err: dd 0xffffffff\ngp_count: dd 0\nresume: dd 0',
    });
    expect(lines(r)).toEqual(['R', 'in.e9=000000e9', 'gp.count=00000002', 'gp.err=00000000', 'end']);
  });

  it('shuts down on a triple fault (the machine resets, stopped by noReboot)', () => {
    const r = run({
      code: String.raw`
test_main:
  lidt [empty_idtr]
  PUTS {"before", 10}
  ud2
  PUTS {"not reached", 10}
  ret
`,
      data: 'empty_idtr: dw 0\n  dd 0',
    });
    expect(r.output).toBe('before\n');
    expect(r.outcome.kind).toBe('reset');
    expect(r.exitStatus).toBeUndefined();
  });

  it('faults #TS in the old task for a short TSS, and after the commit point in the new one', () => {
    const r = run({
      gdt: String.raw`
  DESC ABS(tss_b), 0x67, 0x89, 0        ; 0x30: its CS is a data segment
  DESC ABS(tss_b), 0x60, 0x89, 0        ; 0x38: limit below 0x67
`,
      code: String.raw`
test_main:
  SETGATE 10, SEL_C0, ts_handler, 0x8e
  mov edi, tss_b
  mov ebx, task_b
  mov ecx, stackb_top
  call init_tss32
  mov dword [tss_b + 0x4c], SEL_D0
  mov dword [resume], after_short
short_jmp:
  jmp 0x38:0
after_short:
  mov dword [resume], 0
  jmp 0x30:0
after_bad:
  xor eax, eax
  str ax
  KV "a.tr", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "desc_b", eax
  ret
task_b:
  PUTS {"task b ran", 10}
  ret

ts_handler:
  mov ebp, esp
  push eax
  mov ax, SEL_D0
  mov ds, ax
  mov es, ax
  pop eax
  KV "ts.err", [ebp]
  xor eax, eax
  str ax
  KV "ts.tr", eax
  cmp dword [resume], 0
  je .in_new_task
  mov eax, [ebp + 4]
  sub eax, short_jmp
  KV "ts.eip_rel", eax
  mov eax, [resume]
  mov [ebp + 4], eax
  add esp, 4
  iret
.in_new_task:                   ; delivered in task B, CPL 3 -> 0: B's ring-0 stack
  mov eax, [ebp + 4]
  sub eax, task_b
  KV "ts.eip_rel", eax
  KV "ts.cs", [ebp + 8]
  mov eax, ebp
  sub eax, stackb_top
  KV "ts.esp_rel", eax
  jmp SEL_TSS:0                 ; A was left by JMP: not busy, so JMP back to it
`,
      data: TSS_B_DATA + '\nresume: dd 0',
    });
    expect(lines(r)).toEqual([
      'ts.err=00000038', 'ts.tr=00000028', 'ts.eip_rel=00000000',
      'ts.err=00000010', 'ts.tr=00000030', 'ts.eip_rel=00000000', 'ts.cs=00000010', 'ts.esp_rel=ffffffe8',
      'a.tr=00000028', 'desc_b=00000089', 'end',
    ]);
  });

  it('switches to and back from a 16-bit (286) task running 16-bit code', () => {
    const r = run({
      gdt: String.raw`
  DESC ABS(tss16), 0x2b, 0x81, 0        ; 0x30: available 16-bit TSS
  DESC ABS(code16), 0xffff, 0x9a, 0     ; 0x38: 16-bit code
  DESC ABS(data16), 0xffff, 0x92, 0     ; 0x40: 16-bit data
`,
      code: String.raw`
test_main:
  mov word [tss16 + 0x0e], t16_entry - code16
  mov word [tss16 + 0x10], 2
  mov word [tss16 + 0x12], 0x1616                 ; AX
  mov word [tss16 + 0x1a], stack16_top - data16   ; SP
  mov word [tss16 + 0x22], 0x40                   ; ES
  mov word [tss16 + 0x24], 0x38                   ; CS
  mov word [tss16 + 0x26], 0x40                   ; SS
  mov word [tss16 + 0x28], 0x40                   ; DS
  mov eax, 0x12345678
  call 0x30:0
  KV "a.eax", eax
  movzx eax, word [res_ax]
  KV "t.ax", eax
  movzx eax, word [res_flags]
  and eax, NT
  KV "t.nt", eax
  movzx eax, word [res_fs]
  KV "t.fs", eax
  movzx eax, word [tss16]
  KV "t.link", eax
  movzx eax, word [tss16 + 0x0e]
  sub eax, t16_again - code16
  KV "t.saved_ip_rel", eax
  movzx eax, word [tss16 + 0x12]
  KV "t.saved_ax", eax
  movzx eax, word [tss16 + 0x10]
  and eax, NT
  KV "t.saved_nt", eax
  movzx eax, byte [gdt + 0x30 + 5]
  KV "t.desc", eax
  ret

code16:
bits 16
t16_entry:
  mov [res_ax - data16], ax
  pushf
  pop word [res_flags - data16]
  mov [res_fs - data16], fs
  mov ax, 0x9999
  iret
t16_again:
  jmp t16_again
bits 32

align 16
data16:
res_ax: dw 0
res_flags: dw 0
res_fs: dw 0xffff
  times 256 db 0
stack16_top:
align 16
tss16: times 0x2c db 0
`,
    });
    expect(lines(r)).toEqual([
      'a.eax=12345678', 't.ax=00001616', 't.nt=00004000', 't.fs=00000000', 't.link=00000028',
      't.saved_ip_rel=00000000', 't.saved_ax=00009999', 't.saved_nt=00000000', 't.desc=00000081', 'end',
    ]);
  });

  it('loads CR3 from the new 32-bit TSS when paging is on', () => {
    const r = run({
      gdt: TSS_B_GDT,
      code: String.raw`
test_main:
  mov dword [0x400000], 0x600dcafe
  mov eax, cr4
  or eax, 0x10                  ; PSE: 4 MiB pages
  mov cr4, eax
  mov eax, pd1
  mov cr3, eax
  mov [main_tss + 0x1c], eax    ; CR3 is loaded from a TSS, never saved to one
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov edi, tss_b
  mov ebx, task_b
  mov ecx, stackb_top
  call init_tss32
  mov dword [tss_b + 0x1c], pd2
  jmp 0x30:0
  mov eax, cr3
  sub eax, pd1
  KV "a.cr3_rel", eax
  mov eax, cr0
  and eax, 0x7fffffff
  mov cr0, eax
  ret
task_b:
  mov eax, cr3
  sub eax, pd2
  KV "b.cr3_rel", eax
  KV "b.magic", [0x40000000]
  jmp SEL_TSS:0
`,
      data: TSS_B_DATA + String.raw`
align 4096
pd1: dd 0x83, 0x400083
  times 1022 dd 0
pd2: dd 0x83, 0x400083
  times 254 dd 0
  dd 0x400083                   ; 0x40000000 -> 4 MiB
  times 767 dd 0
`,
    });
    expect(lines(r)).toEqual(['b.cr3_rel=00000000', 'b.magic=600dcafe', 'a.cr3_rel=00000000', 'end']);
  });

  it('enters ring 0 with SYSENTER and returns to ring 3 with SYSEXIT', () => {
    const r = run({
      code: String.raw`
test_main:
  xor edx, edx
  mov ecx, 0x174
  mov eax, SEL_C0
  wrmsr
  mov ecx, 0x175
  mov eax, kstack_top
  wrmsr
  mov ecx, 0x176
  mov eax, sysenter_entry
  wrmsr
  mov ebx, ring3
  call call_ring3
  KV "r3.cs", ebx
  KV "r3.ss", ecx
  mov eax, edi
  sub eax, ustack_top
  KV "r3.esp_rel", eax
  ret
ring3:
  pushfd
  or dword [esp], 0x200         ; IF, which SYSENTER clears
  popfd
  mov ecx, esp
  mov edx, r3_back
  sysenter
r3_back:
  mov ebx, cs
  mov ecx, ss
  mov edi, esp
  int 0x7f
sysenter_entry:
  mov eax, cs
  KV "k.cs", eax
  mov eax, ss
  KV "k.ss", eax
  mov eax, esp
  sub eax, kstack_top
  KV "k.esp_rel", eax
  pushfd
  pop eax
  and eax, 0x200
  KV "k.if", eax
  sysexit
`,
    });
    expect(lines(r)).toEqual([
      'k.cs=00000008', 'k.ss=00000010', 'k.esp_rel=00000000', 'k.if=00000000',
      'r3.cs=0000001b', 'r3.ss=00000023', 'r3.esp_rel=00000000', 'end',
    ]);
  });

  it('answers LAR, LSL, VERR, VERW by privilege and type, and ARPL adjusts an RPL', () => {
    const r = run({
      code: String.raw`
test_main:
  mov ebx, ring3
  call call_ring3
  mov esi, res
  mov ecx, 8
.l:
  KV "r3", [esi]
  add esi, 4
  loop .l
  mov ax, SEL_TSS
  lar eax, ax
  KV "lar.tss", eax
  mov ax, SEL_TSS
  lsl eax, ax
  KV "lsl.tss", eax
  mov ax, 0x10
  mov bx, 0x13
  arpl ax, bx
  setz bl
  movzx ebx, bl
  KV "arpl.ax", eax
  KV "arpl.zf", ebx
  ret

; Each result: the ZF of the instruction in bit 0, its destination above.
%macro R3CHECK 2
  mov eax, 0xffffff00
  mov cx, %2
  %1
  setz al
  stosd
%endmacro
ring3:
  mov edi, res
  mov eax, 0xffffff00
  mov cx, SEL_D0
  lar eax, cx                   ; DPL 0 from CPL 3: ZF = 0, EAX unchanged
  setz al
  stosd
  mov cx, SEL_D3
  lar eax, cx
  setz bl
  or al, bl
  stosd
  mov cx, SEL_D3
  lsl eax, cx
  stosd
  R3CHECK {verr cx}, SEL_D3
  R3CHECK {verw cx}, SEL_D3
  R3CHECK {verr cx}, SEL_C3
  R3CHECK {verw cx}, SEL_C3
  R3CHECK {verr cx}, SEL_D0
  int 0x7f
`,
      data: 'res: times 8 dd 0',
    });
    expect(lines(r)).toEqual([
      // LAR masks with 00FxFF00H: bits 19:16 are undefined; the core clears them, as QEMU does.
      'r3=ffffff00', 'r3=00c0f301', 'r3=ffffffff',
      'r3=ffffff01', 'r3=ffffff01', 'r3=ffffff01', 'r3=ffffff00', 'r3=ffffff00',
      'lar.tss=00008b00', 'lsl.tss=00002068', 'arpl.ax=00000013', 'arpl.zf=00000001', 'end',
    ]);
  });

  it('runs 16-bit protected-mode code with a 16-bit interrupt gate and a 32-bit far return', () => {
    const r = run({
      gdt: String.raw`
  DESC ABS(code16), 0xffff, 0x9a, 0     ; 0x30: 16-bit code
`,
      code: String.raw`
test_main:
  SETGATE 0x41, 0x30, h16 - code16, 0x86
  push dword 2
  popfd
  mov esi, esp
  call 0x30:c16_entry - code16
  sub esi, esp
  KV "esp_delta", esi
  movzx eax, bx
  sub eax, c16_after - code16
  KV "frame.ip_rel", eax
  movzx eax, cx
  KV "frame.cs", eax
  movzx eax, dx
  KV "frame.flags", eax
  KV "eax", eax
  ret

code16:
bits 16
c16_entry:
  int 0x41
c16_after:
  o32 retf
h16:
  mov bx, [esp]
  mov cx, [esp + 2]
  mov dx, [esp + 4]
  iret
bits 32
`,
    });
    expect(lines(r)).toEqual([
      'esp_delta=00000000', 'frame.ip_rel=00000000', 'frame.cs=00000030', 'frame.flags=00000002',
      'eax=00000002', 'end',
    ]);
  });

  it('sets EXT in the error code for events external to the program, not for INT n', () => {
    const r = run({
      gdt: String.raw`
  DESC ABS(short_tss), 0x60, 0x89, 0    ; 0x30: limit below 0x67
`,
      code: String.raw`
test_main:
  SETGATE 11, SEL_C0, np_handler, 0x8e
  SETGATE 10, SEL_C0, np_handler, 0x8e
  mov word [idt + 0x50 * 8 + 4], 0x0e00   ; vector 0x50 not present
  int 0x50
  KV "np.int_n", [np_err]
  mov word [idt + 0x51 * 8 + 2], 0x30     ; vector 0x51: task gate to the short TSS
  mov word [idt + 0x51 * 8 + 4], 0x8500
  int 0x51
  KV "ts.int_n", [np_err]
  mov word [idt + 6 * 8 + 4], 0x0e00      ; #UD's gate not present
  ud2
  KV "np.exception", [np_err]
  mov word [idt + 6 * 8 + 2], 0x30        ; #UD through the task gate
  mov word [idt + 6 * 8 + 4], 0x8500
  ud2
  KV "ts.exception", [np_err]
  ret
np_handler:
  pop dword [np_err]
  add dword [esp], 2
  iret
`,
      data: 'np_err: dd 0\nshort_tss: times 0x68 db 0',
    });
    expect(lines(r)).toEqual([
      'np.int_n=00000282', 'ts.int_n=00000030', 'np.exception=00000033', 'ts.exception=00000031', 'end',
    ]);
  });

  it('unblocks NMIs at IRET, so an NMI after the handler returned is taken', () => {
    const img = guest({
      code: String.raw`
test_main:
  SETGATE 2, SEL_C0, nmi_handler, 0x8e
.wait:
  cmp dword [nmi_count], 2
  jb .wait
  KV "nmis", [nmi_count]
  ret
nmi_handler:
  inc dword [nmi_count]
  iret
`,
      data: 'nmi_count: dd 0',
    });
    const m = new Machine({ memoryBytes: 8 * 1024 * 1024, clock: 'virtual', rtcBaseMs: 0, noReboot: true });
    const out: number[] = [];
    m.ports.register(0xe9, 1, new DebugConsole((b) => out.push(b)), 'debugcon');
    m.ports.register(0xf4, 4, new DebugExit((status) => m.requestStop({ kind: 'exit', status })), 'debug-exit');
    loadMultiboot(m.cpu, img);
    expect(m.runSync(100_000).kind).toBe('limit');
    m.cpu.state.nmiPending = true;
    expect(m.runSync(10_000).kind).toBe('limit');
    m.cpu.state.nmiPending = true;
    expect(m.runSync(100_000)).toEqual({ kind: 'exit', status: 1 });
    expect(Buffer.from(out).toString('latin1')).toBe('nmis=00000002\nend\n');
  });
});
