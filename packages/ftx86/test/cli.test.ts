import { describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { writeFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = fileURLToPath(new URL('../../../bin/ftx86', import.meta.url));

function ftx86(args: string[]) {
  const r = spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ftx86 run', () => {
  it('boots the built-in default guest, which prints on COM1 and counts primes', () => {
    const r = ftx86(['run', '--serial', 'stdio']);
    expect(r.stdout).toContain('Hello from ftx86');
    expect(r.stdout).toContain('CPU vendor: GenuineIntel');
    // 5133 primes below 50,000: computed by the guest on the emulated CPU.
    expect(r.stdout).toContain('Primes below 50000: 5133');
  });

  it('explains every option in --help', () => {
    const r = ftx86(['run', '--help']);
    expect(r.code).toBe(0);
    for (const opt of ['--kernel', '--initrd', '--append', '--memory', '--disk', '--net', '--serial', '--bios', '--no-reboot', '--trace-io', '--clock']) {
      expect(r.stdout).toContain(opt);
    }
  });

  it('refuses bad options and unreadable images with one clear line and exit code 2', () => {
    for (const args of [
      ['run', '--memory', 'lots'],
      ['run', '--memory', '1K'],
      ['run', '--bogus'],
      ['run', '--clock', 'sundial'],
      ['run', '--kernel', '/nonexistent/kernel.bin'],
      ['run', '--serial', 'pigeon'],
      ['fly'],
    ]) {
      const r = ftx86(args);
      expect(r.code, args.join(' ')).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(/^ftx86: /);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });

  it('refuses a file that is not a kernel image', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftx86-cli-'));
    const junk = join(dir, 'junk.bin');
    writeFileSync(junk, Buffer.alloc(10000, 0x90));
    const r = ftx86(['run', '--kernel', junk]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ftx86: --kernel: .*not a Multiboot image/);
  });

  it('boots a firmware ROM from the reset vector with --bios', () => {
    const rom = fileURLToPath(new URL('../../../guests/rom/rom.bin', import.meta.url));
    const r = ftx86(['run', '--bios', rom, '--serial', 'none']);
    expect(r.stdout).toContain('ftx86 ROM: running from F000 after the reset vector\nok\n');
    expect(r.code).toBe(5); // the ROM wrote 2 to port 0xF4
    const small = ftx86(['run', '--bios', fileURLToPath(new URL('../../../guests/hello/hello.bin', import.meta.url))]);
    expect(small.code).toBe(2);
    expect(small.stderr).toMatch(/^ftx86: --bios: .*multiple of 4 KiB/);
  });

  it('exits with code 4 when the CPU halts with interrupts disabled for good', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftx86-cli-'));
    const rom = Buffer.alloc(0x10000, 0xff);
    rom.set([0xfa, 0xf4], 0xfff0); // cli; hlt at the reset vector
    writeFileSync(join(dir, 'halt.rom'), rom);
    const r = ftx86(['run', '--bios', join(dir, 'halt.rom'), '--serial', 'none']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/halted with interrupts disabled/);
  });

  it('logs port writes with --trace-io', () => {
    const r = ftx86(['run', '--serial', 'none', '--trace-io', '0x3f8,0x604']);
    expect(r.stderr).toMatch(/io: out 0x3f8 <- 0x48 \(1\)/); // 'H' of Hello
    expect(r.stderr).toMatch(/io: out 0x604 <- 0x3400 \(2\)/); // SLP_TYP 5 | SLP_EN
  });

  it('sends the console to a file with --serial file:PATH', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftx86-cli-'));
    const out = join(dir, 'console.txt');
    const r = ftx86(['run', '--serial', `file:${out}`]);
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'latin1')).toContain('Primes below 50000: 5133');
  });

  it('connects the console to a TCP server with --serial tcp:HOST:PORT', async () => {
    const received: Buffer[] = [];
    const server = createServer((sock) => { sock.on('data', (d) => received.push(d)); });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    const child = spawn(BIN, ['run', '--serial', `tcp:127.0.0.1:${port}`], { stdio: 'ignore' });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    server.close();
    expect(code).toBe(0);
    expect(Buffer.concat(received).toString('latin1')).toContain('Hello from ftx86');
  });

  it('exits with the debug-exit status of a guest that writes port 0xF4', () => {
    const bin = fileURLToPath(new URL('../../../guests/bench/mix.bin', import.meta.url));
    const r = ftx86(['run', '--kernel', bin, '--serial', 'none']);
    expect(r.code).toBe(1); // (0 << 1) | 1
    expect(r.stdout.trim()).toMatch(/^[0-9a-f]{8}$/);
  });
});
