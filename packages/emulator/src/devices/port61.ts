/**
 * Port 0x61, "NMI status and control" (System Control Port B on PS/2; PIIX4 datasheet
 * 4.2.2, NMISC). It gates PIT channel 2 and exposes channel 2's OUT, which is how Linux's
 * pit_calibrate_tsc() and pit_expect_msb() (arch/x86/kernel/tsc.c) time the TSC, and how
 * BIOS delay loops watch the refresh toggle.
 *
 *   bit 0  R/W  timer 2 gate                 bit 4  RO  refresh toggle (every 15.085 us)
 *   bit 1  R/W  speaker data enable          bit 5  RO  timer 2 OUT
 *   bit 2  R/W  PCI SERR# check disable      bit 6  RO  IOCHK# NMI source (never set here)
 *   bit 3  R/W  IOCHK# check disable         bit 7  RO  SERR# NMI source (never set here)
 */
import type { AccessSize, Clock, PortDevice, Persistent } from '../device.ts';
import { pitTicksAt, type PitSpeakerChannel } from './pit8254.ts';
import { StateFields } from './state-fields.ts';

export interface Port61State {
  speakerDataEnable: boolean;
  serrCheckDisable: boolean;
  iochkCheckDisable: boolean;
}

/** The DRAM refresh request period: PIT channel 1's count of 18 on every PC/AT BIOS. */
const REFRESH_PERIOD_TICKS = 18;

export class Port61 implements PortDevice, Persistent<Port61State> {
  readonly stateName = 'port61';
  readonly stateVersion = 1;

  private speakerDataEnable = false;
  private serrCheckDisable = false;
  private iochkCheckDisable = false;

  /**
   * @param pit channel 2's gate and output (the PIT keeps the gate level in its own state)
   * @param clock the refresh toggle is derived from the same PIT clock as the timers
   */
  constructor(
    private readonly pit: PitSpeakerChannel,
    private readonly clock: Clock,
  ) {}

  read(_offset = 0, _size: AccessSize = 1): number {
    const refresh = Math.floor(pitTicksAt(this.clock.nowNs()) / REFRESH_PERIOD_TICKS) & 1;
    return (
      (this.pit.channel2Gate() ? 0x01 : 0) |
      (this.speakerDataEnable ? 0x02 : 0) |
      (this.serrCheckDisable ? 0x04 : 0) |
      (this.iochkCheckDisable ? 0x08 : 0) |
      (refresh ? 0x10 : 0) |
      (this.pit.channel2Out() ? 0x20 : 0)
    );
  }

  write(_offset: number, value: number, _size: AccessSize = 1): void {
    this.speakerDataEnable = (value & 0x02) !== 0;
    this.serrCheckDisable = (value & 0x04) !== 0;
    this.iochkCheckDisable = (value & 0x08) !== 0;
    this.pit.setChannel2Gate((value & 0x01) !== 0);
  }

  reset(): void {
    this.speakerDataEnable = false;
    this.serrCheckDisable = false;
    this.iochkCheckDisable = false;
  }

  saveState(): Port61State {
    return {
      speakerDataEnable: this.speakerDataEnable,
      serrCheckDisable: this.serrCheckDisable,
      iochkCheckDisable: this.iochkCheckDisable,
    };
  }

  loadState(state: Port61State): void {
    const f = StateFields.of(this.stateName, state);
    const s: Port61State = {
      speakerDataEnable: f.bool('speakerDataEnable'),
      serrCheckDisable: f.bool('serrCheckDisable'),
      iochkCheckDisable: f.bool('iochkCheckDisable'),
    };
    this.speakerDataEnable = s.speakerDataEnable;
    this.serrCheckDisable = s.serrCheckDisable;
    this.iochkCheckDisable = s.iochkCheckDisable;
  }
}
