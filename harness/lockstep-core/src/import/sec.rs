//! ELF section names (`SEC("...")`) to program types, following libbpf's `section_defs[]`
//! (tools/lib/bpf/libbpf.c) for the types a [`Case`](crate::case::Case) can load.

use crate::case::ProgType;

/// What libbpf would load a program in section `sec` as: its type, whether it is sleepable, and
/// extra `prog_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecType {
    pub prog_type: ProgType,
    pub sleepable: bool,
    pub prog_flags: u32,
}

/// Maps a section name to a program type, or says why it cannot be loaded as a case.
pub fn prog_type_of_section(sec: &str) -> Result<SecType, String> {
    // A leading '?' only turns autoload off.
    let s = sec.strip_prefix('?').unwrap_or(sec);
    let (kind, target) = match s.split_once('/') {
        Some((k, t)) => (k, Some(t)),
        None => (s, None),
    };
    let plain = |prog_type| Ok(SecType { prog_type, sleepable: false, prog_flags: 0 });
    match (kind, target) {
        ("socket", _) => plain(ProgType::SocketFilter),
        ("kprobe" | "kretprobe" | "uprobe" | "uretprobe", _) => plain(ProgType::Kprobe),
        ("tc" | "classifier", None) | ("tc", Some("ingress" | "egress")) => plain(ProgType::SchedCls),
        ("action", _) => plain(ProgType::SchedAct),
        ("tracepoint" | "tp", _) => plain(ProgType::Tracepoint),
        ("raw_tracepoint" | "raw_tp", _) => plain(ProgType::RawTracepoint),
        ("xdp", None) => plain(ProgType::Xdp),
        // BPF_F_XDP_HAS_FRAGS
        ("xdp.frags", None) => Ok(SecType { prog_type: ProgType::Xdp, sleepable: false, prog_flags: 1 << 5 }),
        ("perf_event", None) => plain(ProgType::PerfEvent),
        // "cgroup/skb" loads with expected_attach_type 0 = BPF_CGROUP_INET_INGRESS, as does
        // "cgroup_skb/ingress"; egress would need an attach type a case cannot carry.
        ("cgroup", Some("skb")) | ("cgroup_skb", Some("ingress")) => plain(ProgType::CgroupSkb),
        ("lwt_in", None) => plain(ProgType::LwtIn),
        ("flow_dissector", None) => plain(ProgType::FlowDissector),
        // SEC_DEF("syscall", SYSCALL, 0, SEC_SLEEPABLE)
        ("syscall", None) => Ok(SecType { prog_type: ProgType::Syscall, sleepable: true, prog_flags: 0 }),
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
        assert!(prog_type_of_section("fentry/bpf_fentry_test1").unwrap_err().contains("fentry"));
        assert!(prog_type_of_section("cgroup_skb/egress").is_err());
    }
}
