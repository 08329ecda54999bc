//! Job arrays as they travel: `--array`'s task indexes as a compact set of stepped ranges
//! ([`IndexSet`]: `0-99999` is one range, whatever the count), the throttle (`%N`), and the
//! address of one task (`7_3`). Parsing refuses what Slurm refuses, and every error says what
//! to write instead; the controller checks the size against its `max_array_size`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::job_id::JobId;

/// The largest task index accepted anywhere (Slurm's ceiling for `MaxArraySize` is 4000001):
/// it bounds what a parse may expand before any configuration is known.
pub const INDEX_CEILING: u32 = 4_000_000;

/// Slurm's value of `%a` (and of `SLURM_ARRAY_TASK_ID`'s absence) for a job that is no array
/// task: `NO_VAL - 1`.
pub const NOT_AN_ARRAY_TASK: &str = "4294967294";

/// `first, first+step, ..., last` (`last = first + k*step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRange {
    pub first: u32,
    pub last: u32,
    pub step: u32,
}

impl StepRange {
    fn count(&self) -> u64 {
        u64::from((self.last - self.first) / self.step.max(1)) + 1
    }

    fn contains(&self, i: u32) -> bool {
        i >= self.first && i <= self.last && (i - self.first).is_multiple_of(self.step.max(1))
    }

    /// Whether it is well formed: ordered, a step, `last` on the step.
    fn is_valid(&self) -> bool {
        self.step > 0
            && self.first <= self.last
            && (self.last - self.first).is_multiple_of(self.step)
    }
}

/// A set of task indexes as stepped ranges, sorted and disjoint: what is stored and sent
/// instead of one entry per task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<StepRange>", into = "Vec<StepRange>")]
pub struct IndexSet {
    ranges: Vec<StepRange>,
}

impl TryFrom<Vec<StepRange>> for IndexSet {
    type Error = String;

    /// Ranges from the wire are checked: well formed, sorted, not overlapping.
    fn try_from(ranges: Vec<StepRange>) -> Result<Self, String> {
        for r in &ranges {
            if !r.is_valid() || r.last > INDEX_CEILING {
                return Err(format!("bad task range {}-{}:{}", r.first, r.last, r.step));
            }
        }
        if ranges.windows(2).any(|w| w[0].last >= w[1].first) {
            return Err("task ranges out of order or overlapping".into());
        }
        Ok(IndexSet { ranges })
    }
}

impl From<IndexSet> for Vec<StepRange> {
    fn from(s: IndexSet) -> Self {
        s.ranges
    }
}

impl IndexSet {
    /// The set of the given indexes (any order, duplicates ignored).
    pub fn from_indexes(mut values: Vec<u32>) -> IndexSet {
        values.sort_unstable();
        values.dedup();
        let mut ranges: Vec<StepRange> = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let first = values[i];
            let Some(&second) = values.get(i + 1) else {
                ranges.push(StepRange { first, last: first, step: 1 });
                break;
            };
            let step = second - first;
            let mut last = second;
            let mut j = i + 2;
            while values.get(j).is_some_and(|&v| v - last == step) {
                last = values[j];
                j += 1;
            }
            if j - i == 2 && step != 1 {
                // Two far-apart indexes: a range of its own for the first, so the second may
                // start a longer run with its successor.
                ranges.push(StepRange { first, last: first, step: 1 });
                i += 1;
            } else {
                ranges.push(StepRange { first, last, step });
                i = j;
            }
        }
        IndexSet { ranges }
    }

    /// How many indexes.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(StepRange::count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, i: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(i))
    }

    pub fn min(&self) -> Option<u32> {
        self.ranges.first().map(|r| r.first)
    }

    pub fn max(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.last)
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[StepRange] {
        &self.ranges
    }

    /// The step between consecutive indexes when they are evenly spaced (1 otherwise), as
    /// `SLURM_ARRAY_TASK_STEP` gives it.
    pub fn step(&self) -> u32 {
        let mut step = None;
        let mut prev: Option<u32> = None;
        for r in &self.ranges {
            if let Some(p) = prev {
                let gap = r.first - p;
                if step.is_some_and(|s| s != gap) {
                    return 1;
                }
                step = Some(gap);
            }
            if r.last > r.first {
                if step.is_some_and(|s| s != r.step) {
                    return 1;
                }
                step = Some(r.step);
            }
            prev = Some(r.last);
        }
        step.unwrap_or(1)
    }

    /// Takes the lowest index out.
    pub fn pop_first(&mut self) -> Option<u32> {
        let r = self.ranges.first_mut()?;
        let i = r.first;
        if r.first == r.last {
            self.ranges.remove(0);
        } else {
            r.first += r.step;
        }
        Some(i)
    }

    /// Takes one index out (splitting its range); whether it was there.
    pub fn remove(&mut self, i: u32) -> bool {
        let Some(pos) = self.ranges.iter().position(|r| r.contains(i)) else { return false };
        let r = self.ranges[pos];
        let mut parts = Vec::with_capacity(2);
        if i > r.first {
            parts.push(StepRange { first: r.first, last: i - r.step, step: r.step });
        }
        if i < r.last {
            parts.push(StepRange { first: i + r.step, last: r.last, step: r.step });
        }
        self.ranges.splice(pos..=pos, parts);
        true
    }

    /// Adds one index (a cancelled task's, say); cheap when it extends the last range.
    pub fn insert(&mut self, i: u32) {
        if self.contains(i) {
            return;
        }
        if let Some(last) = self.ranges.last_mut()
            && i > last.last
        {
            if last.first == last.last && i - last.last > 0 {
                last.step = i - last.first;
                last.last = i;
                return;
            }
            if i - last.last == last.step {
                last.last = i;
                return;
            }
            self.ranges.push(StepRange { first: i, last: i, step: 1 });
            return;
        }
        let mut all: Vec<u32> = self.iter().collect();
        all.push(i);
        *self = IndexSet::from_indexes(all);
    }

    /// Adds every index of `other` (one merge, however the two interleave).
    pub fn extend(&mut self, other: &IndexSet) {
        if other.is_empty() {
            return;
        }
        if self.max().is_none_or(|m| other.min().is_some_and(|o| o > m)) {
            let mut rest = &other.ranges[..];
            // Where the two meet, one range when the steps agree (`7` then `8-9`: `7-9`).
            if let (Some(last), Some(first)) = (self.ranges.last_mut(), rest.first()) {
                let gap = first.first - last.last;
                if (last.first == last.last || last.step == gap)
                    && (first.first == first.last || first.step == gap)
                {
                    last.step = gap;
                    last.last = first.last;
                    rest = &rest[1..];
                }
            }
            self.ranges.extend_from_slice(rest);
            return;
        }
        let all: Vec<u32> = self.iter().chain(other.iter()).collect();
        *self = IndexSet::from_indexes(all);
    }

    /// Every index, in order (lazily: a set of 100000 costs nothing until walked).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|r| (r.first..=r.last).step_by(r.step.max(1) as usize))
    }
}

impl fmt::Display for IndexSet {
    /// Slurm's spelling: `1-5,7,9-15:2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, r) in self.ranges.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            match r.count() {
                1 => write!(f, "{}", r.first)?,
                2 if r.step != 1 => write!(f, "{},{}", r.first, r.last)?,
                _ if r.step == 1 => write!(f, "{}-{}", r.first, r.last)?,
                _ => write!(f, "{}-{}:{}", r.first, r.last, r.step)?,
            }
        }
        Ok(())
    }
}

/// Why an index list does not parse; the text says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArrayError(String);

impl FromStr for IndexSet {
    type Err = ArrayError;

    /// `1-5`, `0-99:10`, `1,3,5-9:2`; no `%` here (see [`ArraySpec`]).
    fn from_str(s: &str) -> Result<Self, ArrayError> {
        let fail = |m: String| Err(ArrayError(m));
        if s.trim().is_empty() {
            return fail("no task indexes; write them as 0-99, 1,3,5-9:2 or 1-1000%50".into());
        }
        let mut values = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (range, step) = match part.split_once(':') {
                Some((r, st)) => match st.parse::<u32>() {
                    Ok(0) => return fail(format!("'{part}': a step of 0; use :1 or more")),
                    Ok(n) => (r, n),
                    Err(_) => return fail(format!("'{part}': the step '{st}' is not a number")),
                },
                None => (part, 1),
            };
            let index = |t: &str| -> Result<u32, ArrayError> {
                let n: u32 = t.trim().parse().map_err(|_| {
                    ArrayError(if t.trim().is_empty() {
                        format!("'{part}' is missing an index; write ranges as 0-99")
                    } else {
                        format!("'{t}' is not a task index (0 or more, as in 0-99)")
                    })
                })?;
                if n > INDEX_CEILING {
                    return Err(ArrayError(format!(
                        "task index {n} is over the largest possible, {INDEX_CEILING}"
                    )));
                }
                Ok(n)
            };
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (index(a)?, index(b)?),
                None if step != 1 => {
                    return fail(format!("'{part}': a step needs a range, as in 1-9:2"));
                }
                None => {
                    let i = index(range)?;
                    (i, i)
                }
            };
            if first > last {
                return fail(format!("'{part}' is reversed; write {last}-{first}"));
            }
            values.extend((first..=last).step_by(step as usize));
            if values.len() as u64 > u64::from(INDEX_CEILING) + 1 {
                return fail(format!("more than {} tasks", u64::from(INDEX_CEILING) + 1));
            }
        }
        Ok(IndexSet::from_indexes(values))
    }
}

/// `--array=INDEXES[%N]`: the tasks and how many may run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    pub indexes: IndexSet,
    /// `%N`: at most N tasks of the array run at once (`None`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
}

impl FromStr for ArraySpec {
    type Err = ArrayError;

    fn from_str(s: &str) -> Result<Self, ArrayError> {
        let (list, throttle) = match s.split_once('%') {
            Some((l, t)) => match t.trim().parse::<u32>() {
                Ok(0) => {
                    return Err(ArrayError(format!(
                        "'%{t}' lets no task run; write %1 or more (or leave the % out for no limit)"
                    )));
                }
                Ok(n) => (l, Some(n)),
                Err(_) => {
                    return Err(ArrayError(format!(
                        "'%{t}': the limit of tasks running at once must be a number, as in 1-100%10"
                    )));
                }
            },
            None => (s, None),
        };
        Ok(ArraySpec { indexes: list.parse()?, throttle })
    }
}

impl fmt::Display for ArraySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.indexes)?;
        if let Some(t) = self.throttle {
            write!(f, "%{t}")?;
        }
        Ok(())
    }
}

/// The address of one or more tasks: `7_3`, or `7_[1-3,5]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAddress {
    pub array: JobId,
    pub tasks: IndexSet,
}

/// A job id as users write it: a job (or a whole array) `7`, or tasks of an array `7_3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAddress {
    Job(JobId),
    Tasks(TaskAddress),
}

impl FromStr for JobAddress {
    type Err = ArrayError;

    fn from_str(s: &str) -> Result<Self, ArrayError> {
        let bad =
            || ArrayError(format!("'{s}' is not a job id (7, or an array task 7_3 or 7_[1-3])"));
        let Some((job, tasks)) = s.split_once('_') else {
            return s.trim().parse().map(JobAddress::Job).map_err(|_| bad());
        };
        let array: JobId = job.parse().map_err(|_| bad())?;
        let inner = tasks.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(tasks);
        let tasks: IndexSet = inner.parse().map_err(|e| ArrayError(format!("'{s}': {e}")))?;
        Ok(JobAddress::Tasks(TaskAddress { array, tasks }))
    }
}

/// How an array task is shown: `7_3`.
pub fn task_label(array: JobId, index: u32) -> String {
    format!("{array}_{index}")
}

/// How an array's pending tasks are shown together: `7_[3-999%50]` (`7_5` for one).
pub fn pending_label(array: JobId, pending: &IndexSet, throttle: Option<u32>) -> String {
    if pending.len() == 1 && throttle.is_none() {
        return format!("{array}_{pending}");
    }
    match throttle {
        Some(t) => format!("{array}_[{pending}%{t}]"),
        None => format!("{array}_[{pending}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(s: &str) -> IndexSet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn slurm_forms_parse_and_print_back_compactly() {
        assert_eq!(set("0-999").to_string(), "0-999");
        assert_eq!(set("0-999").ranges().len(), 1);
        assert_eq!(set("1,3,5-9:2").to_string(), "1-9:2");
        assert_eq!(set("1,3,5-9:2").len(), 5);
        assert_eq!(set("7").to_string(), "7");
        assert_eq!(set("1-3,2-5,10").to_string(), "1-5,10");
        assert_eq!(set("0-99999").len(), 100_000);
        let spec: ArraySpec = "0-999%50".parse().expect("spec");
        assert_eq!((spec.indexes.len(), spec.throttle), (1000, Some(50)));
        assert_eq!(spec.to_string(), "0-999%50");
    }

    #[test]
    fn bad_specs_say_what_to_write_instead() {
        let err = |s: &str| s.parse::<ArraySpec>().expect_err(s).to_string();
        assert!(err("").contains("write them as 0-99"), "{}", err(""));
        assert!(err("9-1").contains("reversed; write 1-9"), "{}", err("9-1"));
        assert!(err("1-9:0").contains("step of 0"), "{}", err("1-9:0"));
        assert!(err("1-9%0").contains("%1 or more"), "{}", err("1-9%0"));
        assert!(err("1-x").contains("'x' is not a task index"), "{}", err("1-x"));
        assert!(err("1-5000000").contains("over the largest"), "{}", err("1-5000000"));
        assert!(err("3:2").contains("needs a range"), "{}", err("3:2"));
    }

    #[test]
    fn steps_as_slurm_reports_them() {
        assert_eq!(set("0-99:10").step(), 10);
        assert_eq!(set("1-6").step(), 1);
        assert_eq!(set("1,2,10").step(), 1);
        assert_eq!(set("4").step(), 1);
    }

    #[test]
    fn addresses_name_a_job_one_task_or_several() {
        assert_eq!("7".parse::<JobAddress>().expect("id"), JobAddress::Job(7));
        let JobAddress::Tasks(t) = "7_3".parse().expect("task") else { panic!("not tasks") };
        assert_eq!((t.array, t.tasks.to_string()), (7, "3".to_string()));
        let JobAddress::Tasks(t) = "7_[1-3]".parse().expect("tasks") else { panic!("not tasks") };
        assert_eq!(t.tasks.len(), 3);
        assert!("7_x".parse::<JobAddress>().is_err() && "x".parse::<JobAddress>().is_err());
        assert_eq!(pending_label(7, &set("3-999"), Some(50)), "7_[3-999%50]");
        assert_eq!(pending_label(7, &set("5"), None), "7_5");
    }

    #[test]
    fn ranges_from_the_wire_are_checked() {
        let bad: Result<IndexSet, _> = serde_json::from_str(r#"[{"first":5,"last":1,"step":1}]"#);
        assert!(bad.is_err());
        let overlapping: Result<IndexSet, _> = serde_json::from_str(
            r#"[{"first":1,"last":5,"step":1},{"first":3,"last":9,"step":1}]"#,
        );
        assert!(overlapping.is_err());
        let good = set("1-9:2,20-30");
        let back: IndexSet =
            serde_json::from_str(&serde_json::to_string(&good).expect("json")).expect("parse");
        assert_eq!(back, good);
    }

    #[test]
    fn extending_past_the_end_joins_the_ranges_that_meet() {
        let mut s = set("7");
        s.extend(&set("8-9"));
        assert_eq!(s.to_string(), "7-9");
        let mut s = set("1-5:2");
        s.extend(&set("7-11:2,20"));
        assert_eq!(s.to_string(), "1-11:2,20");
        let mut s = set("1-3");
        s.extend(&set("5-9:2"));
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 2, 3, 5, 7, 9]);
    }

    proptest! {
        #[test]
        fn the_set_holds_exactly_its_indexes_through_pops_removes_and_inserts(
            values in proptest::collection::vec(0u32..200, 0..60),
            removes in proptest::collection::vec(0u32..200, 0..20),
            inserts in proptest::collection::vec(0u32..400, 0..20),
            extra in proptest::collection::vec(0u32..600, 0..30),
            pops in 0usize..10,
        ) {
            let mut want: std::collections::BTreeSet<u32> = values.iter().copied().collect();
            let mut s = IndexSet::from_indexes(values);
            prop_assert!(IndexSet::try_from(s.ranges().to_vec()).is_ok());
            for r in removes {
                prop_assert_eq!(s.remove(r), want.remove(&r));
            }
            for i in inserts {
                s.insert(i);
                want.insert(i);
            }
            let more = IndexSet::from_indexes(extra.clone());
            s.extend(&more);
            want.extend(extra);
            for _ in 0..pops {
                prop_assert_eq!(s.pop_first(), want.pop_first());
            }
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), want.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(s.len(), want.len() as u64);
            prop_assert!(IndexSet::try_from(s.ranges().to_vec()).is_ok(), "{:?}", s);
            let reparsed: IndexSet = if s.is_empty() { IndexSet::default() } else { s.to_string().parse().unwrap() };
            prop_assert_eq!(reparsed.iter().collect::<Vec<_>>(), s.iter().collect::<Vec<_>>());
        }
    }
}
