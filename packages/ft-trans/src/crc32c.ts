/** CRC-32C (Castagnoli): one implementation in the project, shared with the snapshot codec. */
export { crc32c } from '@ftx86/emulator/src/snapshot/crc32c.ts';
