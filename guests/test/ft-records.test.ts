// The output-commit checker itself: it must pass what at-least-once delivery allows and
// catch what it forbids, or the FT tests built on it prove nothing.
import { describe, expect, it } from 'vitest';
import { checkRecords } from './ft-harness.ts';

const rec = (n: number, t: number) => `REC ${n} now at ${t} nsecs\r\n`;

describe('checkRecords', () => {
  it('accepts a failover that resumes mid-record, and duplicates re-released from a line start', () => {
    const a = rec(1, 100) + rec(2, 200) + 'REC 3 now at 3';
    expect(checkRecords([a, '00 nsecs\r\n' + rec(4, 400)])).toEqual([]);
    expect(checkRecords([a, rec(3, 300) + rec(4, 400)])).toEqual([]);
    expect(checkRecords([rec(1, 100) + rec(2, 200), rec(2, 200) + rec(3, 300)])).toEqual([]);
  });

  it('catches a contradicted record, a contradicted partial record, and a gap', () => {
    expect(checkRecords([rec(1, 100) + rec(2, 200), rec(2, 250) + rec(3, 300)])).toEqual([expect.stringContaining('record 2 contradicted')]);
    expect(checkRecords([rec(1, 100) + 'REC 2 now at 2', rec(2, 310) + rec(3, 400)])).toEqual([expect.stringContaining('record 2 contradicted')]);
    expect(checkRecords([rec(1, 100), rec(3, 300)])).toEqual(['gap: record 1 then 3']);
  });
});
