/**
 * What a test guest run produces, and how two runs are compared.
 *
 * A guest prints `key: value` lines on the debug console (port 0xE9). Lines that
 * start with `hwcheck ` test a behaviour that QEMU is known not to model (each is
 * listed in the guest's header comment); they carry the guest's own verdict against
 * the SDM, so they are left out of the comparison with QEMU and must read `ok` on
 * ftx86.
 */

export interface GuestRun {
  /** Everything the guest wrote to port 0xE9, decoded as latin1. */
  debugOutput: string;
  /** The process exit status; a guest that wrote v to port 0xF4 gives (v << 1) | 1. */
  exitCode: number;
}

/** Exit status of a guest that printed everything and wrote 0 to port 0xF4. */
export const EXIT_PASSED = 1;

export const HWCHECK_PREFIX = 'hwcheck ';

export function transcriptLines(output: string): string[] {
  const lines = output.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** The lines compared between QEMU and ftx86. */
export function comparableLines(output: string): string[] {
  return transcriptLines(output).filter((line) => !line.startsWith(HWCHECK_PREFIX));
}

/** The `hwcheck` lines that do not read `ok`. */
export function failedHwChecks(output: string): string[] {
  return transcriptLines(output).filter((line) => line.startsWith(HWCHECK_PREFIX) && !line.endsWith(': ok'));
}

const CONTEXT = 3;
const MAX_DIFF_LINES = 200;
/** Above this many cells the LCS table is skipped and the middle is shown as replaced. */
const MAX_LCS_CELLS = 16_000_000;

type Edit = { op: ' ' | '-' | '+'; line: string; a: number; b: number };

/**
 * A unified diff of two line lists (expected = `-`, actual = `+`), with hunk headers
 * giving 1-based line numbers, or '' when they are equal. Long diffs are cut after
 * MAX_DIFF_LINES lines with a note of how many were left out.
 */
export function lineDiff(expected: string[], actual: string[], labels = { expected: 'expected', actual: 'actual' }): string {
  const edits = diffEdits(expected, actual);
  if (edits.every((e) => e.op === ' ')) return '';

  // Each change shows CONTEXT unchanged lines either side; overlapping windows merge.
  const hunks: Edit[][] = [];
  let from = -1;
  let to = -1;
  edits.forEach((edit, i) => {
    if (edit.op === ' ') return;
    const lo = Math.max(i - CONTEXT, 0);
    const hi = Math.min(i + CONTEXT, edits.length - 1);
    if (from >= 0 && lo > to + 1) {
      hunks.push(edits.slice(from, to + 1));
      from = lo;
    } else if (from < 0) {
      from = lo;
    }
    to = hi;
  });
  hunks.push(edits.slice(from, to + 1));

  const out = [`--- ${labels.expected}`, `+++ ${labels.actual}`];
  for (const hunk of hunks) {
    const first = hunk[0];
    const aLen = hunk.filter((e) => e.op !== '+').length;
    const bLen = hunk.filter((e) => e.op !== '-').length;
    out.push(`@@ -${first.a + 1},${aLen} +${first.b + 1},${bLen} @@`);
    for (const e of hunk) out.push(`${e.op}${e.line}`);
  }
  if (out.length > MAX_DIFF_LINES) {
    const left = out.length - MAX_DIFF_LINES;
    return [...out.slice(0, MAX_DIFF_LINES), `... ${left} more diff lines`].join('\n');
  }
  return out.join('\n');
}

/** Common prefix and suffix are matched directly; the middle by a longest common subsequence. */
function diffEdits(a: string[], b: string[]): Edit[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;

  const edits: Edit[] = [];
  for (let i = 0; i < pre; i++) edits.push({ op: ' ', line: a[i], a: i, b: i });

  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const n = am.length;
  const m = bm.length;
  if ((n + 1) * (m + 1) <= MAX_LCS_CELLS) {
    // lcs[i][j] = LCS length of am[i..] and bm[j..], stored row-major.
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && am[i] === bm[j]) {
        edits.push({ op: ' ', line: am[i], a: pre + i, b: pre + j });
        i++;
        j++;
      } else if (i < n && (j === m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
        // Deletions first, so a changed line reads as `-old` then `+new`.
        edits.push({ op: '-', line: am[i], a: pre + i, b: pre + j });
        i++;
      } else {
        edits.push({ op: '+', line: bm[j], a: pre + i, b: pre + j });
        j++;
      }
    }
  } else {
    am.forEach((line, i) => edits.push({ op: '-', line, a: pre + i, b: pre }));
    bm.forEach((line, j) => edits.push({ op: '+', line, a: pre + n, b: pre + j }));
  }

  for (let k = 0; k < suf; k++) {
    edits.push({ op: ' ', line: a[a.length - suf + k], a: a.length - suf + k, b: b.length - suf + k });
  }
  return edits;
}
