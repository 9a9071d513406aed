/**
 * `ftx86 run --ft ...`: the glue between the command line and the FT primary and secondary.
 */
import { RawFileBlockBackend } from '@ftx86/emulator/src/block-backend.ts';
import type { Pc } from '@ftx86/emulator/src/pc.ts';
import type { PlainValue } from '@ftx86/emulator/src/snapshot/value.ts';
import type { EventTap } from '@ftx86/event-tap';
import { KeyFileError } from '@ftx86/ft-trans';
import {
  UsageError, EXIT_INTERRUPTED, exitCodeFor, openNet, openSerial, readBootRecord, rebootFromRecord, type RunOptions,
} from '../cli.ts';
import { ftLogger, type FtOptions } from './common.ts';
import { FtPrimary } from './primary.ts';
import { FtSecondary } from './secondary.ts';

/** Connect to the secondary and sync the guest to it; the returned primary runs the guest. */
export async function startPrimary(o: { pc: Pc; tap: EventTap; ft: FtOptions; boot: PlainValue }): Promise<FtPrimary> {
  const log = ftLogger();
  let primary: FtPrimary;
  try {
    primary = new FtPrimary({ pc: o.pc, tap: o.tap, ft: o.ft, log, boot: o.boot });
  } catch (e) {
    if (e instanceof KeyFileError) throw new UsageError(`--ft-key: ${e.message}`);
    throw e;
  }
  o.tap.attach(o.pc.machine.hooks);
  o.tap.setOnOutput(() => primary.onOutput());
  o.pc.machine.hooks.on('netSend', (frame) => primary.observeFrame(frame));
  try {
    await primary.start();
  } catch (e) {
    throw new UsageError(`--peer: ${(e as Error).message}`);
  }
  return primary;
}

/** Mirror a primary, take over when it dies, and run the guest from then on. */
export async function runSecondary(opts: RunOptions, ft: FtOptions): Promise<number> {
  const log = ftLogger();
  let disk: RawFileBlockBackend | undefined;
  if (opts.disk) {
    try {
      disk = new RawFileBlockBackend(opts.disk);
    } catch (e) {
      throw new UsageError(`--disk: ${(e as Error).message}`);
    }
  }
  const debugConsole = opts.debugcon === 'stdio' ? (b: number) => { process.stdout.write(Uint8Array.of(b)); } : undefined;
  let interrupted = false;
  let pcRef: Pc | undefined;
  const secondary = new FtSecondary(ft, disk, {
    openSerial: (onInput) => openSerial(opts.serial, onInput, () => { interrupted = true; pcRef?.machine.stop(); }),
    openNet: opts.net ? () => openNet(opts.net!) : undefined,
    onReset: (pc, boot) => {
      pcRef = pc;
      const record = readBootRecord(boot);
      if (record && !record.bios) pc.machine.onReset(() => rebootFromRecord(pc, record));
    },
    debugConsole,
    memoryBytes: opts.given.has('memory') ? opts.memory : undefined,
  }, log);
  const onSigint = () => { interrupted = true; pcRef?.machine.stop(); if (!pcRef) process.exit(EXIT_INTERRUPTED); };
  process.on('SIGINT', onSigint);
  try {
    const { outcome, code } = await secondary.run().catch((e: unknown) => {
      if (e instanceof KeyFileError) throw new UsageError(`--ft-key: ${e.message}`);
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`--listen: ${(e as Error).message}`);
      throw e;
    });
    if (interrupted) return EXIT_INTERRUPTED;
    return outcome ? exitCodeFor(outcome) : code;
  } finally {
    process.off('SIGINT', onSigint);
    disk?.close();
  }
}
