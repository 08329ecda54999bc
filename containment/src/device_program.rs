//! The cgroup v2 device program (pure): which device nodes a cgroup's tasks may open, as the
//! few eBPF instructions the kernel runs at each `open`/`mknod` of a device node
//! (`BPF_PROG_TYPE_CGROUP_DEVICE`). Loading and attaching it is `bpf.rs`.
//!
//! Hand-assembled rather than compiled: a device program only compares three numbers from its
//! context (type, major, minor) with constants and returns 0 or 1, which takes six opcodes.
//! A compiled program would need a BPF toolchain at build time (clang's BPF target, or aya with
//! bpf-linker and a nightly compiler) for what [`DevicePolicy::instructions`] writes in a
//! page; systemd and Slurm assemble theirs the same way. The instructions' logic is checked
//! by an interpreter of those opcodes against [`DevicePolicy::verdict`] (the tests below, for
//! any policy and device), and the kernel's verifier checks the rest when the v2 tests load
//! it as root.
//!
//! Like v1's `devices.deny` on a cgroup whose parent allows everything, a job's program
//! denies the GPUs it was not granted and allows every other device (Slurm's v2 program does
//! the same): an allow list would also have to name every device a job may legitimately use
//! (InfiniBand verbs, FUSE, the GPU drivers' control nodes), and missing one breaks jobs.

use crate::DeviceNode;

/// A device node type, as the kernel's device context numbers it (`BPF_DEVCG_DEV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Block = 1,
    Char = 2,
}

/// One rule: the devices it matches (`None`: any) and whether they may be used. A program
/// takes the first rule that matches, else its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: Option<DeviceKind>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub allow: bool,
}

impl DeviceRule {
    /// Denies exactly `node` (every access: read, write, mknod). `None` for a node whose
    /// numbers do not fit the kernel's 32-bit device numbers (no such node can exist).
    pub fn deny(node: DeviceNode) -> Option<Self> {
        Some(Self {
            kind: Some(if node.char { DeviceKind::Char } else { DeviceKind::Block }),
            major: Some(u32::try_from(node.major).ok()?),
            minor: Some(u32::try_from(node.minor).ok()?),
            allow: false,
        })
    }

    fn matches(&self, kind: DeviceKind, major: u32, minor: u32) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// What a cgroup's device program decides: its rules in order, and the answer when none
/// matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    pub rules: Vec<DeviceRule>,
    pub default_allow: bool,
}

impl DevicePolicy {
    /// Every device but `denied`: a job's policy, `denied` the GPUs it was not granted.
    pub fn denying(denied: &[DeviceNode]) -> Self {
        Self {
            rules: denied.iter().copied().filter_map(DeviceRule::deny).collect(),
            default_allow: true,
        }
    }

    /// Whether a task under this policy may use the device (what the program computes).
    pub fn verdict(&self, kind: DeviceKind, major: u32, minor: u32) -> bool {
        self.rules
            .iter()
            .find(|r| r.matches(kind, major, minor))
            .map_or(self.default_allow, |r| r.allow)
    }

    /// The program: loads type, major and minor from the context into r2, r4 and r5, then
    /// for each rule compares the fields it names (skipping to the next rule at the first
    /// difference) and returns its answer; the default at the end.
    pub fn instructions(&self) -> Vec<Insn> {
        let mut program = vec![
            Insn::load_u32(R_TYPE, CTX_ACCESS_TYPE),
            // The low half is the type, the high half the access asked for (any: denied
            // rules deny read, write and mknod alike).
            Insn::and32(R_TYPE, 0xffff),
            Insn::load_u32(R_MAJOR, CTX_MAJOR),
            Insn::load_u32(R_MINOR, CTX_MINOR),
        ];
        for rule in &self.rules {
            let tests: Vec<(u8, u32)> = [
                rule.kind.map(|k| (R_TYPE, k as u32)),
                rule.major.map(|m| (R_MAJOR, m)),
                rule.minor.map(|m| (R_MINOR, m)),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Each test jumps over the tests after it and the two-instruction answer.
            for (i, &(reg, value)) in tests.iter().enumerate() {
                let after = (tests.len() - i - 1) as i16 + 2;
                program.push(Insn::jump_if_not_equal32(reg, value, after));
            }
            program.push(Insn::return_value(rule.allow));
            program.push(Insn::exit());
        }
        program.push(Insn::return_value(self.default_allow));
        program.push(Insn::exit());
        program
    }
}

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low four bits, source in the high four.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The context register at entry (`struct bpf_cgroup_dev_ctx *`) and the answer register.
const R_CTX: u8 = 1;
const R_ANSWER: u8 = 0;
const R_TYPE: u8 = 2;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;
/// Offsets in `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// The opcodes used (`linux/bpf.h`: class | operation | source).
pub(crate) mod op {
    /// BPF_LDX | BPF_W | BPF_MEM (BPF_W is 0): dst = *(u32 *)(src + off).
    pub const LOAD_U32: u8 = 0x01 | 0x60;
    /// BPF_ALU | BPF_AND | BPF_K: dst = (u32)dst & imm.
    pub const AND32: u8 = 0x04 | 0x50;
    /// BPF_ALU64 | BPF_MOV | BPF_K: dst = imm.
    pub const MOV64: u8 = 0x07 | 0xb0;
    /// BPF_JMP32 | BPF_JNE | BPF_K: if (u32)dst != (u32)imm, skip `off` instructions.
    pub const JNE32: u8 = 0x06 | 0x50;
    /// BPF_JMP | BPF_EXIT: return r0.
    pub const EXIT: u8 = 0x05 | 0x90;
}

impl Insn {
    fn load_u32(dst: u8, off: i16) -> Self {
        Self { code: op::LOAD_U32, regs: dst | (R_CTX << 4), off, imm: 0 }
    }

    fn and32(dst: u8, imm: i32) -> Self {
        Self { code: op::AND32, regs: dst, off: 0, imm }
    }

    fn jump_if_not_equal32(dst: u8, value: u32, skip: i16) -> Self {
        // The kernel compares the low 32 bits with imm's bits: the cast keeps them.
        Self { code: op::JNE32, regs: dst, off: skip, imm: value as i32 }
    }

    fn return_value(allow: bool) -> Self {
        Self { code: op::MOV64, regs: R_ANSWER, off: 0, imm: i32::from(allow) }
    }

    fn exit() -> Self {
        Self { code: op::EXIT, regs: 0, off: 0, imm: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs a program over a device context the way the kernel would, for the opcodes
    /// [`DevicePolicy::instructions`] uses; anything else (or a jump out of the program, or
    /// running off its end) fails the test.
    fn run(program: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let insn = program.get(pc).unwrap_or_else(|| panic!("ran off the end at {pc}"));
            let (dst, src) = ((insn.regs & 0x0f) as usize, (insn.regs >> 4) as usize);
            pc += 1;
            match insn.code {
                op::LOAD_U32 => {
                    assert_eq!(src, R_CTX as usize, "loads only from the context");
                    assert_eq!(insn.off % 4, 0);
                    regs[dst] = u64::from(ctx[(insn.off / 4) as usize]);
                }
                op::AND32 => regs[dst] = u64::from((regs[dst] as u32) & (insn.imm as u32)),
                op::MOV64 => regs[dst] = insn.imm as i64 as u64,
                op::JNE32 => {
                    assert!(insn.off >= 0, "no jump backwards");
                    if regs[dst] as u32 != insn.imm as u32 {
                        pc += insn.off as usize;
                    }
                }
                op::EXIT => return regs[R_ANSWER as usize],
                other => panic!("opcode {other:#04x} is not one the program uses"),
            }
        }
    }

    fn ask(policy: &DevicePolicy, kind: DeviceKind, major: u32, minor: u32, access: u32) -> bool {
        match run(&policy.instructions(), (access << 16) | kind as u32, major, minor) {
            0 => false,
            1 => true,
            other => panic!("a device program returns 0 or 1, this one {other}"),
        }
    }

    const NULL: DeviceNode = DeviceNode { char: true, major: 1, minor: 3 };
    const ZERO: DeviceNode = DeviceNode { char: true, major: 1, minor: 5 };
    const NVIDIA1: DeviceNode = DeviceNode { char: true, major: 195, minor: 1 };

    #[test]
    fn a_job_policy_denies_its_other_gpus_and_allows_the_rest() {
        let policy = DevicePolicy::denying(&[NVIDIA1]);
        // read, write, mknod: denied whatever the access.
        for access in [1, 2, 4, 6, 7] {
            assert!(!ask(&policy, DeviceKind::Char, 195, 1, access));
        }
        assert!(ask(&policy, DeviceKind::Char, 195, 0, 2), "the granted GPU");
        assert!(ask(&policy, DeviceKind::Char, 195, 255, 6), "nvidiactl");
        // What every job uses: null, zero, full, random, urandom, tty, console, ptmx, pts.
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
            assert!(ask(&policy, DeviceKind::Char, major, minor, 6), "c {major}:{minor}");
        }
        assert!(ask(&policy, DeviceKind::Char, 136, 4, 6), "/dev/pts/4");
        assert!(ask(&policy, DeviceKind::Block, 195, 1, 2), "a block device with the numbers");
        // No rule at all: everything is allowed, in two instructions after the loads.
        let open = DevicePolicy::denying(&[]);
        assert_eq!(open.instructions().len(), 6);
        assert!(ask(&open, DeviceKind::Char, 195, 1, 2));
    }

    #[test]
    fn the_first_matching_rule_wins_and_wildcards_match_any_number() {
        // /dev/zero allowed, the rest of major 1 (/dev/null among them) denied.
        let policy = DevicePolicy {
            rules: vec![
                DeviceRule::deny(ZERO).map(|r| DeviceRule { allow: true, ..r }).unwrap(),
                DeviceRule { minor: None, ..DeviceRule::deny(NULL).unwrap() },
            ],
            default_allow: true,
        };
        assert!(ask(&policy, DeviceKind::Char, 1, 5, 2));
        assert!(!ask(&policy, DeviceKind::Char, 1, 3, 2));
        assert!(!ask(&policy, DeviceKind::Char, 1, 9, 2));
        assert!(ask(&policy, DeviceKind::Char, 5, 0, 2), "/dev/tty");
    }

    #[test]
    fn numbers_past_32_bits_name_no_device_and_make_no_rule() {
        let huge = DeviceNode { char: true, major: 1 << 32, minor: 0 };
        assert_eq!(DeviceRule::deny(huge), None);
        assert_eq!(DevicePolicy::denying(&[huge, NULL]).rules.len(), 1);
        // Numbers with the top bit set still compare right (imm carries the bits).
        let high = DeviceNode { char: true, major: 7, minor: u32::MAX as u64 };
        let policy = DevicePolicy::denying(&[high]);
        assert!(!ask(&policy, DeviceKind::Char, 7, u32::MAX, 2));
        assert!(ask(&policy, DeviceKind::Char, 7, u32::MAX - 1, 2));
    }

    fn kind() -> impl Strategy<Value = DeviceKind> {
        prop_oneof![Just(DeviceKind::Char), Just(DeviceKind::Block)]
    }

    /// Numbers from a small range, so rules and devices often meet, and a few large ones.
    fn number() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..4, 1 => any::<u32>()]
    }

    fn rule() -> impl Strategy<Value = DeviceRule> {
        (
            proptest::option::of(kind()),
            proptest::option::of(number()),
            proptest::option::of(number()),
            any::<bool>(),
        )
            .prop_map(|(kind, major, minor, allow)| DeviceRule {
                kind,
                major,
                minor,
                allow,
            })
    }

    proptest! {
        /// The instructions compute the policy's verdict for every policy and device.
        #[test]
        fn the_program_decides_as_the_policy_says(
            rules in proptest::collection::vec(rule(), 0..12),
            default_allow in any::<bool>(),
            kind in kind(),
            major in number(),
            minor in number(),
            access in 1u32..8,
        ) {
            let policy = DevicePolicy { rules, default_allow };
            prop_assert_eq!(
                ask(&policy, kind, major, minor, access),
                policy.verdict(kind, major, minor)
            );
        }
    }
}
