/** The VM state codec: one format for save to file, restore, migration and FT checkpoints. */
export { SnapshotError, type SnapshotErrorCode } from './errors.ts';
export { crc32c } from './crc32c.ts';
export { encodeValue, decodeValue, MAX_VALUE_DEPTH, type PlainValue } from './value.ts';
export {
  encodeSnapshot,
  decodeSnapshot,
  sealSnapshot,
  SectionType,
  SNAPSHOT_MAGIC,
  SNAPSHOT_FORMAT_VERSION,
  FLAG_INCREMENTAL,
  CODEC_SECTION_VERSION,
  PAGE_SIZE,
  HEADER_SIZE,
  SECTION_HEADER_SIZE,
  TRAILER_SIZE,
  type VmState,
  type CpuState,
  type DeviceState,
  type RamState,
  type DiskState,
  type RamSource,
  type SnapshotInput,
  type EncodeOptions,
} from './codec.ts';
export { MigrationRegistry, stateMigrations, registerMigration, type StateMigration } from './migrations.ts';
export {
  applyState,
  deviceEntryName,
  type SnapshotTarget,
  type CpuTarget,
  type DiskTarget,
  type DeviceEntry,
  type NamedDevice,
  type ApplyOptions,
} from './apply.ts';
export { captureState, machineTarget, cpuCacheFields, cpuLayoutId, type MachineParts } from './machine-state.ts';
export { stateDigest, type DigestInput } from './state-digest.ts';
