//! Tracing and LSM programs (issue 14): their ctx, the attach function's arguments
//! (`btf_ctx_access()` in btf.c, after `bpf_tracing_ctx_access()` for `BPF_PROG_TYPE_TRACING`;
//! LSM programs go to `btf_ctx_access()` directly, `lsm_verifier_ops`). The prototype comes from
//! the kernel BTF the profile carries ([`crate::kernel_btf`]); without one the model says which
//! BTF is missing. Same in 6.12, 7.2 and 7.3 for what is modelled here.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, Trust};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::import::sec::AttachType;
use crate::kernel_btf::{ArgKind, AttachProto, MAX_BPF_FUNC_ARGS};

impl Machine<'_> {
    /// The attach function's prototype, or why the model does not have it.
    fn attach_proto(&self) -> Step<(AttachType, String, AttachProto)> {
        let sec = self.sec_type().ok_or_else(|| {
            Stop::Unsupported("a tracing/LSM program without the object section naming its target".into())
        })?;
        let target = sec.target.clone().unwrap_or_default();
        if self.case.prog_type == ProgType::StructOps {
            return self.struct_ops_proto().map(|p| (sec.attach, p.func_name.clone(), p));
        }
        let Some(kbtf) = &self.profile.kernel_btf.0 else {
            return Err(Stop::Unsupported(format!(
                "ctx access of a tracing/LSM program (btf_ctx_access(): the attach function's arguments) needs the kernel's BTF, which profile {} was not given (lockstep check --kernel-btf FILE, or the profile's cached kernel headers)",
                self.profile.name
            )));
        };
        let proto = kbtf.attach_proto(sec.attach, &target).map_err(|e| {
            Stop::Unsupported(format!("attach target of {}: {e} ({})", self.case.name, kbtf.source))
        })?;
        Ok((sec.attach, target, proto))
    }

    /// `bpf_iter_prog_supported()`: the `iter/<target>` program's target, known to the model when
    /// the kernel's BTF has its `bpf_iter_<target>` FUNC; otherwise unsupported (naming it).
    pub(super) fn iter_target(&self) -> Step<()> {
        self.attach_proto().map(|_| ()).map_err(|e| match e {
            Stop::Unsupported(why) => Stop::Unsupported(format!(
                "iterator program (bpf_iter_prog_supported(): its target's bpf_iter_ FUNC): {why}"
            )),
            other => other,
        })
    }

    /// `prog_args_trusted()`: `tp_btf/` (and iterator) arguments are `PTR_TRUSTED`, LSM ones
    /// unless the hook is in `untrusted_lsm_hooks`; fentry / fexit / fmod_ret ones are not.
    fn args_trusted(&self, attach: AttachType, func_name: &str) -> bool {
        match self.case.prog_type {
            ProgType::Tracing => matches!(attach, AttachType::TraceRawTp | AttachType::TraceIter),
            ProgType::Lsm => !self.profile.attach.untrusted_lsm_hooks.iter().any(|h| h == func_name),
            ProgType::StructOps => true,
            _ => false,
        }
    }

    /// A load or store through the ctx of a tracing / LSM program at constant offset `off`.
    pub(super) fn tracing_ctx_access(&self, off: i64, size: u8, store: bool, pc: usize) -> Step<Reg> {
        let invalid = || self.reject(pc, format!("invalid bpf_context access off={off} size={size}"));
        if let Some(reg) = self.qdisc_to_free_arg(off, size, store)? {
            return Ok(reg);
        }
        // bpf_tracing_ctx_access() (include/linux/bpf.h), BPF_PROG_TYPE_TRACING, and the
        // struct_ops types whose is_valid_access calls bpf_tracing_btf_ctx_access() (structops.rs).
        if matches!(self.case.prog_type, ProgType::Tracing | ProgType::StructOps)
            && (off < 0 || off >= 8 * MAX_BPF_FUNC_ARGS as i64 || store || off % size as i64 != 0)
        {
            return invalid();
        }
        if store {
            return Err(Stop::Unsupported("a store into an LSM program's ctx is not modelled".into()));
        }
        if off < 0 {
            return Err(Stop::Unsupported("a negative offset into an LSM program's ctx".into()));
        }
        let (attach, _target, proto) = self.attach_proto()?;
        let tname = &proto.func_name;
        // btf_ctx_access(): the error line, then check_ctx_access()'s.
        let refuse = |first: String| {
            self.reject(pc, format!("{first}\ninvalid bpf_context access off={off} size={size}"))
        };
        if off % 8 != 0 {
            return refuse(format!("func '{tname}' offset {off} is not multiple of 8"));
        }
        if proto.args.contains(&ArgKind::StructByValue) {
            return Err(Stop::Unsupported(format!(
                "an attach function ({tname}) with a struct argument by value (btf_ctx_arg_idx()) is not modelled"
            )));
        }
        let arg = (off / 8) as usize;
        let nr_args = proto.args.len();
        // bpf_iter_prog_supported() -> bpf_prog_ctx_arg_info_init(): an iterator's arguments after
        // `meta` (arg 0) take their type from the target's registration (ctx_arg_info:
        // PTR_TO_BTF_ID_OR_NULL | PTR_TRUSTED, PTR_TO_BUF_OR_NULL, ...), which the BTF does not
        // carry: the targets the model knows are in iter_ctx_arg().
        if attach == AttachType::TraceIter && arg > 0 && arg < nr_args {
            return match (iter_ctx_arg(tname, arg), &proto.args[arg]) {
                (Some(IterCtxArg::TrustedOrNull(sname)), ArgKind::StructPtr { btf_id, .. })
                    if self.profile.kernel_btf.0.as_ref().is_some_and(|k| k.name_of(*btf_id) == sname) =>
                {
                    // btf_ctx_access(): a pointer argument is read whole, before ctx_arg_info.
                    if size != 8 {
                        return refuse(format!("func '{tname}' size {size} must be 8"));
                    }
                    // check_mem_access() on the ctx: the type, and an id for the NULL check
                    // (`++env->id_gen`, given by the load: Machine::number_loaded_ptr).
                    Ok(Reg::Kernel { off: 0, btf_id: *btf_id, id: 0, ref_obj_id: 0, null: true, trust: Trust::Trusted })
                }
                _ => Err(Stop::Unsupported(format!(
                    "ctx argument {arg} of iterator {tname} (bpf_iter_reg ctx_arg_info: its register type, e.g. PTR_TO_BUF_OR_NULL) is not modelled"
                ))),
            };
        }
        if arg > nr_args {
            return refuse(format!("func '{tname}' doesn't have {}-th argument", arg + 1));
        }
        let kind = if arg == nr_args {
            match attach {
                AttachType::LsmMac | AttachType::TraceFexit | AttachType::ModifyReturn => {
                    return Err(Stop::Unsupported(format!(
                        "reading the return value of {tname} from the ctx is not modelled"
                    )))
                }
                _ => return refuse(format!("func '{tname}' doesn't have {}-th argument", arg + 1)),
            }
        } else {
            &proto.args[arg]
        };
        match kind {
            ArgKind::Scalar => Ok(Reg::Scalar(Scalar::of_size(size))),
            ArgKind::StructPtr { btf_id, nullable, .. } => {
                if size != 8 {
                    return refuse(format!("func '{tname}' size {size} must be 8"));
                }
                if *nullable {
                    return Err(Stop::Unsupported(format!(
                        "a __nullable argument of {tname} (its null-check id) is not modelled"
                    )));
                }
                if attach == AttachType::TraceRawTp {
                    // raw_tp_null_args[] (btf.c): the argument's nibble of the tracepoint's mask.
                    let tp = tname.strip_prefix("btf_trace_").unwrap_or(tname);
                    let rules = &self.profile.attach.raw_tp_null_args;
                    let mask = rules.iter().find(|(n, _)| n == tp).map_or(0, |(_, m)| *m);
                    let nibble = mask.checked_shr(4 * arg as u32).unwrap_or(0) & 0xf;
                    if nibble & 0x2 != 0 {
                        // "marking pointer arg%d as scalar as it may encode error".
                        return Ok(Reg::Scalar(Scalar::unknown()));
                    }
                    if nibble & 0x1 != 0 {
                        return Err(Stop::Unsupported(format!(
                            "a tp_btf argument that may be NULL (raw_tp_null_args: {tp}) is not modelled"
                        )));
                    }
                }
                let reg = self.ctx_ptr(*btf_id, attach, tname)?;
                match (reg, self.struct_ops_ctx_ref(arg)) {
                    (Reg::Kernel { off, btf_id, null, trust, .. }, r) if r != 0 => {
                        Ok(Reg::Kernel { off, btf_id, id: r, ref_obj_id: r, null, trust })
                    }
                    (reg, _) => Ok(reg),
                }
            }
            ArgKind::StructByValue => unreachable!("refused above"),
            ArgKind::Other(what) => {
                Err(Stop::Unsupported(format!("ctx argument {arg} of {tname} ({what}) is not modelled")))
            }
        }
    }

    fn ctx_ptr(&self, btf_id: u32, attach: AttachType, tname: &str) -> Step<Reg> {
        let trust = if self.args_trusted(attach, tname) { Trust::Trusted } else { Trust::Legacy };
        Ok(Reg::Kernel { off: 0, btf_id, id: 0, ref_obj_id: 0, null: false, trust })
    }
}

/// The register type an iterator target registers for one of its ctx arguments
/// (`bpf_iter_reg.ctx_arg_info`), for the targets the model knows.
enum IterCtxArg {
    /// `PTR_TO_BTF_ID_OR_NULL | PTR_TRUSTED` to the named kernel struct.
    TrustedOrNull(&'static str),
}

/// `bpf_iter_reg.ctx_arg_info` by target (`bpf_iter_<target>`) and argument, the same in 6.12,
/// 7.2 and 7.3: kernel/bpf/map_iter.c `bpf_map_reg_info` (`{ offsetof(struct bpf_iter__bpf_map,
/// map), PTR_TO_BTF_ID_OR_NULL | PTR_TRUSTED }`, its btf_id `struct bpf_map`'s). The others
/// (task, task_file, bpf_map_elem's PTR_TO_BUF | PTR_MAYBE_NULL key and value, ...) are not
/// modelled.
fn iter_ctx_arg(tname: &str, arg: usize) -> Option<IterCtxArg> {
    match (tname.strip_prefix("bpf_iter_")?, arg) {
        ("bpf_map", 1) => Some(IterCtxArg::TrustedOrNull("bpf_map")),
        _ => None,
    }
}
