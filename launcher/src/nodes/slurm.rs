//! Nodes of the Slurm allocation `gangway run` finds itself in: `SLURM_JOB_NODELIST` (a hostlist
//! expression) and `SLURM_TASKS_PER_NODE` (counts in node order, `2(x3),1` meaning 2 on each of
//! the first three nodes, then 1).

use super::error::NodeSourceError;
pub use super::error::SlurmError;
use super::hostlist::{self, HostlistError, shorten};
use super::node::Node;
use super::source::NodeSource;
use super::spec::{NodeList, Settings, SpecError};
use super::variables::{SLURM_JOB_NODELIST, SLURM_TASKS_PER_NODE};

/// The Slurm variables, as found in the environment by `select_source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmAllocation {
    /// `SLURM_JOB_NODELIST` (or the older `SLURM_NODELIST`).
    pub nodelist: String,
    /// `SLURM_TASKS_PER_NODE`, when set.
    pub tasks_per_node: Option<String>,
}

impl NodeSource for SlurmAllocation {
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        Ok(parse(&self.nodelist, self.tasks_per_node.as_deref())?)
    }

    fn describe(&self) -> String {
        match &self.tasks_per_node {
            Some(tasks) => format!(
                "Slurm allocation ({SLURM_JOB_NODELIST}={}, {SLURM_TASKS_PER_NODE}={})",
                shorten(&self.nodelist),
                shorten(tasks)
            ),
            None => format!("Slurm allocation ({SLURM_JOB_NODELIST}={})", shorten(&self.nodelist)),
        }
    }
}

/// Parses `SLURM_TASKS_PER_NODE` into `(count, repeat)` pairs: `2(x3),1` gives `[(2, 3), (1, 1)]`.
pub fn parse_tasks_per_node(value: &str) -> Result<Vec<(u32, u32)>, SlurmError> {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|&n| n >= 1)
    };
    value
        .split(',')
        .map(|part| {
            let part = part.trim();
            let parsed = match part.split_once("(x") {
                Some((count, rest)) => {
                    rest.strip_suffix(')').and_then(number).and_then(|k| Some((number(count)?, k)))
                }
                None => number(part).map(|n| (n, 1)),
            };
            parsed
                .ok_or_else(|| SlurmError::BadTasks { value: shorten(value), part: shorten(part) })
        })
        .collect()
}

/// Turns the two variables into nodes: every host of `nodelist` in order, with the slots
/// `tasks_per_node` gives it (none when the variable is absent).
pub fn parse(nodelist: &str, tasks_per_node: Option<&str>) -> Result<Vec<Node>, SlurmError> {
    let list_error =
        |problem: SpecError| SlurmError::NodeList { value: shorten(nodelist), problem };
    let names = hostlist::expand(nodelist).map_err(|e: HostlistError| list_error(e.into()))?;
    let mut list = NodeList::default();
    match tasks_per_node {
        None => list.add(&names, &Settings::default()).map_err(list_error)?,
        Some(tasks) => {
            let counts = parse_tasks_per_node(tasks)?;
            let counted: u128 = counts.iter().map(|&(_, k)| u128::from(k)).sum();
            if counted != names.len() as u128 {
                return Err(SlurmError::Mismatch {
                    tasks: shorten(tasks),
                    counted,
                    nodelist: shorten(nodelist),
                    nodes: names.len(),
                });
            }
            let per_node = counts.iter().flat_map(|&(n, k)| std::iter::repeat_n(n, k as usize));
            for (name, slots) in names.iter().zip(per_node) {
                let settings = Settings { slots: Some(slots), ..Settings::default() };
                list.add(std::slice::from_ref(name), &settings).map_err(list_error)?;
            }
        }
    }
    Ok(list.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(nodes: &[Node]) -> Vec<(&str, Option<u32>)> {
        nodes.iter().map(|n| (n.name.as_str(), n.slots)).collect()
    }

    #[test]
    fn tasks_per_node_forms() {
        assert_eq!(parse_tasks_per_node("2(x3),1").unwrap(), [(2, 3), (1, 1)]);
        assert_eq!(parse_tasks_per_node("16").unwrap(), [(16, 1)]);
        assert_eq!(parse_tasks_per_node("1,2(x2),4").unwrap(), [(1, 1), (2, 2), (4, 1)]);
        for bad in ["", "0", "2(x0)", "2(3)", "2(x3", "x3", "two", "2(x3),", "-1", "2(x3)1"] {
            let e = parse_tasks_per_node(bad).unwrap_err();
            assert!(matches!(e, SlurmError::BadTasks { .. }), "{bad:?}: {e}");
        }
        assert_eq!(
            parse_tasks_per_node("2(x3),z").unwrap_err().to_string(),
            "SLURM_TASKS_PER_NODE='2(x3),z': 'z' is not a task count like '2' or a repeated count \
             like '2(x3)' (counts and repeats are whole numbers >= 1)"
        );
    }

    #[test]
    fn nodes_get_their_task_counts() {
        let nodes = parse("node[01-03],gpu7", Some("2(x3),1")).unwrap();
        assert_eq!(
            slots(&nodes),
            [("node01", Some(2)), ("node02", Some(2)), ("node03", Some(2)), ("gpu7", Some(1))]
        );
        let nodes = parse("node[1-2]", None).unwrap();
        assert_eq!(slots(&nodes), [("node1", None), ("node2", None)]);
    }

    #[test]
    fn disagreeing_variables_are_refused() {
        let e = parse("node[1-4]", Some("2(x3)")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SLURM_TASKS_PER_NODE='2(x3)' covers 3 nodes but SLURM_JOB_NODELIST='node[1-4]' names 4 \
             (are both from the same job? unset them to run outside the allocation)"
        );
        // A repeat count far beyond the node list is caught before anything is built.
        assert!(matches!(
            parse("n1", Some("1(x4294967295)")),
            Err(SlurmError::Mismatch { counted: 4_294_967_295, .. })
        ));
    }

    #[test]
    fn bad_node_list() {
        let e = parse("node[1-4", None).unwrap_err().to_string();
        assert_eq!(
            e,
            "SLURM_JOB_NODELIST='node[1-4': unclosed '[' in 'node[1-4' (close it: 'node[1-4]')"
        );
    }
}
