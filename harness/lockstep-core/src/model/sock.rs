//! Socket pointers: `PTR_TO_SOCK_COMMON`, `PTR_TO_SOCKET`, `PTR_TO_TCP_SOCK`, `PTR_TO_XDP_SOCK`
//! (each maybe `_OR_NULL`) and the `PTR_TO_BTF_ID` of the `bpf_skc_to_*` helpers: their field
//! accesses (`check_sock_access()` with `bpf_sock_common_is_valid_access()`,
//! `bpf_sock_is_valid_access()`, `bpf_tcp_sock_is_valid_access()`,
//! `bpf_xdp_sock_is_valid_access()` of net/core/filter.c) and the helpers `bpf_sk_fullsock`,
//! `bpf_tcp_sock`, `bpf_skc_to_*` and `bpf_sk_release` in the program types whose func_proto has
//! them (sched_cls, sched_act, cgroup_skb). Referenced sockets (`bpf_sk_lookup_*`, sockmap
//! lookups) are not modelled yet: a cast of one, or a field access through a `bpf_skc_to_*`
//! result (`btf_struct_access()`), is `unsupported`.

use super::ctx::{bpf_sock_valid, sock};
use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::ProgType;

/// Which socket pointer type a [`Reg::Sock`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockKind {
    /// `PTR_TO_SOCK_COMMON` (`__sk_buff->sk`).
    Common,
    /// `PTR_TO_SOCKET` (`bpf_sk_fullsock()`).
    Sock,
    /// `PTR_TO_TCP_SOCK` (`bpf_tcp_sock()`).
    Tcp,
    /// `PTR_TO_XDP_SOCK`.
    Xdp,
    /// `PTR_TO_BTF_ID` of a kernel socket struct (`bpf_skc_to_*()`).
    Btf,
}

impl SockKind {
    /// `reg_type_str()` of the type, with or without `PTR_MAYBE_NULL`.
    pub fn type_str(self, null: bool) -> &'static str {
        match (self, null) {
            (SockKind::Common, false) => "sock_common",
            (SockKind::Common, true) => "sock_common_or_null",
            (SockKind::Sock, false) => "sock",
            (SockKind::Sock, true) => "sock_or_null",
            (SockKind::Tcp, false) => "tcp_sock",
            (SockKind::Tcp, true) => "tcp_sock_or_null",
            (SockKind::Xdp, false) => "xdp_sock",
            (SockKind::Xdp, true) => "xdp_sock_or_null",
            (SockKind::Btf, false) => "ptr_",
            (SockKind::Btf, true) => "ptr_or_null_",
        }
    }
}

/// `struct bpf_tcp_sock`: `bytes_received`, `bytes_acked` (the two u64 fields) and the struct's
/// end (`offsetofend(icsk_retransmits)`).
const TCP_BYTES_RECEIVED: i64 = 80;
const TCP_BYTES_ACKED: i64 = 88;
const TCP_SOCK_END: i64 = 112;

/// `bpf_tcp_sock_is_valid_access()`.
pub(crate) fn tcp_sock_valid(off: i64, size: u8) -> bool {
    if !(0..TCP_SOCK_END).contains(&off) || off % size as i64 != 0 {
        return false;
    }
    if off == TCP_BYTES_RECEIVED || off == TCP_BYTES_ACKED {
        size == 8
    } else {
        size == 4
    }
}

/// `bpf_xdp_sock_is_valid_access()`: `queue_id` only.
pub(crate) fn xdp_sock_valid(off: i64, size: u8) -> bool {
    (0..4).contains(&off) && off % size as i64 == 0 && size == 4
}

/// `bpf_sock_common_is_valid_access()`: `type` .. `priority` need a full socket.
pub(crate) fn sock_common_valid(off: i64, size: u8) -> bool {
    !(sock::TYPE..sock::PRIORITY + 4).contains(&off) && bpf_sock_valid(off, size)
}

/// The register a ctx load of `__sk_buff->sk` gives, before its id is taken
/// ([`Machine::number_loaded_sock`]).
pub(crate) fn sock_common_or_null() -> Reg {
    Reg::Sock { kind: SockKind::Common, id: 0, ref_obj_id: 0, null: true }
}

/// `sock_types` (verifier.c), as `check_reg_type()` lists them.
const SOCK_TYPES: &str = "sock_common, sock, tcp_sock, xdp_sock";

/// The socket helpers this module models.
pub(crate) fn is_sock_helper(name: &str) -> bool {
    matches!(name, "bpf_sk_fullsock" | "bpf_tcp_sock" | "bpf_sk_release") || name.starts_with("bpf_skc_to_")
}

impl Machine<'_> {
    /// The id `check_mem_access()` gives a maybe-null pointer loaded from ctx (`++env->id_gen`).
    pub(crate) fn number_loaded_sock(&mut self, v: Reg) -> Reg {
        match v {
            Reg::Sock { kind, id: 0, ref_obj_id, null: true } => {
                Reg::Sock { kind, id: self.fresh_id(), ref_obj_id, null: true }
            }
            v => v,
        }
    }

    /// `check_mem_access()` through a non-null socket pointer: no writes, then
    /// `check_sock_access()`; a load gives an unknown scalar of the access size.
    pub(crate) fn sock_access(
        &self,
        pc: usize,
        regno: u8,
        kind: SockKind,
        off: i64,
        size: u8,
        write: bool,
    ) -> Step<Reg> {
        let t = kind.type_str(false);
        if write {
            return self.reject(pc, format!("R{regno} cannot write into {t}"));
        }
        let valid = match kind {
            SockKind::Common => sock_common_valid(off, size),
            SockKind::Sock => bpf_sock_valid(off, size),
            SockKind::Tcp => tcp_sock_valid(off, size),
            SockKind::Xdp => xdp_sock_valid(off, size),
            SockKind::Btf => {
                return Err(Stop::Unsupported(
                    "a field access through a bpf_skc_to_* result (btf_struct_access()) is not modelled"
                        .into(),
                ))
            }
        };
        if !valid {
            return self.reject(pc, format!("R{regno} invalid {t} access off={off} size={size}"));
        }
        Ok(Reg::Scalar(Scalar::of_size(size)))
    }

    /// `bpf_sk_fullsock`, `bpf_tcp_sock`, `bpf_skc_to_*` and `bpf_sk_release`
    /// (`check_helper_call()`): R0 as the helper returns it; R1-R5 are cleared by the caller.
    pub(crate) fn sock_helper(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Reg> {
        let t = self.case.prog_type;
        if !matches!(t, ProgType::SchedCls | ProgType::SchedAct | ProgType::CgroupSkb) {
            return Err(Stop::Unsupported(format!(
                "helper {name} in a {} program (its func_proto) is not modelled",
                t.name()
            )));
        }
        let r1 = self.read_reg(st, pc, 1)?;
        if name == "bpf_sk_release" {
            return self.sk_release(st, pc, &r1);
        }
        // ARG_PTR_TO_SOCK_COMMON (bpf_sk_fullsock, bpf_tcp_sock) / ARG_PTR_TO_BTF_ID_SOCK_COMMON
        // (bpf_skc_to_*): a non-null socket pointer.
        let ref_obj_id = match &r1 {
            Reg::Sock { kind, null: false, ref_obj_id, .. } if *kind != SockKind::Btf => *ref_obj_id,
            Reg::Scalar(_) | Reg::Sock { .. } if !name.starts_with("bpf_skc_to_") => {
                let args = [
                    ("reg", "R1".to_string()),
                    ("type", r1.type_str().to_string()),
                    ("expected", SOCK_TYPES.to_string()),
                ];
                return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
            }
            other => {
                return Err(Stop::Unsupported(format!(
                    "helper {name} with R1 of type {} is not modelled",
                    other.type_str()
                )))
            }
        };
        if ref_obj_id != 0 {
            return Err(Stop::Unsupported(format!("helper {name} on a referenced socket is not modelled")));
        }
        let kind = match name {
            "bpf_sk_fullsock" => SockKind::Sock,
            "bpf_tcp_sock" => SockKind::Tcp,
            _ => SockKind::Btf,
        };
        // RET_PTR_TO_*_OR_NULL: `regs[BPF_REG_0].id = ++env->id_gen`.
        Ok(Reg::Sock { kind, id: self.fresh_id(), ref_obj_id: 0, null: true })
    }

    /// `bpf_sk_release(ARG_PTR_TO_BTF_ID_SOCK_COMMON | OBJ_RELEASE)`: an unreferenced socket is
    /// refused (the profile's `release_unreferenced`); a referenced one is not modelled yet.
    fn sk_release(&mut self, _st: &mut State, pc: usize, r1: &Reg) -> Step<Reg> {
        match r1 {
            Reg::Sock { kind, null: false, ref_obj_id: 0, .. } if *kind != SockKind::Btf => {
                let args = [("func", "bpf_sk_release".to_string()), ("reg", "R1".to_string())];
                self.reject(pc, self.msg(&self.profile.messages.release_unreferenced, &args))
            }
            other => Err(Stop::Unsupported(format!(
                "helper bpf_sk_release with R1 of type {} is not modelled",
                other.type_str()
            ))),
        }
    }
}
