/**
 * CPU speed: guest instructions per wall-clock second of ftx86's core, with the same work's
 * wall time under QEMU (qemu-system-i386, software emulation) measured in the same run.
 *
 *   npx tsx bench/cpu.ts            the test guests (guests/bench/mix.bin, guests/hello)
 *   npx tsx bench/cpu.ts --linux    also the Debian guest: boot to the shell, then /bench.sh,
 *                                   with the block compiler (the default) and with the
 *                                   interpreter alone (FTX86_JIT=off), in alternating runs
 *
 * Each workload runs --runs times (default 3) on each emulator; the median counts. Results
 * go to bench/results/cpu.json, a table to stdout, a bar chart of the times to
 * bench/results/cpu.svg and, with --linux, one of the Debian workload's rates to cpu-rate.svg.
 * The ratio column is QEMU's time over ours: 1.0 would be parity with QEMU's TCG. The last
 * column is QEMU's time in ftx86's instructions (the guest and its work are the same, on the
 * virtual clock for us): it shows how fast the machine ran in this run, the yardstick for the
 * absolute M instr/s (issue 2 quotes QEMU at ~1,230 on the Debian workload on this machine).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const ftx86 = join(root, 'bin/ftx86');
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 3;
const withLinux = args.includes('--linux');

interface Sample { seconds: number; instructions?: number }
interface Row { workload: string; ftx86: Sample; qemu?: Sample; ratio?: number; mips?: number; qemuMips?: number }

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Run a command; resolve with wall seconds, stderr, and stdout, or reject on timeout. */
function timed(cmd: string, argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
  return new Promise<{ seconds: number; stdout: string; stderr: string; marks: Map<string, number> }>((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    const marks = new Map<string, number>();
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} timed out`)); }, opts.timeoutMs ?? 900_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
      for (const m of ['FTX86-READY', 'FTX86-BENCH']) {
        if (!marks.has(m) && stdout.includes(m)) marks.set(m, Number(process.hrtime.bigint() - t0) / 1e9);
      }
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    if (opts.input) child.stdin.end(opts.input); else child.stdin.end();
    child.on('exit', () => {
      clearTimeout(timer);
      resolve({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, stdout, stderr, marks });
    });
  });
}

function instructionsFrom(stderr: string): number | undefined {
  const m = /ftx86: (\d+) instructions/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

async function multibootWorkload(name: string, image: string): Promise<Row> {
  const ours: Sample[] = [];
  const theirs: Sample[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftx86-bench-'));
  for (let i = 0; i < runs; i++) {
    const r = await timed(ftx86, ['run', '--kernel', image, '--serial', 'none', '--debugcon', 'none', '--clock', 'virtual', '--stats']);
    ours.push({ seconds: r.seconds, instructions: instructionsFrom(r.stderr) });
    process.stderr.write(`  ${name} ftx86 run ${i + 1}: ${r.seconds.toFixed(2)} s\n`);
    const q = await timed('qemu-system-i386', ['-accel', 'tcg', '-M', 'pc', '-cpu', 'pentium3', '-m', '32', '-display', 'none',
      '-serial', 'none', '-monitor', 'none', '-nodefaults', '-no-reboot', '-kernel', image,
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-debugcon', `file:${join(dir, 'debugcon')}`]);
    theirs.push({ seconds: q.seconds });
    process.stderr.write(`  ${name} qemu  run ${i + 1}: ${q.seconds.toFixed(2)} s\n`);
  }
  rmSync(dir, { recursive: true, force: true });
  const f = median(ours.map((s) => s.seconds));
  const q = median(theirs.map((s) => s.seconds));
  const n = ours[0].instructions;
  return { workload: name, ftx86: { seconds: f, instructions: n }, qemu: { seconds: q }, ratio: q / f, mips: n ? n / f / 1e6 : undefined };
}

/** One run of the Debian guest under ftx86 (with extra environment) to its shell, then /bench.sh. */
async function ftx86Linux(out: string, append: string, env: Record<string, string>) {
  const r = await timed(ftx86, ['run', '--kernel', join(out, 'bzImage'), '--initrd', join(out, 'initrd.cpio.gz'),
    '--append', append, '--memory', '128M', '--serial', 'stdio', '--stats'], { env });
  const ready = r.marks.get('FTX86-READY');
  const done = r.marks.get('FTX86-BENCH');
  if (ready === undefined || done === undefined) throw new Error(`ftx86 Linux run did not complete:\n${r.stdout.slice(-2000)}`);
  return { boot: ready, work: done - ready, instructions: instructionsFrom(r.stderr) };
}

async function linuxWorkload(): Promise<Row[]> {
  const out = join(root, 'guests/linux/out');
  if (!existsSync(join(out, 'bzImage'))) throw new Error('guests/linux/out/bzImage missing: run guests/linux/build.sh');
  const versions = readFileSync(join(out, 'versions.env'), 'utf8');
  const cmdline = /KERNEL_CMDLINE="?([^"\n]*)"?/.exec(versions)?.[1] ?? 'console=ttyS0';
  const append = `${cmdline} ftx86.run=/bench.sh`;
  const boot: number[] = [];
  const work: number[] = [];
  const interp: number[] = [];
  const qboot: number[] = [];
  const qwork: number[] = [];
  let instructions: number | undefined;
  let interpInstructions: number | undefined;
  for (let i = 0; i < runs; i++) {
    const r = await ftx86Linux(out, append, {});
    boot.push(r.boot); work.push(r.work);
    instructions = r.instructions;
    process.stderr.write(`  linux ftx86 run ${i + 1}: boot ${r.boot.toFixed(1)} s, /bench.sh ${r.work.toFixed(1)} s\n`);
    const n = await ftx86Linux(out, append, { FTX86_JIT: 'off' });
    interp.push(n.boot + n.work);
    interpInstructions = n.instructions;
    process.stderr.write(`  linux ftx86 run ${i + 1}, interpreter alone: boot ${n.boot.toFixed(1)} s, /bench.sh ${n.work.toFixed(1)} s\n`);
    const q = await timed('qemu-system-i386', ['-accel', 'tcg', '-M', 'pc', '-m', '128', '-display', 'none', '-serial', 'stdio',
      '-monitor', 'none', '-nodefaults', '-no-reboot', '-kernel', join(out, 'bzImage'), '-initrd', join(out, 'initrd.cpio.gz'),
      '-append', append]);
    const qr = q.marks.get('FTX86-READY');
    const qd = q.marks.get('FTX86-BENCH');
    if (qr === undefined || qd === undefined) throw new Error('QEMU Linux run did not complete');
    qboot.push(qr); qwork.push(qd - qr);
    process.stderr.write(`  linux qemu  run ${i + 1}: boot ${qr.toFixed(1)} s, /bench.sh ${(qd - qr).toFixed(1)} s\n`);
  }
  const b = median(boot), w = median(work), qb = median(qboot), qw = median(qwork), ni = median(interp);
  const perS = (n: number | undefined, s: number) => (n ? n / s / 1e6 : undefined);
  return [
    { workload: 'linux boot to shell', ftx86: { seconds: b }, qemu: { seconds: qb }, ratio: qb / b },
    { workload: 'linux /bench.sh', ftx86: { seconds: w }, qemu: { seconds: qw }, ratio: qw / w },
    { workload: 'linux boot + bench (total)', ftx86: { seconds: b + w, instructions }, qemu: { seconds: qb + qw },
      ratio: (qb + qw) / (b + w), mips: perS(instructions, b + w), qemuMips: perS(instructions, qb + qw) },
    { workload: 'linux total, interpreter alone', ftx86: { seconds: ni, instructions: interpInstructions }, qemu: { seconds: qb + qw },
      ratio: (qb + qw) / ni, mips: perS(interpInstructions, ni), qemuMips: perS(interpInstructions, qb + qw) },
  ];
}

function chart(rows: Row[]): string {
  const w = 640, barH = 18, gap = 34, left = 210;
  const max = Math.max(...rows.flatMap((r) => [r.ftx86.seconds, r.qemu?.seconds ?? 0]));
  const scale = (w - left - 80) / max;
  const h = rows.length * gap + 50;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`;
  svg += `<text x="10" y="18" font-weight="bold">Wall time per workload (s, median of ${runs}); shorter is faster</text>`;
  rows.forEach((r, i) => {
    const y = 34 + i * gap;
    svg += `<text x="10" y="${y + 12}">${r.workload}</text>`;
    svg += `<rect x="${left}" y="${y}" width="${r.ftx86.seconds * scale}" height="${barH / 2}" fill="#3b6fb6"/>`;
    svg += `<text x="${left + r.ftx86.seconds * scale + 4}" y="${y + 8}">ftx86 ${r.ftx86.seconds.toFixed(2)}</text>`;
    if (r.qemu) {
      svg += `<rect x="${left}" y="${y + barH / 2 + 1}" width="${r.qemu.seconds * scale}" height="${barH / 2}" fill="#d2752d"/>`;
      svg += `<text x="${left + r.qemu.seconds * scale + 4}" y="${y + barH + 1}">QEMU ${r.qemu.seconds.toFixed(2)}</text>`;
    }
  });
  return svg + '</svg>\n';
}

/** The Debian workload's rate, ours against QEMU's in our instructions, with issue 2's targets marked. */
function rateChart(rows: Row[]): string {
  const total = rows.find((r) => r.workload === 'linux boot + bench (total)');
  const alone = rows.find((r) => r.workload === 'linux total, interpreter alone');
  const bars: [string, number, string][] = [];
  if (total?.mips) bars.push(['ftx86 (block compiler)', total.mips, '#3b6fb6']);
  if (alone?.mips) bars.push(['ftx86 (interpreter alone)', alone.mips, '#7fa3d6']);
  if (total?.qemuMips) bars.push(['QEMU TCG, same work', total.qemuMips, '#d2752d']);
  const w = 640, left = 190, gap = 30, h = bars.length * gap + 70;
  const max = Math.max(300, ...bars.map((b) => b[1]));
  const scale = (w - left - 60) / max;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`;
  svg += `<text x="10" y="18" font-weight="bold">Debian boot + /bench.sh: million guest instructions per wall-second</text>`;
  bars.forEach(([name, v, color], i) => {
    const y = 34 + i * gap;
    svg += `<text x="10" y="${y + 13}">${name}</text>`;
    svg += `<rect x="${left}" y="${y}" width="${v * scale}" height="18" fill="${color}"/>`;
    svg += `<text x="${left + v * scale + 4}" y="${y + 13}">${v.toFixed(0)}</text>`;
  });
  for (const t of [150, 300]) {
    const x = left + t * scale;
    svg += `<line x1="${x}" y1="28" x2="${x}" y2="${h - 24}" stroke="#555" stroke-dasharray="4 3"/>`;
    svg += `<text x="${x - 30}" y="${h - 10}" fill="#555">${t === 150 ? 'target 150' : 'aim 300'}</text>`;
  }
  return svg + '</svg>\n';
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  process.stderr.write('bench/cpu: test guests\n');
  rows.push(await multibootWorkload('mix.bin (ALU, memory, paging)', join(root, 'guests/bench/mix.bin')));
  rows.push(await multibootWorkload('hello.bin (primes, COM1)', join(root, 'guests/hello/hello.bin')));
  if (withLinux) {
    process.stderr.write('bench/cpu: Debian guest\n');
    rows.push(...await linuxWorkload());
  }
  console.log('| workload | ftx86 s | QEMU s | QEMU/ftx86 | ftx86 M instr/s | QEMU in ftx86 M instr/s |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.workload} | ${r.ftx86.seconds.toFixed(2)} | ${r.qemu?.seconds.toFixed(2) ?? '-'} | ${r.ratio?.toFixed(3) ?? '-'} | ${r.mips?.toFixed(1) ?? '-'} | ${r.qemuMips?.toFixed(0) ?? '-'} |`);
  }
  const dir = join(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cpu.json'), JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model.trim(), cores: cpus().length, loadAverage: loadavg()[0], runs, rows }, null, 2) + '\n');
  writeFileSync(join(dir, 'cpu.svg'), chart(rows));
  if (withLinux) writeFileSync(join(dir, 'cpu-rate.svg'), rateChart(rows));
}

main().catch((e) => { console.error(`bench/cpu: ${(e as Error).message}`); process.exitCode = 1; });
