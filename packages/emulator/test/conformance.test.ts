import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { runConformanceDir, loadExclusions } from '../tools/conformance.ts';

const dir = fileURLToPath(new URL('./data/conformance/80286-real', import.meta.url));
const exclusionsFile = fileURLToPath(new URL('./data/conformance/80286-real.exclusions.json', import.meta.url));

describe('hardware-captured real-mode vectors (80286-real)', () => {
  it('every vector passes except the listed 286 artifacts', () => {
    const exclusions = loadExclusions(exclusionsFile);
    const results = runConformanceDir(dir, exclusions);
    const failures = results.flatMap((r) => r.failures.map((f) => `${r.file}: ${f}`));
    const passed = results.reduce((n, r) => n + r.passed, 0);
    expect(failures).toEqual([]);
    expect(passed + exclusions.size).toBe(12960);
  }, 300_000);

  it('every exclusion names a test in the set and gives a reason', () => {
    const exclusions = loadExclusions(exclusionsFile);
    const hashes = new Set<string>();
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz'))) {
      for (const line of gunzipSync(readFileSync(join(dir, f))).toString().split('\n')) {
        if (line) hashes.add((JSON.parse(line) as { hash: string }).hash);
      }
    }
    for (const [hash, reason] of exclusions) {
      expect(hashes.has(hash), hash).toBe(true);
      expect(reason.length).toBeGreaterThan(20);
    }
  });
});
