//! A BPF object opened and loaded through libbpf (`bpf_object__open_mem` / `bpf_object__load`),
//! as the selftests' `test_loader.c` loads one, with libbpf's own messages captured.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use libbpf_sys::{__va_list_tag, libbpf_print_level, LIBBPF_DEBUG};

/// libbpf's messages (warnings and info) since the capture started.
static CAPTURED: Mutex<String> = Mutex::new(String::new());

extern "C" {
    /// C's `vsnprintf` (the C library is linked statically with libbpf).
    fn vsnprintf(s: *mut c_char, n: usize, fmt: *const c_char, ap: *mut __va_list_tag) -> c_int;
}

/// The print callback: appends libbpf's warnings and info lines to [`CAPTURED`].
unsafe extern "C" fn capture_print(
    level: libbpf_print_level,
    fmt: *const c_char,
    ap: *mut __va_list_tag,
) -> c_int {
    if level == LIBBPF_DEBUG {
        return 0;
    }
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` has `buf.len()` bytes; `fmt` and `ap` come from libbpf's own printf call.
    let n = unsafe { vsnprintf(buf.as_mut_ptr().cast(), buf.len(), fmt, ap) };
    if n > 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(mut c) = CAPTURED.lock() {
            c.push_str(&String::from_utf8_lossy(&buf[..end]));
        }
    }
    0
}

/// Starts capturing libbpf's messages (dropping earlier ones).
fn capture_start() {
    if let Ok(mut c) = CAPTURED.lock() {
        c.clear();
    }
    // SAFETY: installing a print callback is always allowed; `capture_print` is reentrant-safe.
    unsafe {
        libbpf_sys::libbpf_set_print(Some(capture_print));
    }
}

/// Stops capturing and returns what libbpf printed.
fn capture_take() -> String {
    super::silence_libbpf();
    CAPTURED.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
}

/// A libbpf call that failed: the errno it returned and what libbpf printed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {errno_name}: {messages}")]
pub struct LibbpfError {
    /// The libbpf function.
    pub op: &'static str,
    /// The (positive) errno.
    pub errno: i32,
    /// `EINVAL`, ...
    pub errno_name: String,
    /// libbpf's warnings, one per line.
    pub messages: String,
}

fn libbpf_error(op: &'static str, err: c_int) -> LibbpfError {
    let errno = err.unsigned_abs() as i32;
    LibbpfError {
        op,
        errno,
        errno_name: format!("{:?}", nix::errno::Errno::from_raw(errno)),
        messages: capture_take().trim_end().to_string(),
    }
}

/// An opened (and possibly loaded) libbpf object; closed on drop, with its maps and programs.
#[derive(Debug)]
pub struct BpfObject {
    obj: NonNull<libbpf_sys::bpf_object>,
    /// libbpf reads the ELF from this buffer until the load.
    _bytes: Arc<[u8]>,
    /// Per-program verifier log buffers (set with `bpf_program__set_log_buf`).
    logs: Vec<(String, Box<[u8]>)>,
}

impl Drop for BpfObject {
    fn drop(&mut self) {
        // SAFETY: we own the object; it came from bpf_object__open_mem.
        unsafe { libbpf_sys::bpf_object__close(self.obj.as_ptr()) }
    }
}

impl BpfObject {
    /// Opens the ELF `bytes` as libbpf's `bpf_object__open_file` would open a file named after
    /// `object_name` (`x` for `x.bpf.o`: global data maps are then `x.bss` ...).
    pub fn open_mem(bytes: Arc<[u8]>, object_name: &str) -> Result<BpfObject, LibbpfError> {
        let name = CString::new(object_name).unwrap_or_default();
        let opts = libbpf_sys::bpf_object_open_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as libbpf_sys::size_t,
            object_name: name.as_ptr(),
            ..Default::default()
        };
        capture_start();
        // SAFETY: `bytes` outlives the object (kept in it); `opts` and `name` live across the call.
        let obj = unsafe { libbpf_sys::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len() as _, &opts) };
        match NonNull::new(obj) {
            Some(obj) => {
                capture_take();
                Ok(BpfObject { obj, _bytes: bytes, logs: Vec::new() })
            }
            None => Err(libbpf_error(
                "bpf_object__open_mem",
                -std::io::Error::last_os_error().raw_os_error().unwrap_or(22),
            )),
        }
    }

    fn programs_raw(&self) -> Vec<NonNull<libbpf_sys::bpf_program>> {
        let mut out = Vec::new();
        let mut p: *mut libbpf_sys::bpf_program = std::ptr::null_mut();
        loop {
            // SAFETY: iterating the programs of a live object.
            p = unsafe { libbpf_sys::bpf_object__next_program(self.obj.as_ptr(), p) };
            match NonNull::new(p) {
                Some(n) => out.push(n),
                None => return out,
            }
        }
    }

    fn prog_name(p: NonNull<libbpf_sys::bpf_program>) -> String {
        // SAFETY: a program of a live object has a NUL-terminated name.
        unsafe { CStr::from_ptr(libbpf_sys::bpf_program__name(p.as_ptr())) }.to_string_lossy().into_owned()
    }

    /// The names of the object's programs, in libbpf's order.
    pub fn program_names(&self) -> Vec<String> {
        self.programs_raw().into_iter().map(Self::prog_name).collect()
    }

    /// Sets which programs load: those in `autoload` (each with its own verifier log of
    /// `log_size` bytes at `log_level`), no others.
    /// `extra_flags` are OR-ed into each autoloaded program's `prog_flags`.
    pub fn set_autoload(
        &mut self,
        autoload: &[String],
        log_level: u32,
        log_size: usize,
        extra_flags: u32,
    ) -> Result<(), LibbpfError> {
        capture_start();
        for p in self.programs_raw() {
            let name = Self::prog_name(p);
            let on = autoload.contains(&name);
            // SAFETY: `p` is a program of this object, not loaded yet.
            let r = unsafe { libbpf_sys::bpf_program__set_autoload(p.as_ptr(), on) };
            if r != 0 {
                return Err(libbpf_error("bpf_program__set_autoload", r));
            }
            if on {
                let mut buf = vec![0u8; log_size].into_boxed_slice();
                // SAFETY: the buffer is kept in `self.logs` until the object is closed.
                let r = unsafe {
                    let flags = libbpf_sys::bpf_program__flags(p.as_ptr());
                    libbpf_sys::bpf_program__set_flags(p.as_ptr(), flags | extra_flags);
                    libbpf_sys::bpf_program__set_log_level(p.as_ptr(), log_level);
                    libbpf_sys::bpf_program__set_log_buf(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len() as _)
                };
                if r != 0 {
                    return Err(libbpf_error("bpf_program__set_log_buf", r));
                }
                self.logs.push((name, buf));
            }
        }
        capture_take();
        Ok(())
    }

    /// `bpf_object__load`: creates the maps, relocates and loads the autoloaded programs.
    /// On failure, libbpf's messages come with the error.
    pub fn load(&mut self) -> Result<(), LibbpfError> {
        capture_start();
        // SAFETY: a live, opened object.
        let r = unsafe { libbpf_sys::bpf_object__load(self.obj.as_ptr()) };
        if r != 0 {
            return Err(libbpf_error("bpf_object__load", r));
        }
        capture_take();
        Ok(())
    }

    /// Runs loaded program `name` once with `BPF_PROG_TEST_RUN` as test_loader.c's
    /// `do_prog_test_run()` does: 64 zero bytes of input data and room for 256 bytes of output,
    /// or no options at all for a `BPF_PROG_TYPE_SYSCALL` program. Ok(return value) or Err(errno).
    pub fn test_run(&self, name: &str) -> Result<u32, i32> {
        let Some(p) = self.programs_raw().into_iter().find(|p| Self::prog_name(*p) == name) else {
            return Err(nix::errno::Errno::ENOENT as i32);
        };
        // SAFETY: a program of a live, loaded object.
        let (fd, ty) =
            unsafe { (libbpf_sys::bpf_program__fd(p.as_ptr()), libbpf_sys::bpf_program__type(p.as_ptr())) };
        if fd < 0 {
            return Err(fd.unsigned_abs() as i32);
        }
        let data_in = [0u8; 64];
        let mut data_out = [0u8; 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            ..Default::default()
        };
        if ty != libbpf_sys::BPF_PROG_TYPE_SYSCALL {
            opts.data_in = data_in.as_ptr().cast();
            opts.data_size_in = data_in.len() as u32;
            opts.data_out = data_out.as_mut_ptr().cast();
            opts.data_size_out = data_out.len() as u32;
            opts.repeat = 1;
        }
        // SAFETY: `fd` is a loaded program; the buffers outlive the call and their sizes are given.
        let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(r.unsigned_abs() as i32));
        }
        Ok(opts.retval)
    }

    /// The verifier log of program `name` (empty if it had no log buffer or was not loaded).
    pub fn log_of(&self, name: &str) -> String {
        self.logs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .unwrap_or_default()
    }
}
