/**
 * The PC's port and memory map, in one place (Firecracker's arch/x86_64/layout.rs).
 */

// ISA ports.
export const PIC_MASTER_PORT = 0x20;
export const PIC_SLAVE_PORT = 0xa0;
export const ELCR_PORT = 0x4d0;
export const PIT_PORT = 0x40;
export const PORT61 = 0x61;
export const I8042_DATA_PORT = 0x60;
export const I8042_CMD_PORT = 0x64;
export const RTC_PORT = 0x70;
export const PORT92 = 0x92;
export const COM_PORTS = [0x3f8, 0x2f8, 0x3e8, 0x2e8] as const;
export const DEBUG_CONSOLE_PORT = 0xe9;
export const DEBUG_EXIT_PORT = 0xf4;

// ISA IRQs.
export const IRQ_PIT = 0;
export const IRQ_KEYBOARD = 1;
export const COM_IRQS = [4, 3, 4, 3] as const;
export const IRQ_RTC = 8;
export const IRQ_MOUSE = 12;

// ACPI power management (devices/acpi-pm.ts; acpi-tables.ts describes them in the FADT).
/** PM1a_EVT_BLK (4 bytes), PM1a_CNT_BLK at +4 (2), PM_TMR_BLK at +8 (4): PIIX4's customary PMBASE. */
export const ACPI_PM_PORT = 0x600;
/** PIIX reset control register (RC); a byte at 0xCF9, inside the dword CONFIG_ADDRESS at 0xCF8. */
export const RESET_CONTROL_PORT = 0xcf9;
/** The FADT's SCI_INT: IRQ 9, as on PIIX4 boards. */
export const IRQ_ACPI_SCI = 9;

// Memory below 1 MiB. There is no BIOS: the e820 map (loaders/linux.ts) reserves what one would own.
/** Conventional RAM ends here (639 KiB); the last KiB is reserved as a BIOS's EBDA would be. */
export const EBDA_ADDR = 0x9fc00;
/** 0xE0000-0xFFFFF, reserved: the ACPI tables live here, where Linux scans for the RSDP. */
export const BIOS_AREA_ADDR = 0xe0000;
export const ACPI_TABLES_ADDR = 0xe0000;
export const HIGH_MEMORY_ADDR = 0x100000;
/** End (exclusive) of the 32-bit PCI MMIO window the DSDT offers: below the IOAPIC/HPET/LAPIC block. */
export const PCI_MMIO_END = 0xfec00000;
