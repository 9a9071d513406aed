/**
 * The tagged binary encoding of plain data: what a device's saveState() returns (numbers,
 * booleans, strings, arrays, nested objects with named fields, Uint8Array), written so that
 * it describes itself (a reader needs no schema) and so that equal states give equal bytes.
 *
 *   0x00 null      0x01 false      0x02 true
 *   0x03 uint      varint v                    (safe integers >= 0)
 *   0x04 negint    varint -v                   (safe integers < 0)
 *   0x05 float64   8 bytes, little-endian      (everything else: fractions, -0, NaN, +-Infinity)
 *   0x06 string    varint byte length, UTF-8
 *   0x07 bytes     varint length, raw bytes    (Uint8Array)
 *   0x08 array     varint count, values
 *   0x09 object    varint count, (varint key length, UTF-8 key, value)* with keys sorted
 *   0x0a bigint    varint byte length, magnitude little-endian (>= 0)
 *   0x0b negbigint varint byte length, magnitude little-endian (< 0)
 *
 * Varints are LEB128, minimal, at most 8 bytes (2^53). Object keys are written in sorted
 * order and fields holding `undefined` are left out (as JSON does), so the encoding is
 * canonical: state-digest.ts hashes it, and FT peers can compare states byte for byte.
 */
import { SnapshotError } from './errors.ts';

export type PlainValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PlainValue[]
  | { [key: string]: PlainValue };

const TAG_NULL = 0x00;
const TAG_FALSE = 0x01;
const TAG_TRUE = 0x02;
const TAG_UINT = 0x03;
const TAG_NEGINT = 0x04;
const TAG_F64 = 0x05;
const TAG_STRING = 0x06;
const TAG_BYTES = 0x07;
const TAG_ARRAY = 0x08;
const TAG_OBJECT = 0x09;
const TAG_BIGINT = 0x0a;
const TAG_NEGBIGINT = 0x0b;

/** Deeper nesting is refused on both sides: it bounds the decoder's recursion on hostile input. */
export const MAX_VALUE_DEPTH = 64;
/** A bigint's magnitude is at most this many bytes (BigInt parsing is quadratic). */
const MAX_BIGINT_BYTES = 1024;
const MAX_VARINT_BYTES = 8;

const utf8Encoder = new TextEncoder();
// fatal: a string field holding invalid UTF-8 is a malformed file, not a string with U+FFFD.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** A growable output buffer, for the small payloads (device states, meta). */
export class ByteWriter {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  varint(v: number): void {
    this.ensure(MAX_VARINT_BYTES);
    // Arithmetic rather than shifts: values go up to 2^53, past 32-bit bitwise operators.
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  utf8(s: string): void {
    // A UTF-16 code unit becomes at most 3 UTF-8 bytes.
    this.ensure(MAX_VARINT_BYTES + s.length * 3);
    const start = this.pos;
    const lengthBytes = varintLength(s.length * 3);
    const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(start + lengthBytes));
    // The length prefix was sized for the worst case; write it, then close any gap.
    const n = varintLength(written);
    if (n !== lengthBytes) this.buf.copyWithin(start + n, start + lengthBytes, start + lengthBytes + written);
    this.varint(written);
    this.pos = start + n + written;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

function varintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A lone surrogate has no UTF-8 form: it would come back as U+FFFD, a silent change. */
function checkWellFormed(s: string, path: string): void {
  if (LONE_SURROGATE.test(s)) throw new SnapshotError('unencodable', `cannot encode ${path}: string holds a lone UTF-16 surrogate`);
}

/** Encode plain data; `path` names the value in errors ("pic8259.master.irr"). */
export function encodeValue(value: unknown, path = 'value'): Uint8Array {
  const w = new ByteWriter();
  try {
    writeValue(w, value, null, 0);
  } catch (e) {
    if (e !== NEEDS_PATH) throw e;
    // Walk again naming every value on the way, for the error's path.
    writeValue(new ByteWriter(), value, path, 0);
    throw e; // not reached: the named walk throws the same problem with its path
  }
  return w.finish();
}

/** Thrown by an unnamed walk (path null) at the first problem; encodeValue walks again with names. */
const NEEDS_PATH = new Error('unencodable value (walked without names)');

/**
 * Encoded object keys, each checked once: a checkpoint encodes every device's state several
 * times a second and the field names are the same every time (bounded, so that data used as
 * keys cannot grow it without limit).
 */
const keyBytes = new Map<string, Uint8Array>();
const KEY_CACHE_MAX = 4096;

function encodedKey(k: string, path: string | null): Uint8Array {
  let b = keyBytes.get(k);
  if (b !== undefined) return b;
  if (LONE_SURROGATE.test(k)) checkWellFormed(k, `${named(path)} field name`);
  const w = new ByteWriter();
  w.utf8(k);
  b = w.finish();
  if (keyBytes.size < KEY_CACHE_MAX) keyBytes.set(k, b);
  return b;
}

/** The value's name for an error message; an unnamed walk gives up here (see encodeValue). */
function named(path: string | null): string {
  if (path === null) throw NEEDS_PATH;
  return path;
}

/**
 * Write one value. `path` names it for errors; null walks without building names (the
 * common case: a problem then throws NEEDS_PATH and encodeValue walks again with them).
 * No closures in here: tsx's transform names each one it creates (a defineProperty call),
 * which cost more than the encoding itself.
 */
function writeValue(w: ByteWriter, v: unknown, path: string | null, depth: number): void {
  if (depth > MAX_VALUE_DEPTH) throw new SnapshotError('unencodable', `cannot encode ${named(path)}: nested deeper than ${MAX_VALUE_DEPTH} levels (a cycle?)`);
  switch (typeof v) {
    case 'boolean':
      w.u8(v ? TAG_TRUE : TAG_FALSE);
      return;
    case 'number':
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        if (v >= 0) {
          w.u8(TAG_UINT);
          w.varint(v);
        } else {
          w.u8(TAG_NEGINT);
          w.varint(-v);
        }
      } else {
        w.u8(TAG_F64);
        w.f64(v);
      }
      return;
    case 'string':
      if (LONE_SURROGATE.test(v)) checkWellFormed(v, named(path));
      w.u8(TAG_STRING);
      w.utf8(v);
      return;
    case 'bigint': {
      const negative = v < 0n;
      let m = negative ? -v : v;
      const mag: number[] = [];
      while (m > 0n) {
        mag.push(Number(m & 0xffn));
        m >>= 8n;
      }
      if (mag.length > MAX_BIGINT_BYTES) throw new SnapshotError('unencodable', `cannot encode ${named(path)}: bigint wider than ${MAX_BIGINT_BYTES} bytes`);
      w.u8(negative ? TAG_NEGBIGINT : TAG_BIGINT);
      w.varint(mag.length);
      w.bytes(Uint8Array.from(mag));
      return;
    }
    case 'object':
      break;
    default:
      throw new SnapshotError('unencodable', `cannot encode ${named(path)}: ${typeof v} is not plain data`);
  }
  if (v === null) {
    w.u8(TAG_NULL);
    return;
  }
  if (v instanceof Uint8Array) {
    w.u8(TAG_BYTES);
    w.varint(v.length);
    w.bytes(v);
    return;
  }
  if (Array.isArray(v)) {
    w.u8(TAG_ARRAY);
    w.varint(v.length);
    for (let i = 0; i < v.length; i++) {
      if (v[i] === undefined) throw new SnapshotError('unencodable', `cannot encode ${named(path)}[${i}]: undefined in an array`);
      writeValue(w, v[i], path === null ? null : `${path}[${i}]`, depth + 1);
    }
    return;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    // Maps, Dates, other typed arrays, class instances: none round-trips as plain data.
    const kind = (v as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    throw new SnapshotError('unencodable', `cannot encode ${named(path)}: ${kind} is not plain data (use objects, arrays, Uint8Array)`);
  }
  const record = v as Record<string, unknown>;
  const keys: string[] = [];
  for (const k of Object.keys(record)) if (record[k] !== undefined) keys.push(k);
  keys.sort();
  w.u8(TAG_OBJECT);
  w.varint(keys.length);
  for (const k of keys) {
    w.bytes(encodedKey(k, path));
    writeValue(w, record[k], path === null ? null : `${path}.${k}`, depth + 1);
  }
}

/**
 * Decode one value that must fill `bytes` exactly. `baseOffset` is where `bytes` starts in
 * the file, so errors point at file offsets.
 */
export function decodeValue(bytes: Uint8Array, baseOffset = 0, what = 'value'): PlainValue {
  const r = new ValueReader(bytes, baseOffset, what);
  const v = r.value(0);
  if (r.pos !== bytes.length) r.fail(`${bytes.length - r.pos} bytes left over after the value`);
  return v;
}

class ValueReader {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array, private readonly baseOffset: number, private readonly what: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(why: string): never {
    throw new SnapshotError('value-encoding', `malformed ${this.what} at offset ${this.baseOffset + this.pos}: ${why}`);
  }

  private need(n: number, what: string): void {
    if (n > this.bytes.length - this.pos) this.fail(`${what} needs ${n} bytes, only ${this.bytes.length - this.pos} left`);
  }

  private u8(): number {
    this.need(1, 'a tag');
    return this.bytes[this.pos++];
  }

  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      this.need(1, 'a varint');
      const b = this.bytes[this.pos++];
      v += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) this.fail('overlong varint');
        if (v > Number.MAX_SAFE_INTEGER) this.fail('varint above 2^53');
        return v;
      }
      scale *= 0x80;
    }
    return this.fail(`varint longer than ${MAX_VARINT_BYTES} bytes`);
  }

  /** A length or count, capped by the bytes left, each element taking at least `minEach`. */
  private count(minEach: number, what: string): number {
    const n = this.varint();
    if (n * minEach > this.bytes.length - this.pos) {
      this.fail(`${what} of ${n} does not fit in the ${this.bytes.length - this.pos} bytes left`);
    }
    return n;
  }

  private utf8(what: string): string {
    const n = this.count(1, `${what} length`);
    const start = this.pos;
    this.pos += n;
    try {
      return utf8Decoder.decode(this.bytes.subarray(start, start + n));
    } catch {
      this.pos = start;
      return this.fail(`${what} is not valid UTF-8`);
    }
  }

  value(depth: number): PlainValue {
    if (depth > MAX_VALUE_DEPTH) this.fail(`nested deeper than ${MAX_VALUE_DEPTH} levels`);
    const tagAt = this.pos;
    const tag = this.u8();
    switch (tag) {
      case TAG_NULL: return null;
      case TAG_FALSE: return false;
      case TAG_TRUE: return true;
      case TAG_UINT: return this.varint();
      case TAG_NEGINT: {
        const m = this.varint();
        if (m === 0) this.fail('negative integer zero');
        return -m;
      }
      case TAG_F64: {
        this.need(8, 'a float64');
        const v = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        return v;
      }
      case TAG_STRING: return this.utf8('string');
      case TAG_BYTES: {
        const n = this.count(1, 'byte string length');
        // A copy: a device may keep the array, and must not alias the file buffer.
        const out = this.bytes.slice(this.pos, this.pos + n);
        this.pos += n;
        return out;
      }
      case TAG_ARRAY: {
        const n = this.count(1, 'array length');
        const out: PlainValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
        return out;
      }
      case TAG_OBJECT: {
        // Each field is at least a 1-byte key length, a key byte... or an empty key: 2 bytes.
        const n = this.count(2, 'field count');
        const out: { [key: string]: PlainValue } = {};
        let previous: string | undefined;
        for (let i = 0; i < n; i++) {
          const keyAt = this.pos;
          const key = this.utf8('field name');
          if (previous !== undefined && !(previous < key)) {
            this.pos = keyAt;
            this.fail(`field ${JSON.stringify(key)} is duplicated or out of order`);
          }
          previous = key;
          const v = this.value(depth + 1);
          // defineProperty: a "__proto__" key from a file is a field, never a prototype.
          Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        }
        return out;
      }
      case TAG_BIGINT:
      case TAG_NEGBIGINT: {
        const n = this.count(1, 'bigint length');
        if (n > MAX_BIGINT_BYTES) this.fail(`bigint wider than ${MAX_BIGINT_BYTES} bytes`);
        if (n > 0 && this.bytes[this.pos + n - 1] === 0) this.fail('bigint with a leading zero byte');
        let m = 0n;
        for (let i = n - 1; i >= 0; i--) m = (m << 8n) | BigInt(this.bytes[this.pos + i]);
        this.pos += n;
        if (tag === TAG_NEGBIGINT) {
          if (m === 0n) this.fail('negative bigint zero');
          return -m;
        }
        return m;
      }
      default:
        this.pos = tagAt;
        return this.fail(`unknown value tag 0x${tag.toString(16).padStart(2, '0')}`);
    }
  }
}
