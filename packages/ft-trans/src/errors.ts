// Every way a peer or the link can break the protocol, as one error type with a code the
// caller can switch on and a one-line message an operator can read in a log.

export type ProtocolErrorCode =
  | 'BAD_MAGIC' // bytes that do not start a frame: garbage, another protocol, lost sync
  | 'HEADER_CHECKSUM' // the header's CRC-32C does not match: a corrupted header
  | 'BAD_VERSION' // a frame or HELLO in another protocol version
  | 'BAD_TYPE' // a message type this version does not define
  | 'BAD_FLAGS' // reserved flag bits set, or an undefined trailer kind
  | 'WRONG_TRAILER' // a CRC-only frame after the handshake, a MAC before it, or another MAC length
  | 'TOO_LARGE' // a length field over the configured limit: refused before any allocation
  | 'CHECKSUM' // CRC-32C trailer mismatch (pre-authentication frames)
  | 'MAC' // MAC mismatch: forged, altered, reflected, or under another key
  | 'SEQUENCE' // a valid frame out of order: replayed, reordered or after a dropped one
  | 'TRUNCATED' // the stream ended inside a frame
  | 'MALFORMED' // a payload that does not parse as its message type
  | 'UNEXPECTED' // a message type that is not allowed at this point of the protocol
  | 'AUTH' // the peer failed the challenge-response (wrong key, tampered handshake)
  | 'REPLAY' // a HELLO nonce this process has already seen
  | 'TIMEOUT' // handshake or peer liveness deadline passed
  | 'PEER_ERROR' // the peer sent ERROR
  | 'MISMATCH' // the peer's machine (RAM size, disk size) cannot be mirrored by this side's
  | 'CLOSED'; // the connection closed before the handshake completed

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
  ) {
    // One line, always: these end up in logs that operators grep.
    super(oneLine(message));
  }
}

/** Thrown by send() on a channel that is closed or closing; not a peer fault. */
export class ChannelClosedError extends Error {
  override readonly name = 'ChannelClosedError';
}

/**
 * Make peer-supplied or multi-line text safe for a one-line log message: control
 * characters (a newline would let a peer forge log lines) become '?', and it is capped.
 */
export function oneLine(text: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}
