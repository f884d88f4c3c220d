//! Context (`PTR_TO_CTX`) accesses: `check_ctx_access()` -> `env->ops->is_valid_access()` per
//! program type, as data tables and small predicates transcribed from net/core/filter.c (the same
//! in the 6.12, 7.2 and 7.3 sources): which offsets and sizes of `struct __sk_buff`, `struct
//! xdp_md` and `struct bpf_sock` a program may read or write (and a syscall program's ctx, from
//! kernel/bpf/syscall.c), and what a load gives
//! (`info->reg_type`). An access no predicate accepts is `"invalid bpf_context access off=%d
//! size=%d"` (`__check_ctx_access()`). Packet pointers (`data`, `data_end`, `data_meta`) are
//! followed in sched_cls / sched_act / xdp programs (`pkt.rs`); loading one elsewhere is
//! `unsupported`, naming it.
//!
//! Assumed: the program is loaded by root (`bpf_capable()` / `bpf_token_capable()` true), not
//! offloaded, and `is_ldsx` is false (the model walks `BPF_MEM` loads only).

use super::exec::Machine;
use super::state::Reg;
use super::{Step, Stop};
use crate::case::ProgType;
use crate::import::sec::AttachType;

/// What a valid ctx load puts in the destination register (`info->reg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CtxLoad {
    /// `SCALAR_VALUE`.
    Scalar,
    /// `PTR_TO_SOCK_COMMON_OR_NULL` (`__sk_buff.sk`).
    SockCommonOrNull,
    /// A packet pointer (`PTR_TO_PACKET`, `_META`, `_END`), not modelled; the field's name.
    Packet(&'static str),
}

/// The verdict of a program type's `is_valid_access()` on one access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CtxAccess {
    /// Valid; a load gives this.
    Valid(CtxLoad),
    /// Refused: "invalid bpf_context access off=%d size=%d".
    Invalid,
    /// The program type (or attach type) is one the tables do not cover.
    Unsupported(String),
}

/// `struct __sk_buff` (include/uapi/linux/bpf.h): field offsets and the struct's size.
mod skb {
    pub const MARK: i64 = 8;
    pub const QUEUE_MAPPING: i64 = 12;
    pub const PRIORITY: i64 = 32;
    pub const TC_INDEX: i64 = 44;
    pub const CB: i64 = 48;
    pub const CB_END: i64 = 68;
    pub const TC_CLASSID: i64 = 72;
    pub const DATA: i64 = 76;
    pub const DATA_END: i64 = 80;
    pub const FAMILY: i64 = 88;
    pub const REMOTE_IP4: i64 = 92;
    pub const LOCAL_IP4: i64 = 96;
    pub const REMOTE_IP6: i64 = 100;
    pub const LOCAL_IP6: i64 = 116;
    /// `offsetofend(local_port)`.
    pub const LOCAL_PORT_END: i64 = 140;
    pub const DATA_META: i64 = 140;
    pub const FLOW_KEYS: i64 = 144;
    pub const TSTAMP: i64 = 152;
    pub const WIRE_LEN: i64 = 160;
    pub const SK: i64 = 168;
    pub const TSTAMP_TYPE: i64 = 180;
    pub const HWTSTAMP: i64 = 184;
    pub const SIZE: i64 = 192;
}

/// `struct bpf_sock` (include/uapi/linux/bpf.h).
pub(crate) mod sock {
    pub const BOUND_DEV_IF: i64 = 0;
    pub const FAMILY: i64 = 4;
    pub const TYPE: i64 = 8;
    pub const PROTOCOL: i64 = 12;
    pub const MARK: i64 = 16;
    pub const PRIORITY: i64 = 20;
    pub const SRC_IP4: i64 = 24;
    pub const SRC_IP6: i64 = 28;
    pub const SRC_PORT: i64 = 44;
    pub const DST_PORT: i64 = 48;
    pub const DST_IP4: i64 = 52;
    pub const DST_IP6: i64 = 56;
    pub const STATE: i64 = 72;
    pub const RX_QUEUE_MAPPING: i64 = 76;
    pub const SIZE: i64 = 80;
}

/// `struct xdp_md` (include/uapi/linux/bpf.h).
mod xdp {
    pub const DATA: i64 = 0;
    pub const DATA_END: i64 = 4;
    pub const DATA_META: i64 = 8;
    pub const EGRESS_IFINDEX: i64 = 20;
    pub const SIZE: i64 = 24;
}

/// `bpf_ctx_range(T, M)`: `off` within the `len` bytes of the member at `start`.
fn within(off: i64, start: i64, len: i64) -> bool {
    (start..start + len).contains(&off)
}

/// `bpf_ctx_narrow_access_ok()` (include/linux/filter.h).
pub(crate) fn narrow_ok(size: u8, size_default: u8) -> bool {
    size <= size_default && size.is_power_of_two()
}

/// `bpf_skb_is_valid_access()`: the checks every `__sk_buff` program type ends with.
fn skb_base(off: i64, size: u8, write: bool, load: CtxLoad) -> CtxAccess {
    use skb::*;
    let s = size as i64;
    let ok = |b: bool| if b { CtxAccess::Valid(load) } else { CtxAccess::Invalid };
    if !(0..SIZE).contains(&off) || off % s != 0 {
        return CtxAccess::Invalid;
    }
    if within(off, CB, CB_END - CB) {
        return ok(off + s <= CB_END);
    }
    if [DATA, DATA_META, DATA_END].iter().any(|f| within(off, *f, 4)) {
        return ok(size == 4);
    }
    if within(off, REMOTE_IP4, 4)
        || within(off, LOCAL_IP4, 4)
        || within(off, REMOTE_IP6, 16)
        || within(off, LOCAL_IP6, 16)
    {
        return ok(size == 4);
    }
    if within(off, FLOW_KEYS, 8) {
        return CtxAccess::Invalid;
    }
    if within(off, HWTSTAMP, 8) {
        return ok(!write && size == 8);
    }
    if within(off, TSTAMP, 8) {
        return ok(size == 8);
    }
    if within(off, SK, 8) {
        return if !write && size == 8 {
            CtxAccess::Valid(CtxLoad::SockCommonOrNull)
        } else {
            CtxAccess::Invalid
        };
    }
    // tstamp_type, and the padding up to hwtstamp.
    if (TSTAMP_TYPE..HWTSTAMP).contains(&off) {
        return CtxAccess::Invalid;
    }
    ok(if write { size == 4 } else { narrow_ok(size, 4) })
}

/// The packet pointer a `__sk_buff` program type's wrapper sets for `data` / `data_meta` /
/// `data_end` (`meta`: the type gives `data_meta` one).
fn skb_packet(off: i64, meta: bool) -> CtxLoad {
    use skb::*;
    if within(off, DATA, 4) {
        CtxLoad::Packet("__sk_buff->data")
    } else if within(off, DATA_END, 4) {
        CtxLoad::Packet("__sk_buff->data_end")
    } else if meta && within(off, DATA_META, 4) {
        CtxLoad::Packet("__sk_buff->data_meta")
    } else {
        CtxLoad::Scalar
    }
}

/// `sk_filter_is_valid_access()` (BPF_PROG_TYPE_SOCKET_FILTER).
fn sk_filter(off: i64, size: u8, write: bool) -> CtxAccess {
    use skb::*;
    let denied = within(off, TC_CLASSID, 4)
        || [DATA, DATA_META, DATA_END, WIRE_LEN].iter().any(|f| within(off, *f, 4))
        || (FAMILY..LOCAL_PORT_END).contains(&off)
        || within(off, TSTAMP, 8)
        || within(off, HWTSTAMP, 8);
    if denied || (write && !within(off, CB, CB_END - CB)) {
        return CtxAccess::Invalid;
    }
    skb_base(off, size, write, CtxLoad::Scalar)
}

/// `cg_skb_is_valid_access()` (BPF_PROG_TYPE_CGROUP_SKB; root: `data`/`data_end` and `tstamp`
/// writes allowed).
fn cg_skb(off: i64, size: u8, write: bool) -> CtxAccess {
    use skb::*;
    if [TC_CLASSID, DATA_META, WIRE_LEN].iter().any(|f| within(off, *f, 4)) {
        return CtxAccess::Invalid;
    }
    let writable = within(off, MARK, 4)
        || within(off, PRIORITY, 4)
        || within(off, CB, CB_END - CB)
        || within(off, TSTAMP, 8);
    if write && !writable {
        return CtxAccess::Invalid;
    }
    skb_base(off, size, write, skb_packet(off, false))
}

/// `tc_cls_act_is_valid_access()` (BPF_PROG_TYPE_SCHED_CLS / SCHED_ACT).
fn tc_cls_act(off: i64, size: u8, write: bool) -> CtxAccess {
    use skb::*;
    let writable = [MARK, TC_INDEX, PRIORITY, TC_CLASSID, QUEUE_MAPPING].iter().any(|f| within(off, *f, 4))
        || within(off, CB, CB_END - CB)
        || within(off, TSTAMP, 8);
    if write && !writable {
        return CtxAccess::Invalid;
    }
    if (FAMILY..LOCAL_PORT_END).contains(&off) {
        return CtxAccess::Invalid;
    }
    if off == TSTAMP_TYPE {
        return if size == 1 { CtxAccess::Valid(CtxLoad::Scalar) } else { CtxAccess::Invalid };
    }
    skb_base(off, size, write, skb_packet(off, true))
}

/// `sk_skb_is_valid_access()` (BPF_PROG_TYPE_SK_SKB).
fn sk_skb(off: i64, size: u8, write: bool) -> CtxAccess {
    use skb::*;
    let denied = [TC_CLASSID, DATA_META, WIRE_LEN].iter().any(|f| within(off, *f, 4))
        || within(off, TSTAMP, 8)
        || within(off, HWTSTAMP, 8);
    let writable = within(off, TC_INDEX, 4) || within(off, PRIORITY, 4);
    if denied || (write && !writable) || within(off, MARK, 4) {
        return CtxAccess::Invalid;
    }
    skb_base(off, size, write, skb_packet(off, false))
}

/// `xdp_is_valid_access()` -> `__is_valid_xdp_access()` (BPF_PROG_TYPE_XDP, not offloaded: no
/// writes). `devmap`: the expected attach type is `BPF_XDP_DEVMAP` (None: not known).
fn xdp_md(off: i64, size: u8, write: bool, devmap: Option<bool>) -> CtxAccess {
    use xdp::*;
    if off == EGRESS_IFINDEX {
        match devmap {
            None => {
                return CtxAccess::Unsupported(
                    "xdp_md->egress_ifindex without the section naming the attach type is not modelled"
                        .into(),
                )
            }
            Some(false) => return CtxAccess::Invalid,
            Some(true) => {}
        }
    }
    if write {
        return CtxAccess::Invalid;
    }
    let load = match off {
        DATA => CtxLoad::Packet("xdp_md->data"),
        DATA_END => CtxLoad::Packet("xdp_md->data_end"),
        DATA_META => CtxLoad::Packet("xdp_md->data_meta"),
        _ => CtxLoad::Scalar,
    };
    if !(0..SIZE).contains(&off) || off % size as i64 != 0 || size != 4 {
        return CtxAccess::Invalid;
    }
    CtxAccess::Valid(load)
}

/// `bpf_sock_is_valid_access()`: a `struct bpf_sock` field, for a `PTR_TO_SOCKET` and (through
/// `sock_filter_is_valid_access()`) a cgroup/sock program's ctx. Reads and writes alike.
pub(crate) fn bpf_sock_valid(off: i64, size: u8) -> bool {
    use sock::*;
    let s = size as i64;
    if !(0..SIZE).contains(&off) || off % s != 0 {
        return false;
    }
    if [STATE, FAMILY, TYPE, PROTOCOL, SRC_PORT, RX_QUEUE_MAPPING].contains(&off)
        || within(off, SRC_IP4, 4)
        || within(off, SRC_IP6, 16)
        || within(off, DST_IP4, 4)
        || within(off, DST_IP6, 16)
    {
        return narrow_ok(size, 4);
    }
    // dst_port is a __be16: word loads for backward compatibility, else narrow within 2 bytes.
    if within(off, DST_PORT, 2) {
        return narrow_ok(size, if size == 4 { 4 } else { 2 });
    }
    if (DST_PORT + 2..DST_IP4).contains(&off) {
        return false;
    }
    size == 4
}

/// `__sock_filter_check_attach_type()`: the `struct bpf_sock` fields a cgroup/sock program may
/// touch by its expected attach type.
fn sock_attach_ok(off: i64, write: bool, attach: AttachType) -> bool {
    use sock::*;
    use AttachType::*;
    if [BOUND_DEV_IF, MARK, PRIORITY].contains(&off) {
        return matches!(attach, CgroupInetSockCreate | CgroupInetSockRelease);
    }
    let allowed = if within(off, SRC_IP4, 4) {
        attach == CgroupInet4PostBind
    } else if within(off, SRC_IP6, 16) {
        attach == CgroupInet6PostBind
    } else if within(off, SRC_PORT, 4) {
        matches!(attach, CgroupInet4PostBind | CgroupInet6PostBind)
    } else {
        true
    };
    allowed && !write
}

/// `sock_filter_is_valid_access()` (BPF_PROG_TYPE_CGROUP_SOCK).
fn sock_filter(off: i64, size: u8, write: bool, attach: AttachType) -> CtxAccess {
    if bpf_sock_valid(off, size) && sock_attach_ok(off, write, attach) {
        CtxAccess::Valid(CtxLoad::Scalar)
    } else {
        CtxAccess::Invalid
    }
}

/// The program type's `is_valid_access()` for an access at `off` of `size` bytes (`write`: a
/// store). `attach`: the expected attach type from the object's section, if known.
pub(crate) fn ctx_access(
    prog: ProgType,
    attach: Option<AttachType>,
    sec: Option<&str>,
    off: i64,
    size: u8,
    write: bool,
) -> CtxAccess {
    match prog {
        ProgType::SocketFilter => sk_filter(off, size, write),
        ProgType::SchedCls | ProgType::SchedAct => tc_cls_act(off, size, write),
        ProgType::CgroupSkb => cg_skb(off, size, write),
        ProgType::SkSkb => sk_skb(off, size, write),
        ProgType::Xdp => {
            let devmap = sec.map(|s| s.split('/').nth(1) == Some("devmap"));
            xdp_md(off, size, write, devmap)
        }
        ProgType::CgroupSock => match attach {
            Some(a) => sock_filter(off, size, write, a),
            None => CtxAccess::Unsupported(
                "cgroup/sock ctx access without the section naming the attach type is not modelled".into(),
            ),
        },
        // syscall_prog_is_valid_access() (kernel/bpf/syscall.c): any offset below U16_MAX; 6.12
        // also asks `off % size == 0`, 7.x instead checks the region [0, U16_MAX)
        // (check_ctx_access() -> check_mem_region_access()). Where they differ: unsupported.
        ProgType::Syscall if off >= 0 && off + size as i64 <= u16::MAX as i64 && off % size as i64 == 0 => {
            CtxAccess::Valid(CtxLoad::Scalar)
        }
        ProgType::Syscall => CtxAccess::Unsupported(
            "a syscall ctx access that is misaligned or reaches U16_MAX (6.12 and 7.x differ) is not modelled".into(),
        ),
        // kprobe_prog_is_valid_access() (kernel/trace/bpf_trace.c): a read inside struct
        // pt_regs (168 bytes on x86_64) at an offset aligned to its size gives a scalar (no
        // convert_ctx_access()); others are "invalid bpf_context access". A write differs by
        // kernel (refused in 6.12, allowed in 7.x as kprobe_write_ctx): not modelled.
        ProgType::Kprobe if write => {
            CtxAccess::Unsupported("a store into a kprobe ctx (struct pt_regs) is not modelled".into())
        }
        ProgType::Kprobe => {
            const PT_REGS_SIZE: i64 = 168;
            if !(0..PT_REGS_SIZE).contains(&off) || off % size as i64 != 0 || off + size as i64 > PT_REGS_SIZE {
                CtxAccess::Invalid
            } else {
                CtxAccess::Valid(CtxLoad::Scalar)
            }
        }
        _ => CtxAccess::Unsupported(String::new()),
    }
}

impl Machine<'_> {
    /// `check_mem_access()` on `PTR_TO_CTX` at offset 0 (the model's ctx never moves):
    /// `check_ctx_access()` for the program type, then the loaded register (`value`: a store).
    pub(crate) fn ctx_mem_access(&self, pc: usize, off: i64, size: u8, value: Option<&Reg>) -> Step<Reg> {
        if value.is_some_and(|v| v.is_pointer()) {
            return Err(Stop::Unsupported("storing a pointer into ctx is not modelled".into()));
        }
        let sec = self.case.object.as_ref().map(|o| o.section.as_str()).filter(|s| !s.is_empty());
        let attach = self.sec_type().map(|s| s.attach);
        match ctx_access(self.case.prog_type, attach, sec, off, size, value.is_some()) {
            CtxAccess::Invalid => {
                self.reject(pc, format!("invalid bpf_context access off={off} size={size}"))
            }
            CtxAccess::Unsupported(why) if why.is_empty() => Err(self.ctx_unsupported()),
            CtxAccess::Unsupported(why) => Err(Stop::Unsupported(why)),
            CtxAccess::Valid(_) if value.is_some() => Ok(Reg::NotInit),
            CtxAccess::Valid(CtxLoad::Scalar) => Ok(Reg::Scalar(super::scalar::Scalar::of_size(size))),
            // mark_reg_known_zero(), type PTR_TO_SOCK_COMMON_OR_NULL; its id (++env->id_gen) is
            // given by the load (`Machine::number_loaded_ptr`).
            CtxAccess::Valid(CtxLoad::SockCommonOrNull) => Ok(super::sock::sock_common_or_null()),
            // check_mem_access(): mark_reg_known_zero() and the type; no id (it cannot be NULL).
            CtxAccess::Valid(CtxLoad::Packet(field)) if super::pkt::pkt_prog_type(self.case.prog_type) => {
                let kind = if field.ends_with("data_end") {
                    super::pkt::PktKind::End
                } else if field.ends_with("data_meta") {
                    super::pkt::PktKind::Meta
                } else {
                    super::pkt::PktKind::Data
                };
                Ok(Reg::Packet { kind, off: 0, range: 0 })
            }
            CtxAccess::Valid(CtxLoad::Packet(field)) => Err(Stop::Unsupported(format!(
                "packet pointers (PTR_TO_PACKET from {field}) are not modelled"
            ))),
        }
    }
}
