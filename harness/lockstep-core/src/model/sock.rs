//! Socket pointers: `PTR_TO_SOCK_COMMON`, `PTR_TO_SOCKET`, `PTR_TO_TCP_SOCK`, `PTR_TO_XDP_SOCK`
//! (each maybe `_OR_NULL`) and the `PTR_TO_BTF_ID` of the `bpf_skc_to_*` helpers: their field
//! accesses (`check_sock_access()` with `bpf_sock_common_is_valid_access()`,
//! `bpf_sock_is_valid_access()`, `bpf_tcp_sock_is_valid_access()`,
//! `bpf_xdp_sock_is_valid_access()` of net/core/filter.c) and the helpers `bpf_sk_fullsock`,
//! `bpf_tcp_sock`, `bpf_skc_to_*` and `bpf_sk_release` in the program types whose func_proto has
//! them (sched_cls, sched_act, cgroup_skb; `bpf_sk_release` also sk_skb and xdp); lookups in
//! sockmap / sockhash (a referenced socket) and xskmap maps, and `bpf_sk_select_reuseport`.
//! `bpf_sk_lookup_*` is not modelled; a cast of a referenced socket, or a field access through a
//! `bpf_skc_to_*` result (`btf_struct_access()`), is `unsupported`.

use super::ctx::{bpf_sock_valid, sock};
use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State, VarOff};
use super::{Step, Stop};
use crate::case::{MapType, ProgType};

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
/// ([`Machine::number_loaded_ptr`]).
pub(crate) fn sock_common_or_null() -> Reg {
    Reg::Sock { kind: SockKind::Common, id: 0, ref_obj_id: 0, null: true }
}

/// `sock_types` (verifier.c), as `check_reg_type()` lists them.
const SOCK_TYPES: &str = "sock_common, sock, tcp_sock, xdp_sock";

/// The map types whose lookups give socket pointers, and the reuseport array: their rules are
/// this module's.
pub(crate) fn is_sock_map(t: MapType) -> bool {
    matches!(t, MapType::SockMap | MapType::XskMap | MapType::SockHash | MapType::ReuseportSockarray)
}

/// The socket helpers this module models.
pub(crate) fn is_sock_helper(name: &str) -> bool {
    matches!(name, "bpf_sk_fullsock" | "bpf_tcp_sock" | "bpf_sk_release") || name.starts_with("bpf_skc_to_")
}

impl Machine<'_> {
    /// The id `check_mem_access()` gives a maybe-null pointer loaded from ctx or from a map
    /// value's kptr field (`++env->id_gen`).
    pub(crate) fn number_loaded_ptr(&mut self, v: Reg) -> Reg {
        match v {
            Reg::Sock { kind, id: 0, ref_obj_id, null: true } => {
                Reg::Sock { kind, id: self.fresh_id(), ref_obj_id, null: true }
            }
            Reg::Kernel { btf_id, off, id: 0, ref_obj_id, null: true, trust } => {
                Reg::Kernel { btf_id, off, id: self.fresh_id(), ref_obj_id, null: true, trust }
            }
            Reg::AllocRcu { ty, id: 0, null: true, non_owning, untrusted } => {
                Reg::AllocRcu { ty, id: self.fresh_id(), null: true, non_owning, untrusted }
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
        // check_ptr_to_btf_access() refuses a non-GPL program first (license.rs), with the
        // name of the socket struct, which SockKind::Btf does not keep.
        if kind == SockKind::Btf && !self.gpl_compatible() {
            return Err(Stop::Unsupported(
                "an access through a bpf_skc_to_* result in a non-GPL program is not modelled".into(),
            ));
        }
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

    /// `bpf_map_lookup_elem()` on an xskmap, sockmap or sockhash (`refine_map_lookup_value()`):
    /// `PTR_TO_XDP_SOCK_OR_NULL`, or `PTR_TO_SOCKET_OR_NULL` carrying a reference
    /// (`is_acquire_function()`: `acquire_reference()` takes the next id after R0's own).
    pub(crate) fn sock_map_lookup(&mut self, st: &mut State, pc: usize, t: MapType) -> Step<Reg> {
        match t {
            MapType::XskMap => {
                Ok(Reg::Sock { kind: SockKind::Xdp, id: self.fresh_id(), ref_obj_id: 0, null: true })
            }
            MapType::SockMap | MapType::SockHash => {
                // `regs[BPF_REG_0].id = ++env->id_gen`, then replaced by the reference's id.
                self.fresh_id();
                let id = self.fresh_id();
                st.refs.push(id);
                self.ref_insns.insert(id, pc);
                Ok(Reg::Sock { kind: SockKind::Sock, id, ref_obj_id: id, null: true })
            }
            other => Err(Stop::Unsupported(format!("bpf_map_lookup_elem on a {} map", other.name()))),
        }
    }

    /// `bpf_sk_select_reuseport(ctx, map, key, flags)` (sk_reuseport programs): `ARG_PTR_TO_CTX`,
    /// a reuseport array, sockmap or sockhash (`check_map_func_compatibility()`), a key on the
    /// stack, `ARG_ANYTHING`; R0 an unknown scalar. Other argument shapes are unsupported.
    pub(crate) fn sk_select_reuseport(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let unsupported = |what: &str| {
            Err(Stop::Unsupported(format!("helper bpf_sk_select_reuseport with {what} is not modelled")))
        };
        if self.case.prog_type != ProgType::SkReuseport {
            return unsupported("a program type other than sk_reuseport");
        }
        let regs: Vec<Reg> = (1..=4).map(|r| self.read_reg(st, pc, r)).collect::<Step<_>>()?;
        let Reg::MapPtr { map } = regs[1] else { return unsupported("R2 not a map pointer") };
        let spec = self.map(map);
        if !matches!(spec.map_type, MapType::ReuseportSockarray | MapType::SockMap | MapType::SockHash) {
            return unsupported("another map type");
        }
        let key_on_stack =
            matches!(regs[2], Reg::Stack { off, .. } if off >= -512 && off + spec.key_size as i64 <= 0);
        if regs[0] != Reg::Ctx || !key_on_stack || !matches!(regs[3], Reg::Scalar(_)) {
            return unsupported("these argument types");
        }
        Ok(Reg::Scalar(Scalar::unknown()))
    }

    /// `bpf_sk_storage_get(map, sk, value, flags)` (tc, cgroup_skb; `check_func_arg()` in order):
    /// `ARG_CONST_MAP_PTR` of an sk_storage map, `ARG_PTR_TO_BTF_ID_SOCK_COMMON` (a non-null
    /// socket), `ARG_PTR_TO_MAP_VALUE | PTR_MAYBE_NULL` (NULL, or a stack pointer with the whole
    /// value inside the stack; another scalar is "R3 type=scalar expected=<mem_types>"),
    /// `ARG_ANYTHING`. R0: `PTR_TO_MAP_VALUE_OR_NULL` with a fresh id.
    pub(crate) fn sk_storage_get(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let unsupported = |what: &str| {
            Err(Stop::Unsupported(format!("helper bpf_sk_storage_get with {what} is not modelled")))
        };
        if !matches!(self.case.prog_type, ProgType::SchedCls | ProgType::SchedAct | ProgType::CgroupSkb) {
            return unsupported("this program type");
        }
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapPtr { map } = r1 else { return unsupported("R1 not a map pointer") };
        let spec = self.map(map);
        if spec.map_type != MapType::SkStorage {
            return unsupported("a map other than sk_storage");
        }
        let r2 = self.read_reg(st, pc, 2)?;
        if !matches!(r2, Reg::Sock { kind, null: false, .. } if kind != SockKind::Btf) {
            return unsupported(&format!("R2 of type {}", r2.type_str()));
        }
        match self.read_reg(st, pc, 3)? {
            Reg::Scalar(s) if s.konst() == Some(0) => {}
            Reg::Scalar(_) => {
                let args = [
                    ("reg", "R3".to_string()),
                    ("type", "scalar".to_string()),
                    ("expected", self.profile.messages.mem_types.clone()),
                ];
                return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
            }
            Reg::Stack { off, .. } if off >= -512 && off + spec.value.size as i64 <= 0 => {}
            other => return unsupported(&format!("R3 of type {}", other.type_str())),
        }
        if !matches!(self.read_reg(st, pc, 4)?, Reg::Scalar(_)) {
            return unsupported("flags that are not a scalar");
        }
        Ok(Reg::MapValue { map, off: 0, var: VarOff::NONE, id: self.fresh_id(), null: true })
    }

    /// `bpf_sk_fullsock`, `bpf_tcp_sock`, `bpf_skc_to_*` and `bpf_sk_release`
    /// (`check_helper_call()`): R0 as the helper returns it; R1-R5 are cleared by the caller.
    pub(crate) fn sock_helper(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Reg> {
        let t = self.case.prog_type;
        // cg_skb_func_proto(), tc_cls_act_func_proto(); bpf_sk_release also in sk_skb and xdp.
        let release_too = name == "bpf_sk_release" && matches!(t, ProgType::SkSkb | ProgType::Xdp);
        if !matches!(t, ProgType::SchedCls | ProgType::SchedAct | ProgType::CgroupSkb) && !release_too {
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
    /// refused (the profile's `release_unreferenced`); a referenced one is released
    /// (`release_reference()`: every copy becomes an unknown scalar, `mark_reg_invalid()` with
    /// pointer leaks allowed, as for root).
    fn sk_release(&mut self, st: &mut State, pc: usize, r1: &Reg) -> Step<Reg> {
        match r1 {
            Reg::Sock { kind, null: false, ref_obj_id, .. } if *kind != SockKind::Btf && *ref_obj_id != 0 => {
                let r = *ref_obj_id;
                st.refs.retain(|x| *x != r);
                st.for_each_reg(|reg| {
                    if matches!(reg, Reg::Sock { ref_obj_id, .. } if *ref_obj_id == r) {
                        *reg = Reg::Scalar(Scalar::unknown());
                    }
                });
                Ok(Reg::Scalar(Scalar::unknown()))
            }
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
