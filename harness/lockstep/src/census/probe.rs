//! The census's probe programs and how a kernel's answer to them is read (pure: no I/O).
//!
//! Two probes per kfunc, both with zero scalars in R1-R5 (see `docs/census.md`):
//!
//! - the **registration probe** `r1..r5 = 0; call KFUNC; r0 = 0; exit`, without a map or a lock,
//!   loaded as one program type after another until the kernel takes the kfunc for that type;
//! - the **lock probe** on that type: an array map value `{int cnt; struct bpf_spin_lock lock;}`,
//!   `bpf_spin_lock`, `r1..r5 = 0; call KFUNC`, `bpf_spin_unlock`, `exit`.
//!
//! Reading them relies on the verifier's check order at a `BPF_CALL` (7.2 `do_check_insn()`
//! verifier.c:17511, 7.3 verifier.c:18344, 6.12 `do_check()`): with a lock held, the lock rule
//! ("function calls are not allowed while holding a lock", `kfunc_spin_allowed()`) is the first
//! check of the call instruction, before `check_kfunc_call()`, which then checks, in order, that
//! the kfunc is in the program type's id set ("calling kernel function %s is not allowed",
//! `bpf_fetch_kfunc_arg_meta()`), capabilities, sleepability, and the arguments
//! (`check_kfunc_args()`). Checks of the pre-passes (`add_kfunc_call()`: BTF, kallsyms address,
//! prototype, device binding) run before the instruction walk, so their errors carry no
//! instruction index. Hence, for the lock probe:
//!
//! - rejected with the lock rule's message at the call: **not lock-safe**;
//! - accepted, or rejected at the call or later by any other check (arguments, registration
//!   filter, sleepability, a leaked reference at exit...): **lock-safe** (past the lock rule);
//! - rejected before the walk (no instruction) or before the call: **not callable** here.
//!
//! In 7.3 `kfunc_spin_allowed()` reads the flags of the program type's id set, so a kfunc the
//! type does not register fails the lock rule as "not lock-safe"; that is why the lock probe only
//! runs on a type the registration probe found.

use std::collections::BTreeMap;

use lockstep_core::asm::{self, Reloc, Symbols};
use lockstep_core::case::{Case, Field, FieldKind, MapSpec, MapType, ProgType, ValueLayout};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::VerdictKind;
use serde::{Deserialize, Serialize};

/// The lock rule's message (`do_check_insn()`, all profiles).
pub const LOCK_RULE_MESSAGE: &str = "function calls are not allowed while holding a lock";

/// Program types that may hold a `bpf_spin_lock` and load without an attach target, in the
/// order the census tries them (with their kfunc hook, `bpf_prog_type_to_kfunc_hook()`):
/// sched_cls (TC), xdp (XDP), syscall (SYSCALL, sleepable), sched_act (SCHED_ACT),
/// cgroup_skb (CGROUP), lwt_in (LWT). Kfuncs of the COMMON hook are registered for all.
pub const LOCKABLE: [ProgType; 6] = [
    ProgType::SchedCls,
    ProgType::Xdp,
    ProgType::Syscall,
    ProgType::SchedAct,
    ProgType::CgroupSkb,
    ProgType::LwtIn,
];

/// Program types tried (registration probe only) to say why a kfunc no lockable type registers
/// is not callable under a lock: their programs cannot use `bpf_spin_lock` at all
/// (`check_map_prog_compatibility()`: tracing programs and socket filters).
/// raw_tracepoint stands for the TRACING hook (also fentry/fexit, LSM), kprobe for KPROBE.
pub const UNLOCKABLE: [ProgType; 3] = [ProgType::RawTracepoint, ProgType::Kprobe, ProgType::SocketFilter];

/// The placeholder the probe templates call; replaced by the kfunc's name.
const PLACEHOLDER: &str = "lockstep_census_kfunc";

const ZERO_ARGS: &str = "    r1 = 0\n    r2 = 0\n    r3 = 0\n    r4 = 0\n    r5 = 0\n";

/// The lock probe's text (the lock at offset 4 of the value, as in the corpus).
fn lock_text() -> String {
    format!(
        "    r1 = 0\n    *(u32 *)(r10 - 4) = r1\n    r2 = r10\n    r2 += -4\n    r1 = vals ll\n    call bpf_map_lookup_elem\n    if r0 == 0 goto out\n    r6 = r0\n    r1 = r6\n    r1 += 4\n    call bpf_spin_lock\n{ZERO_ARGS}    call {PLACEHOLDER}\n    r1 = r6\n    r1 += 4\n    call bpf_spin_unlock\nout:\n    r0 = 0\n    exit\n"
    )
}

/// The registration probe's text.
fn plain_text() -> String {
    format!("{ZERO_ARGS}    call {PLACEHOLDER}\n    r0 = 0\n    exit\n")
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// No map, no lock: is the kfunc callable from this program type?
    Registration,
    /// The call between `bpf_spin_lock` and `bpf_spin_unlock`.
    Lock,
}

/// The probe program calling `kfunc` as a `prog_type` program. The case name is
/// `census:<probe>:<prog type>:<kfunc>`.
pub fn probe_case(kfunc: &str, prog_type: ProgType, probe: Probe) -> Case {
    let (template, maps) = match probe {
        Probe::Registration => (plain_text(), Vec::new()),
        Probe::Lock => (lock_text(), vec![lock_map()]),
    };
    let syms = Symbols {
        maps: maps.iter().map(|m| m.name.clone()).collect(),
        kfuncs: vec![PLACEHOLDER.to_string()],
    };
    let mut program = asm::assemble(&template, &syms).expect("the census templates assemble");
    for r in program.relocs.values_mut() {
        if let Reloc::Kfunc { name } = r {
            *name = kfunc.to_string();
        }
    }
    let probe_name = match probe {
        Probe::Registration => "registration",
        Probe::Lock => "lock",
    };
    Case {
        name: format!("census:{probe_name}:{}:{kfunc}", prog_type.name()),
        file: "<census>".into(),
        line: 0,
        prog_type,
        // BPF_PROG_TYPE_SYSCALL programs must be sleepable (check_attach_btf_id()).
        sleepable: prog_type == ProgType::Syscall,
        prog_flags: 0,
        log_level: 0,
        maps,
        globals: Vec::new(),
        types: Vec::new(),
        extern_kfuncs: Vec::new(),
        program,
        text: template.replace(PLACEHOLDER, kfunc),
        expect: BTreeMap::new(),
        description: Some(format!("kfunc lock-safety census: {probe_name} probe")),
        tags: vec!["census".into()],
        object: None,
        model_unsupported: None,
        exception_cb: None,
        license: lockstep_core::case::DEFAULT_LICENSE.into(),
        non_struct_type_ids: Vec::new(),
    }
}

/// `vals`: an array map of one `{int cnt; struct bpf_spin_lock lock;}` with BTF.
fn lock_map() -> MapSpec {
    MapSpec {
        name: "vals".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout {
            size: 8,
            fields: vec![
                Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None },
                Field { name: "lock".into(), kind: FieldKind::SpinLock, offset: 4, size: 4, target: None },
            ],
        },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    }
}

/// The instruction index of the kfunc call in a probe.
pub fn call_insn(case: &Case) -> usize {
    case.program
        .relocs
        .iter()
        .find_map(|(i, r)| matches!(r, Reloc::Kfunc { .. }).then_some(*i))
        .expect("a census probe calls its kfunc")
}

/// What a registration probe says about one program type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", content = "message", rename_all = "snake_case")]
pub enum Registration {
    /// The kernel took the kfunc for this type (accepted, or rejected by a later check).
    Registered,
    /// "calling kernel function X is not allowed": not in this type's id sets (or filtered out).
    NotRegistered,
    /// Refused before the kfunc's registration was checked (pre-pass error, setup failure):
    /// the reason.
    Refused(String),
}

/// The first line of a rejection's message.
fn first_line(r: &KernelResult) -> &str {
    r.verdict.message.as_deref().and_then(|m| m.lines().next()).unwrap_or("").trim_end()
}

/// A setup failure or a rejection before the call, as a reason; None when the verifier got to
/// the call instruction.
fn refused_before_call(r: &KernelResult, call: usize) -> Option<String> {
    if let Some(e) = &r.setup_error {
        return Some(format!("setup: {e}"));
    }
    if r.verdict.verdict != VerdictKind::Reject {
        return None;
    }
    match r.verdict.insn {
        None => Some(format!("before the walk: {}", first_line(r))),
        Some(i) if i < call => Some(format!("at insn {i}, before the call: {}", first_line(r))),
        Some(_) => None,
    }
}

/// Reads a registration probe's result (`call`: the kfunc call's index).
pub fn read_registration(kfunc: &str, r: &KernelResult, call: usize) -> Registration {
    if let Some(why) = refused_before_call(r, call) {
        return Registration::Refused(why);
    }
    if r.verdict.verdict == VerdictKind::Reject
        && first_line(r) == format!("calling kernel function {kfunc} is not allowed")
    {
        return Registration::NotRegistered;
    }
    Registration::Registered
}

/// The census's answer for one kfunc on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// The verifier got past the lock rule.
    LockSafe,
    /// The lock rule rejected the call.
    NotLockSafe,
    /// No lock probe could reach the call (not registered for a lockable type, refused earlier).
    NotCallable,
}

impl LockStatus {
    /// Short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            LockStatus::LockSafe => "lock-safe",
            LockStatus::NotLockSafe => "not-lock-safe",
            LockStatus::NotCallable => "not-callable",
        }
    }
}

/// Reads a lock probe's result: the status and what the kernel said.
pub fn read_lock_probe(r: &KernelResult, call: usize) -> (LockStatus, String) {
    if let Some(why) = refused_before_call(r, call) {
        return (LockStatus::NotCallable, why);
    }
    match r.verdict.verdict {
        VerdictKind::Accept => (LockStatus::LockSafe, "accepted".into()),
        VerdictKind::Reject if r.verdict.insn == Some(call) && first_line(r) == LOCK_RULE_MESSAGE => {
            (LockStatus::NotLockSafe, LOCK_RULE_MESSAGE.into())
        }
        VerdictKind::Reject => {
            let at = r.verdict.insn.map_or(String::new(), |i| format!(" at insn {i}"));
            (LockStatus::LockSafe, format!("past the lock rule, then rejected{at}: {}", first_line(r)))
        }
        VerdictKind::Unsupported => (LockStatus::NotCallable, format!("no verdict: {}", first_line(r))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::verdict::Verdict;

    fn kr(v: Verdict) -> KernelResult {
        KernelResult { errno: 22, ..lockstep_core::proto::test_support::kernel_result("c", v) }
    }

    #[test]
    fn probes_call_the_kfunc_with_zeroed_arguments_and_the_lock_probe_holds_the_lock() {
        let reg = probe_case("bpf_foo", ProgType::Xdp, Probe::Registration);
        assert!(reg.maps.is_empty());
        assert_eq!(call_insn(&reg), 5);
        assert_eq!(reg.program.call_name(5), Some("bpf_foo"));
        assert!(reg.text.contains("call bpf_foo") && !reg.text.contains(PLACEHOLDER));
        let lock = probe_case("bpf_foo", ProgType::Syscall, Probe::Lock);
        assert!(lock.sleepable, "syscall programs are loaded sleepable");
        let call = call_insn(&lock);
        let names: Vec<_> =
            lock.program.relocs.keys().filter_map(|i| lock.program.call_name(*i).map(|n| (*i, n))).collect();
        let lock_at = names.iter().find(|(_, n)| *n == "bpf_spin_lock").unwrap().0;
        let unlock_at = names.iter().find(|(_, n)| *n == "bpf_spin_unlock").unwrap().0;
        assert!(lock_at < call && call < unlock_at, "{names:?}");
        assert_eq!(lock.name, "census:lock:syscall:bpf_foo");
    }

    #[test]
    fn the_model_sees_the_lock_probe_as_a_call_under_the_lock() {
        // The probe is a well-formed lock/unlock pair: 7.2's model rejects an unlisted kfunc at
        // the call with the lock rule, and accepts the same program without the call's kfunc
        // being under the lock.
        let module = lockstep_core::module_src::bundled();
        let p72 = lockstep_core::profile::KernelProfile::by_name("7.2").unwrap();
        let c = probe_case("lockstep_unsafe", ProgType::SchedCls, Probe::Lock);
        let v = lockstep_core::model::check(&c, &p72, &module);
        assert_eq!(v, Verdict::reject(Some(call_insn(&c)), LOCK_RULE_MESSAGE));
        let p73 = lockstep_core::profile::KernelProfile::by_name("7.3").unwrap();
        let safe = probe_case("lockstep_safe", ProgType::SchedCls, Probe::Lock);
        assert_eq!(lockstep_core::model::check(&safe, &p73, &module).verdict, VerdictKind::Accept);
    }

    #[test]
    fn the_lock_rule_at_the_call_is_not_lock_safe_and_anything_after_it_is_lock_safe() {
        let call = 16;
        let gate =
            kr(Verdict::reject(Some(call), format!("{LOCK_RULE_MESSAGE}\n\nVerification failed: ...")));
        assert_eq!(read_lock_probe(&gate, call).0, LockStatus::NotLockSafe);
        assert_eq!(read_lock_probe(&kr(Verdict::accept()), call), (LockStatus::LockSafe, "accepted".into()));
        let args = kr(Verdict::reject(Some(call), "R1 type=scalar expected=fp"));
        let (s, d) = read_lock_probe(&args, call);
        assert_eq!(s, LockStatus::LockSafe);
        assert!(d.contains("R1 type=scalar expected=fp") && d.contains("at insn 16"), "{d}");
        let later = kr(Verdict::reject(Some(call + 4), "Unreleased reference id=3 alloc_insn=16"));
        assert_eq!(read_lock_probe(&later, call).0, LockStatus::LockSafe);
        // The lock rule's message at another call is a later call being refused: still past it.
        let other_call = kr(Verdict::reject(Some(call + 3), LOCK_RULE_MESSAGE));
        assert_eq!(read_lock_probe(&other_call, call).0, LockStatus::LockSafe);
    }

    #[test]
    fn refusals_before_the_call_mean_not_callable() {
        let call = 16;
        let prepass = kr(Verdict::reject(None, "cannot find address for kernel function bpf_x"));
        let (s, d) = read_lock_probe(&prepass, call);
        assert_eq!(s, LockStatus::NotCallable);
        assert!(d.starts_with("before the walk: cannot find address"), "{d}");
        let early = kr(Verdict::reject(Some(10), "R1 type=map_value_or_null expected=map_value"));
        assert_eq!(read_lock_probe(&early, call).0, LockStatus::NotCallable);
        let mut setup = kr(Verdict::unsupported("setup error: unknown kfunc bpf_x"));
        setup.setup_error = Some("unknown kfunc bpf_x".into());
        assert_eq!(
            read_lock_probe(&setup, call),
            (LockStatus::NotCallable, "setup: unknown kfunc bpf_x".into())
        );
        assert_eq!(
            read_registration("bpf_x", &setup, 5),
            Registration::Refused("setup: unknown kfunc bpf_x".into())
        );
    }

    #[test]
    fn registration_is_told_by_the_not_allowed_message_for_this_kfunc() {
        let call = 5;
        let not = kr(Verdict::reject(Some(call), "calling kernel function bpf_x is not allowed"));
        assert_eq!(read_registration("bpf_x", &not, call), Registration::NotRegistered);
        assert_eq!(
            read_registration("bpf_y", &not, call),
            Registration::Registered,
            "another kfunc's name is a later check"
        );
        assert_eq!(read_registration("bpf_x", &kr(Verdict::accept()), call), Registration::Registered);
        let sleepable =
            kr(Verdict::reject(Some(call), "program must be sleepable to call sleepable kfunc bpf_x"));
        assert_eq!(read_registration("bpf_x", &sleepable, call), Registration::Registered);
        let prepass = kr(Verdict::reject(None, "metadata kfuncs require device-bound program"));
        assert!(matches!(read_registration("bpf_x", &prepass, call), Registration::Refused(_)));
    }
}
