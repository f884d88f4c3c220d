//! The one funnel for `unsafe`: thin safe wrappers over libbpf-sys (BTF building and loading, map
//! creation, program loading, BTF object enumeration). Everything else in the crate is safe code.

pub mod object;

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use lockstep_core::insn::Insn;
use nix::errno::Errno;

/// A failed libbpf or bpf() call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {errno}")]
pub struct SysError {
    /// The libbpf function that failed.
    pub op: &'static str,
    /// Its errno.
    pub errno: Errno,
}

/// Turns a libbpf return value (negative errno on error, libbpf 1.0 semantics) into a result.
fn check(op: &'static str, ret: i32) -> Result<u32, SysError> {
    if ret < 0 {
        Err(SysError { op, errno: Errno::from_raw(-ret) })
    } else {
        Ok(ret as u32)
    }
}

/// Takes ownership of an fd returned by libbpf (negative = -errno).
fn owned_fd(op: &'static str, ret: i32) -> Result<OwnedFd, SysError> {
    let fd = check(op, ret)? as i32;
    // SAFETY: libbpf just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pointer result of libbpf (NULL on error, errno set).
fn non_null<T>(op: &'static str, p: *mut T) -> Result<NonNull<T>, SysError> {
    NonNull::new(p).ok_or(SysError { op, errno: Errno::last() })
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("NULs removed")
}

/// Silences libbpf's own messages (it prints warnings to stderr by default; our errors carry
/// errno and the kernel's log instead).
pub fn silence_libbpf() {
    // SAFETY: setting the print callback to NULL is always allowed.
    unsafe {
        libbpf_sys::libbpf_set_print(None);
    }
}

/// An owned libbpf `struct btf` (in-memory BTF, possibly split on a base).
#[derive(Debug)]
pub struct Btf(NonNull<libbpf_sys::btf>);

// SAFETY: a `struct btf` is plain heap data owned exclusively by this handle; libbpf keeps no
// thread-local state for it.
unsafe impl Send for Btf {}
// SAFETY: the `&self` methods only read types and strings; `btf__raw_data`, which caches the
// blob inside the btf, takes `&mut self`.
unsafe impl Sync for Btf {}

impl Drop for Btf {
    fn drop(&mut self) {
        // SAFETY: we own the pointer; it came from a libbpf constructor.
        unsafe { libbpf_sys::btf__free(self.0.as_ptr()) }
    }
}

/// Kind of a BTF type (`BTF_INFO_KIND`).
fn kind_of(info: u32) -> u32 {
    (info >> 24) & 0x1f
}

impl Btf {
    /// An empty BTF to add types to.
    pub fn new_empty() -> Result<Btf, SysError> {
        // SAFETY: plain constructor.
        non_null("btf__new_empty", unsafe { libbpf_sys::btf__new_empty() }).map(Btf)
    }

    /// The running kernel's vmlinux BTF (from /sys/kernel/btf/vmlinux or libbpf's fallbacks).
    pub fn load_vmlinux() -> Result<Btf, SysError> {
        // SAFETY: plain constructor.
        non_null("btf__load_vmlinux_btf", unsafe { libbpf_sys::btf__load_vmlinux_btf() }).map(Btf)
    }

    /// A kernel BTF object by id (no sysfs needed).
    pub fn load_by_id(id: u32) -> Result<Btf, SysError> {
        // SAFETY: plain constructor.
        non_null("btf__load_from_kernel_by_id", unsafe { libbpf_sys::btf__load_from_kernel_by_id(id) })
            .map(Btf)
    }

    /// A module's split BTF by id, on top of `base` (which must outlive the result).
    pub fn load_split_by_id(id: u32, base: &Btf) -> Result<Btf, SysError> {
        // SAFETY: base is a valid btf; libbpf only reads it (the pointer is mut for historic reasons).
        non_null("btf__load_from_kernel_by_id_split", unsafe {
            libbpf_sys::btf__load_from_kernel_by_id_split(id, base.0.as_ptr())
        })
        .map(Btf)
    }

    /// Adds an integer type (`encoding` 0 = unsigned, 1 = signed).
    pub fn add_int(&mut self, name: &str, size: u32, signed: bool) -> Result<u32, SysError> {
        let n = cstr(name);
        let enc = if signed { libbpf_sys::BTF_INT_SIGNED as i32 } else { 0 };
        // SAFETY: valid btf and NUL-terminated name.
        check("btf__add_int", unsafe {
            libbpf_sys::btf__add_int(self.0.as_ptr(), n.as_ptr(), size as _, enc)
        })
    }

    /// Adds `elem[n]` indexed by `index` (an int type).
    pub fn add_array(&mut self, index: u32, elem: u32, n: u32) -> Result<u32, SysError> {
        // SAFETY: valid btf.
        check("btf__add_array", unsafe {
            libbpf_sys::btf__add_array(self.0.as_ptr(), index as i32, elem as i32, n)
        })
    }

    /// Adds a struct of `size` bytes; its fields follow with [`Btf::add_field`].
    pub fn add_struct(&mut self, name: &str, size: u32) -> Result<u32, SysError> {
        let n = cstr(name);
        // SAFETY: valid btf and name.
        check("btf__add_struct", unsafe { libbpf_sys::btf__add_struct(self.0.as_ptr(), n.as_ptr(), size) })
    }

    /// Adds a field to the last struct at `byte_off`.
    pub fn add_field(&mut self, name: &str, ty: u32, byte_off: u32) -> Result<(), SysError> {
        let n = cstr(name);
        // SAFETY: valid btf and name.
        check("btf__add_field", unsafe {
            libbpf_sys::btf__add_field(self.0.as_ptr(), n.as_ptr(), ty as i32, byte_off * 8, 0)
        })
        .map(drop)
    }

    /// Adds a pointer to `to`.
    pub fn add_ptr(&mut self, to: u32) -> Result<u32, SysError> {
        // SAFETY: valid btf.
        check("btf__add_ptr", unsafe { libbpf_sys::btf__add_ptr(self.0.as_ptr(), to as i32) })
    }

    /// Adds a type tag `tag` on `to` (`__attribute__((btf_type_tag(tag)))`).
    pub fn add_type_tag(&mut self, tag: &str, to: u32) -> Result<u32, SysError> {
        let n = cstr(tag);
        // SAFETY: valid btf and tag.
        check("btf__add_type_tag", unsafe {
            libbpf_sys::btf__add_type_tag(self.0.as_ptr(), n.as_ptr(), to as i32)
        })
    }

    /// Adds a decl tag `tag` on type `target` (member `component`, or -1 for the type itself).
    pub fn add_decl_tag(&mut self, tag: &str, target: u32, component: i32) -> Result<u32, SysError> {
        let n = cstr(tag);
        // SAFETY: valid btf and tag.
        check("btf__add_decl_tag", unsafe {
            libbpf_sys::btf__add_decl_tag(self.0.as_ptr(), n.as_ptr(), target as i32, component)
        })
    }

    /// Adds a function prototype returning `ret`; parameters follow with [`Btf::add_func_param`].
    pub fn add_func_proto(&mut self, ret: u32) -> Result<u32, SysError> {
        // SAFETY: valid btf.
        check("btf__add_func_proto", unsafe { libbpf_sys::btf__add_func_proto(self.0.as_ptr(), ret as i32) })
    }

    /// Adds a parameter to the last function prototype.
    pub fn add_func_param(&mut self, name: &str, ty: u32) -> Result<(), SysError> {
        let n = cstr(name);
        // SAFETY: valid btf and name.
        check("btf__add_func_param", unsafe {
            libbpf_sys::btf__add_func_param(self.0.as_ptr(), n.as_ptr(), ty as i32)
        })
        .map(drop)
    }

    /// Adds a function (`BTF_KIND_FUNC`) with the given prototype.
    pub fn add_func(&mut self, name: &str, global: bool, proto: u32) -> Result<u32, SysError> {
        let n = cstr(name);
        let linkage = if global { libbpf_sys::BTF_FUNC_GLOBAL } else { libbpf_sys::BTF_FUNC_STATIC };
        // SAFETY: valid btf and name.
        check("btf__add_func", unsafe {
            libbpf_sys::btf__add_func(self.0.as_ptr(), n.as_ptr(), linkage, proto as i32)
        })
    }

    /// Adds a global allocated variable of type `ty`.
    pub fn add_var(&mut self, name: &str, ty: u32) -> Result<u32, SysError> {
        let n = cstr(name);
        // SAFETY: valid btf and name.
        check("btf__add_var", unsafe {
            libbpf_sys::btf__add_var(
                self.0.as_ptr(),
                n.as_ptr(),
                libbpf_sys::BTF_VAR_GLOBAL_ALLOCATED as i32,
                ty as i32,
            )
        })
    }

    /// Adds a data section of `size` bytes; its variables follow with [`Btf::add_datasec_var`].
    pub fn add_datasec(&mut self, name: &str, size: u32) -> Result<u32, SysError> {
        let n = cstr(name);
        // SAFETY: valid btf and name.
        check("btf__add_datasec", unsafe { libbpf_sys::btf__add_datasec(self.0.as_ptr(), n.as_ptr(), size) })
    }

    /// Places variable `var` at `off` (`size` bytes) in the last data section.
    pub fn add_datasec_var(&mut self, var: u32, off: u32, size: u32) -> Result<(), SysError> {
        // SAFETY: valid btf.
        check("btf__add_datasec_var_info", unsafe {
            libbpf_sys::btf__add_datasec_var_info(self.0.as_ptr(), var as i32, off, size)
        })
        .map(drop)
    }

    /// The raw BTF blob (header, types, strings) as the kernel expects it.
    pub fn raw_data(&mut self) -> Vec<u8> {
        let mut size = 0u32;
        // SAFETY: valid btf; the returned buffer is owned by the btf and valid until it changes,
        // and we copy it out at once.
        unsafe {
            let p = libbpf_sys::btf__raw_data(self.0.as_ptr(), &mut size);
            if p.is_null() {
                return Vec::new();
            }
            std::slice::from_raw_parts(p as *const u8, size as usize).to_vec()
        }
    }

    /// Every `BTF_KIND_FUNC` of this BTF (own types only, not the base's) as (id, name).
    pub fn funcs(&self, first_id: u32) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        // SAFETY: valid btf; ids below type_cnt are valid; names are NUL-terminated strings
        // owned by the btf, copied out at once.
        unsafe {
            let cnt = libbpf_sys::btf__type_cnt(self.0.as_ptr());
            for id in first_id..cnt {
                let t = libbpf_sys::btf__type_by_id(self.0.as_ptr(), id);
                if t.is_null() || kind_of((*t).info) != libbpf_sys::BTF_KIND_FUNC {
                    continue;
                }
                let name = libbpf_sys::btf__name_by_offset(self.0.as_ptr(), (*t).name_off);
                if !name.is_null() {
                    out.push((id, CStr::from_ptr(name).to_string_lossy().into_owned()));
                }
            }
        }
        out
    }

    /// Number of types including the base's and the void type 0 (`btf__type_cnt`).
    pub fn type_cnt(&self) -> u32 {
        // SAFETY: valid btf.
        unsafe { libbpf_sys::btf__type_cnt(self.0.as_ptr()) }
    }
}

/// Loads a raw BTF blob into the kernel (`BPF_BTF_LOAD`), with the kernel's log in `log`.
pub fn btf_load(raw: &[u8], log: &mut [u8]) -> Result<OwnedFd, SysError> {
    let mut opts = libbpf_sys::bpf_btf_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_btf_load_opts>() as _,
        log_buf: log.as_mut_ptr() as *mut _,
        log_level: if log.is_empty() { 0 } else { 1 },
        log_size: log.len() as u32,
        ..Default::default()
    };
    if log.is_empty() {
        opts.log_buf = std::ptr::null_mut();
    }
    // SAFETY: raw and log outlive the call; opts.sz matches the struct.
    let ret = unsafe { libbpf_sys::bpf_btf_load(raw.as_ptr() as *const _, raw.len() as _, &mut opts) };
    owned_fd("bpf_btf_load", ret)
}

/// BTF description of a map's key and value (`btf_key_type_id` may be 0 for data sections).
#[derive(Debug, Clone, Copy)]
pub struct MapBtf<'a> {
    /// The loaded BTF object.
    pub fd: BorrowedFd<'a>,
    /// Key type id (0 = none).
    pub key_type_id: u32,
    /// Value type id.
    pub value_type_id: u32,
}

/// Parameters of `BPF_MAP_CREATE`.
#[derive(Debug, Clone)]
pub struct MapCreate<'a> {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// Object name (at most 15 characters of `[A-Za-z0-9_.]`).
    pub name: &'a str,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// `map_extra` (an arena's user address).
    pub map_extra: u64,
    pub btf: Option<MapBtf<'a>>,
    /// For a map-in-map: a map of the inner map's spec (`inner_map_fd`).
    pub inner_map_fd: Option<BorrowedFd<'a>>,
}

/// Creates a map (`BPF_MAP_CREATE`).
pub fn map_create(m: &MapCreate<'_>) -> Result<OwnedFd, SysError> {
    let mut opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: m.map_flags,
        map_extra: m.map_extra,
        ..Default::default()
    };
    if let Some(b) = m.btf {
        opts.btf_fd = b.fd.as_raw_fd() as u32;
        opts.btf_key_type_id = b.key_type_id;
        opts.btf_value_type_id = b.value_type_id;
    }
    if let Some(fd) = m.inner_map_fd {
        opts.inner_map_fd = fd.as_raw_fd() as u32;
    }
    let name = cstr(m.name);
    // SAFETY: name and opts outlive the call; the BTF fd is borrowed for its duration.
    let ret = unsafe {
        libbpf_sys::bpf_map_create(m.map_type, name.as_ptr(), m.key_size, m.value_size, m.max_entries, &opts)
    };
    owned_fd("bpf_map_create", ret)
}

/// Parameters of `BPF_PROG_LOAD`.
#[derive(Debug, Clone)]
pub struct ProgLoad<'a> {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// Object name (at most 15 characters).
    pub name: &'a str,
    pub insns: &'a [Insn],
    pub expected_attach_type: u32,
    pub prog_flags: u32,
    /// Program BTF (needed with func_info).
    pub prog_btf: Option<BorrowedFd<'a>>,
    /// `struct bpf_func_info` records as (insn_off, type_id).
    pub func_info: &'a [(u32, u32)],
    /// fd_array (kfunc `off` indexes it); empty for none.
    pub fd_array: &'a [i32],
    /// Verifier log level (0 = none).
    pub log_level: u32,
    /// The licence string (the kernel keeps `license_is_gpl_compatible()` of it).
    pub license: &'a str,
}

/// Loads a program; the verifier's log goes to `log`. Returns the fd or the errno, and the
/// log size the kernel needed (`log_true_size`, 0 on kernels that do not report it).
pub fn prog_load(p: &ProgLoad<'_>, log: &mut [u8]) -> (Result<OwnedFd, SysError>, u32) {
    let insns: Vec<libbpf_sys::bpf_insn> = p
        .insns
        .iter()
        .map(|i| {
            // SAFETY: struct bpf_insn is exactly the 8-byte little-endian encoding.
            unsafe { std::mem::transmute::<[u8; 8], libbpf_sys::bpf_insn>(i.to_bytes()) }
        })
        .collect();
    let func_info: Vec<libbpf_sys::bpf_func_info> = p
        .func_info
        .iter()
        .map(|&(insn_off, type_id)| libbpf_sys::bpf_func_info { insn_off, type_id })
        .collect();
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: p.expected_attach_type,
        prog_flags: p.prog_flags,
        ..Default::default()
    };
    if let Some(fd) = p.prog_btf {
        opts.prog_btf_fd = fd.as_raw_fd() as u32;
    }
    if !func_info.is_empty() {
        opts.func_info = func_info.as_ptr() as *const _;
        opts.func_info_cnt = func_info.len() as u32;
        opts.func_info_rec_size = std::mem::size_of::<libbpf_sys::bpf_func_info>() as u32;
    }
    if !p.fd_array.is_empty() {
        opts.fd_array = p.fd_array.as_ptr();
    }
    if p.log_level > 0 && !log.is_empty() {
        opts.log_level = p.log_level;
        opts.log_buf = log.as_mut_ptr() as *mut _;
        opts.log_size = log.len().min(u32::MAX as usize) as u32;
    }
    let name = cstr(p.name);
    let license = cstr(p.license);
    // SAFETY: every pointer in opts (insns, func_info, fd_array, log) points into buffers that
    // outlive the call; opts.sz matches the struct.
    let ret = unsafe {
        libbpf_sys::bpf_prog_load(
            p.prog_type,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    (owned_fd("bpf_prog_load", ret), opts.log_true_size)
}

/// The next BTF object id after `start` (`BPF_BTF_GET_NEXT_ID`), None at the end.
pub fn btf_next_id(start: u32) -> Result<Option<u32>, SysError> {
    let mut next = 0u32;
    // SAFETY: next is a valid out pointer.
    match check("bpf_btf_get_next_id", unsafe { libbpf_sys::bpf_btf_get_next_id(start, &mut next) }) {
        Ok(_) => Ok(Some(next)),
        Err(e) if e.errno == Errno::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// An fd for BTF object `id` (`BPF_BTF_GET_FD_BY_ID`).
pub fn btf_fd_by_id(id: u32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain syscall wrapper.
    owned_fd("bpf_btf_get_fd_by_id", unsafe { libbpf_sys::bpf_btf_get_fd_by_id(id) })
}

/// What `BPF_OBJ_GET_INFO_BY_FD` says about a BTF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfInfo {
    pub id: u32,
    /// "vmlinux", a module name, or empty for program BTF.
    pub name: String,
    /// True for vmlinux and module BTF.
    pub kernel_btf: bool,
}

/// Id, name and kind of a BTF object.
pub fn btf_info(fd: BorrowedFd<'_>) -> Result<BtfInfo, SysError> {
    let mut name = [0u8; 64];
    let mut info = libbpf_sys::bpf_btf_info {
        name: name.as_mut_ptr() as u64,
        name_len: name.len() as u32,
        ..Default::default()
    };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_btf_info>() as u32;
    // SAFETY: info and name outlive the call; len is the size of info.
    check("bpf_obj_get_info_by_fd", unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(fd.as_raw_fd(), &mut info as *mut _ as *mut _, &mut len)
    })?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(BtfInfo {
        id: info.id,
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
        kernel_btf: info.kernel_btf != 0,
    })
}
