// A serial console on the other end of a child process's stdin/stdout, driven
// the way expect(1) drives a terminal: wait for a pattern, send a line, read
// what came back. It knows nothing of the emulator behind the console (QEMU
// today, ftx86 tomorrow): anything that puts a guest's UART on stdio will do.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

export interface SerialSessionOptions {
  /** Name used in error messages, e.g. "qemu". */
  name?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** If set, every byte of console output is also appended to this file. */
  transcriptPath?: string;
  /** How many console lines an error message quotes (default 40). */
  tailLines?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CommandResult {
  /** What the command printed, with CRs removed. */
  output: string;
  /** Its exit status, as the shell's $? reported it. */
  status: number;
}

interface Waiter {
  check(): void;
  fail(error: Error): void;
}

// Terminal control sequences (busybox ash asks for the cursor position with ESC[6n).
const controlSequence = /\x1b\[[0-9;?]*[A-Za-z]/g;

export class SerialSession {
  readonly child: ChildProcess;
  private readonly name: string;
  private readonly tailLines: number;
  private readonly transcriptPath?: string;
  private readonly decoder = new StringDecoder('utf8');
  private transcript = '';
  /** expect() searches from here: the end of the previous match. */
  private cursor = 0;
  private stderrTail = '';
  private exitStatus: ExitStatus | null = null;
  private spawnError: Error | null = null;
  private waiters = new Set<Waiter>();
  private commandCount = 0;

  private constructor(command: string, args: string[], options: SerialSessionOptions) {
    this.name = options.name ?? command;
    this.tailLines = options.tailLines ?? 40;
    this.transcriptPath = options.transcriptPath;
    if (this.transcriptPath) writeFileSync(this.transcriptPath, '');
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      if (this.transcriptPath) appendFileSync(this.transcriptPath, chunk);
      this.transcript += this.decoder.write(chunk).replace(/\r/g, '');
      this.notify();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-4096);
    });
    // Writes after the child died would otherwise raise EPIPE as an unhandled error.
    this.child.stdin!.on('error', () => {});
    this.child.on('error', (error) => {
      this.spawnError = error;
      this.notify();
    });
    // 'close', not 'exit': by then stdout is drained, so no output arrives after it.
    this.child.on('close', (code, signal) => {
      this.exitStatus = { code, signal };
      this.notify();
    });
  }

  /** Starts `command args...` with its stdin/stdout as the console. */
  static spawn(command: string, args: string[], options: SerialSessionOptions = {}): SerialSession {
    return new SerialSession(command, args, options);
  }

  /** Everything the console printed so far, CRs removed. */
  get output(): string {
    return this.transcript;
  }

  /** The last 4 KiB the process wrote to stderr. */
  get stderr(): string {
    return this.stderrTail;
  }

  /** The exit status once the process has exited, else null. */
  get exited(): ExitStatus | null {
    return this.exitStatus;
  }

  /** The last `lines` lines of console output. */
  tail(lines = this.tailLines): string {
    return this.transcript.split('\n').slice(-lines).join('\n');
  }

  /**
   * Waits until `pattern` matches console output that arrived after the
   * previous match, and returns the match. Rejects on timeout or exit.
   */
  expect(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const regex = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    return this.waitFor(`${pattern}`, timeoutMs, () => {
      const match = regex.exec(this.transcript.slice(this.cursor));
      if (!match) return undefined;
      match.index += this.cursor;
      this.cursor = match.index + match[0].length;
      return match;
    });
  }

  /** Sends raw text to the console. */
  send(text: string): void {
    if (this.exitStatus) throw this.error(`cannot send ${JSON.stringify(text)}: process has exited`);
    this.child.stdin!.write(text);
  }

  /** Sends a line, as if typed and ended with Enter. */
  sendLine(line: string): void {
    this.send(`${line}\n`);
  }

  /**
   * Runs `command` in a POSIX shell on the console and returns its output and
   * status. The output is delimited by markers the shell prints around it;
   * they are spelled with an empty "" inside so the echo of the typed line
   * never matches them.
   */
  async run(command: string, timeoutMs: number): Promise<CommandResult> {
    const id = ++this.commandCount;
    this.sendLine(`echo FTX86_BEGIN""_${id}; ${command}; echo FTX86_END""_${id}:$?`);
    const match = await this.expect(
      new RegExp(`(?:^|\\n)FTX86_BEGIN_${id}\\n([\\s\\S]*?)FTX86_END_${id}:(\\d+)\\n`),
      timeoutMs,
    );
    return { output: match[1].replace(controlSequence, ''), status: Number(match[2]) };
  }

  /** Waits for the process to exit and returns how it did. */
  waitForExit(timeoutMs: number): Promise<ExitStatus> {
    return this.waitFor('process exit', timeoutMs, () => this.exitStatus ?? undefined, true);
  }

  /** Kills the process if it still runs and waits until it is gone. */
  async close(): Promise<ExitStatus> {
    if (!this.exitStatus && !this.spawnError) this.child.kill('SIGKILL');
    return this.spawnError ? { code: null, signal: null } : this.waitForExit(10_000);
  }

  private waitFor<T>(what: string, timeoutMs: number, poll: () => T | undefined, exitIsExpected = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const started = Date.now();
      const waiter: Waiter = {
        check: () => {
          const result = poll();
          if (result !== undefined) return settle(() => resolve(result));
          if (this.spawnError) return settle(() => reject(this.error(`failed to start (${this.spawnError!.message}) while waiting for ${what}`)));
          if (this.exitStatus && !exitIsExpected) {
            return settle(() => reject(this.error(`exited (${describeExit(this.exitStatus!)}) while waiting for ${what}`)));
          }
        },
        fail: (error) => settle(() => reject(error)),
      };
      const timer = setTimeout(
        () => waiter.fail(this.error(`timed out after ${Date.now() - started} ms waiting for ${what}`)),
        timeoutMs,
      );
      const settle = (finish: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        finish();
      };
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter.check();
  }

  private error(message: string): Error {
    let text = `${this.name}: ${message}\n--- last ${this.tailLines} console lines ---\n${this.tail()}`;
    if (this.stderrTail) text += `\n--- stderr ---\n${this.stderrTail}`;
    return new Error(text);
  }
}

function describeExit(status: ExitStatus): string {
  return status.signal ? `signal ${status.signal}` : `code ${status.code}`;
}
