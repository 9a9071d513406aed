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
