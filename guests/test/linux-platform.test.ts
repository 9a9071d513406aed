// What the Debian kernel made of the platform, read from its booted state (the post-boot
// state the FT tests restore, saved at the shell prompt): the interrupt routing it
// programmed. The ACPI tables give PCI0 no _PRT, so Linux keeps the IRQ the platform put
// in each PCI function's Interrupt Line register and must make it level-triggered in the
// ELCR, as the PIIX3 wires PCI INTx# (acpi-tables.ts); the SCI is level-triggered too.
// Edge-triggered, a PCI line held asserted by one device while another raises it would
// lose the second interrupt.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { decodeVm } from '../../packages/emulator/src/vm-state.ts';
import { postBootState } from './linux-guest.ts';

const IRQ_SCI = 9;
const IRQ_PCI = [10, 11];
const IRQ_COM1 = 4;

interface Chip { elcr: number; imr: number }

describe('the Debian guest\'s interrupt routing, as its kernel left it', () => {
  let master: Chip;
  let slave: Chip;
  beforeAll(async () => {
    const state = decodeVm(new Uint8Array(readFileSync((await postBootState()).statePath))).state;
    const pic = state.devices.find((d) => d.name === 'pic8259');
    expect(pic, 'the state has the PIC').toBeDefined();
    ({ master, slave } = pic!.state as unknown as { master: Chip; slave: Chip });
  }, 20 * 60_000);

  it('makes the PCI lines and the SCI level-triggered in the ELCR, and nothing else', () => {
    const elcr = master.elcr | (slave.elcr << 8);
    const level = [IRQ_SCI, ...IRQ_PCI].reduce((m, irq) => m | (1 << irq), 0);
    expect(elcr.toString(16)).toBe(level.toString(16));
  });

  it('unmasks the lines of the devices it uses: COM1, the cascade, virtio-net and virtio-blk', () => {
    const imr = master.imr | (slave.imr << 8);
    for (const irq of [IRQ_COM1, 2, ...IRQ_PCI]) expect((imr >> irq) & 1, `IRQ ${irq} masked`).toBe(0);
  });
});
