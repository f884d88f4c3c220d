//! ELF section names (`SEC("...")`) to program types, following libbpf's `section_defs[]`
//! (tools/lib/bpf/libbpf.c): the types a [`Case`](crate::case::Case) file can load, and the
//! attach-target / attach-type ones ([`ProgType::ATTACHED`]) only an object carries, which the
//! guest loads through libbpf.

use crate::case::ProgType;

/// The `expected_attach_type` libbpf gives a program (`enum bpf_attach_type`, the values the
/// model tells apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachType {
    /// `BPF_CGROUP_INET_INGRESS` (0): also what a type without an attach type loads with.
    CgroupInetIngress,
    /// `BPF_CGROUP_INET_EGRESS` (1).
    CgroupInetEgress,
    /// `BPF_CGROUP_INET_SOCK_CREATE` (2).
    CgroupInetSockCreate,
    /// `BPF_CGROUP_INET4_POST_BIND` (12).
    CgroupInet4PostBind,
    /// `BPF_CGROUP_INET6_POST_BIND` (13).
    CgroupInet6PostBind,
    /// `BPF_CGROUP_INET_SOCK_RELEASE` (34).
    CgroupInetSockRelease,
    /// `BPF_TRACE_RAW_TP` (23): `tp_btf/`.
    TraceRawTp,
    /// `BPF_TRACE_FENTRY` (24).
    TraceFentry,
    /// `BPF_TRACE_FEXIT` (25).
    TraceFexit,
    /// `BPF_MODIFY_RETURN` (26): `fmod_ret/`.
    ModifyReturn,
    /// `BPF_LSM_MAC` (27): `lsm/`.
    LsmMac,
    /// `BPF_TRACE_ITER` (28): `iter/`.
    TraceIter,
    /// `BPF_SK_REUSEPORT_SELECT` (39).
    SkReuseportSelect,
    /// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE` (40).
    SkReuseportSelectOrMigrate,
    /// Another attach type (`sk_skb/stream_parser`, a `struct_ops` member, ...): the model does not
    /// tell it apart.
    Other,
}

/// What libbpf would load a program in section `sec` as: its type, whether it is sleepable, extra
/// `prog_flags`, and for the [`ProgType::ATTACHED`] types the expected attach type and the attach
/// target (the kernel function, hook or iterator named after the `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecType {
    pub prog_type: ProgType,
    pub sleepable: bool,
    pub prog_flags: u32,
    pub attach: AttachType,
    pub target: Option<String>,
}

/// Maps a section name to a program type, or says why it cannot be loaded as a case.
pub fn prog_type_of_section(sec: &str) -> Result<SecType, String> {
    // A leading '?' only turns autoload off.
    let s = sec.strip_prefix('?').unwrap_or(sec);
    let (kind, target) = match s.split_once('/') {
        Some((k, t)) => (k, Some(t)),
        None => (s, None),
    };
    let with = |prog_type, attach, sleepable: bool| {
        Ok(SecType { prog_type, sleepable, prog_flags: 0, attach, target: target.map(str::to_string) })
    };
    let plain = |prog_type| with(prog_type, AttachType::CgroupInetIngress, false);
    let traced = |attach| with(ProgType::Tracing, attach, kind.ends_with(".s"));
    use AttachType as A;
    match (kind, target) {
        ("socket", _) => plain(ProgType::SocketFilter),
        ("kprobe" | "kretprobe" | "uprobe" | "uretprobe", _) => plain(ProgType::Kprobe),
        // SEC_DEF("uprobe.s+" / "uretprobe.s+", KPROBE, 0, SEC_SLEEPABLE)
        ("uprobe.s" | "uretprobe.s", _) => with(ProgType::Kprobe, A::CgroupInetIngress, true),
        ("tc" | "classifier", None) | ("tc", Some("ingress" | "egress")) => plain(ProgType::SchedCls),
        ("action", _) => plain(ProgType::SchedAct),
        ("tracepoint" | "tp", _) => plain(ProgType::Tracepoint),
        ("raw_tracepoint" | "raw_tp", _) => plain(ProgType::RawTracepoint),
        ("xdp", None) => plain(ProgType::Xdp),
        // BPF_F_XDP_HAS_FRAGS
        ("xdp.frags", None) => Ok(SecType { prog_flags: 1 << 5, ..plain(ProgType::Xdp)? }),
        ("perf_event", None) => plain(ProgType::PerfEvent),
        // "cgroup/skb" loads with expected_attach_type 0 = BPF_CGROUP_INET_INGRESS, as does
        // "cgroup_skb/ingress".
        ("cgroup", Some("skb")) | ("cgroup_skb", Some("ingress")) => plain(ProgType::CgroupSkb),
        ("lwt_in", None) => plain(ProgType::LwtIn),
        ("flow_dissector", None) => plain(ProgType::FlowDissector),
        // SEC_DEF("syscall", SYSCALL, 0, SEC_SLEEPABLE)
        ("syscall", None) => with(ProgType::Syscall, A::CgroupInetIngress, true),
        // The attach-type sections (SEC_ATTACHABLE / SEC_ATTACH_BTF in libbpf's table).
        ("cgroup_skb", Some("egress")) => with(ProgType::CgroupSkb, A::CgroupInetEgress, false),
        ("cgroup", Some("sock_create" | "sock")) => {
            with(ProgType::CgroupSock, A::CgroupInetSockCreate, false)
        }
        ("cgroup", Some("sock_release")) => with(ProgType::CgroupSock, A::CgroupInetSockRelease, false),
        ("cgroup", Some("post_bind4")) => with(ProgType::CgroupSock, A::CgroupInet4PostBind, false),
        ("cgroup", Some("post_bind6")) => with(ProgType::CgroupSock, A::CgroupInet6PostBind, false),
        // SEC_DEF("sk_skb", SK_SKB, 0, SEC_NONE); the stream_parser / verdict forms carry one.
        ("sk_skb", None) => with(ProgType::SkSkb, A::CgroupInetIngress, false),
        ("sk_skb", Some(_)) => with(ProgType::SkSkb, A::Other, false),
        ("sk_reuseport", None) => with(ProgType::SkReuseport, A::SkReuseportSelect, false),
        ("sk_reuseport", Some("migrate")) => {
            with(ProgType::SkReuseport, A::SkReuseportSelectOrMigrate, false)
        }
        ("raw_tp.w" | "raw_tracepoint.w", _) => {
            with(ProgType::RawTracepointWritable, A::CgroupInetIngress, false)
        }
        ("fentry" | "fentry.s", Some(_)) => traced(A::TraceFentry),
        ("fexit" | "fexit.s", Some(_)) => traced(A::TraceFexit),
        ("fmod_ret" | "fmod_ret.s", Some(_)) => traced(A::ModifyReturn),
        ("tp_btf", Some(_)) => traced(A::TraceRawTp),
        ("iter" | "iter.s", Some(_)) => traced(A::TraceIter),
        ("lsm" | "lsm.s", Some(_)) => with(ProgType::Lsm, A::LsmMac, kind == "lsm.s"),
        ("struct_ops" | "struct_ops.s", _) => with(ProgType::StructOps, A::Other, kind == "struct_ops.s"),
        ("freplace", Some(_)) => with(ProgType::Ext, A::Other, false),
        _ => Err(format!(
            "section `{sec}` is not a program type lockstep loads (needs an attach target or attach type)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_names() {
        assert_eq!(prog_type_of_section("cgroup/skb").unwrap().prog_type, ProgType::CgroupSkb);
        assert_eq!(prog_type_of_section("tc").unwrap().prog_type, ProgType::SchedCls);
        assert_eq!(prog_type_of_section("?tc").unwrap().prog_type, ProgType::SchedCls);
        assert_eq!(prog_type_of_section("kprobe/do_nanosleep").unwrap().prog_type, ProgType::Kprobe);
        assert!(prog_type_of_section("syscall").unwrap().sleepable);
        assert_eq!(prog_type_of_section("xdp.frags").unwrap().prog_flags, 32);
        assert!(prog_type_of_section("uretprobe.multi/x").unwrap_err().contains("uretprobe.multi"));
    }

    #[test]
    fn attach_sections() {
        let fentry = prog_type_of_section("?fentry.s/bpf_fentry_test1").unwrap();
        assert_eq!(
            (fentry.prog_type, fentry.attach, fentry.sleepable, fentry.target.as_deref()),
            (ProgType::Tracing, AttachType::TraceFentry, true, Some("bpf_fentry_test1"))
        );
        let tp = prog_type_of_section("tp_btf/task_newtask").unwrap();
        assert_eq!((tp.attach, tp.sleepable), (AttachType::TraceRawTp, false));
        assert_eq!(prog_type_of_section("fexit/do_exit").unwrap().attach, AttachType::TraceFexit);
        assert_eq!(prog_type_of_section("iter/cgroup").unwrap().attach, AttachType::TraceIter);
        let uprobe = prog_type_of_section("uprobe.s//proc/self/exe:trigger_func3").unwrap();
        assert_eq!((uprobe.prog_type, uprobe.sleepable), (ProgType::Kprobe, true));
        let lsm = prog_type_of_section("lsm.s/task_free").unwrap();
        assert_eq!((lsm.prog_type, lsm.sleepable), (ProgType::Lsm, true));
        assert_eq!(prog_type_of_section("struct_ops").unwrap().prog_type, ProgType::StructOps);
        assert_eq!(prog_type_of_section("freplace/handle_kprobe").unwrap().prog_type, ProgType::Ext);
        let egress = prog_type_of_section("cgroup_skb/egress").unwrap();
        assert_eq!((egress.prog_type, egress.attach), (ProgType::CgroupSkb, AttachType::CgroupInetEgress));
        let bind = prog_type_of_section("cgroup/post_bind4").unwrap();
        assert_eq!((bind.prog_type, bind.attach), (ProgType::CgroupSock, AttachType::CgroupInet4PostBind));
        assert_eq!(prog_type_of_section("sk_skb").unwrap().prog_type, ProgType::SkSkb);
        assert_eq!(prog_type_of_section("sk_reuseport").unwrap().prog_type, ProgType::SkReuseport);
        assert_eq!(prog_type_of_section("?raw_tp.w/xyz").unwrap().prog_type, ProgType::RawTracepointWritable);
        // A bare fentry has no target: libbpf refuses it; so does lockstep.
        assert!(prog_type_of_section("fentry").is_err());
    }
}
