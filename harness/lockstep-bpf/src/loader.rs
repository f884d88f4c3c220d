//! [`Loader`]: loads one case (BTF, maps, relocated program) into the running kernel and reports
//! what the verifier said.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use lockstep_core::asm::Reloc;
use lockstep_core::case::{Case, MapSpec, MapType, ProgType};
use lockstep_core::insn::{Insn, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::{map_create_refused, Verdict, EOPNOTSUPP};
use nix::errno::Errno;

use crate::kept::{program_bytes, KeptPrograms};
use crate::log::parse_verifier_log_bytes;
use crate::module::{kernel_btf_objects, KernelBtfObject};
use crate::phase::{mark, Phase};
use crate::progbtf::{self, ident};
use crate::reuse::{map_bytes, reusable_type, small_enough, BtfSlot, MapKey, SetupCache};
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

/// The `fd_array` of one program load: slot 0 unused, then one slot per module whose kfuncs the
/// program calls (`insn->off` of a module kfunc call is its slot; vmlinux kfuncs use 0).
#[derive(Debug, Default)]
struct FdArray {
    fds: Vec<i32>,
    /// BTF object index (1 = first module) -> slot.
    slots: HashMap<usize, usize>,
}

impl FdArray {
    /// The `insn->off` for a kfunc of BTF object `object` (0 = vmlinux), giving the module's BTF
    /// fd (`fd()`) a slot the first time.
    fn offset(&mut self, object: usize, fd: impl FnOnce() -> i32) -> i16 {
        if object == 0 {
            return 0;
        }
        let fds = &mut self.fds;
        *self.slots.entry(object).or_insert_with(|| {
            if fds.is_empty() {
                fds.push(-1);
            }
            fds.push(fd());
            fds.len() - 1
        }) as i16
    }
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
    /// The verifier log buffer, kept across cases (see [`LogBuffer`]).
    log_buf: std::sync::Mutex<LogBuffer>,
    /// Program BTF and maps kept across cases (see [`crate::reuse`]).
    setup: std::sync::Mutex<SetupCache>,
    /// Accepted programs left loaded (see [`crate::kept`]).
    kept: std::sync::Mutex<KeptPrograms>,
    /// Program BTF built before, by the case inputs it is built from.
    btf_memo: std::sync::Mutex<progbtf::BtfMemo>,
}

/// The maps of one case, in its order.
struct CaseMaps {
    fds: Vec<Arc<OwnedFd>>,
    /// The kernel memory of its maps, roughly ([`map_bytes`]).
    bytes: u64,
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

/// A map's BTF for `BPF_MAP_CREATE`: its key and value type ids in the program BTF `btf_fd`, when
/// both are there.
fn map_btf(ids: Option<(u32, u32)>, btf_fd: Option<&OwnedFd>) -> Option<MapBtf<'_>> {
    match (ids, btf_fd) {
        (Some((key_type_id, value_type_id)), Some(fd)) => {
            Some(MapBtf { fd: fd.as_fd(), key_type_id, value_type_id })
        }
        _ => None,
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
        Ok(Loader {
            kfuncs,
            modules,
            vmlinux,
            release,
            log_size: LOG_SIZE,
            log_buf: Default::default(),
            setup: Default::default(),
            kept: Default::default(),
            btf_memo: Default::default(),
        })
    }

    /// Sets the first verifier log buffer size (default 16 MiB; grown on `ENOSPC`).
    pub fn set_log_size(&mut self, bytes: usize) {
        self.log_size = bytes.clamp(64, MAX_LOG_SIZE);
    }

    /// Sets how many fds (program BTF objects and maps) are kept across cases for reuse
    /// ([`crate::reuse`]; default 256, for a process with the usual `RLIMIT_NOFILE` of 1024).
    pub fn set_kept_fds(&mut self, n: usize) {
        self.setup.get_mut().unwrap_or_else(|e| e.into_inner()).set_max_fds(n);
    }

    /// Sets how many accepted programs stay loaded after their case ([`crate::kept`]; default 0:
    /// each is closed after its case). Only for a process that ends with the machine (the
    /// agent): a kept program holds an fd and kernel memory until then.
    pub fn set_kept_programs(&mut self, n: usize) {
        self.kept.get_mut().unwrap_or_else(|e| e.into_inner()).set_max_count(n);
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

    /// Loads a case and reports what the kernel said. The case's own fds are closed before
    /// returning; program BTF and maps of reusable types stay for later cases ([`crate::reuse`]),
    /// and so may the program ([`Loader::set_kept_programs`]).
    ///
    /// A rejection carries the parsed error line and instruction index (see
    /// [`crate::parse_verifier_log`]). When the case cannot be set up (program BTF refused, map
    /// creation failed, unknown kfunc or map name), `setup_error` is set and the verdict is
    /// `unsupported` with the message `setup error: ...`: it is not the verifier's.
    ///
    /// A program of a BPF object (`case.object`) is loaded through libbpf instead
    /// ([`crate::objload::run_object`]): the kernel then judges the object as compiled.
    pub fn run_case(&self, case: &Case, want_log: bool) -> KernelResult {
        if let Some(src) = &case.object {
            let r = crate::objload::run_object(case, src, want_log, self.log_size);
            mark(Phase::Load);
            return r;
        }
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
                    test_run: None,
                }
            }
        }
    }

    fn try_run(&self, case: &Case, want_log: bool) -> Result<KernelResult, SetupError> {
        // The program's fd lives until the end of this function; BTF and maps of reusable types
        // stay in the setup cache for the next cases (`crate::reuse`), the others are closed here.
        // Built once per distinct inputs (`progbtf::BtfMemo`), loaded once per distinct bytes.
        let memo = self.btf_memo.lock().unwrap_or_else(|e| e.into_inner()).get(case);
        let prog_btf = memo.map_err(SetupError::BtfBuild)?;
        let mut setup = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, btf_fd) = match &prog_btf {
            Some(p) => {
                let (slot, fd) = setup.btf(&p.raw, load_btf)?;
                (slot, Some(fd))
            }
            None => (BtfSlot::None, None),
        };
        mark(Phase::Btf);
        let maps = match self.create_maps(case, &mut setup, slot, prog_btf.as_deref(), btf_fd.as_deref()) {
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
                    test_run: None,
                });
            }
            r => r?,
        };
        mark(Phase::Maps);
        let (insns, fd_array) = self.relocate(case, &maps.fds)?;
        mark(Phase::Reloc);
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
            license: &case.license,
        };
        let (res, parsed, log) = {
            let mut buf = self.log_buf.lock().unwrap_or_else(|e| e.into_inner());
            let (res, len) = load_with_log(&load, self.log_size, &mut buf);
            mark(Phase::Load);
            // Read from its end: an accepted program's log is neither converted nor scanned whole.
            let text = &buf.buf[..len];
            let parsed = parse_verifier_log_bytes(text);
            let unexplained = res.as_ref().is_err_and(|e| e.errno as i32 != 0) && parsed.error.is_none();
            let log = (want_log || unexplained).then(|| String::from_utf8_lossy(text).into_owned());
            mark(Phase::Parse);
            (res, parsed, log)
        };
        let errno = match &res {
            Ok(_) => 0,
            Err(e) => e.errno as i32,
        };
        let verdict = match &res {
            Ok(_prog_fd) => Verdict::accept(),
            Err(e) => Verdict {
                verdict: lockstep_core::verdict::VerdictKind::Reject,
                insn: parsed.insn.filter(|_| parsed.error.is_some()),
                message: Some(parsed.error.clone().unwrap_or_else(|| format!("{}", e.errno))),
            },
        };
        // The program is kept (`crate::kept`) or closed, and the fds of the case's own maps are
        // closed here (the kept ones stay in `setup`; a kept program holds its maps).
        drop(setup);
        if let Ok(prog) = res {
            let bytes = program_bytes(insns.len(), maps.fds.len(), maps.bytes);
            self.kept.lock().unwrap_or_else(|e| e.into_inner()).keep(prog, bytes);
        }
        drop(maps);
        mark(Phase::Close);
        Ok(KernelResult {
            case: case.name.clone(),
            verdict,
            errno,
            log,
            verification_usec: parsed.verification_usec,
            insns_processed: parsed.insns_processed,
            setup_error: None,
            test_run: None,
        })
    }

    /// The case's maps, in its order: kept ones from `setup` where the type allows
    /// ([`reusable_type`]), else created for this case alone.
    fn create_maps(
        &self,
        case: &Case,
        setup: &mut SetupCache,
        slot: BtfSlot,
        prog_btf: Option<&progbtf::BuiltBtf>,
        btf_fd: Option<&OwnedFd>,
    ) -> Result<CaseMaps, SetupError> {
        let mut fds: Vec<Arc<OwnedFd>> = Vec::with_capacity(case.maps.len());
        let mut bytes = 0;
        for (i, m) in case.maps.iter().enumerate() {
            let ids = prog_btf.and_then(|p| p.maps[i]);
            let btf = map_btf(ids, btf_fd);
            // libbpf's order for a map-in-map: the inner map first, then the outer map with its fd.
            let inner_fd = match m.inner.as_deref() {
                Some(inner) => Some(self.create_inner(inner, prog_btf.and_then(|p| p.inner[i]), btf_fd)?),
                None => None,
            };
            let name = obj_name(&m.name);
            let spec = MapCreate {
                map_type: m.map_type.uapi(),
                name: &name,
                key_size: m.key_size,
                value_size: m.value.size,
                max_entries: m.max_entries,
                map_flags: m.flags | if m.global_section { BPF_F_MMAPABLE } else { 0 },
                map_extra: if m.map_type == MapType::Arena {
                    lockstep_core::case::ARENA_USER_VM_START
                } else {
                    0
                },
                btf,
                inner_map_fd: inner_fd.as_ref().map(|f| f.as_fd()),
            };
            let create =
                || sys::map_create(&spec).map_err(|e| SetupError::Map { name: m.name.clone(), source: e });
            let key = MapKey {
                map_type: spec.map_type,
                name: name.clone(),
                key_size: spec.key_size,
                value_size: spec.value_size,
                max_entries: spec.max_entries,
                map_flags: spec.map_flags,
                btf_ids: ids.unwrap_or((0, 0)),
            };
            bytes += map_bytes(&key);
            let fd = if reusable_type(m.map_type) && small_enough(&key) {
                let slot = if spec.btf.is_some() { slot } else { BtfSlot::None };
                setup.map(slot, key, &fds, create)?
            } else {
                Arc::new(create()?)
            };
            fds.push(fd);
        }
        Ok(CaseMaps { fds, bytes })
    }

    /// A map-in-map's inner map (`<outer>.inner`, with its BTF), created for the case alone.
    fn create_inner(
        &self,
        inner: &MapSpec,
        ids: Option<(u32, u32)>,
        btf_fd: Option<&OwnedFd>,
    ) -> Result<OwnedFd, SetupError> {
        let btf = map_btf(ids, btf_fd);
        let name = obj_name(&inner.name);
        let spec = MapCreate {
            map_type: inner.map_type.uapi(),
            name: &name,
            key_size: inner.key_size,
            value_size: inner.value.size,
            max_entries: inner.max_entries,
            map_flags: inner.flags,
            btf,
            inner_map_fd: None,
            map_extra: 0,
        };
        sys::map_create(&spec).map_err(|e| SetupError::Map { name: inner.name.clone(), source: e })
    }

    /// Patches map fds and kfunc ids into a copy of the program; returns it with its fd_array.
    fn relocate(&self, case: &Case, maps: &[Arc<OwnedFd>]) -> Result<(Vec<Insn>, Vec<i32>), SetupError> {
        let mut insns = case.program.insns.clone();
        let mut fd_array = FdArray::default();
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
                    let off = fd_array.offset(t.object, || self.modules[t.object - 1].object.fd.as_raw_fd());
                    let insn = insns.get_mut(idx).filter(|i| i.is_call()).ok_or_else(bad)?;
                    insn.src = lockstep_core::insn::BPF_PSEUDO_KFUNC_CALL;
                    insn.imm = t.btf_id as i32;
                    insn.off = off;
                }
                // libbpf's bpf_object__relocate_data() for a __ksym function used as a value:
                // the FUNC's id and its BTF object's fd (0: vmlinux), or, weak and not found,
                // the constant 0. Prototype compatibility (bpf_core_types_are_compat()) is not
                // checked here: a `___flavour` name, which needs it, is refused.
                Reloc::KsymFunc { name, weak, .. } => {
                    if name.contains("___") || idx + 1 >= insns.len() || !insns[idx].is_ld_imm64() {
                        return Err(bad());
                    }
                    match self.kfuncs.get(name) {
                        Some(t) => {
                            insns[idx].src = lockstep_core::insn::BPF_PSEUDO_BTF_ID;
                            insns[idx].imm = t.btf_id as i32;
                            insns[idx + 1].imm = if t.object == 0 {
                                0
                            } else {
                                self.modules[t.object - 1].object.fd.as_raw_fd()
                            };
                        }
                        None if *weak => {
                            insns[idx].src = 0;
                            insns[idx].imm = 0;
                            insns[idx + 1].imm = 0;
                        }
                        None => return Err(SetupError::UnknownKfunc(name.clone())),
                    }
                }
                Reloc::Helper { .. } | Reloc::Subprog { .. } => {}
                // Typed __ksym variables come only from objects, which the guest loads through
                // libbpf (bpf_object__resolve_ksym_var_btf_id()): no case text writes one.
                Reloc::KsymVar { .. } => return Err(bad()),
            }
        }
        Ok((insns, fd_array.fds))
    }
}

/// Loads program BTF (its raw bytes), with the kernel's BTF log on failure.
fn load_btf(raw: &[u8]) -> Result<OwnedFd, SetupError> {
    match sys::btf_load(raw, &mut []) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            let mut log = vec![0u8; 1 << 20];
            let e = sys::btf_load(raw, &mut log).err();
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

/// A verifier log buffer reused from case to case. Allocating (and so zeroing) a fresh 16 MiB
/// buffer per program cost more than the verification itself under TCG; only the bytes the
/// kernel wrote last time are cleared before the next load.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` that may be non-zero.
    dirty: usize,
}

impl LogBuffer {
    /// A zeroed buffer of at least `size` bytes.
    fn zeroed(&mut self, size: usize) -> &mut [u8] {
        if self.buf.len() < size {
            self.buf = vec![0u8; size];
        } else {
            let dirty = self.dirty.min(self.buf.len());
            self.buf[..dirty].fill(0);
        }
        self.dirty = 0;
        &mut self.buf[..size]
    }

    /// Records what a load wrote: `true_size` (the kernel's `log_true_size`, with its NUL), or
    /// 0 when the kernel did not say (then the whole buffer counts as written).
    fn written(&mut self, size: usize, true_size: u32) {
        self.dirty = if true_size == 0 { size } else { (true_size as usize).min(size) };
    }
}

/// The length of the NUL-terminated text at the start of `buf`, of which the kernel said it
/// wrote `true_size` bytes with the NUL (0: unknown): the NUL is searched there first.
fn text_len(buf: &[u8], true_size: u32) -> usize {
    let written = (true_size as usize).min(buf.len());
    memchr::memchr(0, &buf[..written])
        .or_else(|| memchr::memchr(0, &buf[written..]).map(|i| written + i))
        .unwrap_or(buf.len())
}

/// Loads a program with a verifier log, growing the buffer on `ENOSPC`; past the largest buffer
/// it loads once more without a log for the verdict and keeps the (rotated, tail) log it had.
/// Returns the load's result and the length of the log's text at the start of `log.buf`.
fn load_with_log(
    p: &ProgLoad<'_>,
    first_size: usize,
    log: &mut LogBuffer,
) -> (Result<OwnedFd, SysError>, usize) {
    let mut size = first_size;
    loop {
        let buf = log.zeroed(size);
        let (res, true_size) = sys::prog_load(p, buf);
        let text = text_len(buf, true_size);
        log.written(size, true_size);
        match res {
            Err(e) if e.errno == Errno::ENOSPC && size < MAX_LOG_SIZE => {
                size = (true_size as usize + 1).max(size * 4).min(MAX_LOG_SIZE);
            }
            Err(e) if e.errno == Errno::ENOSPC => {
                let quiet = ProgLoad { log_level: 0, ..p.clone() };
                let (res, _) = sys::prog_load(&quiet, &mut []);
                return (res, text);
            }
            res => return (res, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfuncs_of_two_modules_get_one_fd_array_slot_each() {
        let mut a = FdArray::default();
        // vmlinux kfuncs need no fd_array at all.
        assert_eq!(a.offset(0, || unreachable!()), 0);
        assert!(a.fds.is_empty());
        // lockstep_test (object 1) then bpf_testmod (object 2), then lockstep_test again.
        assert_eq!(a.offset(1, || 11), 1);
        assert_eq!(a.offset(2, || 22), 2);
        assert_eq!(a.offset(1, || panic!("slot reused, fd not asked again")), 1);
        assert_eq!(a.fds, vec![-1, 11, 22]);
    }

    #[test]
    fn a_reused_log_buffer_is_zero_where_the_last_load_wrote() {
        let mut l = LogBuffer::default();
        l.zeroed(64)[..10].copy_from_slice(b"0123456789");
        l.written(64, 11);
        assert!(l.zeroed(64).iter().all(|&b| b == 0));
        l.zeroed(32).fill(b'x');
        l.written(32, 0);
        assert!(l.zeroed(64).iter().all(|&b| b == 0), "an unknown true size clears everything used");
        assert_eq!(l.zeroed(128).len(), 128, "grows");
    }
}
