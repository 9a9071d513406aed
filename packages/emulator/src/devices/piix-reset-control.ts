/**
 * The PIIX reset control register at port 0xCF9 (82371AB PIIX4 datasheet, "RC - Reset Control
 * Register (IO)"; ICH adds FULL_RST in bit 3). Setting RST_CPU resets the machine;
 * SYS_RST (hard vs soft) and FULL_RST are kept and read back but make no difference here,
 * since the machine has one kind of reset.
 *
 * The FADT names this register as its RESET_REG with RESET_VALUE 0x06, so Linux's first
 * reboot method (arch/x86/kernel/reboot.c, BOOT_ACPI -> acpi_reboot -> acpi_reset) lands here;
 * reboot=pci writes 0x02 then 0x06 (or 0x0E) directly. As in QEMU's piix (rcr_write), every
 * write with RST_CPU set resets, whatever was written before: the bit never reads back as 1.
 *
 * The register is a byte inside the dword CONFIG_ADDRESS at 0xCF8, and PIIX decodes byte
 * accesses at 0xCF9 as this register. The port bus dispatches an access by its first port, so
 * a PCI host bridge registered as 0xCF8 (1 port) + 0xCFC (4 ports) still gets every dword
 * CONFIG_ADDRESS access and leaves 0xCF9 to this device.
 */
import type { AccessSize, PortDevice, Persistent } from '../device.ts';
import { StateFields } from './state-fields.ts';

const SYS_RST = 1 << 1;
const RST_CPU = 1 << 2;
const FULL_RST = 1 << 3;

export interface PiixResetControlState {
  /** SYS_RST and FULL_RST as last written. */
  value: number;
}

export class PiixResetControl implements PortDevice, Persistent<PiixResetControlState> {
  readonly stateName = 'piix-reset-control';
  readonly stateVersion = 1;

  private value = 0;

  constructor(private readonly requestReset: () => void) {}

  read(): number {
    return this.value;
  }

  write(_offset: number, value: number, _size: AccessSize): void {
    this.value = value & (SYS_RST | FULL_RST);
    if (value & RST_CPU) this.requestReset();
  }

  reset(): void {
    this.value = 0;
  }

  saveState(): PiixResetControlState {
    return { value: this.value };
  }

  loadState(state: PiixResetControlState): void {
    const value = StateFields.of(this.stateName, state).int('value', 0, 0xff);
    if (value & ~(SYS_RST | FULL_RST)) throw new Error(`${this.stateName} state: value has bits that are not stored`);
    this.value = value;
  }
}
