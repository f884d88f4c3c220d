//! SHA-256 of files, remembered per file identity (device, inode, size, modification time) in
//! this process and, across processes, as small files in `<cache>/digests/` (the cache is
//! trusted, see [`crate::cache_root`]). A run hashes its kernel images and initramfs archives
//! for the snapshot keys, and the initramfs's inputs (the lockstep binary, the modules) for the
//! initramfs cache: the same files run after run, tens of MiB each.
//!
//! The identity leaves out the path (a hard link of a file is the same file) and the change
//! time (setting a file's access time changes it). A file rewritten in place to the same size
//! within the same modification time and inode would be taken for the old one: nothing lockstep
//! caches is written that way (builds and caches write a new file and rename it).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// Entries kept in the cross-process memo (64 bytes each; the oldest are deleted beyond this).
const KEEP: usize = 256;

/// What names a file's contents here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// The memo file's name.
    fn memo_name(&self) -> String {
        let text = format!(
            "lockstep-digest-1 {} {} {} {}.{:09}",
            self.dev, self.ino, self.size, self.mtime, self.mtime_nsec
        );
        hex(&Sha256::digest(text.as_bytes()))
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The cross-process memo's directory (none without a cache root).
fn memo_dir() -> Option<PathBuf> {
    crate::cache_root::from_env().ok().map(|r| r.join("digests"))
}

/// The SHA-256 of `path`'s contents (remembered; see the module's comment).
pub fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    file_sha256_in(path, memo_dir().as_deref())
}

/// [`file_sha256`] with the cross-process memo in `memo` (none: this process's memo only).
pub fn file_sha256_in(path: &Path, memo: Option<&Path>) -> io::Result<[u8; 32]> {
    static MEMO: OnceLock<Mutex<HashMap<Identity, [u8; 32]>>> = OnceLock::new();
    let id = Identity::of(&std::fs::metadata(path)?);
    let local = MEMO.get_or_init(Default::default);
    if let Some(d) = local.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Ok(*d);
    }
    let stored = memo.map(|m| m.join(id.memo_name()));
    if let Some(d) = stored.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|s| parse_hex(&s))
    {
        local.lock().unwrap_or_else(|e| e.into_inner()).insert(id, d);
        return Ok(d);
    }
    let d = hash_file(path)?;
    // The file may have changed while it was read: remember the digest only if it did not.
    if Identity::of(&std::fs::metadata(path)?) == id {
        local.lock().unwrap_or_else(|e| e.into_inner()).insert(id, d);
        if let (Some(dir), Some(f)) = (memo, &stored) {
            remember(dir, f, &d);
        }
    }
    Ok(d)
}

/// The SHA-256 of `path`'s contents, read now (never remembered: what integrity checks use).
pub(crate) fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Writes one memo entry (failures only cost a hash later).
fn remember(dir: &Path, file: &Path, d: &[u8; 32]) {
    if write_cache_entry(file, hex(d).as_bytes()) {
        prune(dir, KEEP);
    }
}

/// Writes a cache entry whole or not at all: `contents` into a temporary file beside `file`
/// (its directory created), renamed over it, so a reader in another process never sees a part.
/// Whether it was written (a cache that cannot be written only costs the work again later).
pub fn write_cache_entry(file: &Path, contents: &[u8]) -> bool {
    if file.parent().is_some_and(|dir| std::fs::create_dir_all(dir).is_err()) {
        return false;
    }
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, contents).is_ok() && std::fs::rename(&tmp, file).is_ok();
    if !written {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Deletes all but the `keep` newest files of `dir` (by modification time).
pub fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> =
        rd.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    if files.len() <= keep {
        return;
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, p) in files.into_iter().skip(keep) {
        let _ = std::fs::remove_file(p);
    }
}

/// The names in directory `dir`, sorted (tests of the cache stores' pruning).
#[cfg(test)]
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_remembered_per_identity_and_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let want: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(file_sha256_in(&f, Some(&memo)).unwrap(), want);
        assert_eq!(std::fs::read_dir(&memo).unwrap().count(), 1, "one memo entry");
        // A hard link is the same file; a rewrite (new inode by rename) is another.
        let l = dir.path().join("l");
        std::fs::hard_link(&f, &l).unwrap();
        assert_eq!(file_sha256_in(&l, Some(&memo)).unwrap(), want);
        let g = dir.path().join("g");
        std::fs::write(&g, b"abd").unwrap();
        std::fs::rename(&g, &f).unwrap();
        assert_eq!(file_sha256_in(&f, Some(&memo)).unwrap(), <[u8; 32]>::from(Sha256::digest(b"abd")));
        // What another process stored is believed (the cache is trusted).
        let h = dir.path().join("h");
        std::fs::write(&h, b"wxyz").unwrap();
        let id = Identity::of(&std::fs::metadata(&h).unwrap());
        std::fs::write(memo.join(id.memo_name()), hex(&[7u8; 32])).unwrap();
        assert_eq!(file_sha256_in(&h, Some(&memo)).unwrap(), [7u8; 32]);
        assert_eq!(parse_hex(&hex(&want)), Some(want));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            let p = dir.path().join(format!("{i}"));
            std::fs::write(&p, b"").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            std::fs::File::options().append(true).open(&p).unwrap().set_modified(t).unwrap();
        }
        prune(dir.path(), 2);
        assert_eq!(names_in(dir.path()), ["3", "4"]);
    }
}
