/**
 * Device state migrations: how a state saved by an older build is loaded by a newer one.
 *
 * A device bumps its stateVersion when the shape of its state changes, and registers a
 * function that turns a state of the previous version into the new one. Restoring runs the
 * chain old -> old+1 -> ... -> current on the plain decoded value, before the device sees
 * it. There are no downgrades: a state newer than the device is refused, and so is an old
 * state whose chain has a missing step (the error names the step).
 */
import { SnapshotError } from './errors.ts';
import type { PlainValue } from './value.ts';

/** Upgrades a state of version `fromVersion` to version `fromVersion + 1`. */
export type StateMigration = (state: PlainValue) => PlainValue;

export class MigrationRegistry {
  private readonly steps = new Map<string, StateMigration>();

  private static key(stateName: string, fromVersion: number): string {
    return `${stateName}@${fromVersion}`;
  }

  register(stateName: string, fromVersion: number, migrate: StateMigration): void {
    if (!Number.isInteger(fromVersion) || fromVersion < 0) {
      throw new RangeError(`migration of ${stateName}: fromVersion ${fromVersion} is not a version number`);
    }
    const key = MigrationRegistry.key(stateName, fromVersion);
    // Two upgrades for one step would make restores depend on registration order.
    if (this.steps.has(key)) throw new Error(`a migration of ${stateName} from version ${fromVersion} is already registered`);
    this.steps.set(key, migrate);
  }

  /**
   * Bring `state` of `stateName` from `from` to `to`; the input is not modified. Throws
   * SnapshotError('section-version') when that cannot be done.
   */
  upgrade(stateName: string, state: PlainValue, from: number, to: number, label = stateName): PlainValue {
    if (from === to) return state;
    if (from > to) {
      throw new SnapshotError(
        'section-version',
        `${label} state version ${from} is newer than this build's version ${to}: restore it with a build that knows version ${from} (no downgrades)`,
      );
    }
    for (let v = from; v < to; v++) {
      if (!this.steps.has(MigrationRegistry.key(stateName, v))) {
        throw new SnapshotError(
          'section-version',
          `${label} state version ${from} cannot be loaded by this build (version ${to}): no migration from version ${v} to ${v + 1} is registered`,
        );
      }
    }
    // A migration may edit its argument in place; a failed restore must leave the decoded
    // state as it was, so migrate a copy.
    let s = structuredClone(state);
    for (let v = from; v < to; v++) {
      try {
        s = this.steps.get(MigrationRegistry.key(stateName, v))!(s);
      } catch (e) {
        throw new SnapshotError(
          'section-version',
          `${label} state: migration from version ${v} to ${v + 1} failed: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
      }
    }
    return s;
  }
}

/** The registry restores use unless given another (tests pass their own). */
export const stateMigrations = new MigrationRegistry();

/** Register an upgrade of `stateName` states from `fromVersion` to `fromVersion + 1`. */
export function registerMigration(stateName: string, fromVersion: number, migrate: StateMigration): void {
  stateMigrations.register(stateName, fromVersion, migrate);
}
