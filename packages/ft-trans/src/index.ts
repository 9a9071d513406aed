// @ftx86/ft-trans: the FT transaction protocol between a primary and a secondary VM.
export * from './errors.ts';
export * from './logger.ts';
export { crc32c } from './crc32c.ts';
export * from './frame.ts';
export * from './messages.ts';
export * from './auth.ts';
export * from './channel.ts';
