/**
 * Shape checks for device loadState. A saved state arrives from a file, a migration stream
 * or an FT peer, so every field is checked before any is applied: a malformed state is
 * refused with an error naming the field, never half-applied (DESIGN.md, Snapshot).
 */
export class StateFields {
  private constructor(
    private readonly stateName: string,
    private readonly path: string,
    private readonly fields: Record<string, unknown>,
  ) {}

  /** Start checking `value` as the top-level state object of device state `stateName`. */
  static of(stateName: string, value: unknown): StateFields {
    return new StateFields(stateName, '', asRecord(stateName, 'state', value));
  }

  int(key: string, min: number, max: number): number {
    const v = this.fields[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(key, `an integer in [${min}, ${max}]`);
    }
    return v;
  }

  bool(key: string): boolean {
    const v = this.fields[key];
    if (typeof v !== 'boolean') this.fail(key, 'a boolean');
    return v;
  }

  /** A byte buffer of exactly `length` bytes, returned as a fresh copy. */
  bytes(key: string, length: number): Uint8Array {
    const v = this.fields[key];
    if (!(v instanceof Uint8Array) || v.length !== length) this.fail(key, `a Uint8Array of ${length} bytes`);
    return new Uint8Array(v);
  }

  /** A list of at most `maxLength` byte values, returned as a fresh array. */
  byteList(key: string, maxLength: number): number[] {
    const v = this.fields[key];
    if (!Array.isArray(v) || v.length > maxLength) this.fail(key, `an array of at most ${maxLength} bytes`);
    const out: number[] = [];
    for (const b of v as unknown[]) {
      if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b > 0xff) {
        this.fail(key, 'an array of integers in [0, 255]');
      }
      out.push(b);
    }
    return out;
  }

  object(key: string): StateFields {
    return new StateFields(this.stateName, this.at(key), asRecord(this.stateName, this.at(key), this.fields[key]));
  }

  /** A list of nested objects, exactly `minLength` long unless a larger `maxLength` is given. */
  objectList(key: string, minLength: number, maxLength = minLength): StateFields[] {
    const v = this.fields[key];
    if (!Array.isArray(v) || v.length < minLength || v.length > maxLength) {
      this.fail(key, minLength === maxLength ? `an array of ${minLength} objects` : `an array of at most ${maxLength} objects`);
    }
    return (v as unknown[]).map(
      (item, i) => new StateFields(this.stateName, `${this.at(key)}[${i}]`, asRecord(this.stateName, `${this.at(key)}[${i}]`, item)),
    );
  }

  private at(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  private fail(key: string, expected: string): never {
    throw new Error(`${this.stateName} state: ${this.at(key)} must be ${expected}`);
  }
}

function asRecord(stateName: string, path: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw new Error(`${stateName} state: ${path} must be an object`);
  }
  return value as Record<string, unknown>;
}
