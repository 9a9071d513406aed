import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Machine } from '../src/machine.ts';
import { runTestGuest, DirtyVerifier, DirtyTrackingError } from '../src/testbed.ts';
import { loadMultiboot } from '../src/loaders/multiboot.ts';

const mix = new Uint8Array(readFileSync(fileURLToPath(new URL('../../../guests/bench/mix.bin', import.meta.url))));
const hello = new Uint8Array(readFileSync(fileURLToPath(new URL('../../../guests/hello/hello.bin', import.meta.url))));

describe('dirty-page tracking', () => {
  it('reports every page a paging guest changes (stores, rep movsd, stack, page-table A/D bits)', () => {
    const r = runTestGuest(mix, { memoryBytes: 16 << 20, verifyDirtyEvery: 2_000_000 });
    expect(r.exitStatus).toBe(1);
    expect(r.output.trim()).toMatch(/^[0-9a-f]{8}$/);
  });

  it('fails the shadow check when RAM changes behind the core\'s back (negative control)', () => {
    const m = new Machine({ memoryBytes: 8 << 20, clock: 'virtual', rtcBaseMs: 0 });
    loadMultiboot(m.cpu, hello);
    const v = new DirtyVerifier(m);
    m.runSync(10_000);
    v.check();
    m.cpu.ram[0x345678] ^= 0xff; // not through writePhysical: the core cannot know
    expect(() => v.check()).toThrow(DirtyTrackingError);
  });

  it('counts host DMA writes made through writePhysical', () => {
    const m = new Machine({ memoryBytes: 8 << 20, clock: 'virtual', rtcBaseMs: 0 });
    const v = new DirtyVerifier(m);
    m.cpu.writePhysical(0x200ffe, Uint8Array.of(1, 2, 3, 4)); // spans two pages
    expect([...m.cpu.state.dirtyPages()].sort()).toEqual([0x200, 0x201]);
    v.check();
  });

  it('lists an epoch\'s pages in first-write order, each once, and starts empty after a reset', () => {
    const m = new Machine({ memoryBytes: 8 << 20, clock: 'virtual', rtcBaseMs: 0 });
    m.cpu.exports.dirty_reset();
    m.cpu.writePhysical(0x5000, Uint8Array.of(1));
    m.cpu.writePhysical(0x3000, Uint8Array.of(1));
    m.cpu.writePhysical(0x5001, Uint8Array.of(1));
    expect([...m.cpu.state.dirtyPages()]).toEqual([5, 3]);
    m.cpu.exports.dirty_reset();
    expect(m.cpu.state.dirtyPages().length).toBe(0);
  });
});
