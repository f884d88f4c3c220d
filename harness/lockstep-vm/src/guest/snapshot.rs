//! Restored guests: the first boot of a (kernel, initramfs = agent + module(s), QEMU command
//! line, QEMU) combination is saved, booted, module loaded and idle, under `<cache>/snapshots/`,
//! keyed by a content hash; later guests of the same key are restored from it instead of booting,
//! and the agent greets again when the host pings it. A snapshot that fails to restore is deleted
//! and the guest is booted, with a warning.
//!
//! A snapshot is a directory of two files: `ram`, the guest's RAM image (sparse), and `devices`,
//! QEMU's migration stream of everything else (CPU and device state, firmware blobs: well under a
//! MiB). The booting guest that is saved keeps its RAM in that file (`memory-backend-file`,
//! `share=on`) and migrates with `x-ignore-shared`, which leaves the RAM out of the stream; a
//! restored guest maps the file privately (`share=off`: copy on write, the file is only read),
//! so a restore loads a few hundred KiB and the guest's pages come in from the page cache as it
//! touches them, instead of QEMU copying the whole ~130 MiB image in first (docs/speed.md,
//! session 15).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use lockstep_core::proto::HostMsg;
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::qemu::{shell_quote, RamFile};

use super::{GuestConfig, GuestError, GuestOutcome, GuestRun, Hello, Stage};

/// Bumped when the snapshot layout or what the agent expects after a restore changes.
const FORMAT: &str = "lockstep-snapshot-2";

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
    /// the modules), accelerator, memory, kernel command line and the QEMU binary's contents.
    pub fn for_config(cfg: &GuestConfig) -> std::io::Result<SnapshotKey> {
        let qemu = qemu_identity(&cfg.qemu)?;
        let mut h = Sha256::new();
        for part in key_fields(cfg, &qemu) {
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
fn key_fields(cfg: &GuestConfig, qemu: &str) -> Vec<String> {
    let mut fields = vec![
        FORMAT.to_string(),
        // Redundant with the initramfs's contents (the agent binary) but explicit.
        format!("protocol {}", lockstep_core::proto::PROTOCOL_VERSION),
        qemu.to_string(),
        format!("{:?}", cfg.accel),
        // The guest kernel patched its code for the CPU it booted on (`alternatives`).
        format!("cpu {}", cfg.accel.cpu_model()),
        cfg.memory_mib.to_string(),
        cfg.extra_cmdline.join(" "),
    ];
    // Only when not one: the keys of one-vCPU guests stay those saved before the field.
    if cfg.vcpus != 1 {
        fields.push(format!("vcpus {}", cfg.vcpus));
    }
    fields
}

/// The SHA-256 of a file's contents, remembered per file identity in this process and across
/// runs ([`crate::digest`]: the kernel image and the cached initramfs are the same files run
/// after run, and a kernel's guests share one initramfs).
fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    crate::digest::file_sha256(path)
}

/// The QEMU binary's identity for the key: the SHA-256 of its contents, found on `PATH` as a
/// command would be ([`crate::digest`] remembers it per file identity, so this is a `stat` after
/// the first run; `qemu --version`, asked before, cost a start of QEMU - ~70 shared libraries -
/// before every run's first guest).
fn qemu_identity(qemu: &str) -> std::io::Result<String> {
    let path = crate::qemu::find_binary(qemu).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{qemu} not found on PATH"))
    })?;
    Ok(format!("qemu sha256 {}", hex(&file_digest(&path)?)))
}

/// The snapshots of one cache directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// One saved snapshot: a directory holding `ram` and `devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub dir: PathBuf,
}

impl Snapshot {
    /// The guest RAM image (sparse; mapped copy-on-write by restored guests).
    pub fn ram(&self) -> PathBuf {
        self.dir.join("ram")
    }

    /// QEMU's migration stream without the RAM.
    pub fn devices(&self) -> PathBuf {
        self.dir.join("devices")
    }

    fn is_complete(&self) -> bool {
        self.ram().is_file() && self.devices().is_file()
    }
}

impl SnapshotStore {
    /// Snapshots in `dir` (created when the first one is saved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SnapshotStore { dir: dir.into() }
    }

    /// Where the snapshot of `key` lives.
    pub fn path(&self, key: &SnapshotKey) -> PathBuf {
        self.dir.join(&key.0)
    }

    /// The snapshot of `key`, if one was saved.
    pub fn find(&self, key: &SnapshotKey) -> Option<Snapshot> {
        let s = Snapshot { dir: self.path(key) };
        s.is_complete().then_some(s)
    }

    /// Marks the snapshot of `key` as just used (the store keeps the [`KEEP`] most recent).
    pub fn touch(&self, key: &SnapshotKey) {
        let devices = Snapshot { dir: self.path(key) }.devices();
        if let Ok(f) = std::fs::File::options().append(true).open(devices) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Deletes all but the [`KEEP`] most recently used snapshots, snapshots of the earlier
    /// one-file layout (`<key>.migration`), and saves left unfinished over an hour ago.
    pub fn prune(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
        for p in dir.flatten().map(|e| e.path()) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.ends_with(".migration") {
                let _ = std::fs::remove_file(&p);
            } else if name.contains(".tmp-") {
                if std::fs::metadata(&p).and_then(|m| m.modified()).is_ok_and(|m| m < hour_ago) {
                    // A directory of this layout, a file of the earlier one.
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            } else if let Ok(m) =
                std::fs::metadata(Snapshot { dir: p.clone() }.devices()).and_then(|m| m.modified())
            {
                kept.push((m, p));
            }
        }
        kept.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (_, p) in kept.into_iter().skip(KEEP) {
            let _ = std::fs::remove_dir_all(p);
        }
    }

    /// Deletes the snapshot of `key` (a stale or failing one).
    pub fn discard(&self, key: &SnapshotKey) {
        let _ = std::fs::remove_dir_all(self.path(key));
    }
}

/// A started guest and its greeting.
pub struct Started {
    pub guest: GuestRun,
    /// The agent's `Hello` (after a restore: its answer to the ping), or how the guest ended.
    pub hello: Result<Hello, GuestOutcome>,
}

/// Starts a guest for `cfg` and waits for its greeting. With `cfg.snapshot_dir` set, the guest
/// is restored from the snapshot of its key when there is one; otherwise it boots with its RAM
/// in a file, is saved as that snapshot once the agent said `Hello`, and the guest returned is
/// restored from it. Without it, a plain boot.
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
    if let Some(snap) = store.find(&key) {
        match restore(cfg, &snap) {
            Ok(s) => {
                tracing::info!("guest restored from snapshot {}", snap.dir.display());
                store.touch(&key);
                return Ok(s);
            }
            Err(why) => {
                tracing::warn!(
                    "guest snapshot {} did not restore ({why}): deleted; booting",
                    snap.dir.display()
                );
                store.discard(&key);
            }
        }
    }
    let booted = Instant::now();
    let snap = match boot_and_save(cfg, &store, &key)? {
        Saved::Yes(snap) => snap,
        Saved::No(started) => return Ok(*started),
    };
    match restore(cfg, &snap) {
        Ok(mut s) => {
            tracing::info!("guest restored from snapshot {}", snap.dir.display());
            // This start needed a boot: it counts as one, from the boot's start.
            if let Ok(h) = &mut s.hello {
                h.restored = false;
                h.boot_time = booted.elapsed();
            }
            Ok(s)
        }
        Err(why) => {
            tracing::warn!(
                "guest snapshot {} saved but did not restore ({why}): deleted; booting",
                snap.dir.display()
            );
            store.discard(&key);
            boot(cfg)
        }
    }
}

/// What [`boot_and_save`] ended with.
enum Saved {
    /// The snapshot (the booted guest is gone).
    Yes(Snapshot),
    /// No snapshot: the booted guest itself (running, or how its boot ended).
    No(Box<Started>),
}

/// Boots `cfg` with its RAM in a file of a temporary snapshot directory and, once the agent said
/// `Hello`, saves the guest there and renames the directory to the key's. A guest that did not
/// greet is returned as it is; one that could not be saved is stopped and booted again without a
/// RAM file (a warning).
fn boot_and_save(cfg: &GuestConfig, store: &SnapshotStore, key: &SnapshotKey) -> Result<Saved, GuestError> {
    let plain_boot = || boot(cfg).map(|s| Saved::No(Box::new(s)));
    // Unique per guest: the guests of one process (`run --jobs`) may save the same key at once.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = Snapshot { dir: store.path(key).with_extension(format!("tmp-{}-{n}", std::process::id())) };
    // Whatever this ends with, the temporary directory goes (once renamed, it is no longer there).
    let _cleanup = RemoveOnDrop(&tmp.dir);
    if let Err(e) = std::fs::create_dir_all(&tmp.dir) {
        tracing::warn!("guest snapshot: not saved (creating {}: {e})", tmp.dir.display());
        return plain_boot();
    }
    // The guest writes its RAM into a file there: a full file system would end QEMU with SIGBUS
    // mid-boot, which would read as the kernel's failure.
    let need = (u64::from(cfg.memory_mib) + 64) << 20;
    let free = nix::sys::statvfs::statvfs(&tmp.dir).map(|v| v.blocks_available() * v.fragment_size());
    if free.as_ref().map_or(true, |&f| f < need) {
        tracing::warn!(
            "guest snapshot: not saved ({} has {} MiB free, the guest's RAM needs up to {} MiB)",
            store.dir.display(),
            free.map_or_else(|e| e.to_string(), |f| (f >> 20).to_string()),
            need >> 20
        );
        return plain_boot();
    }
    let mut c = cfg.clone();
    let qmp = qmp_socket(cfg);
    c.qmp_socket = Some(qmp.clone());
    c.ram_file = Some(RamFile { path: tmp.ram(), shared: true });
    let started = match boot(&c) {
        Ok(s) => s,
        Err(e @ GuestError::Stopped(_)) => return Err(e),
        Err(e) => {
            // Perhaps QEMU cannot map a file there (the file system): a plain boot says.
            tracing::warn!(
                "guest snapshot: not saved (QEMU did not start with its RAM in a file: {e}); booting"
            );
            return plain_boot();
        }
    };
    if started.hello.is_err() {
        return Ok(Saved::No(Box::new(started)));
    }
    let t = Instant::now();
    if let Err(e) = save(&qmp, &tmp) {
        // The guest may be left paused, and its RAM is a file on a file system that may have just
        // filled up: it goes, and a plain boot (anonymous RAM) takes its place.
        tracing::warn!("guest snapshot: not saved: {e}; booting again without it");
        drop(started);
        return plain_boot();
    }
    // The guest is paused; its RAM file is the snapshot's from here on, so QEMU goes.
    drop(started);
    let dest = Snapshot { dir: store.path(key) };
    if let Err(e) = std::fs::rename(&tmp.dir, &dest.dir) {
        // Another guest saved this key meanwhile (a directory is not replaced): use it.
        if !dest.is_complete() {
            tracing::warn!("guest snapshot: not saved (renaming {}: {e}); booting", tmp.dir.display());
            return plain_boot();
        }
    }
    store.prune();
    tracing::info!(
        "guest snapshot saved: {} ({} MiB of RAM, {:.1}s)",
        dest.dir.display(),
        allocated_bytes(&dest.ram()) >> 20,
        t.elapsed().as_secs_f64()
    );
    Ok(Saved::Yes(dest))
}

/// Removes a directory (and what it holds) when dropped.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// The bytes a (sparse) file takes on disk.
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
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

/// Restores `snap`, pings the agent and waits for its fresh `Hello`.
fn restore(cfg: &GuestConfig, snap: &Snapshot) -> Result<Started, String> {
    let mut c = cfg.clone();
    let qmp = qmp_socket(cfg);
    c.qmp_socket = Some(qmp.clone());
    c.ram_file = Some(RamFile { path: snap.ram(), shared: false });
    c.incoming = true;
    c.timeouts.boot = c.timeouts.boot.min(RESTORE_TIMEOUT);
    let began = Instant::now();
    let mut guest = GuestRun::start(&c).map_err(|e| e.to_string())?;
    let connected = began.elapsed();
    load_and_resume(&qmp, &snap.devices(), Instant::now() + RESTORE_TIMEOUT)?;
    tracing::debug!(?connected, resumed = ?began.elapsed(), "restore: QEMU connected, devices loaded");
    guest.send(&HostMsg::Ping, Stage::Boot).map_err(|o| format!("{o:?}"))?;
    match guest.wait_hello() {
        Ok(mut h) => {
            h.restored = true;
            Ok(Started { guest, hello: Ok(h) })
        }
        Err(o) => Err(outcome_text(&o)),
    }
}

/// The migration capabilities both ends of a snapshot use: the RAM (a shared file on the saving
/// side) is left out of the stream.
fn ignore_shared_ram() -> serde_json::Value {
    serde_json::json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })
}

/// Loads the device stream `devices` into a QEMU started with `-incoming defer` and starts the
/// guest (it was saved paused, and a restored guest keeps the run state it was saved in).
fn load_and_resume(qmp: &Path, devices: &Path, deadline: Instant) -> Result<(), String> {
    let mut m = loop {
        match Qmp::connect(qmp) {
            Ok(m) => break m,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let t = Instant::now();
    m.execute("migrate-set-capabilities", ignore_shared_ram())?;
    let uri = format!("exec:cat {}", shell_quote(&devices.display().to_string()));
    m.execute("migrate-incoming", serde_json::json!({ "uri": uri }))?;
    tracing::debug!(after = ?t.elapsed(), "restore: migrate-incoming sent");
    let mut polls = 0;
    loop {
        polls += 1;
        let st = m.execute("query-status", serde_json::json!({}))?;
        match st.get("status").and_then(|s| s.as_str()).unwrap_or("") {
            "inmigrate" if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            "paused" | "postmigrate" | "prelaunch" => {
                tracing::debug!(after = ?t.elapsed(), polls, "restore: devices loaded");
                break;
            }
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

/// Pauses the guest and migrates its devices to `tmp`'s stream (its RAM is already `tmp`'s RAM
/// file); the guest stays paused.
fn save(qmp: &Path, tmp: &Snapshot) -> Result<(), String> {
    let mut m = Qmp::connect(qmp)?;
    m.execute("stop", serde_json::json!({}))?;
    m.execute("migrate-set-capabilities", ignore_shared_ram())?;
    m.execute("migrate-set-parameters", serde_json::json!({ "max-bandwidth": 8u64 << 30 }))?;
    let uri = format!("exec:cat > {}", shell_quote(&tmp.devices().display().to_string()));
    m.execute("migrate", serde_json::json!({ "uri": uri }))?;
    let end = Instant::now() + SAVE_TIMEOUT;
    loop {
        let r = m.execute("query-migrate", serde_json::json!({}))?;
        match r.get("status").and_then(|s| s.as_str()).unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => return Err(format!("migration {r}")),
            _ if Instant::now() > end => return Err("migration timed out".into()),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
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
    use crate::qemu::Accel;

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
        // vCPUs: named only when more than one, so one-vCPU keys stay those saved before.
        assert!(!key_fields(&a, "QEMU 7.2").iter().any(|f| f.contains("vcpus")));
        let mut d = a.clone();
        d.vcpus = 2;
        assert_ne!(key_fields(&a, "QEMU 7.2"), key_fields(&d, "QEMU 7.2"));
        // The CPU model the guest kernel patched itself for.
        let fields = key_fields(&a, "QEMU 7.2");
        assert!(fields.contains(&format!("cpu {}", a.accel.cpu_model())), "{fields:?}");
        let mut e = a.clone();
        e.accel = if a.accel == Accel::Tcg { Accel::Kvm } else { Accel::Tcg };
        assert_ne!(key_fields(&a, "QEMU 7.2"), key_fields(&e, "QEMU 7.2"));
    }

    fn set_mtime(p: &Path, t: SystemTime) {
        std::fs::File::options().append(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn prune_keeps_the_most_recently_used_snapshots_and_drops_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path());
        let now = SystemTime::now();
        for i in 0..KEEP + 2 {
            let s = Snapshot { dir: store.path(&SnapshotKey(format!("k{i}"))) };
            std::fs::create_dir_all(&s.dir).unwrap();
            std::fs::write(s.ram(), b"r").unwrap();
            std::fs::write(s.devices(), b"d").unwrap();
            // k0 is the oldest, k9 the newest.
            set_mtime(&s.devices(), now - Duration::from_secs(100 - i as u64));
        }
        store.touch(&SnapshotKey("k0".into()));
        std::fs::write(dir.path().join("old.migration"), b"m").unwrap();
        for (name, age) in [("k1.tmp-1-0", 7200), ("k2.tmp-1-1", 10)] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            let f = dir.path().join(name).join("ram");
            std::fs::write(&f, b"r").unwrap();
            let d = std::fs::File::open(dir.path().join(name)).unwrap();
            d.set_modified(now - Duration::from_secs(age)).unwrap();
        }
        store.prune();
        // k1 and k2 were the least recently used (k0 was just touched); the hour-old save and the
        // one-file snapshot of the earlier layout are gone, a save under way is not.
        assert_eq!(
            crate::digest::names_in(dir.path()),
            ["k0", "k2.tmp-1-1", "k3", "k4", "k5", "k6", "k7", "k8", "k9"]
        );
        assert!(store.find(&SnapshotKey("k0".into())).is_some());
        assert!(store.find(&SnapshotKey("k1".into())).is_none());
        store.discard(&SnapshotKey("k0".into()));
        assert!(!dir.path().join("k0").exists());
    }
}
