//! `scripts/build-module.sh`'s answer for a Debian kernel, remembered: a run asks the script twice
//! per kernel (the test module, `bpf_testmod`), and on a cache hit each call is a tenth to a fifth
//! of a second of bash, `stat`, `sha256sum` and `flock` before the first guest can start (both
//! the serial and the parallel run wait for it; docs/speed.md, session 14).
//!
//! The script's answer on a hit is `$CACHE/modules/debian-<series>/<KVER>-[testmod-]<SRCHASH>/
//! <module>.ko`, where KVER comes from its memo of the private apt lists (`resolve_kernel`, keyed
//! by their names, sizes and modification times) and SRCHASH from the module's sources. The memo
//! here keeps that path under a fingerprint of everything the script reads to find it: the
//! scripts and the kernel table themselves, the module's sources in the repository, the apt lists
//! and the script's own KVER memo, the linux-source package's version files (`--testmod`), the
//! cache root and `PAHOLE`; identities are path, size, inode and modification time (files are
//! replaced, not rewritten in place, by git, apt and the scripts). A different fingerprint, a
//! `.ko` that is gone, `LOCKSTEP_REFRESH` or a kernel tree (whose answer hangs on its vmlinux's
//! contents) ask the script, as before; a successful answer is remembered.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the script would print for `args` (`debian:<series>` or `--testmod debian:<series>`), if
/// the memo in `cache` knows it (`scripts`: the repository's scripts directory).
pub fn cached_ko(args: &[String], scripts: &Path, cache: &Path) -> Option<PathBuf> {
    let (memo, fp) = memo_and_fingerprint(args, scripts, cache)?;
    let text = std::fs::read_to_string(memo).ok()?;
    let (stored, ko) = text.rsplit_once("\nko ")?;
    let ko = PathBuf::from(ko.trim_end_matches('\n'));
    // The script's own test for a hit: the `.ko` is a non-empty file.
    (stored == fp && std::fs::metadata(&ko).is_ok_and(|m| m.is_file() && m.len() > 0)).then_some(ko)
}

/// Remembers the script's answer `ko` for `args` (a failed write only costs the next run the
/// script's time).
pub fn remember(args: &[String], scripts: &Path, cache: &Path, ko: &Path) {
    let Some((memo, fp)) = memo_and_fingerprint(args, scripts, cache) else { return };
    lockstep_vm::digest::write_cache_entry(&memo, format!("{fp}\nko {}\n", ko.display()).as_bytes());
}

/// The memo file for `args` and the fingerprint of the script's inputs; None when the answer is
/// not to be remembered.
fn memo_and_fingerprint(args: &[String], scripts: &Path, cache: &Path) -> Option<(PathBuf, String)> {
    if std::env::var_os("LOCKSTEP_REFRESH").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let (testmod, name) = match args {
        [name] => (false, name),
        [flag, name] if flag == "--testmod" => (true, name),
        _ => return None,
    };
    let spec = lockstep_vm::debian::names::spec_for(name)?;
    let series = spec.series;
    let apt = cache.join("apt-sh").join(spec.suite);
    // The script updates the lists when there are none: not a hit.
    let mut lists: Vec<PathBuf> = std::fs::read_dir(apt.join("state/lists"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
        .map(|e| e.path())
        .collect();
    if lists.is_empty() {
        return None;
    }
    lists.sort();
    let repo = scripts.parent()?;
    let mut files: Vec<PathBuf> =
        ["build-module.sh", "cache-dir.sh", "kernel-table.sh", "fetch-kernel-source.sh"]
            .iter()
            .map(|f| scripts.join(f))
            .collect();
    files.push(repo.join("harness/lockstep-vm/debian-kernels.tsv"));
    files
        .extend(["Kbuild", "Makefile", "lockstep_test.c"].iter().map(|f| repo.join("kernel-module").join(f)));
    files.push(apt.join(format!("resolved-{series}")));
    files.extend(lists);
    if testmod {
        files.push(cache.join("src").join(series).join("PACKAGE_VERSION"));
        files.push(cache.join("debs").join(format!("linux-source-{series}.PACKAGE_VERSION")));
    }
    let mut fp = format!(
        "lockstep-module-memo 1\nargs {}\ncache {}\npahole {:?}\n",
        args.join(" "),
        cache.display(),
        std::env::var_os("PAHOLE")
    );
    for f in &files {
        fp.push_str(&identity_line(f));
    }
    let memo = cache.join("modules").join(format!("debian-{series}")).join(if testmod {
        ".lockstep-memo-testmod"
    } else {
        ".lockstep-memo-module"
    });
    Some((memo, fp.trim_end_matches('\n').to_string()))
}

/// `path size inode mtime.nsec`, or `path -` for a file that is not there.
fn identity_line(f: &Path) -> String {
    match std::fs::metadata(f) {
        Ok(m) => format!("{} {} {} {}.{:09}\n", f.display(), m.size(), m.ino(), m.mtime(), m.mtime_nsec()),
        Err(_) => format!("{} -\n", f.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache and a scripts directory with what the fingerprint reads for debian:7.3.
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (repo, cache) = (t.path().join("repo"), t.path().join("cache"));
        let scripts = repo.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        for f in ["build-module.sh", "cache-dir.sh", "kernel-table.sh", "fetch-kernel-source.sh"] {
            std::fs::write(scripts.join(f), f).unwrap();
        }
        std::fs::create_dir_all(repo.join("kernel-module")).unwrap();
        std::fs::write(repo.join("kernel-module/lockstep_test.c"), "int x;").unwrap();
        let suite = lockstep_vm::debian::names::spec_for("debian:7.3").unwrap().suite;
        let lists = cache.join("apt-sh").join(suite).join("state/lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(lists.join("mirror_dists_x_main_binary-amd64_Packages.lz4"), "p").unwrap();
        std::fs::create_dir_all(cache.join("modules/debian-7.3/v-1")).unwrap();
        std::fs::write(cache.join("modules/debian-7.3/v-1/lockstep_test.ko"), "ko").unwrap();
        (t, scripts, cache)
    }

    #[test]
    fn a_remembered_answer_is_found_until_an_input_or_the_ko_changes() {
        let (_t, scripts, cache) = fixture();
        let args = vec!["debian:7.3".to_string()];
        let ko = cache.join("modules/debian-7.3/v-1/lockstep_test.ko");
        assert_eq!(cached_ko(&args, &scripts, &cache), None, "nothing remembered yet");
        remember(&args, &scripts, &cache, &ko);
        assert_eq!(cached_ko(&args, &scripts, &cache), Some(ko.clone()));
        // The other question (bpf_testmod) is not answered by this one.
        assert_eq!(cached_ko(&["--testmod".into(), "debian:7.3".into()], &scripts, &cache), None);
        // A changed module source (a new file, as an editor or git writes it) asks the script.
        let src = scripts.parent().unwrap().join("kernel-module/lockstep_test.c");
        std::fs::remove_file(&src).unwrap();
        std::fs::write(&src, "int y; /* longer */").unwrap();
        assert_eq!(cached_ko(&args, &scripts, &cache), None);
        remember(&args, &scripts, &cache, &ko);
        assert_eq!(cached_ko(&args, &scripts, &cache), Some(ko.clone()));
        // A `.ko` that is gone asks the script.
        std::fs::remove_file(&ko).unwrap();
        assert_eq!(cached_ko(&args, &scripts, &cache), None);
    }

    #[test]
    fn new_apt_lists_a_tree_or_no_lists_are_never_answered_from_the_memo() {
        let (_t, scripts, cache) = fixture();
        let args = vec!["debian:7.3".to_string()];
        let ko = cache.join("modules/debian-7.3/v-1/lockstep_test.ko");
        remember(&args, &scripts, &cache, &ko);
        let suite = lockstep_vm::debian::names::spec_for("debian:7.3").unwrap().suite;
        let lists = cache.join("apt-sh").join(suite).join("state/lists");
        std::fs::write(lists.join("mirror_dists_y_main_binary-amd64_Packages.lz4"), "q").unwrap();
        assert_eq!(cached_ko(&args, &scripts, &cache), None, "another package list");
        let tree = vec!["--tree".to_string(), "/some/tree".to_string()];
        remember(&tree, &scripts, &cache, &ko);
        assert_eq!(cached_ko(&tree, &scripts, &cache), None);
        std::fs::remove_dir_all(&lists).unwrap();
        remember(&args, &scripts, &cache, &ko);
        assert_eq!(cached_ko(&args, &scripts, &cache), None, "no lists: the script updates them");
    }
}
