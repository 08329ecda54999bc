//! `--dependency`: what a job waits for, as Slurm spells it (`afterok:5:6`, `after:5+10`,
//! `singleton`, `afterok:5,afternotok:6` all of them, `afterok:5?afterany:6` any one of them).
//! Parsed where it enters (the commands' flags and directives) into a [`Dependency`], carried
//! typed on the wire and stored with the job; only the controller's `dependencies` module
//! decides whether it holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::job_id::JobId;

/// A job named by a dependency: a job, or one task of an array (`7_3`).
///
/// Arrays: a plain `7` naming an array means every task of it (the controller's lookup
/// answers for all of them); `7_3` names task 3 alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobRef {
    pub job: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
}

impl JobRef {
    /// A whole job (or every task of an array).
    pub fn job(job: JobId) -> JobRef {
        JobRef { job, task: None }
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            None => write!(f, "{}", self.job),
            Some(t) => write!(f, "{}_{t}", self.job),
        }
    }
}

impl FromStr for JobRef {
    type Err = String;

    fn from_str(s: &str) -> Result<JobRef, String> {
        let number =
            |t: &str| t.parse::<u64>().ok().filter(|_| t.bytes().all(|b| b.is_ascii_digit()));
        let bad = || format!("'{s}' is not a job id (a number, or ARRAY_TASK such as 7_3)");
        match s.split_once('_') {
            None => number(s).map(JobRef::job).ok_or_else(bad),
            Some((job, task)) => {
                let job = number(job).ok_or_else(bad)?;
                let task = number(task).and_then(|t| u32::try_from(t).ok()).ok_or_else(bad)?;
                Ok(JobRef { job, task: Some(task) })
            }
        }
    }
}

/// One thing a job waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Condition {
    /// `after:ID[+MIN]`: ID started (or was cancelled before it started), and `minutes` have
    /// passed since.
    After { job: JobRef, minutes: u32 },
    /// `afterok:ID`: ID ended successfully (COMPLETED, exit 0).
    AfterOk { job: JobRef },
    /// `afternotok:ID`: ID ended otherwise (failed, cancelled, timed out, node failure, OOM).
    AfterNotOk { job: JobRef },
    /// `afterany:ID`: ID ended, however.
    AfterAny { job: JobRef },
    /// `aftercorr:ID`: each task of this array after the task of ID with the same index
    /// ended successfully; a job that is not an array task waits as with `afterok`.
    AfterCorr { job: JobRef },
    /// `singleton`: no job of the same user and name runs, nor waits from an earlier submission.
    Singleton,
}

impl Condition {
    /// The job it names (`None`: singleton).
    pub fn job(&self) -> Option<JobRef> {
        match *self {
            Condition::After { job, .. }
            | Condition::AfterOk { job }
            | Condition::AfterNotOk { job }
            | Condition::AfterAny { job }
            | Condition::AfterCorr { job } => Some(job),
            Condition::Singleton => None,
        }
    }

    fn keyword(&self) -> &'static str {
        match self {
            Condition::After { .. } => "after",
            Condition::AfterOk { .. } => "afterok",
            Condition::AfterNotOk { .. } => "afternotok",
            Condition::AfterAny { .. } => "afterany",
            Condition::AfterCorr { .. } => "aftercorr",
            Condition::Singleton => "singleton",
        }
    }
}

/// A job's dependency: conditions that must all hold (`,`) or of which one suffices (`?`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// `?`: any one condition suffices (otherwise all must hold).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any: bool,
    /// Never empty in a parsed dependency.
    pub conditions: Vec<Condition>,
}

impl Dependency {
    /// The jobs it names, each once.
    pub fn jobs(&self) -> Vec<JobRef> {
        let mut jobs: Vec<JobRef> = self.conditions.iter().filter_map(Condition::job).collect();
        jobs.sort_unstable();
        jobs.dedup();
        jobs
    }

    /// Whether it has a `singleton` condition.
    pub fn singleton(&self) -> bool {
        self.conditions.contains(&Condition::Singleton)
    }
}

/// `scontrol update JobId=N Dependency=...`: a new dependency, or none (`Dependency=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyChange {
    Set(Dependency),
    Clear,
}

impl FromStr for DependencyChange {
    type Err = String;

    fn from_str(s: &str) -> Result<DependencyChange, String> {
        if s.trim().is_empty() {
            Ok(DependencyChange::Clear)
        } else {
            s.parse().map(DependencyChange::Set)
        }
    }
}

/// Slurm's text: consecutive conditions of one kind share the keyword (`afterok:5:6`).
impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if self.any { '?' } else { ',' };
        let mut previous: Option<&'static str> = None;
        for c in &self.conditions {
            let keyword = c.keyword();
            match (previous, c.job()) {
                // Merged only under `,`: `afterok:5:6` means both, never either.
                (Some(p), Some(_)) if p == keyword && !self.any => {}
                (p, _) => {
                    if p.is_some() {
                        write!(f, "{separator}")?;
                    }
                    write!(f, "{keyword}")?;
                }
            }
            previous = Some(keyword);
            if let Some(job) = c.job() {
                write!(f, ":{job}")?;
            }
            if let Condition::After { minutes: m @ 1.., .. } = c {
                write!(f, "+{m}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Dependency {
    type Err = String;

    fn from_str(s: &str) -> Result<Dependency, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty; e.g. afterok:123, afterany:123:124, singleton".into());
        }
        let (any, parts): (bool, Vec<&str>) = match (s.contains(','), s.contains('?')) {
            (true, true) => {
                return Err(format!(
                    "'{s}' mixes ',' (all must hold) and '?' (any one suffices); use one of them, as Slurm does"
                ));
            }
            (false, true) => (true, s.split('?').collect()),
            _ => (false, s.split(',').collect()),
        };
        let mut conditions = Vec::new();
        for part in parts {
            parse_part(part.trim(), &mut conditions)?;
        }
        Ok(Dependency { any, conditions })
    }
}

/// One `KIND:ID[:ID...]` or `singleton`, its conditions appended to `out`.
fn parse_part(part: &str, out: &mut Vec<Condition>) -> Result<(), String> {
    let mut words = part.split(':');
    let keyword = words.next().unwrap_or_default().to_ascii_lowercase();
    let ids: Vec<&str> = words.collect();
    if keyword == "singleton" {
        if !ids.is_empty() {
            return Err(format!("'{part}': singleton takes no job id"));
        }
        out.push(Condition::Singleton);
        return Ok(());
    }
    let make: fn(JobRef, u32) -> Condition = match keyword.as_str() {
        "after" => |job, minutes| Condition::After { job, minutes },
        "afterok" => |job, _| Condition::AfterOk { job },
        "afternotok" => |job, _| Condition::AfterNotOk { job },
        "afterany" => |job, _| Condition::AfterAny { job },
        "aftercorr" => |job, _| Condition::AfterCorr { job },
        "afterburstbuffer" => {
            return Err(format!(
                "'{part}': afterburstbuffer is not supported (gangway has no burst buffers); use afterany"
            ));
        }
        "expand" => {
            return Err(format!("'{part}': expand (growing another job) is not supported"));
        }
        "" => return Err(format!("'{part}': a kind is missing, e.g. afterok:123")),
        other => {
            return Err(format!(
                "'{other}' is not a dependency kind; use after, afterok, afternotok, afterany, aftercorr or singleton"
            ));
        }
    };
    if ids.is_empty() || ids.iter().any(|i| i.is_empty()) {
        return Err(format!("'{part}': a job id is missing, e.g. {keyword}:123"));
    }
    for word in ids {
        let (id, minutes) = match word.split_once('+') {
            None => (word, 0),
            Some(_) if keyword != "after" => {
                return Err(format!(
                    "'{word}': +MINUTES is understood only with after (after:ID+MINUTES)"
                ));
            }
            Some((id, m)) => {
                let minutes = m
                    .parse::<u32>()
                    .map_err(|_| format!("'{word}': +{m} is not a number of minutes"))?;
                (id, minutes)
            }
        };
        out.push(make(id.parse()?, minutes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dep(s: &str) -> Dependency {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn slurm_spellings_parse() {
        let d = dep("afterok:5:6,afternotok:7");
        assert!(!d.any);
        assert_eq!(
            d.conditions,
            [
                Condition::AfterOk { job: JobRef::job(5) },
                Condition::AfterOk { job: JobRef::job(6) },
                Condition::AfterNotOk { job: JobRef::job(7) },
            ]
        );
        let d = dep("after:5+10:6?singleton");
        assert!(d.any);
        assert_eq!(
            d.conditions,
            [
                Condition::After { job: JobRef::job(5), minutes: 10 },
                Condition::After { job: JobRef::job(6), minutes: 0 },
                Condition::Singleton,
            ]
        );
        assert_eq!(dep("aftercorr:7_3").jobs(), [JobRef { job: 7, task: Some(3) }]);
        assert_eq!(dep("AfterAny:9").to_string(), "afterany:9");
        assert_eq!(dep("afterok:5:6,afternotok:7").to_string(), "afterok:5:6,afternotok:7");
    }

    #[test]
    fn wrong_spellings_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Dependency>().unwrap_err();
        assert!(err("afterok:5,afterany:6?afterany:7").contains("mixes"));
        assert!(err("afterburstbuffer:5").contains("not supported"));
        assert!(err("afterok:5+3").contains("only with after"));
        assert!(err("afterok").contains("job id is missing"));
        assert!(err("afterok:").contains("job id is missing"));
        assert!(err("afterok:x").contains("not a job id"));
        assert!(err("afterok:-5").contains("not a job id"));
        assert!(err("before:5").contains("not a dependency kind"));
        assert!(err("singleton:5").contains("no job id"));
        assert!(err("").contains("empty"));
        assert!(err("after:5+ten").contains("minutes"));
    }

    fn condition() -> impl Strategy<Value = Condition> {
        let job = (1u64..1000, proptest::option::of(0u32..50))
            .prop_map(|(job, task)| JobRef { job, task });
        prop_oneof![
            (job.clone(), 0u32..100).prop_map(|(job, minutes)| Condition::After { job, minutes }),
            job.clone().prop_map(|job| Condition::AfterOk { job }),
            job.clone().prop_map(|job| Condition::AfterNotOk { job }),
            job.clone().prop_map(|job| Condition::AfterAny { job }),
            job.prop_map(|job| Condition::AfterCorr { job }),
            Just(Condition::Singleton),
        ]
    }

    proptest! {
        /// What the controller shows (`scontrol show job`'s Dependency=) reads back the same.
        #[test]
        fn the_text_reads_back_as_the_same_dependency(
            any in any::<bool>(),
            conditions in proptest::collection::vec(condition(), 1..6),
        ) {
            let d = Dependency { any, conditions };
            let text = d.to_string();
            let back: Dependency = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            // One condition: `,` and `?` read the same.
            prop_assert_eq!(&back.conditions, &d.conditions);
            if d.conditions.len() > 1 {
                prop_assert_eq!(back.any, d.any);
            }
        }
    }
}
