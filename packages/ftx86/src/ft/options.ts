/**
 * The FT part of `ftx86 run`'s command line: its options, their help text and parsing.
 */
import { FT_DEFAULTS, type FtOptions } from './common.ts';

export const FT_HELP = `
Fault tolerance (Kemari-style; see docs/DESIGN.md):
  --ft ROLE            primary | secondary
  --listen HOST:PORT   secondary: where the primary connects (loopback unless told)
  --peer HOST:PORT     primary: the secondary to protect the guest with
  --ft-key FILE        shared key (16+ random bytes, mode 0600); never sent or logged
  --ft-batch-us N      wait N us after an epoch's first output before its checkpoint
                       (default ${FT_DEFAULTS.batchUs}: a burst lands in one epoch; 0 = at once, Kemari's
                       synchronous mode)
  --ft-interval-ms N   checkpoint at least every N ms even without output (default ${FT_DEFAULTS.intervalMs})
  --ft-max-unacked N   checkpoints in flight at most; at the bound the guest waits (default ${FT_DEFAULTS.maxUnacked})
  --ft-heartbeat-ms N  heartbeat interval on an idle link (default ${FT_DEFAULTS.heartbeatMs})
  --ft-timeout-ms N    declare the peer lost after N ms of silence (default ${FT_DEFAULTS.timeoutMs})
  --ft-peer-loss MODE  primary, when the secondary is lost: hold (default: release no more
                       output until this VM is told it is alone: kill -USR2 <pid>) |
                       continue (go on alone at once; UNSAFE under a network partition:
                       both VMs may then release output)
  --ft-verify          send the state digest with every COMMIT (--ft-verify-every K: every
                       K-th); the secondary checks its own and logs a mismatch loudly
  --ft-reprotect HOST:PORT  once alone (after a takeover, or told so), protect the guest
                       again with a new secondary there
  --ft-connect-timeout-ms N  primary: keep trying to reach the secondary this long at
                       start (default ${FT_DEFAULTS.connectTimeoutMs})
Logs (JSON lines, pino) go to stderr: epochs, pauses, bytes, failover.`;

export const FT_ARG_OPTIONS = {
  ft: { type: 'string' },
  listen: { type: 'string' },
  peer: { type: 'string' },
  'ft-key': { type: 'string' },
  'ft-batch-us': { type: 'string' },
  'ft-interval-ms': { type: 'string' },
  'ft-max-unacked': { type: 'string' },
  'ft-heartbeat-ms': { type: 'string' },
  'ft-timeout-ms': { type: 'string' },
  'ft-peer-loss': { type: 'string' },
  'ft-verify': { type: 'boolean' },
  'ft-verify-every': { type: 'string' },
  'ft-reprotect': { type: 'string' },
  'ft-connect-timeout-ms': { type: 'string' },
} as const;

type FtArgs = { [K in keyof typeof FT_ARG_OPTIONS]?: (typeof FT_ARG_OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

function hostPort(option: string, text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${option}: expected HOST:PORT, got "${text}"`);
  return { host: m[1] ?? m[2], port };
}

function count(option: string, text: string | undefined, dflt: number, min = 0): number {
  if (text === undefined) return dflt;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${option}: expected an integer >= ${min}, got "${text}"`);
  return n;
}

/** The FT options, or undefined without --ft. Throws Error with a one-line message. */
export function parseFtArgs(v: FtArgs): FtOptions | undefined {
  const ftOnly = Object.keys(FT_ARG_OPTIONS).filter((k) => k !== 'ft' && v[k as keyof FtArgs] !== undefined);
  if (v.ft === undefined) {
    if (ftOnly.length > 0) throw new Error(`--${ftOnly[0]}: only with --ft primary|secondary`);
    return undefined;
  }
  const role = v.ft;
  if (role !== 'primary' && role !== 'secondary') throw new Error(`--ft: expected primary or secondary, got "${role}"`);
  if (v['ft-key'] === undefined) throw new Error('--ft: give the shared key with --ft-key FILE');
  if (role === 'primary' && v.peer === undefined) throw new Error('--ft primary: say where the secondary is with --peer HOST:PORT');
  if (role === 'secondary' && v.listen === undefined) throw new Error('--ft secondary: say where to listen with --listen HOST:PORT');
  if (role === 'primary' && v.listen !== undefined) throw new Error('--listen: only for --ft secondary');
  if (role === 'secondary' && v.peer !== undefined) throw new Error('--peer: only for --ft primary');
  const peerLoss = v['ft-peer-loss'] ?? 'hold';
  if (peerLoss !== 'hold' && peerLoss !== 'continue') throw new Error(`--ft-peer-loss: expected hold or continue, got "${peerLoss}"`);
  const verifyEvery = v['ft-verify-every'] !== undefined ? count('--ft-verify-every', v['ft-verify-every'], 1, 1) : v['ft-verify'] ? 1 : 0;
  const heartbeatMs = count('--ft-heartbeat-ms', v['ft-heartbeat-ms'], FT_DEFAULTS.heartbeatMs, 10);
  const timeoutMs = count('--ft-timeout-ms', v['ft-timeout-ms'], FT_DEFAULTS.timeoutMs, 50);
  if (timeoutMs <= heartbeatMs) throw new Error(`--ft-timeout-ms: ${timeoutMs} must be longer than the heartbeat interval (${heartbeatMs} ms)`);
  return {
    role,
    peer: v.peer !== undefined ? hostPort('--peer', v.peer) : undefined,
    listen: v.listen !== undefined ? hostPort('--listen', v.listen) : undefined,
    keyFile: v['ft-key'],
    batchUs: count('--ft-batch-us', v['ft-batch-us'], FT_DEFAULTS.batchUs),
    intervalMs: count('--ft-interval-ms', v['ft-interval-ms'], FT_DEFAULTS.intervalMs, 1),
    maxUnacked: count('--ft-max-unacked', v['ft-max-unacked'], FT_DEFAULTS.maxUnacked, 1),
    heartbeatMs,
    timeoutMs,
    peerLoss,
    verifyEvery,
    reprotect: v['ft-reprotect'] !== undefined ? hostPort('--ft-reprotect', v['ft-reprotect']) : undefined,
    connectTimeoutMs: count('--ft-connect-timeout-ms', v['ft-connect-timeout-ms'], FT_DEFAULTS.connectTimeoutMs, 1),
  };
}
