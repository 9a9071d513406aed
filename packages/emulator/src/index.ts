export * from './device.ts';
export * from './cpu.ts';
export * from './cpu-state.ts';
export * from './bus.ts';
export * from './hooks.ts';
export * from './clock.ts';
export * from './machine.ts';
export * from './testbed.ts';
export * from './layout.ts';
export { loadMultiboot, loadFlat, isMultiboot, ImageError } from './loaders/multiboot.ts';
export { DebugConsole, DebugExit } from './devices/debug-ports.ts';
export { Pc, type PcOptions } from './pc.ts';
export {
  loadLinux,
  parseBzImage,
  isBzImage,
  linuxE820Map,
  type LinuxBootOptions,
  type LinuxBootInfo,
  type BzImageHeader,
  type E820Entry,
} from './loaders/linux.ts';
export { buildAcpiTables, installAcpiTables, type AcpiTables, type AcpiTablesOptions } from './acpi-tables.ts';
export { AcpiPm, PM_TIMER_HZ, type AcpiPmOptions, type AcpiPmState } from './devices/acpi-pm.ts';
export { PiixResetControl, type PiixResetControlState } from './devices/piix-reset-control.ts';
export * from './snapshot/index.ts';
export {
  PciBus,
  PciConfigSpace,
  I440fxHostBridge,
  Piix3IsaBridge,
  PCI_CONFIG_ADDRESS_PORT,
  PCI_CONFIG_DATA_PORT,
  type PciFunction,
  type PciBar,
  type PciIdentity,
  type PciBusOptions,
  type PciResourceWindows,
  type PciBusState,
  type PciFunctionState,
} from './pci.ts';
export { VirtioPciDevice, type VirtioPciOptions, type VirtioTransportState } from './devices/virtio-pci.ts';
export { VirtioBlk, type VirtioBlkOptions, type VirtioBlkState } from './devices/virtio-blk.ts';
export { VirtioNet, type VirtioNetOptions, type VirtioNetState } from './devices/virtio-net.ts';
export { MemoryBlockBackend, RawFileBlockBackend, type BlockBackend } from './block-backend.ts';
