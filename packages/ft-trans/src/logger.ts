// The logging seam. Callers inject a pino logger (or anything with the same shape); the
// protocol logs refusals and link failures through it and never logs key material.

export interface FtLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

function line(level: number, obj: Record<string, unknown>, msg: string): void {
  // pino's line format (numeric level, epoch ms time, msg), so both kinds of logs parse alike.
  process.stderr.write(`${JSON.stringify({ level, time: Date.now(), ...obj, msg })}\n`);
}

/** Default logger: pino-style JSON lines on stderr; a refusal should never vanish silently. */
export const stderrLogger: FtLogger = {
  info: (obj, msg) => line(30, obj, msg),
  warn: (obj, msg) => line(40, obj, msg),
  error: (obj, msg) => line(50, obj, msg),
};

export const silentLogger: FtLogger = {
  info: () => {},
  warn: () => {},
  error: () => {},
};
