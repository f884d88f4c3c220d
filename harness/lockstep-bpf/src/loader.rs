//! [`Loader`]: loads one case (BTF, maps, relocated program) into the running kernel and reports
//! what the verifier said.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use lockstep_core::asm::Reloc;
use lockstep_core::case::{Case, ProgType};
use lockstep_core::insn::{Insn, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::{map_create_refused, Verdict, EOPNOTSUPP};
use nix::errno::Errno;

use crate::log::parse_verifier_log;
use crate::module::{kernel_btf_objects, KernelBtfObject};
use crate::progbtf::{self, ident};
use crate::sys::{self, Btf, MapBtf, MapCreate, ProgLoad, SysError};
use crate::{LoadError, SetupError};

/// First verifier log buffer size; grown on `ENOSPC`.
const LOG_SIZE: usize = 16 << 20;
/// Largest verifier log buffer tried before loading without a log.
const MAX_LOG_SIZE: usize = 256 << 20;
/// log_level: `BPF_LOG_LEVEL1 | BPF_LOG_STATS` (the latter adds `verification time`).
const LOG_LEVEL: u32 = 1 | 4;
/// `BPF_F_SLEEPABLE`.
const BPF_F_SLEEPABLE: u32 = 1 << 4;
/// `BPF_F_MMAPABLE`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Where a kfunc lives: its BTF id, and which BTF object (0 = vmlinux, N = module N-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KfuncTarget {
    btf_id: u32,
    object: usize,
}

/// A module's BTF: the kernel object (its fd goes into `fd_array`) and its parsed split BTF.
#[derive(Debug)]
pub struct ModuleBtf {
    /// Kernel object id, name and fd.
    pub object: KernelBtfObject,
    /// Split BTF on top of vmlinux.
    btf: Btf,
}

/// Loads cases into the running kernel. Built once per guest (after the test module is loaded).
#[derive(Debug)]
pub struct Loader {
    kfuncs: HashMap<String, KfuncTarget>,
    // Split BTFs refer to vmlinux: declared (so dropped) before it.
    modules: Vec<ModuleBtf>,
    vmlinux: Btf,
    release: String,
    log_size: usize,
}

/// The expected_attach_type a program type needs to load without an attach target.
fn expected_attach_type(t: ProgType) -> u32 {
    match t {
        // BPF_CGROUP_INET_INGRESS (0), the one cgroup_skb loads with by default.
        ProgType::CgroupSkb => 0,
        // BPF_FLOW_DISSECTOR, as libbpf sets for SEC("flow_dissector").
        ProgType::FlowDissector => 17,
        _ => 0,
    }
}

/// A kernel object name: at most 15 characters of `[A-Za-z0-9_.]`.
fn obj_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
        .take(15)
        .collect()
}

impl Loader {
    /// Reads vmlinux BTF and every loaded module's BTF, and indexes their kfunc names.
    pub fn new() -> Result<Loader, LoadError> {
        sys::silence_libbpf();
        let objects = kernel_btf_objects().map_err(LoadError::Enumerate)?;
        let vmlinux = match Btf::load_vmlinux() {
            Ok(b) => b,
            Err(e) => {
                let id = objects
                    .iter()
                    .find(|o| o.info.name == "vmlinux")
                    .map(|o| o.info.id)
                    .ok_or(LoadError::Vmlinux(e))?;
                Btf::load_by_id(id).map_err(LoadError::Vmlinux)?
            }
        };
        let mut modules = Vec::new();
        for object in objects.into_iter().filter(|o| o.info.name != "vmlinux") {
            let btf = Btf::load_split_by_id(object.info.id, &vmlinux)
                .map_err(|e| LoadError::Module { name: object.info.name.clone(), source: e })?;
            modules.push(ModuleBtf { object, btf });
        }
        let mut kfuncs = HashMap::new();
        for (id, name) in vmlinux.funcs(1) {
            kfuncs.entry(name).or_insert(KfuncTarget { btf_id: id, object: 0 });
        }
        let base_cnt = vmlinux.type_cnt();
        for (i, m) in modules.iter().enumerate() {
            for (id, name) in m.btf.funcs(base_cnt) {
                kfuncs.entry(name).or_insert(KfuncTarget { btf_id: id, object: i + 1 });
            }
        }
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Loader { kfuncs, modules, vmlinux, release, log_size: LOG_SIZE })
    }

    /// Sets the first verifier log buffer size (default 16 MiB; grown on `ENOSPC`).
    pub fn set_log_size(&mut self, bytes: usize) {
        self.log_size = bytes.clamp(64, MAX_LOG_SIZE);
    }

    /// `uname -r` of the running kernel.
    pub fn kernel_release(&self) -> String {
        self.release.clone()
    }

    /// Names of the modules whose BTF was read.
    pub fn module_names(&self) -> Vec<String> {
        self.modules.iter().map(|m| m.object.info.name.clone()).collect()
    }

    /// Number of types in vmlinux BTF (module type ids start there).
    pub fn vmlinux_type_count(&self) -> u32 {
        self.vmlinux.type_cnt()
    }

    /// The BTF id of a function by name and the module that has it (None for vmlinux).
    pub fn kfunc_id(&self, name: &str) -> Option<(u32, Option<&str>)> {
        let t = self.kfuncs.get(name)?;
        let module = (t.object > 0).then(|| self.modules[t.object - 1].object.info.name.as_str());
        Some((t.btf_id, module))
    }

    /// Loads a case and reports what the kernel said. Every fd is closed before returning.
    ///
    /// A rejection carries the parsed error line and instruction index (see
    /// [`crate::parse_verifier_log`]). When the case cannot be set up (program BTF refused, map
    /// creation failed, unknown kfunc or map name), `setup_error` is set and the verdict is
    /// `unsupported` with the message `setup error: ...`: it is not the verifier's.
    pub fn run_case(&self, case: &Case, want_log: bool) -> KernelResult {
        match self.try_run(case, want_log) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                KernelResult {
                    case: case.name.clone(),
                    verdict: Verdict::unsupported(format!("setup error: {msg}")),
                    errno: e.errno().map_or(0, |e| e as i32),
                    log: e.log().map(str::to_string),
                    verification_usec: None,
                    insns_processed: None,
                    setup_error: Some(msg),
                }
            }
        }
    }

    fn try_run(&self, case: &Case, want_log: bool) -> Result<KernelResult, SetupError> {
        // Fds live until the end of this function: BTF, maps, then the program.
        let mut prog_btf = progbtf::build(case).map_err(SetupError::BtfBuild)?;
        let btf_fd = match &mut prog_btf {
            Some(p) => Some(load_btf(&mut p.btf)?),
            None => None,
        };
        let maps = match self.create_maps(case, prog_btf.as_ref(), btf_fd.as_ref()) {
            // map_check_btf() refuses the map's special fields for its type: the kernel's verdict
            // on the case (the model predicts it), not a setup failure.
            Err(SetupError::Map { name, source }) if source.errno as i32 == EOPNOTSUPP => {
                let msg = map_create_refused(&name, EOPNOTSUPP);
                return Ok(KernelResult {
                    case: case.name.clone(),
                    verdict: Verdict::reject(None, msg),
                    errno: EOPNOTSUPP,
                    log: None,
                    verification_usec: None,
                    insns_processed: None,
                    setup_error: None,
                });
            }
            r => r?,
        };
        let (insns, fd_array) = self.relocate(case, &maps)?;
        let func_info: &[(u32, u32)] = prog_btf.as_ref().map_or(&[], |p| &p.func_info);
        let name = obj_name(&ident(&case.name));
        let load = ProgLoad {
            prog_type: case.prog_type.uapi(),
            name: &name,
            insns: &insns,
            expected_attach_type: expected_attach_type(case.prog_type),
            prog_flags: case.prog_flags | if case.sleepable { BPF_F_SLEEPABLE } else { 0 },
            prog_btf: if func_info.is_empty() { None } else { btf_fd.as_ref().map(|f| f.as_fd()) },
            func_info,
            fd_array: &fd_array,
            log_level: if case.log_level != 0 { case.log_level | 4 } else { LOG_LEVEL },
        };
        let (res, log) = load_with_log(&load, self.log_size);
        let parsed = parse_verifier_log(&log);
        let errno = match &res {
            Ok(_) => 0,
            Err(e) => e.errno as i32,
        };
        let verdict = match res {
            Ok(_prog_fd) => Verdict::accept(),
            Err(e) => Verdict {
                verdict: lockstep_core::verdict::VerdictKind::Reject,
                insn: parsed.insn.filter(|_| parsed.error.is_some()),
                message: Some(parsed.error.clone().unwrap_or_else(|| format!("{}", e.errno))),
            },
        };
        let unexplained = errno != 0 && parsed.error.is_none();
        Ok(KernelResult {
            case: case.name.clone(),
            verdict,
            errno,
            log: (want_log || unexplained).then_some(log),
            verification_usec: parsed.verification_usec,
            insns_processed: parsed.insns_processed,
            setup_error: None,
        })
    }

    fn create_maps(
        &self,
        case: &Case,
        prog_btf: Option<&progbtf::ProgBtf>,
        btf_fd: Option<&OwnedFd>,
    ) -> Result<Vec<OwnedFd>, SetupError> {
        let mut fds = Vec::with_capacity(case.maps.len());
        for (i, m) in case.maps.iter().enumerate() {
            let ids = prog_btf.and_then(|p| p.maps[i]);
            let btf = match (ids, btf_fd) {
                (Some((key_type_id, value_type_id)), Some(fd)) => {
                    Some(MapBtf { fd: fd.as_fd(), key_type_id, value_type_id })
                }
                _ => None,
            };
            let name = obj_name(&m.name);
            let spec = MapCreate {
                map_type: m.map_type.uapi(),
                name: &name,
                key_size: m.key_size,
                value_size: m.value.size,
                max_entries: m.max_entries,
                map_flags: m.flags | if m.global_section { BPF_F_MMAPABLE } else { 0 },
                btf,
            };
            let fd =
                sys::map_create(&spec).map_err(|e| SetupError::Map { name: m.name.clone(), source: e })?;
            fds.push(fd);
        }
        Ok(fds)
    }

    /// Patches map fds and kfunc ids into a copy of the program; returns it with its fd_array.
    fn relocate(&self, case: &Case, maps: &[OwnedFd]) -> Result<(Vec<Insn>, Vec<i32>), SetupError> {
        let mut insns = case.program.insns.clone();
        let mut fd_array: Vec<i32> = Vec::new();
        let mut module_slots: HashMap<usize, usize> = HashMap::new();
        let map_fd = |name: &str| -> Result<i32, SetupError> {
            let i = case
                .maps
                .iter()
                .position(|m| m.name == name)
                .ok_or_else(|| SetupError::UnknownMap(name.to_string()))?;
            Ok(maps[i].as_raw_fd())
        };
        for (&idx, reloc) in &case.program.relocs {
            let bad = || SetupError::BadReloc { insn: idx, reloc: format!("{reloc:?}") };
            match reloc {
                Reloc::Map { name } => {
                    let insn = insns.get_mut(idx).filter(|i| i.is_ld_imm64()).ok_or_else(bad)?;
                    insn.src = BPF_PSEUDO_MAP_FD;
                    insn.imm = map_fd(name)?;
                }
                Reloc::MapValue { name, offset } => {
                    if idx + 1 >= insns.len() || !insns[idx].is_ld_imm64() {
                        return Err(bad());
                    }
                    insns[idx].src = BPF_PSEUDO_MAP_VALUE;
                    insns[idx].imm = map_fd(name)?;
                    insns[idx + 1].imm = *offset as i32;
                }
                Reloc::Kfunc { name } => {
                    let t = *self.kfuncs.get(name).ok_or_else(|| SetupError::UnknownKfunc(name.clone()))?;
                    let off = if t.object == 0 {
                        0
                    } else {
                        *module_slots.entry(t.object).or_insert_with(|| {
                            if fd_array.is_empty() {
                                fd_array.push(-1);
                            }
                            let fd = self.modules[t.object - 1].object.fd.as_raw_fd();
                            fd_array.push(fd);
                            fd_array.len() - 1
                        })
                    };
                    let insn = insns.get_mut(idx).filter(|i| i.is_call()).ok_or_else(bad)?;
                    insn.src = lockstep_core::insn::BPF_PSEUDO_KFUNC_CALL;
                    insn.imm = t.btf_id as i32;
                    insn.off = off as i16;
                }
                Reloc::Helper { .. } | Reloc::Subprog { .. } => {}
            }
        }
        Ok((insns, fd_array))
    }
}

/// Loads program BTF, with the kernel's BTF log on failure.
fn load_btf(btf: &mut Btf) -> Result<OwnedFd, SetupError> {
    let raw = btf.raw_data();
    match sys::btf_load(&raw, &mut []) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            let mut log = vec![0u8; 1 << 20];
            let e = sys::btf_load(&raw, &mut log).err();
            let source = e.unwrap_or(SysError { op: "bpf_btf_load", errno: Errno::UnknownErrno });
            Err(SetupError::BtfLoad { source, log: c_string(&log) })
        }
    }
}

/// The NUL-terminated text at the start of a log buffer.
fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Loads a program with a verifier log, growing the buffer on `ENOSPC`; past the largest buffer
/// it loads once more without a log for the verdict and keeps the (rotated, tail) log it had.
fn load_with_log(p: &ProgLoad<'_>, first_size: usize) -> (Result<OwnedFd, SysError>, String) {
    let mut size = first_size;
    loop {
        let mut buf = vec![0u8; size];
        let (res, true_size) = sys::prog_load(p, &mut buf);
        match res {
            Err(e) if e.errno == Errno::ENOSPC && size < MAX_LOG_SIZE => {
                size = (true_size as usize + 1).max(size * 4).min(MAX_LOG_SIZE);
            }
            Err(e) if e.errno == Errno::ENOSPC => {
                let quiet = ProgLoad { log_level: 0, ..p.clone() };
                let (res, _) = sys::prog_load(&quiet, &mut []);
                return (res, c_string(&buf));
            }
            res => return (res, c_string(&buf)),
        }
    }
}
