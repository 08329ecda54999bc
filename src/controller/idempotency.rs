//! Exactly-once submission: each submission may carry a key its client made up; a second
//! submission with a key the same user already used gets the first job's id instead of a new
//! job. A client whose connection broke before the answer can then safely send it again.

use std::collections::HashMap;

use crate::protocol::{JobId, Submission};

/// The longest key accepted.
pub const MAX_KEY: usize = 128;

/// Checks a key's form: 1 to [`MAX_KEY`] characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "idempotency key '{}': use 1 to {MAX_KEY} letters, digits, '-', '_', '.' or ':'",
            key.chars().take(MAX_KEY).collect::<String>()
        ))
    }
}

/// Every stored job's key, per user.
#[derive(Debug, Default)]
pub struct SubmissionKeys {
    jobs: HashMap<(u32, String), JobId>,
}

impl SubmissionKeys {
    /// The keys of stored jobs (after a restart).
    pub fn from_jobs<'a>(jobs: impl IntoIterator<Item = (u32, JobId, &'a Submission)>) -> Self {
        let mut keys = SubmissionKeys::default();
        for (uid, id, sub) in jobs {
            keys.record(uid, id, sub);
        }
        keys
    }

    /// The job `uid` already submitted with this submission's key, if any.
    pub fn find(&self, uid: u32, sub: &Submission) -> Option<JobId> {
        let key = sub.idempotency_key.as_ref()?;
        self.jobs.get(&(uid, key.clone())).copied()
    }

    /// Remembers a new job's key.
    pub fn record(&mut self, uid: u32, id: JobId, sub: &Submission) {
        if let Some(key) = &sub.idempotency_key {
            self.jobs.entry((uid, key.clone())).or_insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_user() {
        let mut sub: Submission =
            serde_json::from_str(r#"{"kind":"batch","name":"x","shape":{"min_nodes":null,"max_nodes":null,"ntasks":null,"ntasks_per_node":null,"cpus_per_task":null,"mem_per_node":null,"mem_per_cpu":null,"gpus_per_task":null,"exclusive":false,"partition":null,"time_limit_secs":null,"nodelist":[],"exclude":[]},"cwd":"/","env":[],"script":"true","command":"","output":null,"error":null,"requeue":true,"hold":false}"#)
                .unwrap();
        let mut keys = SubmissionKeys::default();
        assert_eq!(keys.find(1000, &sub), None, "no key, never a match");
        keys.record(1000, 7, &sub);
        assert_eq!(keys.find(1000, &sub), None);
        sub.idempotency_key = Some("k1".into());
        keys.record(1000, 8, &sub);
        assert_eq!(keys.find(1000, &sub), Some(8));
        assert_eq!(keys.find(1001, &sub), None, "another user's key space");
        keys.record(1000, 9, &sub);
        assert_eq!(keys.find(1000, &sub), Some(8), "the first job keeps the key");
        let restored = SubmissionKeys::from_jobs([(1000, 8, &sub)]);
        assert_eq!(restored.find(1000, &sub), Some(8));
    }

    #[test]
    fn key_forms() {
        assert!(check_key("4f2a-9c:1.x_y").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("has space").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY + 1)).is_err());
    }
}
