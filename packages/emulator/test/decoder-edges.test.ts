// Decoder edge cases the SDM pins down, each run as a tiny guest (assembled here with nasm)
// that reports what its fault handler saw on the 0xE9 console: prefix combinations, the
// 15-byte length limit, an instruction straddling into a missing page, a REP string op
// faulting in the middle, and LOCK where it is not allowed.
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTestGuest } from '../src/testbed.ts';

let hasNasm = true;
try { execFileSync('nasm', ['-v'], { stdio: 'ignore' }); } catch { hasNasm = false; }

/**
 * Flat 32-bit guest at 1 MiB with an IDT whose #UD, #GP and #PF handlers print
 * "vec err eip cr2 ecx esi edi" in hex and exit; paging identity-maps 0-4 MiB except the
 * page at 0x300000, which is left not present.
 */
const PRELUDE = String.raw`
bits 32
org 0x100000
MB equ 0x1BADB002
  dd MB, 0x10000, -(MB + 0x10000), 0x100000, 0x100000, end, bss_end, start
start:
  mov esp, 0x90000
  lidt [idtr]
  ; page tables: identity 0-4 MiB, 0x300000 not present
  mov edi, 0x80000
  mov eax, 0x81003
  mov [edi], eax
  mov edi, 0x81000
  mov eax, 3
  mov ecx, 1024
.map:
  mov [edi], eax
  add eax, 4096
  add edi, 4
  loop .map
  mov dword [0x81000 + (0x300 * 4)], 0
  mov eax, 0x80000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  jmp test_body

hex32:            ; print EAX as 8 hex digits and a space
  push ecx
  mov ecx, 8
.h:
  rol eax, 4
  push eax
  and eax, 15
  mov al, [digits + eax]
  out 0xe9, al
  pop eax
  loop .h
  mov al, ' '
  out 0xe9, al
  pop ecx
  ret
digits: db '0123456789abcdef'

%macro HANDLER 2  ; vector, has error code
h%1:
%if %2 == 0
  push 0
%endif
  push ecx
  mov eax, %1
  call hex32
  mov eax, [esp + 4]   ; error code
  call hex32
  mov eax, [esp + 8]   ; saved EIP
  call hex32
  mov eax, cr2
  call hex32
  pop ecx
  mov eax, ecx
  call hex32
  mov eax, esi
  call hex32
  mov eax, edi
  call hex32
  mov al, 10
  out 0xe9, al
  mov al, 0
  out 0xf4, al
%endmacro
  HANDLER 6, 0
  HANDLER 13, 1
  HANDLER 14, 1

%macro IDTE 1
  dw (%1 - $$ + 0x100000) & 0xffff, 0x08
  db 0, 0x8e
  dw (%1 - $$ + 0x100000) >> 16
%endmacro
align 8
idt:
  times 6 dq 0
  IDTE h6
  times 6 dq 0
  IDTE h13
  IDTE h14
idt_end:
idtr: dw idt_end - idt - 1
      dd idt
`;

const EPILOGUE = String.raw`
  mov al, 'n'
  out 0xe9, al
  mov al, 10
  out 0xe9, al
  mov al, 1
  out 0xf4, al
end:
  times 4096 db 0
bss_end:
`;

function runGuest(body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-dec-'));
  try {
    writeFileSync(join(dir, 'g.asm'), `${PRELUDE}\ntest_body:\n${body}\n${EPILOGUE}`);
    execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 'g.bin'), join(dir, 'g.asm')], { stdio: 'pipe' });
    const r = runTestGuest(new Uint8Array(readFileSync(join(dir, 'g.bin'))), { memoryBytes: 8 << 20, maxInstructions: 5_000_000 });
    return r.output.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parse "vec err eip cr2 ecx esi edi". */
function fault(out: string) {
  const [vec, err, eip, cr2, ecx, esi, edi] = out.split(' ').map((h) => parseInt(h, 16));
  return { vec, err, eip, cr2, ecx, esi, edi };
}

describe.skipIf(!hasNasm)('decoder edge cases', () => {
  it('allows a 15-byte instruction and raises #GP(0) for a 16-byte one', () => {
    // mov dword [0x200000], imm32 is C7 05 + disp32 + imm32 = 10 bytes; 5 redundant DS
    // overrides make 15 bytes, 6 make 16.
    const ok = runGuest(`
  db 0x3e, 0x3e, 0x3e, 0x3e, 0x3e
  db 0xc7, 0x05
  dd 0x200000, 0x12345678
  cmp dword [0x200000], 0x12345678
  jne fail
  mov al, 'y'
  out 0xe9, al
fail:`);
    expect(ok).toBe('yn');
    const out = runGuest(`
  mov edi, here                 ; the handler prints EDI: the fault must point here
here:
  db 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e
  db 0xc7, 0x05
  dd 0x200000, 0x12345678`);
    const f = fault(out);
    expect(f.vec).toBe(13);
    expect(f.err).toBe(0);
    expect(f.eip).toBe(f.edi); // reported at the first prefix
    expect(f.cr2).toBe(0);
  });

  it('uses the last of several segment overrides and honours 66/67 in any order', () => {
    // Repeated overrides decode as one instruction (flat segments, so the value must read).
    const out = runGuest(`
  mov dword [0x200000], 0xa5a5a5a5
  mov eax, 0x200000
  db 0x64, 0x3e, 0x8b, 0x18            ; mov ebx, fs: ds: [eax]
  cmp ebx, 0xa5a5a5a5
  jne .bad
  db 0x66, 0x67, 0x8b, 0x0f             ; mov cx, [bx]  (67: 16-bit address; bx = 0xa5a5)
  mov edx, 0x1234
  db 0x67, 0x66, 0x89, 0xd0             ; mov ax, dx (prefix order does not matter)
  cmp ax, 0x1234
  jne .bad
  mov al, 'y'
  out 0xe9, al
.bad:`);
    expect(out).toBe('yn');
  });

  it('reports #PF with CR2 at the start of the missing page for an instruction that straddles into it', () => {
    // Put a 5-byte "mov eax, imm32" so that its last two bytes are on the missing page.
    const out = runGuest(`
  mov edi, 0x2ffffd
  mov byte [edi], 0xb8          ; mov eax, imm32 opcode at 0x2ffffd
  mov word [edi + 1], 0x1111   ; two immediate bytes on the present page
  jmp 0x2ffffd`);
    const f = fault(out);
    expect(f.vec).toBe(14);
    expect(f.cr2).toBe(0x300000);
    expect(f.eip).toBe(0x2ffffd);
    expect(f.err & 1).toBe(0); // not present
  });

  it('leaves ECX/ESI/EDI at the completed iterations when REP MOVSB faults in the middle', () => {
    const out = runGuest(`
  mov esi, 0x200000
  mov edi, 0x2ffff0             ; 16 bytes before the missing page
  mov ecx, 100
  cld
here:
  rep movsb`);
    const f = fault(out);
    expect(f.vec).toBe(14);
    expect(f.cr2).toBe(0x300000);
    expect(f.err & 2).toBe(2); // a write
    expect(f.ecx).toBe(100 - 16);
    expect(f.esi).toBe(0x200010);
    expect(f.edi).toBe(0x300000);
  });

  it('raises #UD for LOCK on an instruction or operand that does not allow it', () => {
    const out = runGuest(`
  db 0xf0, 0x89, 0xc3           ; lock mov ebx, eax`);
    expect(fault(out).vec).toBe(6);
    const ok = runGuest(`
  mov dword [0x200000], 1
  lock add dword [0x200000], 2
  cmp dword [0x200000], 3
  jne .bad
  mov al, 'y'
  out 0xe9, al
.bad:`);
    expect(ok).toBe('yn');
  });
});
