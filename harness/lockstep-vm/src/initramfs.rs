//! The guest's initramfs: an uncompressed newc cpio archive built in Rust (no root needed; device
//! nodes are archive entries, not host files).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};

/// Where the test module goes in the guest.
pub const MODULE_PATH: &str = "lockstep/module.ko";
/// Where further modules go (`bpf_testmod.ko`), each under its own file name; the agent loads them
/// after [`MODULE_PATH`], sorted by name.
pub const EXTRA_MODULES_DIR: &str = "lockstep/modules";

/// One archive entry (paths are relative, without a leading `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { path: String },
    File { path: String, data: Vec<u8>, mode: u32 },
    CharDev { path: String, major: u32, minor: u32 },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::CharDev { path, .. } => path,
        }
    }
}

/// What goes into the initramfs.
#[derive(Clone, Debug, Default)]
pub struct InitramfsSpec {
    /// A static binary, installed as `/init`.
    pub init: PathBuf,
    /// An optional kernel module, installed as `/lockstep/module.ko`.
    pub module: Option<PathBuf>,
    /// Further kernel modules, installed as `/lockstep/modules/<file name>` ([`EXTRA_MODULES_DIR`]).
    pub extra_modules: Vec<PathBuf>,
    /// Extra files: (guest path without leading `/`, host file), installed 0644 (parents created).
    pub extra: Vec<(String, PathBuf)>,
}

/// The guest path of an extra module (`/lockstep/modules/bpf_testmod.ko`, without the leading `/`).
pub fn extra_module_path(host: &Path) -> String {
    let file = host.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{EXTRA_MODULES_DIR}/{file}")
}

/// The entries for `init` (and optionally `module`): base directories, `/dev/console`,
/// `/dev/null`, the files. Parent directories are listed before their children.
pub fn entries(init: Vec<u8>, module: Option<Vec<u8>>, extra: Vec<(String, Vec<u8>)>) -> Vec<Entry> {
    let mut v: Vec<Entry> = ["dev", "proc", "sys", "tmp", "lockstep"]
        .iter()
        .map(|d| Entry::Dir { path: d.to_string() })
        .collect();
    v.push(Entry::CharDev { path: "dev/console".into(), major: 5, minor: 1 });
    v.push(Entry::CharDev { path: "dev/null".into(), major: 1, minor: 3 });
    v.push(Entry::File { path: "init".into(), data: init, mode: 0o755 });
    if let Some(m) = module {
        v.push(Entry::File { path: MODULE_PATH.into(), data: m, mode: 0o644 });
    }
    for (path, data) in extra {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        for comp in
            path.split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p.to_vec()).unwrap_or_default()
        {
            parent = if parent.is_empty() { comp.to_string() } else { format!("{parent}/{comp}") };
            if !v.iter().any(|e| e.path() == parent) {
                v.push(Entry::Dir { path: parent.clone() });
            }
        }
        v.push(Entry::File { path, data, mode: 0o644 });
    }
    v
}

/// Writes `entries` as a newc archive (with its trailer) to `w`.
pub fn write_newc<W: Write>(entries: &[Entry], mut w: W) -> io::Result<W> {
    for (i, e) in entries.iter().enumerate() {
        let b = Builder::new(e.path()).ino(i as u32 + 1).uid(0).gid(0).mtime(0);
        w = match e {
            Entry::Dir { .. } => {
                b.mode(0o755).nlink(2).set_mode_file_type(ModeFileType::Directory).write(w, 0).finish()?
            }
            Entry::CharDev { major, minor, .. } => b
                .mode(0o600)
                .nlink(1)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .set_mode_file_type(ModeFileType::Char)
                .write(w, 0)
                .finish()?,
            Entry::File { data, mode, .. } => {
                let size =
                    u32::try_from(data.len()).map_err(|_| io::Error::other("file too large for newc"))?;
                let mut fw = b.mode(*mode).nlink(1).set_mode_file_type(ModeFileType::Regular).write(w, size);
                fw.write_all(data)?;
                fw.finish()?
            }
        };
    }
    cpio::newc::trailer(w)
}

/// The files of `spec` besides `/init` and the module: (guest path, host file), in archive order.
fn extra_inputs(spec: &InitramfsSpec) -> Vec<(String, PathBuf)> {
    spec.extra_modules
        .iter()
        .map(|h| (extra_module_path(h), h.clone()))
        .chain(spec.extra.iter().cloned())
        .collect()
}

/// Builds the initramfs described by `spec` into `out`.
pub fn build(spec: &InitramfsSpec, out: &Path) -> io::Result<()> {
    let read = |p: &Path| fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())));
    let init = read(&spec.init)?;
    let module = spec.module.as_deref().map(read).transpose()?;
    let extra =
        extra_inputs(spec).into_iter().map(|(g, h)| Ok((g, read(&h)?))).collect::<io::Result<Vec<_>>>()?;
    let tmp = out.with_extension("tmp");
    let f = io::BufWriter::new(fs::File::create(&tmp)?);
    write_newc(&entries(init, module, extra), f)?.flush()?;
    fs::rename(&tmp, out)
}

/// Bumped when what [`build`] writes for the same inputs changes in a way the builder's own
/// binary (hashed into the key too) would not show.
const CACHE_FORMAT: &str = "lockstep-initramfs-1";

/// Archives kept in an initramfs cache: beyond this the least recently used are deleted.
const CACHE_KEEP: usize = 16;

/// The cache key of `spec`: the format, the builder's own binary, and each entry's guest path
/// with its host file's SHA-256 ([`crate::digest::file_sha256`], remembered across runs).
fn cache_key(spec: &InitramfsSpec) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let digest = |p: &Path| {
        crate::digest::file_sha256(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    h.update(digest(&std::env::current_exe()?)?);
    let files = [("init".to_string(), spec.init.clone())]
        .into_iter()
        .chain(spec.module.iter().map(|m| (MODULE_PATH.to_string(), m.clone())))
        .chain(extra_inputs(spec));
    for (guest, host) in files {
        h.update([0]);
        h.update(guest.as_bytes());
        h.update([0]);
        h.update(digest(&host)?);
    }
    Ok(crate::digest::hex(&h.finalize()))
}

/// [`build`] through a cache directory: the archive of the same inputs (same contents, see
/// [`cache_key`]) is built once into `cache` and hard-linked to `out` (built there when the link
/// fails). A run's guests, and the runs after it, then neither write the archive (~15 MiB: the
/// lockstep binary is `/init`) nor hash it for their snapshot key (the link is the same file,
/// whose digest is remembered). `out` is a file of its own: pruning the cache does not touch it.
pub fn build_cached(spec: &InitramfsSpec, cache: &Path, out: &Path) -> io::Result<()> {
    let key = cache_key(spec)?;
    let file = cache.join(format!("{key}.cpio"));
    if file.is_file() {
        // Used: the cache keeps the most recently used (the access time; the modification time
        // is part of the file's identity for its remembered digest).
        if let Ok(f) = fs::File::open(&file) {
            let _ = f.set_times(fs::FileTimes::new().set_accessed(std::time::SystemTime::now()));
        }
    } else {
        fs::create_dir_all(cache)?;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unique per call: `build` writes `<name>.tmp` beside it first.
        let part = cache.join(format!(".{key}-{}-{n}.part", std::process::id()));
        let built = build(spec, &part).and_then(|()| fs::rename(&part, &file));
        if built.is_err() {
            let _ = fs::remove_file(&part);
            let _ = fs::remove_file(part.with_extension("tmp"));
            return build(spec, out);
        }
        prune_cache(cache);
    }
    let _ = fs::remove_file(out);
    match fs::hard_link(&file, out) {
        Ok(()) => Ok(()),
        Err(_) => build(spec, out),
    }
}

/// Deletes all but the [`CACHE_KEEP`] most recently used archives of `cache`.
fn prune_cache(cache: &Path) {
    let Ok(rd) = fs::read_dir(cache) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cpio"))
        .filter_map(|p| {
            let m = fs::metadata(&p).ok()?;
            Some((m.accessed().ok()?.max(m.modified().ok()?), p))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, p) in files.into_iter().skip(CACHE_KEEP) {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn cached_build_is_the_plain_build_linked() {
        let dir = tempfile::tempdir().unwrap();
        let (init, module, cache) =
            (dir.path().join("init"), dir.path().join("m.ko"), dir.path().join("cache"));
        fs::write(&init, b"#!init").unwrap();
        fs::write(&module, b"module").unwrap();
        let spec = InitramfsSpec { init: init.clone(), module: Some(module.clone()), ..Default::default() };
        let (plain, a, b) = (dir.path().join("plain"), dir.path().join("a"), dir.path().join("b"));
        build(&spec, &plain).unwrap();
        build_cached(&spec, &cache, &a).unwrap();
        build_cached(&spec, &cache, &b).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&plain).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&a).unwrap().ino(), fs::metadata(&b).unwrap().ino(), "one archive, linked");
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1, "no temporary files left");
        // Other contents (a new file: builds write new files), another archive.
        let m2 = dir.path().join("m2.ko");
        fs::write(&m2, b"module 2").unwrap();
        fs::rename(&m2, &module).unwrap();
        build_cached(&spec, &cache, &b).unwrap();
        build(&spec, &plain).unwrap();
        assert_eq!(fs::read(&b).unwrap(), fs::read(&plain).unwrap());
        assert_ne!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
    }

    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r = bytes;
        loop {
            let mut rd = cpio::newc::Reader::new(r).unwrap();
            if rd.entry().is_trailer() {
                break;
            }
            let (name, mode, maj, min) = (
                rd.entry().name().to_string(),
                rd.entry().mode(),
                rd.entry().rdev_major(),
                rd.entry().rdev_minor(),
            );
            let mut data = Vec::new();
            rd.read_to_end(&mut data).unwrap();
            out.push((name, mode, maj, min, data));
            r = rd.finish().unwrap();
        }
        out
    }

    #[test]
    fn archive_holds_init_module_dirs_and_console() {
        let e = entries(b"ELF".to_vec(), Some(b"KO".to_vec()), vec![("/etc/a/b.txt".into(), b"x".to_vec())]);
        let bytes = write_newc(&e, Vec::new()).unwrap();
        let got = read_back(&bytes);
        let find = |n: &str| got.iter().find(|g| g.0 == n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(find("init").1, 0o100755);
        assert_eq!(find("init").4, b"ELF");
        assert_eq!(find("lockstep/module.ko").4, b"KO");
        let console = find("dev/console");
        assert_eq!((console.1 & 0o170000, console.2, console.3), (0o020000, 5, 1));
        for d in ["dev", "proc", "sys", "tmp", "etc", "etc/a"] {
            assert_eq!(find(d).1 & 0o170000, 0o040000, "{d}");
        }
        let pos = |n: &str| got.iter().position(|g| g.0 == n).unwrap();
        assert!(pos("etc") < pos("etc/a") && pos("etc/a") < pos("etc/a/b.txt"));
        assert!(bytes.len() % 4 == 0);
    }

    #[test]
    fn extra_modules_go_under_the_modules_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (init, ko) = (dir.path().join("init"), dir.path().join("bpf_testmod.ko"));
        fs::write(&init, b"ELF").unwrap();
        fs::write(&ko, b"TESTMOD").unwrap();
        let spec = InitramfsSpec { init, extra_modules: vec![ko], ..Default::default() };
        let out = dir.path().join("initramfs.cpio");
        build(&spec, &out).unwrap();
        let got = read_back(&fs::read(&out).unwrap());
        let m = got.iter().find(|g| g.0 == "lockstep/modules/bpf_testmod.ko").expect("module entry");
        assert_eq!(m.4, b"TESTMOD");
        assert!(got.iter().any(|g| g.0 == EXTRA_MODULES_DIR && g.1 & 0o170000 == 0o040000));
    }

    #[test]
    fn without_module_no_module_entry() {
        let bytes = write_newc(&entries(vec![1], None, vec![]), Vec::new()).unwrap();
        assert!(!read_back(&bytes).iter().any(|g| g.0 == MODULE_PATH));
    }
}
