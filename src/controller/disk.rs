//! The state disk: whether there is room for new work, the reserve file that lets running jobs'
//! changes commit when the disk fills, and commits that wait for space instead of stopping the
//! controller.
//!
//! A full disk must not take the cluster down: new submissions are refused (exit code 119) while
//! queries and running jobs carry on, and everything resumes by itself once space returns.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::LimitsConfig;
use super::state::Dirty;
use super::store::{Store, StoreError};

/// The reserve file's name in the state directory.
const RESERVE: &str = "reserve";

/// How often free space is looked at to put the reserve back.
const RESERVE_CHECK: Duration = Duration::from_secs(5);

/// Why the controller takes no new work now (the message a refused submitter reads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error(
        "the controller cannot take new work now: its state directory {dir} has {free} free, below min_free_space ({min}); running jobs and queries carry on. Try again once an administrator has freed space there"
    )]
    LowSpace { dir: String, free: String, min: String },
    #[error(
        "the controller cannot take new work now: it cannot save its state ({reason}); running jobs and queries carry on. Try again later; an administrator should look at the state directory {dir}"
    )]
    Uncommitted { dir: String, reason: String },
}

/// Whether a submission of `incoming` bytes fits: free space must stay at or above `min_free`
/// after it (pure).
pub fn has_room(free: u64, min_free: u64, incoming: u64) -> bool {
    free >= min_free.saturating_add(incoming)
}

/// Bytes, for people: 512 B, 3.0 KiB, 64.0 MiB.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes an unprivileged process may still write in `dir`'s file system.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// Whether a commit failed for lack of space.
fn out_of_space(e: &StoreError) -> bool {
    match e {
        StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE
        }
        _ => false,
    }
}

/// Merges a newer batch of changes into one that could not be committed yet: rows are whole
/// snapshots, so the newer row wins; events keep their order.
pub fn merge(older: &mut Dirty, newer: Dirty) {
    for job in newer.jobs {
        match older.jobs.iter_mut().find(|j| j.id == job.id) {
            Some(slot) => *slot = job,
            None => older.jobs.push(job),
        }
    }
    for node in newer.nodes {
        match older.nodes.iter_mut().find(|n| n.name == node.name) {
            Some(slot) => *slot = node,
            None => older.nodes.push(node),
        }
    }
    older.events.extend(newer.events);
    older.next_id = older.next_id.max(newer.next_id);
    // Usage is a whole snapshot too.
    if !newer.usage.is_empty() {
        older.usage = newer.usage;
    }
}

/// The state disk as the owner task sees it.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    min_free: u64,
    reserve_size: u64,
    /// Changes that could not be committed yet, and why.
    pending: Option<(Dirty, String)>,
    last_reserve_check: Option<Instant>,
}

impl Disk {
    /// The state directory `dir`; puts the reserve file in place if there is room for it.
    pub fn new(dir: &Path, limits: &LimitsConfig) -> Disk {
        let mut d = Disk {
            dir: dir.to_owned(),
            min_free: limits.min_free_space,
            reserve_size: limits.state_reserve,
            pending: None,
            last_reserve_check: None,
        };
        d.keep_reserve();
        d
    }

    /// Why no change can be taken now, if a commit is waiting for space.
    pub fn holding(&self) -> Result<(), NoRoom> {
        match &self.pending {
            Some((_, reason)) => Err(NoRoom::Uncommitted {
                dir: self.dir.display().to_string(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether a submission of `incoming` bytes may be taken now.
    pub fn admit(&self, incoming: u64) -> Result<(), NoRoom> {
        self.holding()?;
        let dir = self.dir.display().to_string();
        match free_space(&self.dir) {
            Ok(free) if !has_room(free, self.min_free, incoming) => {
                Err(NoRoom::LowSpace { dir, free: human(free), min: human(self.min_free) })
            }
            // A file system that cannot say how full it is: let SQLite find out.
            _ => Ok(()),
        }
    }

    /// Commits `dirty` (after anything still waiting). When the disk is full, the reserve is
    /// given up and the commit tried again; if it still fails, the changes wait for the next
    /// call (the owner calls on every pass, so at least every tick). Returns whether everything
    /// is on disk now.
    pub fn commit(&mut self, store: &mut Store, dirty: Dirty) -> bool {
        let was_stuck = self.pending.is_some();
        let batch = match self.pending.take() {
            Some((mut older, _)) => {
                merge(&mut older, dirty);
                older
            }
            None => dirty,
        };
        let mut result = store.write(&batch);
        if let Err(e) = &result
            && (out_of_space(e) || self.below_minimum())
            && self.release_reserve()
        {
            result = store.write(&batch);
        }
        match result {
            Ok(()) => {
                if was_stuck {
                    tracing::info!(dir = %self.dir.display(), "state committed again; taking new work");
                }
                true
            }
            Err(e) => {
                let reason = e.to_string();
                if !was_stuck {
                    tracing::error!(error = %reason, dir = %self.dir.display(), "cannot commit; holding the changes and their replies, retrying on every tick; new submissions are refused meanwhile");
                }
                // Kept whole: the next commit carries it with whatever comes after.
                self.pending = Some((batch, reason));
                false
            }
        }
    }

    /// On a tick: puts the reserve back once space allows (looked at every few seconds).
    pub fn tick(&mut self) {
        let due = self.last_reserve_check.is_none_or(|t| t.elapsed() >= RESERVE_CHECK);
        if due && self.pending.is_none() {
            self.keep_reserve();
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(RESERVE)
    }

    fn below_minimum(&self) -> bool {
        free_space(&self.dir).is_ok_and(|f| f < self.min_free)
    }

    /// Deletes the reserve file; whether there was one to delete.
    fn release_reserve(&self) -> bool {
        match std::fs::remove_file(self.reserve_path()) {
            Ok(()) => {
                tracing::warn!(dir = %self.dir.display(), "the state disk is full: gave up the reserve file so that running jobs' changes commit");
                true
            }
            Err(_) => false,
        }
    }

    /// Creates the reserve file (really allocated, not sparse) when it is missing and there
    /// is room for it beyond `min_free_space`.
    fn keep_reserve(&mut self) {
        self.last_reserve_check = Some(Instant::now());
        let path = self.reserve_path();
        if self.reserve_size == 0 || path.exists() {
            return;
        }
        match free_space(&self.dir) {
            Ok(free) if has_room(free, self.min_free, self.reserve_size) => {}
            _ => return,
        }
        let made = std::fs::File::create_new(&path).and_then(|f| {
            let len = i64::try_from(self.reserve_size).unwrap_or(i64::MAX);
            nix::fcntl::posix_fallocate(&f, 0, len).map_err(std::io::Error::from)?;
            f.sync_all()
        });
        match made {
            Ok(()) => tracing::debug!(path = %path.display(), "state reserve in place"),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(path = %path.display(), error = %e, "cannot create the state reserve file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_means_the_minimum_stays_free_after_the_submission() {
        assert!(has_room(100, 50, 50));
        assert!(!has_room(100, 50, 51));
        assert!(!has_room(10, 64, 0), "below the minimum, nothing is taken");
        assert!(has_room(u64::MAX, u64::MAX, 0));
        assert!(!has_room(5, u64::MAX, 1), "no overflow");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * 1024), "3.0 KiB");
        assert_eq!(human(64 << 20), "64.0 MiB");
    }

    #[test]
    fn a_commit_that_finds_the_disk_full_waits_and_goes_through_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let limits = LimitsConfig {
            max_script_size: 1,
            max_connections_per_user: 1,
            max_array_size: 1,
            max_unauthenticated: 1,
            max_unauthenticated_per_host: 1,
            auth_timeout: Duration::from_secs(1),
            min_free_space: 0,
            state_reserve: 0,
        };
        let mut disk = Disk::new(dir.path(), &limits);
        let event = |detail: String| super::super::state::Event {
            time: 1,
            job: Some(7),
            node: None,
            kind: "submit",
            detail,
        };
        store.cap_pages(Some(0));
        let first =
            Dirty { events: vec![event("a".repeat(64 << 10))], next_id: 8, ..Dirty::default() };
        assert!(!disk.commit(&mut store, first), "the database cannot grow");
        let err = disk.admit(0).expect_err("no new work while a commit waits").to_string();
        assert!(err.contains("cannot save its state"), "{err}");
        let second = Dirty { events: vec![event("b".into())], next_id: 9, ..Dirty::default() };
        assert!(!disk.commit(&mut store, second), "still full");
        store.cap_pages(None);
        assert!(disk.commit(&mut store, Dirty::default()), "space came back");
        assert!(disk.admit(0).is_ok());
        let kept: Vec<String> = store.events_of(7).unwrap().into_iter().map(|e| e.2).collect();
        assert_eq!(kept.len(), 2, "both batches, in order");
        assert!(kept[0].starts_with('a') && kept[1] == "b");
        assert_eq!(store.load().unwrap().2, 9);
    }

    #[test]
    fn the_reserve_is_made_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LimitsConfig {
            max_script_size: 1,
            max_connections_per_user: 1,
            max_array_size: 1,
            max_unauthenticated: 1,
            max_unauthenticated_per_host: 1,
            auth_timeout: Duration::from_secs(1),
            min_free_space: 0,
            state_reserve: 4096,
        };
        let d = Disk::new(dir.path(), &limits);
        let meta = std::fs::metadata(dir.path().join(RESERVE)).unwrap();
        assert_eq!(meta.len(), 4096);
        assert!(d.admit(10).is_ok());
        assert!(d.release_reserve());
        assert!(!d.release_reserve(), "only once");
        let mut d = d;
        d.keep_reserve();
        assert!(dir.path().join(RESERVE).exists());
        // A minimum no disk can meet refuses submissions, naming the setting.
        let d = Disk { min_free: u64::MAX, ..d };
        let err = d.admit(1).expect_err("no room").to_string();
        assert!(err.contains("min_free_space") && err.contains("cannot take new work"), "{err}");
    }
}
