//! Where the cache lives: `$LOCKSTEP_CACHE`, else `$XDG_CACHE_HOME/lockstep`, else
//! `$HOME/.cache/lockstep`; never a shared temporary path (the cache holds keyrings, package
//! lists, kernels and tools that are trusted). `scripts/cache-dir.sh` follows the same rule.

use std::ffi::OsString;
use std::path::PathBuf;

/// No cache directory can be chosen from the environment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no cache directory: set LOCKSTEP_CACHE to a private directory (neither XDG_CACHE_HOME nor HOME is \
     set to an absolute path; lockstep never falls back to a shared temporary path)"
)]
pub struct NoCacheRoot;

/// The cache root from the values of `LOCKSTEP_CACHE`, `XDG_CACHE_HOME` and `HOME` (pure). Empty
/// values count as unset; `XDG_CACHE_HOME` and `HOME` must be absolute (the XDG rule).
pub fn resolve(
    lockstep_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, NoCacheRoot> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    let absolute = |v: Option<OsString>| set(v).filter(|p| p.is_absolute());
    if let Some(p) = set(lockstep_cache) {
        return Ok(p);
    }
    if let Some(p) = absolute(xdg_cache_home) {
        return Ok(p.join("lockstep"));
    }
    absolute(home).map(|h| h.join(".cache/lockstep")).ok_or(NoCacheRoot)
}

/// The cache root of this process's environment.
pub fn from_env() -> Result<PathBuf, NoCacheRoot> {
    let var = std::env::var_os;
    resolve(var("LOCKSTEP_CACHE"), var("XDG_CACHE_HOME"), var("HOME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lc: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> Result<PathBuf, NoCacheRoot> {
        resolve(lc.map(Into::into), xdg.map(Into::into), home.map(Into::into))
    }

    #[test]
    fn lockstep_cache_then_xdg_then_home() {
        let p = |s: &str| Ok(PathBuf::from(s));
        assert_eq!(r(Some("/c"), Some("/x"), Some("/h")), p("/c"));
        assert_eq!(r(None, Some("/x"), Some("/h")), p("/x/lockstep"));
        assert_eq!(r(Some(""), Some(""), Some("/h")), p("/h/.cache/lockstep"));
        assert_eq!(r(None, Some("rel"), Some("/h")), p("/h/.cache/lockstep"));
    }

    #[test]
    fn no_home_is_an_error_never_a_temporary_path() {
        assert_eq!(r(None, None, None), Err(NoCacheRoot));
        assert_eq!(r(None, Some(""), Some("")), Err(NoCacheRoot));
        assert_eq!(r(None, None, Some("relative")), Err(NoCacheRoot));
        assert!(NoCacheRoot.to_string().contains("set LOCKSTEP_CACHE"));
    }

    /// `scripts/cache-dir.sh` (sourced by the shell scripts) picks the same directory.
    #[test]
    fn the_scripts_follow_the_same_rule() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cache-dir.sh");
        let cases: [[Option<&str>; 3]; 5] = [
            [Some("/c"), Some("/x"), Some("/h")],
            [None, Some("/x"), Some("/h")],
            [Some(""), Some("rel"), Some("/h")],
            [None, None, Some("relative")],
            [None, None, None],
        ];
        for [lc, xdg, home] in cases {
            let mut c = std::process::Command::new("bash");
            c.args(["-c", &format!("source {script}; echo \"$CACHE\"")])
                .env_clear()
                .env("PATH", "/usr/bin:/bin");
            for (k, v) in [("LOCKSTEP_CACHE", lc), ("XDG_CACHE_HOME", xdg), ("HOME", home)] {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            let o = c.output().unwrap();
            match r(lc, xdg, home) {
                Ok(p) => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), p.to_str().unwrap()),
                Err(_) => {
                    assert_eq!(o.status.code(), Some(2), "{lc:?} {xdg:?} {home:?}");
                    assert!(String::from_utf8_lossy(&o.stderr).contains("set LOCKSTEP_CACHE"));
                }
            }
        }
    }
}
