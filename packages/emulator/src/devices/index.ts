/** The legacy PC chipset devices. Port assignments live in the machine's layout, not here. */
export { Pic8259, type Pic8259State, type I8259ChipState, type IrqSourceState, type PicRegisters } from './pic8259.ts';
export {
  Pit8254,
  PIT_HZ,
  pitTicksAt,
  nsAtPitTick,
  type Pit8254State,
  type PitChannelState,
  type PitSpeakerChannel,
} from './pit8254.ts';
export { Port61, type Port61State } from './port61.ts';
export { RtcMc146818, type RtcMc146818State, type RtcOptions, type RtcTime } from './rtc-mc146818.ts';
export { Uart16550, type Uart16550State, type UartOptions, type ByteSink } from './uart16550.ts';
export {
  I8042,
  type I8042State,
  type I8042Options,
  type ControllerReply,
  type Ps2KeyboardState,
  type Ps2MouseState,
} from './i8042.ts';
export { Port92, type Port92State, type Port92Options } from './port92.ts';
export { StateFields } from './state-fields.ts';
