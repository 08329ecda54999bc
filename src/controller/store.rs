//! The controller's SQLite database (WAL): nodes, jobs, allocations, attempts, steps, events,
//! and fair-share usage (decayed usage per user-in-account, as of a time).
//! Each batch of changes is one transaction, committed before any reply leaves.

use std::path::Path;

use gangway_scheduler::{Timestamp, UsageRecord};
use rusqlite::{Connection, params};

use super::state::{Dirty, Job, JobState, NodeRecord};
use crate::protocol::JobId;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database: a stored row does not parse: {0}")]
    Row(String),
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, state TEXT NOT NULL, uid INTEGER NOT NULL, attempt INTEGER NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS allocations (
    job INTEGER NOT NULL, attempt INTEGER NOT NULL, node TEXT NOT NULL, cpus TEXT NOT NULL,
    memory INTEGER NOT NULL, gpus TEXT NOT NULL, PRIMARY KEY (job, attempt, node));
CREATE TABLE IF NOT EXISTS attempts (
    job INTEGER NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL, start INTEGER,
    end INTEGER, nodes TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (job, attempt));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, job INTEGER, node TEXT,
    kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events(job);
CREATE TABLE IF NOT EXISTS usage (
    account TEXT NOT NULL, user TEXT NOT NULL, value REAL NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (account, user));
";

impl Store {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("gangway.db");
        let db = Connection::open(&path)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed submission survives a power cut, not only a crash.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db })
    }

    /// Everything a restarting controller needs: nodes, jobs and the next job id.
    pub fn load(&self) -> Result<(Vec<NodeRecord>, Vec<Job>, JobId), StoreError> {
        let mut nodes = Vec::new();
        let mut q = self.db.prepare("SELECT data FROM nodes")?;
        for row in q.query_map([], |r| r.get::<_, String>(0))? {
            nodes.push(serde_json::from_str(&row?).map_err(|e| StoreError::Row(e.to_string()))?);
        }
        let mut jobs = Vec::new();
        let mut q = self.db.prepare("SELECT data FROM jobs ORDER BY id")?;
        for row in q.query_map([], |r| r.get::<_, String>(0))? {
            jobs.push(serde_json::from_str(&row?).map_err(|e| StoreError::Row(e.to_string()))?);
        }
        let next: Option<String> = self
            .db
            .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |r| r.get(0))
            .ok();
        Ok((nodes, jobs, next.and_then(|n| n.parse().ok()).unwrap_or(1)))
    }

    /// Writes one batch of changes in one transaction.
    pub fn write(&mut self, dirty: &Dirty) -> Result<(), StoreError> {
        if dirty.jobs.is_empty()
            && dirty.nodes.is_empty()
            && dirty.events.is_empty()
            && dirty.usage.is_empty()
        {
            return Ok(());
        }
        let tx = self.db.transaction()?;
        {
            let mut node =
                tx.prepare_cached("INSERT OR REPLACE INTO nodes (name, data) VALUES (?1, ?2)")?;
            for n in &dirty.nodes {
                let data = serde_json::to_string(n).map_err(|e| StoreError::Row(e.to_string()))?;
                node.execute(params![n.name, data])?;
            }
            let mut job = tx.prepare_cached(
                "INSERT OR REPLACE INTO jobs (id, state, uid, attempt, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut alloc = tx.prepare_cached(
                "INSERT OR IGNORE INTO allocations (job, attempt, node, cpus, memory, gpus) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut attempt = tx.prepare_cached(
                "INSERT OR REPLACE INTO attempts (job, attempt, state, start, end, nodes, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for j in &dirty.jobs {
                let data = serde_json::to_string(j).map_err(|e| StoreError::Row(e.to_string()))?;
                job.execute(params![j.id as i64, j.state.name(), j.uid, j.attempt, data])?;
                for g in &j.granted {
                    alloc.execute(params![
                        j.id as i64,
                        j.attempt,
                        g.node,
                        g.cpus.to_string(),
                        g.memory as i64,
                        g.gpus.to_string()
                    ])?;
                }
                if j.state != JobState::Pending || j.attempt > 1 {
                    let nodes: Vec<&str> = j.granted.iter().map(|g| g.node.as_str()).collect();
                    attempt.execute(params![
                        j.id as i64,
                        j.attempt,
                        j.state.name(),
                        j.start_time.map(|t| t as i64),
                        j.end_time.map(|t| t as i64),
                        nodes.join(","),
                        j.reason
                    ])?;
                }
            }
            let mut event = tx.prepare_cached(
                "INSERT INTO events (time, job, node, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in &dirty.events {
                event.execute(params![
                    e.time as i64,
                    e.job.map(|j| j as i64),
                    e.node,
                    e.kind,
                    e.detail
                ])?;
            }
            let mut usage = tx.prepare_cached(
                "INSERT OR REPLACE INTO usage (account, user, value, at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for u in &dirty.usage {
                usage.execute(params![u.account, u.user, u.value, u.at.as_millis() as i64])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?1)",
                params![dirty.next_id.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Caps the database's size in pages (`PRAGMA max_page_count`), so that tests can make
    /// commits fail as on a full disk (SQLITE_FULL).
    #[cfg(test)]
    pub fn cap_pages(&self, pages: Option<u64>) {
        let current: i64 =
            self.db.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap_or_default();
        let cap = pages.map_or(1 << 30, |p| current as u64 + p);
        let _ = self.db.pragma_update(None, "max_page_count", cap as i64);
    }

    /// Fair-share usage as last stored: each user-in-account's decayed usage and when.
    pub fn load_usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
        let mut q = self.db.prepare("SELECT account, user, value, at FROM usage")?;
        let rows = q.query_map([], |r| {
            Ok(UsageRecord {
                account: r.get(0)?,
                user: r.get(1)?,
                value: r.get(2)?,
                at: Timestamp(r.get::<_, i64>(3)?.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A job's events, oldest first (`show job`).
    pub fn events_of(&self, job: JobId) -> Result<Vec<(u64, String, String)>, StoreError> {
        let mut q = self
            .db
            .prepare_cached("SELECT time, kind, detail FROM events WHERE job = ?1 ORDER BY seq")?;
        let rows = q.query_map(params![job as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
