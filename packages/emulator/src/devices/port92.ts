/**
 * System Control Port A at 0x92 (PS/2 "fast A20 and reset"; PIIX4 datasheet 4.2.1, PORT92):
 * bit 1 gates A20, bit 0 going from 0 to 1 resets the CPU. Linux's boot code enables A20
 * through it (arch/x86/boot/a20.c, enable_a20_fast) and reboot.c can reset through it.
 *
 * The 8042 output port drives A20 through the same callback; as in QEMU, the last write
 * to either wins.
 */
import type { AccessSize, PortDevice, Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';

export interface Port92State {
  /** The last value written (bit 0 reads back as written until the next write). */
  value: number;
}

export interface Port92Options {
  setA20: (enabled: boolean) => void;
  requestReset: () => void;
}

const A20 = 0x02;
const FAST_RESET = 0x01;

export class Port92 implements PortDevice, Persistent<Port92State> {
  readonly stateName = 'port92';
  readonly stateVersion = 1;

  private value = 0;

  constructor(private readonly options: Port92Options) {}

  read(_offset = 0, _size: AccessSize = 1): number {
    return this.value;
  }

  write(_offset: number, value: number, _size: AccessSize = 1): void {
    value &= 0xff;
    const previous = this.value;
    this.value = value;
    if ((previous ^ value) & A20) this.options.setA20((value & A20) !== 0);
    // The reset fires on the rising edge of bit 0 (PIIX4: "INIT asserted on a 0-to-1 transition").
    if (value & FAST_RESET && !(previous & FAST_RESET)) this.options.requestReset();
  }

  reset(): void {
    this.value = 0;
  }

  saveState(): Port92State {
    return { value: this.value };
  }

  loadState(state: Port92State): void {
    const value = StateFields.of(this.stateName, state).int('value', 0, 0xff);
    this.value = value;
  }
}
