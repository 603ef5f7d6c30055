//! Where a reshard is (`reshard.json`, saved after each step), the lock that allows one
//! reshard at a time, the process's CPU priority, and the server's way out of a
//! switch that died half way.

use super::shards;
use super::{HOLD_ENV, LOCK_FILE, ReshardError, STATE_FILE, io};
use crate::dataset::Manifest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Sets every thread of this process to nice value `nice`. Linux keeps a nice value
/// per thread, and a thread started later inherits its starter's, so the runtime's
/// threads, which exist already, are each set. Raising the priority again needs
/// root (or `RLIMIT_NICE`); that failure is returned.
pub fn set_priority(nice: i32) -> std::io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let name = entry?.file_name();
        let Ok(tid) = name.to_string_lossy().parse::<libc::id_t>() else { continue };
        // SAFETY: setpriority takes plain integers and touches no memory of ours.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a reshard is, saved after each step so that the next run resumes there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct State {
    /// The generation the new layout will have, and its directory's suffix.
    pub layout: u32,
    pub from: u32,
    pub to: u32,
    pub phase: Phase,
    /// Per old shard: the event number copied up to.
    pub cursors: Vec<i64>,
    /// Per old shard: the newest audit record time copied.
    pub audit_since: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Phase {
    Copy,
    CatchUp,
    /// Fences may be on the old shards and the manifest not yet moved.
    Switch,
}

impl State {
    pub(super) fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub(super) fn load(dir: &Path) -> Result<Option<Self>, ReshardError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ReshardError::Io { path, cause: std::io::Error::other(e) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(cause) => Err(ReshardError::Io { path, cause }),
        }
    }

    /// Temp file, fsync, rename: a crash leaves the old state or the new one.
    pub(super) fn save(&self, dir: &Path) -> Result<(), ReshardError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ReshardError::Io { path: path.clone(), cause: std::io::Error::other(e) })?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    pub(super) fn remove(dir: &Path) -> Result<(), ReshardError> {
        let path = Self::path(dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ReshardError::Io { path, cause: e }),
            _ => Ok(()),
        }
    }
}

/// The test hook: stops the run at `phase` until it is killed.
pub(super) fn hold(phase: &str) {
    if std::env::var(HOLD_ENV).is_ok_and(|h| h == phase) {
        eprintln!("reshard: holding in phase {phase} ({HOLD_ENV})");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Takes the dataset's reshard lock (released when the file is dropped, or when the
/// process dies).
pub(super) fn lock(dir: &Path) -> Result<std::fs::File, ReshardError> {
    let path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(ReshardError::Locked(path)),
        Err(std::fs::TryLockError::Error(cause)) => Err(ReshardError::Io { path, cause }),
    }
}

/// For a server whose write met a fence while the manifest stayed where it was: if no
/// reshard holds the dataset, its switch was interrupted (killed between fencing the
/// old shards and moving the manifest), so the old layout is still the dataset and
/// takes writes again. The fences are removed under the reshard lock, so a reshard
/// that has just started cannot have its own fences removed; the next reshard resumes
/// from its catch-up.
pub async fn release_interrupted_switch(dir: &Path, password: Option<&str>) -> Result<Release, ReshardError> {
    let _lock = match lock(dir) {
        Ok(lock) => lock,
        Err(ReshardError::Locked(_)) => return Ok(Release::ReshardRunning),
        Err(e) => return Err(e),
    };
    let manifest = Manifest::load(dir)?;
    Ok(match shards::unfence(dir, &manifest, password).await? {
        0 => Release::NoFence,
        shards => Release::Removed(shards),
    })
}

/// What [`release_interrupted_switch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A reshard holds the dataset (in its switch, say): wait for it.
    ReshardRunning,
    /// No fence stands on the current layout: the write that met one started on a
    /// layout since replaced.
    NoFence,
    /// Fences an interrupted switch left, removed from this many shards.
    Removed(usize),
}
