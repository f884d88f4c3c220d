//! Restored guests: the first boot of a (kernel, initramfs = agent + module(s), QEMU command
//! line, QEMU) combination is saved, booted, module loaded and idle, with QEMU migration to a
//! file under `<cache>/snapshots/`, keyed by a content hash; later guests of the same key are
//! restored from that file (`-incoming`) instead of booting, and the agent greets again when the
//! host pings it. A snapshot that fails to restore is deleted and the guest is booted, with a
//! warning.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use lockstep_core::proto::HostMsg;
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::qemu::shell_quote;

use super::{GuestConfig, GuestError, GuestOutcome, GuestRun, Hello, Stage};

/// Bumped when the snapshot layout or what the agent expects after a restore changes.
const FORMAT: &str = "lockstep-snapshot-1";

/// How long a restored guest may take to answer the ping (a boot is the fallback).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Snapshots kept in a store: saving one more deletes the least recently used beyond this.
const KEEP: usize = 8;

/// How long saving a snapshot may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The content hash naming a snapshot: everything the saved guest's state depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotKey(pub String);

impl SnapshotKey {
    /// The key of `cfg`: kernel and initramfs contents (the initramfs holds the agent binary and
    /// the modules), accelerator, memory, kernel command line and the QEMU binary's version.
    pub fn for_config(cfg: &GuestConfig) -> std::io::Result<SnapshotKey> {
        let version = qemu_version(&cfg.qemu)?;
        let mut h = Sha256::new();
        for part in key_fields(cfg, &version) {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for file in [&cfg.kernel, &cfg.initramfs] {
            h.update(file_digest(file)?);
        }
        Ok(SnapshotKey(hex(&h.finalize())))
    }
}

/// The text fields of a key (pure; the file contents are hashed beside them).
fn key_fields(cfg: &GuestConfig, qemu_version: &str) -> Vec<String> {
    vec![
        FORMAT.to_string(),
        // Redundant with the initramfs's contents (the agent binary) but explicit.
        format!("protocol {}", lockstep_core::proto::PROTOCOL_VERSION),
        qemu_version.trim().to_string(),
        format!("{:?}", cfg.accel),
        cfg.memory_mib.to_string(),
        cfg.extra_cmdline.join(" "),
    ]
}

/// The SHA-256 of a file's contents, remembered per file identity in this process and across
/// runs ([`crate::digest`]: the kernel image and the cached initramfs are the same files run
/// after run, and a kernel's guests share one initramfs).
fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    crate::digest::file_sha256(path)
}

/// `qemu --version`'s first line, asked once per QEMU binary and process (every guest of a run
/// computes its snapshot key).
fn qemu_version(qemu: &str) -> std::io::Result<String> {
    static MEMO: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(qemu) {
        return Ok(v.clone());
    }
    let out = std::process::Command::new(qemu).arg("--version").output()?;
    let v = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    memo.lock().unwrap_or_else(|e| e.into_inner()).insert(qemu.to_string(), v.clone());
    Ok(v)
}

/// The snapshot files of one cache directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Snapshots in `dir` (created when the first one is saved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SnapshotStore { dir: dir.into() }
    }

    /// Where the snapshot of `key` lives.
    pub fn path(&self, key: &SnapshotKey) -> PathBuf {
        self.dir.join(format!("{}.migration", key.0))
    }

    /// The snapshot of `key`, if one was saved.
    pub fn find(&self, key: &SnapshotKey) -> Option<PathBuf> {
        let p = self.path(key);
        p.is_file().then_some(p)
    }

    /// Marks the snapshot of `key` as just used (the store keeps the [`KEEP`] most recent).
    pub fn touch(&self, key: &SnapshotKey) {
        if let Ok(f) = std::fs::File::options().append(true).open(self.path(key)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Deletes all but the [`KEEP`] most recently used snapshots.
    pub fn prune(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(SystemTime, PathBuf)> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "migration"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (_, p) in files.into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Deletes the snapshot of `key` (a stale or failing one).
    pub fn discard(&self, key: &SnapshotKey) {
        let _ = std::fs::remove_file(self.path(key));
    }
}

/// A started guest and its greeting.
pub struct Started {
    pub guest: GuestRun,
    /// The agent's `Hello` (after a restore: its answer to the ping), or how the guest ended.
    pub hello: Result<Hello, GuestOutcome>,
}

/// Starts a guest for `cfg` and waits for its greeting. With `cfg.snapshot_dir` set, the guest
/// is restored from the snapshot of its key when there is one; otherwise it boots and, once the
/// agent said `Hello`, is saved as that snapshot. Without it, a plain boot.
pub fn start_guest(cfg: &GuestConfig) -> Result<Started, GuestError> {
    let Some(dir) = &cfg.snapshot_dir else {
        return boot(cfg);
    };
    let store = SnapshotStore::new(dir);
    let key = match SnapshotKey::for_config(cfg) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("guest snapshot: cannot compute its key ({e}); booting without snapshots");
            return boot(cfg);
        }
    };
    if let Some(file) = store.find(&key) {
        match restore(cfg, &file) {
            Ok(s) => {
                tracing::info!("guest restored from snapshot {}", file.display());
                store.touch(&key);
                return Ok(s);
            }
            Err(why) => {
                tracing::warn!("guest snapshot {} did not restore ({why}): deleted; booting", file.display());
                store.discard(&key);
            }
        }
    }
    let mut c = cfg.clone();
    let qmp = qmp_socket(cfg);
    c.qmp_socket = Some(qmp.clone());
    let mut s = boot(&c)?;
    if s.hello.is_ok() {
        if let Err(e) = save(&mut s.guest, &qmp, &store, &key) {
            tracing::warn!("guest snapshot: not saved: {e}");
        }
    }
    Ok(s)
}

fn boot(cfg: &GuestConfig) -> Result<Started, GuestError> {
    let mut guest = GuestRun::start(cfg)?;
    let hello = guest.wait_hello();
    Ok(Started { guest, hello })
}

fn qmp_socket(cfg: &GuestConfig) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cfg.run_dir.join(format!("lockstep-{}-{n}.qmp", std::process::id()))
}

/// Restores `file`, pings the agent and waits for its fresh `Hello`.
fn restore(cfg: &GuestConfig, file: &Path) -> Result<Started, String> {
    let mut c = cfg.clone();
    let qmp = qmp_socket(cfg);
    c.qmp_socket = Some(qmp.clone());
    c.incoming = Some(file.to_path_buf());
    c.timeouts.boot = c.timeouts.boot.min(RESTORE_TIMEOUT);
    let mut guest = GuestRun::start(&c).map_err(|e| e.to_string())?;
    resume_after_incoming(&qmp, Instant::now() + RESTORE_TIMEOUT)?;
    guest.send(&HostMsg::Ping, Stage::Boot).map_err(|o| format!("{o:?}"))?;
    match guest.wait_hello() {
        Ok(mut h) => {
            h.restored = true;
            Ok(Started { guest, hello: Ok(h) })
        }
        Err(o) => Err(outcome_text(&o)),
    }
}

/// Waits for QEMU to finish loading the snapshot and starts the guest (it was saved paused, and
/// a restored guest keeps the run state it was saved in).
fn resume_after_incoming(qmp: &Path, deadline: Instant) -> Result<(), String> {
    let mut m = loop {
        match Qmp::connect(qmp) {
            Ok(m) => break m,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    loop {
        let st = m.execute("query-status", serde_json::json!({}))?;
        match st.get("status").and_then(|s| s.as_str()).unwrap_or("") {
            "inmigrate" if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            "paused" | "postmigrate" | "prelaunch" => break,
            "running" => return Ok(()),
            other => return Err(format!("after loading the snapshot QEMU is {other:?}")),
        }
    }
    m.execute("cont", serde_json::json!({}))?;
    Ok(())
}

fn outcome_text(o: &GuestOutcome) -> String {
    match o {
        GuestOutcome::BootFailure { excerpt }
        | GuestOutcome::Panic { excerpt }
        | GuestOutcome::KvmFailure { excerpt } => {
            let tail: Vec<&str> = excerpt.lines().rev().take(3).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        }
        other => format!("{other:?}"),
    }
}

/// Pauses the guest, migrates it to a temporary file renamed to the key's path, and resumes it.
fn save(guest: &mut GuestRun, qmp: &Path, store: &SnapshotStore, key: &SnapshotKey) -> Result<(), String> {
    let t = Instant::now();
    std::fs::create_dir_all(&store.dir).map_err(|e| format!("creating {}: {e}", store.dir.display()))?;
    let dest = store.path(key);
    // Unique per guest: the guests of one process (`run --jobs`) may save the same key at once.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dest.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let mut m = Qmp::connect(qmp)?;
    m.execute("stop", serde_json::json!({}))?;
    let result = (|| {
        m.execute("migrate-set-parameters", serde_json::json!({ "max-bandwidth": 8u64 << 30 }))?;
        let uri = format!("exec:cat > {}", shell_quote(&tmp.display().to_string()));
        m.execute("migrate", serde_json::json!({ "uri": uri }))?;
        let end = Instant::now() + SAVE_TIMEOUT;
        loop {
            let r = m.execute("query-migrate", serde_json::json!({}))?;
            match r.get("status").and_then(|s| s.as_str()).unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => return Err(format!("migration {r}")),
                _ if Instant::now() > end => return Err("migration timed out".into()),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        std::fs::rename(&tmp, &dest).map_err(|e| format!("renaming {}: {e}", tmp.display()))
    })();
    let resumed = m.execute("cont", serde_json::json!({}));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    resumed?;
    store.prune();
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        "guest snapshot saved: {} ({} MiB, {:.1}s)",
        dest.display(),
        size >> 20,
        t.elapsed().as_secs_f64()
    );
    let _ = guest;
    Ok(())
}

/// A QMP connection (the QEMU machine protocol: JSON lines over a unix socket).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    fn connect(path: &Path) -> Result<Qmp, String> {
        let s = UnixStream::connect(path).map_err(|e| format!("QMP {}: {e}", path.display()))?;
        s.set_read_timeout(Some(SAVE_TIMEOUT)).map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        let mut q = Qmp { reader: BufReader::new(s), writer };
        q.read_reply()?;
        q.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(q)
    }

    /// Runs one command; its `return` value.
    fn execute(&mut self, cmd: &str, args: serde_json::Value) -> Result<serde_json::Value, String> {
        let line = serde_json::json!({ "execute": cmd, "arguments": args }).to_string();
        self.writer.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("QMP {cmd}: {e}"))?;
        let r = self.read_reply()?;
        if let Some(e) = r.get("error") {
            return Err(format!("QMP {cmd}: {e}"));
        }
        Ok(r.get("return").cloned().unwrap_or_default())
    }

    /// The next line that is not an asynchronous event.
    fn read_reply(&mut self) -> Result<serde_json::Value, String> {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).map_err(|e| format!("QMP: {e}"))?;
            if n == 0 {
                return Err("QMP: connection closed".into());
            }
            let v: serde_json::Value =
                serde_json::from_str(line.trim()).map_err(|e| format!("QMP: {e}: {line}"))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_follow_what_the_guest_depends_on() {
        let a = GuestConfig::new("/k", "/i");
        let mut b = a.clone();
        b.run_dir = "/elsewhere".into();
        b.console_log = Some("/c.log".into());
        assert_eq!(key_fields(&a, "QEMU 7.2"), key_fields(&b, "QEMU 7.2"), "sockets and logs are not state");
        b.memory_mib = 1024;
        assert_ne!(key_fields(&a, "QEMU 7.2"), key_fields(&b, "QEMU 7.2"));
        let mut c = a.clone();
        c.extra_cmdline.push("nokaslr".into());
        assert_ne!(key_fields(&a, "QEMU 7.2"), key_fields(&c, "QEMU 7.2"));
        assert_ne!(key_fields(&a, "QEMU 7.2"), key_fields(&a, "QEMU 8.2"));
    }
}
