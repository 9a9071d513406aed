/** Where a NIC's frames go: one Ethernet frame per send, received frames through onFrame. */
export interface NetBackend {
  send(frame: Uint8Array): void;
  /** Register the receiver of incoming frames (one). */
  onFrame(fn: (frame: Uint8Array) => void): void;
  close(): void;
}

/** Ethernet frames are at most 1514 bytes without FCS (plus 4 for an 802.1Q tag). */
export const MAX_FRAME = 1518;
