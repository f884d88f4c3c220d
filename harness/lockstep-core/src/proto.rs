//! The host <-> guest protocol: lines over the control port (a virtio-serial port in a QEMU
//! guest; stdin/stdout-like pipes in host mode), a `Run` and a `Result` in the binary
//! [`crate::wire`] format, the other messages JSON.

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::verdict::Verdict;

/// Name of the virtio-serial port carrying the protocol (`/sys/class/virtio-ports/*/name`).
pub const CONTROL_PORT_NAME: &str = "lockstep.0";

/// The protocol's version, which the agent says in `Hello` (an agent without it says 0). The
/// agent is the host's own binary and a restored guest's snapshot is keyed by the initramfs that
/// holds it, so the two always agree; the host still refuses a `Hello` of another version
/// (`guest::GuestRun::wait_hello`), and the snapshot key names it.
/// 5 (session 17): [`HostMsg::Workers`] (a guest with several vCPUs runs cases on several).
/// 4 (session 14): a `Result` is a binary line too (`lockstep_vm::stream::write_guest`).
/// 3 (session 13): a `Run` is a binary line ([`crate::wire`], `lockstep_vm::stream`), the
/// other messages stay JSON.
/// 2 (session 11): instructions as one hex string ([`crate::insn::hex_image`]), results written
/// in batches, [`GuestMsg::Busy`]. 1 (before): instructions as JSON objects, one write per result.
pub const PROTOCOL_VERSION: u32 = 5;

/// The kernel parameter the runner puts on every lockstep guest's command line: the agent runs
/// only as pid 1 of a kernel booted with it (never on a host by mistake).
pub const GUEST_CMDLINE_MARKER: &str = "lockstep.guest=1";

/// A message from the host to the guest agent: `{"msg": <kind>, "body": {...}}`. Adjacently
/// tagged with the tag written first, the agent decodes a `Run`'s case straight into a [`Case`]
/// (an internally tagged enum is first buffered whole, every string copied, then decoded again;
/// the adjacent form halves the decode: docs/speed.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", content = "body", rename_all = "snake_case")]
pub enum HostMsg {
    /// Load one case and report its verdict.
    Run {
        /// Sequence number echoed in the result.
        id: u64,
        case: Box<Case>,
        /// Return the full verifier log, not only the error line.
        want_log: bool,
    },
    /// List the kfuncs of the running kernel (vmlinux and loaded modules).
    ListKfuncs {
        /// Sequence number echoed in the answer.
        id: u64,
    },
    /// Flush and power the guest off.
    Shutdown,
    /// Greet again: the agent answers with a fresh `Hello` (sent after a guest was restored
    /// from a snapshot, whose agent said `Hello` before it was saved).
    Ping,
    /// Run cases on `n` of the guest's vCPUs from now on (a guest starts with one; more when
    /// another of the host's jobs joins it). No answer.
    Workers { n: u32 },
}

/// One kfunc of the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KfuncEntry {
    pub name: String,
    /// Its BTF type id (in the split BTF of its module, ids continuing after vmlinux's).
    pub btf_id: u32,
    /// The module whose BTF has it; None for vmlinux.
    pub module: Option<String>,
}

/// One BTF object read while listing kfuncs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtfSource {
    /// `vmlinux` or the module name (`/sys/kernel/btf/<object>`).
    pub object: String,
    /// Number of `BTF_KIND_FUNC` types.
    pub funcs: usize,
    /// Number of functions tagged `bpf_kfunc`.
    pub kfuncs: usize,
    /// Why the object could not be read.
    pub error: Option<String>,
}

/// The kfuncs of a running kernel: the functions its BTF tags `bpf_kfunc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KfuncListing {
    /// Sorted by object (vmlinux first) then name.
    pub kfuncs: Vec<KfuncEntry>,
    pub sources: Vec<BtfSource>,
    /// Anything odd (a kfunc name the loader resolves to another BTF id, ...).
    pub warnings: Vec<String>,
}

/// Whether the test module was loaded in the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModuleStatus {
    /// No module was shipped in the initramfs.
    Absent,
    /// Loaded; its BTF object id.
    Loaded { name: String, btf_id: u32 },
    /// `finit_module` (or finding its BTF) failed.
    Failed { name: String, error: String },
}

/// What the kernel said about one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelResult {
    pub case: String,
    /// Accept or reject (never unsupported); `insn` and `message` parsed from the log.
    pub verdict: Verdict,
    /// errno of `BPF_PROG_LOAD` (0 on success).
    pub errno: i32,
    /// The full verifier log, when asked for (and always on an unexpected setup failure).
    pub log: Option<String>,
    /// Kernel-reported verification time in microseconds (`verification time N usec`), if logged.
    pub verification_usec: Option<u64>,
    /// `processed N insns`, if logged.
    pub insns_processed: Option<u64>,
    /// Set when the case could not be set up (map creation, BTF, kfunc resolution): the verdict is
    /// then not the verifier's.
    pub setup_error: Option<String>,
    /// `BPF_PROG_TEST_RUN` after a successful load, for an object program whose test has a
    /// `__retval` (None: not asked for, or the load failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_run: Option<TestRun>,
}

/// What `BPF_PROG_TEST_RUN` gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestRun {
    /// The program ran; its return value (`bpf_test_run_opts.retval`).
    Ran { retval: u32 },
    /// The kernel did not run it (`ENOTSUPP`: no test run for this program type, ...).
    Refused { errno: i32, errno_name: String },
}

/// Builders of [`KernelResult`] for tests: this crate's, and the other crates' through the
/// `test-support` feature (enabled in their dev-dependencies only).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use super::KernelResult;
    use crate::verdict::Verdict;

    /// The kernel's `verdict` on `case`: errno 0, no log, no timings, no setup error.
    pub fn kernel_result(case: &str, verdict: Verdict) -> KernelResult {
        KernelResult {
            case: case.into(),
            verdict,
            errno: 0,
            log: None,
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: None,
        }
    }
}

/// A message from the guest agent to the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum GuestMsg {
    /// Sent once the agent is ready for cases.
    Hello {
        release: String,
        /// The test module (`/lockstep/module.ko`).
        module: ModuleStatus,
        /// The other modules shipped (`/lockstep/modules/*.ko`, e.g. the kernel tree's
        /// `bpf_testmod`), in load order.
        #[serde(default)]
        extra_modules: Vec<ModuleStatus>,
        /// [`PROTOCOL_VERSION`] of the agent (0: an agent older than the field).
        #[serde(default)]
        protocol: u32,
    },
    /// The result of one `Run`. The agent answers in order but may hold finished results back
    /// and write several at once (when more cases are waiting): a case without its result may
    /// have finished.
    Result { id: u64, result: KernelResult },
    /// Case `id` has been running for a while (tens of ms) and every result before it has been
    /// written; its own result is written as soon as it is done. So if the guest dies while the
    /// host's last message is this one, case `id` was running.
    Busy { id: u64 },
    /// The answer to `ListKfuncs`.
    Kfuncs { id: u64, listing: KfuncListing },
    /// Sent right before power-off, after everything else the agent sends and after
    /// [`CONSOLE_DONE`] was written to the kernel log.
    Bye,
}

/// The kernel log line the agent writes at `Shutdown` (after draining its own console output),
/// right before [`GuestMsg::Bye`]: the console prints the kernel's records in order, so once the
/// host has read this line there, everything the guest printed before it has arrived too.
pub const CONSOLE_DONE: &str = "lockstep agent: console done";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_message_with_relocations_round_trips_through_json() {
        let text = "r1 = map[id:m]\ncall bpf_spin_lock\nr0 = 0\nexit\n";
        let mut syms = crate::asm::Symbols::default();
        syms.maps.push("m".into());
        let program = crate::asm::assemble(text, &syms).expect("assembles");
        assert!(!program.relocs.is_empty());
        let msg = HostMsg::Run {
            id: 7,
            case: Box::new(Case {
                name: "c".into(),
                file: "f".into(),
                line: 1,
                prog_type: crate::case::ProgType::SchedCls,
                sleepable: false,
                prog_flags: 0,
                log_level: 0,
                maps: Vec::new(),
                globals: Vec::new(),
                types: Vec::new(),
                extern_kfuncs: Vec::new(),
                program,
                text: text.into(),
                expect: Default::default(),
                description: None,
                tags: Vec::new(),
                object: None,
                model_unsupported: None,
                exception_cb: None,
                license: crate::case::DEFAULT_LICENSE.into(),
                non_struct_type_ids: Vec::new(),
            }),
            want_log: false,
        };
        let json = serde_json::to_string(&msg).unwrap();
        let back: HostMsg = serde_json::from_str(&json).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn a_kfunc_listing_round_trips_through_json() {
        let listing = KfuncListing {
            kfuncs: vec![KfuncEntry {
                name: "lockstep_safe".into(),
                btf_id: 130_001,
                module: Some("lockstep_test".into()),
            }],
            sources: vec![BtfSource { object: "lockstep_test".into(), funcs: 6, kfuncs: 6, error: None }],
            warnings: Vec::new(),
        };
        let msg = GuestMsg::Kfuncs { id: 3, listing };
        let json = serde_json::to_string(&msg).unwrap();
        assert!(json.contains(r#""msg":"kfuncs""#), "{json}");
        assert_eq!(serde_json::from_str::<GuestMsg>(&json).unwrap(), msg);
        let ask: HostMsg = serde_json::from_str(r#"{"msg":"list_kfuncs","body":{"id":3}}"#).unwrap();
        assert_eq!(ask, HostMsg::ListKfuncs { id: 3 });
    }
}
