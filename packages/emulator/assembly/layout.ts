// The one map of the core's linear memory, shared by the WASM core and the host.
// Every constant here is exported from the module as a global, and the host
// (src/cpu-state.ts) reads its offsets from those exports: nothing is kept twice.
//
//   0x0000_0000  AssemblyScript static data (checked at init to end below CPU_STATE)
//   CPU_STATE    registers, descriptor caches, control state, FPU (one byte range)
//   CORE_VARS    the core's hot internal variables (memory.ts): not CPU state
//   JIT_QUEUE    hot blocks waiting for the host's block compiler (src/jit)
//   JIT_SLOTS    the compiled blocks' exit sites, for chaining one to the next
//   TLB          one u32 per linear 4 KiB page (1 Mi entries)
//   DIRTY_MAP    one byte per physical page: 1 = dirtied in this epoch
//   DIRTY_LIST   the dirtied page numbers of this epoch, in first-write order
//   TLB_VALID    indices of TLB entries in use, so flushes cost what was filled
//   CODE_PAGE    one u32 per physical page: the generation of its decoded code, 0 = none
//   BLOCK_HASH   decoded blocks by physical address (codecache.ts)
//   BLOCK_ARENA  the decoded instruction records of those blocks
//   RAM          guest physical memory, from physical address 0

export const CPU_STATE: u32 = 0x10000;
export const CPU_STATE_SIZE: u32 = 0x1000;

// General registers in encoding order: EAX ECX EDX EBX ESP EBP ESI EDI.
export const REG_EAX: u32 = 0x00;
export const REG_EIP: u32 = 0x20;
/** EFLAGS bits that are not computed lazily (everything but CF PF AF ZF SF OF). */
export const REG_EFLAGS: u32 = 0x24;
// Lazy arithmetic flags: the last flag-setting operation's result, operands and kind.
export const LF_RES: u32 = 0x28;
export const LF_OP1: u32 = 0x2c;
export const LF_OP2: u32 = 0x30;
export const LF_KIND: u32 = 0x34;
/** Which of CF PF AF ZF SF OF are to be computed from LF_*; the others are in REG_EFLAGS. */
export const LF_MASK: u32 = 0x38;

// Segment registers in encoding order ES CS SS DS FS GS, then LDTR and TR; 16 bytes each:
// selector, base, limit (byte granular, already expanded), attributes (descriptor bits 8-23
// of the high dword: type, S, DPL, P, AVL, D/B, G; plus SEG_VALID).
export const SEG_BASE_OFF: u32 = 0x40;
export const SEG_SIZE: u32 = 16;
export const SEG_SEL: u32 = 0;
export const SEG_BASE: u32 = 4;
export const SEG_LIMIT: u32 = 8;
export const SEG_ATTR: u32 = 12;

export const GDTR_BASE: u32 = 0xc0;
export const GDTR_LIMIT: u32 = 0xc4;
export const IDTR_BASE: u32 = 0xc8;
export const IDTR_LIMIT: u32 = 0xcc;
export const REG_CR0: u32 = 0xd0;
export const REG_CR2: u32 = 0xd4;
export const REG_CR3: u32 = 0xd8;
export const REG_CR4: u32 = 0xdc;
export const REG_DR0: u32 = 0xe0; // DR0..DR7, 4 bytes each, to 0x100

export const CPL: u32 = 0x100;
/** 1 when CS is a 32-bit segment (default operand and address size 32). */
export const CODE32: u32 = 0x104;
/** 1 when SS is a 32-bit stack (ESP rather than SP). */
export const STACK32: u32 = 0x108;
/** Retired instructions, u64. */
export const INSTR_COUNT: u32 = 0x110;
export const MSR_SYSENTER_CS: u32 = 0x120;
export const MSR_SYSENTER_ESP: u32 = 0x124;
export const MSR_SYSENTER_EIP: u32 = 0x128;
/** Added to the instruction counter to form the TSC (u64), so the TSC survives restore. */
export const TSC_OFFSET: u32 = 0x130;
/** 1 while the host's INTR line to the CPU is asserted. */
export const INTR_LINE: u32 = 0x140;
export const NMI_PENDING: u32 = 0x144;
/** 1 after HLT until an interrupt arrives. */
export const HALTED: u32 = 0x148;
/** Reserved (was a u32 slot; INHIBIT_UNTIL is a u64 and lives at 0x1e0). */
export const RESERVED_14C: u32 = 0x14c;
/** 0xFFFFFFFF with A20 enabled, 0xFFEFFFFF with it masked. */
export const A20_MASK: u32 = 0x150;
/** Why run() returned: see STOP_* in cpu.ts. */
export const STOP_REASON: u32 = 0x154;
export const SHUTDOWN: u32 = 0x158;
/** Bytes of guest RAM (a multiple of 4 KiB). */
export const RAM_SIZE: u32 = 0x15c;
export const NMI_MASKED: u32 = 0x160;
/** Bookkeeping of the exception being delivered, for double/triple fault detection. */
export const EXC_DEPTH: u32 = 0x164;
export const DIRTY_COUNT: u32 = 0x168;
export const TLB_VALID_COUNT: u32 = 0x16c;
/** Reserved for an APIC base MSR and similar, 0x170..0x1c0. */
export const MSR_MISC: u32 = 0x170;
/**
 * 1: RDTSC asks the host (realtime clock: the TSC is host time at 1 GHz, read live, so a
 * guest calibrating it against the PIT sees both advance together); 0: the TSC is
 * INSTR_COUNT + TSC_OFFSET (virtual clock: deterministic).
 */
export const TSC_LIVE: u32 = 0x174;
/** The exception raised by the current instruction, waiting for deliver_fault(). */
export const FAULT_VECTOR: u32 = 0x1c0;
export const FAULT_ERROR: u32 = 0x1c4;
export const FAULT_HAS_ERROR: u32 = 0x1c8;
/** EIP of the first byte (prefixes included) of the instruction being executed. */
export const EIP_START: u32 = 0x1cc;
/** run() returns when INSTR_COUNT reaches this (u64). */
export const RUN_TARGET: u32 = 0x1d0;
/** Nonzero when the host asks run() to return at the next instruction boundary. */
export const HOST_REQUEST: u32 = 0x1d8;
/** ESP at the start of the instruction, restored when a fault rolls it back. */
export const ESP_START: u32 = 0x1dc;
/** Instruction count (u64) until which interrupts are inhibited (STI, MOV SS, POP SS shadow). */
export const INHIBIT_UNTIL: u32 = 0x1e0;

/**
 * Always 0: a decoded effective address names this slot as its base or index when it has
 * none, so computing it needs no branch (codecache.ts). Below 0x40, as records hold
 * register offsets in a byte with the scale in its low bits.
 */
export const EA_ZERO: u32 = 0x3c;

/** x87 state, owned by fpu.ts: 0x400..0x600 of CPU_STATE. */
export const FPU_STATE: u32 = 0x400;
export const FPU_STATE_SIZE: u32 = 0x200;

/** memory.ts keeps its hot variables at CORE_VARS + 0x00..0x3f; the ones below follow. */
export const CORE_VARS: u32 = 0x11000;
/** Nonzero when a segment register changed since SEG_FAST was filled (memory.ts). */
export const SEG_FAST_STALE: u32 = 0x11040;
/** Nonzero: run() executes everything in step(), without decoded blocks (cpu.ts). */
export const CODE_CACHE_OFF: u32 = 0x11044;
// The block compiler (codecache.ts, src/jit): blocks run this many times are queued at
// JIT_QUEUE for the host to compile to WASM; a compiled block that stops before its end
// says at JIT_RESUME which record the interpreter goes on from.
/** Runs of a decoded block before it is queued for compiling; 0 = never (no JIT). */
export const JIT_THRESHOLD: u32 = 0x11048;
/** Entries in JIT_QUEUE (block header addresses). */
export const JIT_QUEUE_COUNT: u32 = 0x1104c;
/** 0 after a compiled block ran to its end, else the address of the record the interpreter resumes at. */
export const JIT_RESUME: u32 = 0x11050;
/** Bumped each time all decoded code is forgotten: the host's compiled blocks go with it. */
export const JIT_FLUSHES: u32 = 0x11054;
/** The instruction count (u64) the current run_cached() stops before: compiled code chains blocks up to it. */
export const JIT_LIMIT: u32 = 0x11058;
/** Instructions retired in compiled code (u64), for the host's statistics. */
export const JIT_RETIRED: u32 = 0x11060;
/**
 * Bit s set when segment register s is flat for data: base 0, limit 4 GiB, expand-up,
 * readable and writable (memory.ts, with SEG_FAST). Compiled code that assumed flat
 * segments checks it on entry.
 */
export const SEG_FLAT: u32 = 0x11068;
/**
 * Chaining between compiled blocks (src/jit): the slot of the exit site that last returned to
 * run_cached() instead of going straight on, for run_cached() to fill with the block it then
 * finds (0: none).
 */
export const JIT_SITE: u32 = 0x1106c;
/** Per segment register (16 bytes each): its base and fast-check bounds (memory.ts). */
export const SEG_FAST: u32 = 0x11080;
export const JIT_QUEUE: u32 = 0x12000;
export const JIT_QUEUE_MAX: u32 = 0x1000;
/**
 * The exit sites' slots of compiled blocks, 16 bytes each, handed out by the host's compiler
 * (src/jit/jit.ts): the EIP last seen there, its block's compiled function, the TLB tag
 * (physical page | TLB_VALID_BIT) and the code generation it was decoded under.
 */
export const JIT_SLOTS: u32 = 0x20000;
export const JIT_SLOTS_END: u32 = 0x100000;
export const JIT_SLOT_SIZE: u32 = 16;
export const JIT_SLOT_EIP: u32 = 0;
export const JIT_SLOT_FN: u32 = 4;
export const JIT_SLOT_TAG: u32 = 8;
export const JIT_SLOT_GEN: u32 = 12;
export const TLB: u32 = 0x100000;
export const TLB_ENTRIES: u32 = 0x100000;
export const DIRTY_MAP: u32 = 0x500000;
export const DIRTY_LIST: u32 = 0x600000;
export const TLB_VALID: u32 = 0xa00000;
export const TLB_VALID_MAX: u32 = 0x10000;
/** Sized for the largest RAM the host allows (3 GiB: 0xC0000 pages). */
export const CODE_PAGE: u32 = 0xa40000;
export const BLOCK_HASH: u32 = 0xd40000;
export const BLOCK_HASH_ENTRIES: u32 = 0x40000;
export const BLOCK_ARENA: u32 = 0x1140000;
export const BLOCK_ARENA_END: u32 = 0x2000000;
export const RAM: u32 = 0x2000000;
