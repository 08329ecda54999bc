//! The step credential: what a step's proxies show the agents (job, attempt, step, identity,
//! each node's CPUs and the step's own memory limit there), sealed by the controller with the cluster key. Its text form is `v1;`
//! fields, parsed back by the agents.

use std::collections::HashMap;

use gangway_topology::CpuSet;

use super::{GrantNode, JobId};

/// The text of a step credential: what the agents check before starting a proxy.
pub fn step_credential_text(
    job: JobId,
    attempt: u32,
    step: u32,
    uid: u32,
    gid: u32,
    nodes: &[GrantNode],
) -> String {
    let names: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.name, n.cpus)).collect();
    let mut text = format!(
        "v1;job={job};attempt={attempt};step={step};uid={uid};gid={gid};nodes={}",
        names.join(" ")
    );
    // A field of its own, only when the step has a limit: agents that do not know it pass
    // over it (they run the step under the job's limit, as before).
    if nodes.iter().any(|n| n.memory.is_some()) {
        let memory: Vec<String> = nodes
            .iter()
            .map(|n| n.memory.map_or_else(|| "-".to_string(), |m| m.to_string()))
            .collect();
        text.push_str(&format!(";memory={}", memory.join(" ")));
    }
    text
}

/// A step credential's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCredential {
    pub job: JobId,
    pub attempt: u32,
    pub step: u32,
    pub uid: u32,
    pub gid: u32,
    /// Node name and CPUs, in node-id order.
    pub nodes: Vec<(String, CpuSet)>,
    /// The step's own memory limit on each node, bytes, in node-id order (empty: none on any).
    pub memory: Vec<Option<u64>>,
}

impl StepCredential {
    /// Parses the text [`step_credential_text`] wrote.
    pub fn parse(text: &str) -> Option<StepCredential> {
        let mut fields: HashMap<&str, &str> = HashMap::new();
        let mut parts = text.split(';');
        if parts.next()? != "v1" {
            return None;
        }
        for p in parts {
            let (k, v) = p.split_once('=')?;
            fields.insert(k, v);
        }
        let nodes = fields
            .get("nodes")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|n| {
                let (name, cpus) = n.split_once('=')?;
                Some((name.to_string(), CpuSet::parse_list(cpus).ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        let memory = match fields.get("memory") {
            None => Vec::new(),
            Some(list) => {
                let memory = list
                    .split(' ')
                    .map(|m| if m == "-" { Some(None) } else { m.parse().ok().map(Some) })
                    .collect::<Option<Vec<Option<u64>>>>()?;
                if memory.len() != nodes.len() {
                    return None;
                }
                memory
            }
        };
        Some(StepCredential {
            job: fields.get("job")?.parse().ok()?,
            attempt: fields.get("attempt")?.parse().ok()?,
            step: fields.get("step")?.parse().ok()?,
            uid: fields.get("uid")?.parse().ok()?,
            gid: fields.get("gid")?.parse().ok()?,
            nodes,
            memory,
        })
    }

    /// The step's own memory limit on node `node_id` (`None`: the job's applies).
    pub fn memory_on(&self, node_id: u32) -> Option<u64> {
        self.memory.get(node_id as usize).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_credentials_round_trip() {
        let nodes = vec![
            GrantNode {
                name: "n1".into(),
                addr: "a".into(),
                port: 1,
                cpus: "0-1".parse().expect("cpus"),
                ntasks: 2,
                memory: None,
            },
            GrantNode {
                name: "n2".into(),
                addr: "b".into(),
                port: 1,
                cpus: "0".parse().expect("cpus"),
                ntasks: 1,
                memory: None,
            },
        ];
        let text = step_credential_text(7, 2, 3, 1000, 100, &nodes);
        assert!(!text.contains("memory="), "no field without a step limit: {text}");
        let c = StepCredential::parse(&text).expect("parses");
        assert_eq!((c.memory_on(0), c.memory_on(1)), (None, None));
        assert_eq!((c.job, c.attempt, c.step, c.uid, c.gid), (7, 2, 3, 1000, 100));
        let nodes: Vec<(&str, String)> =
            c.nodes.iter().map(|(n, cpus)| (n.as_str(), cpus.to_string())).collect();
        assert_eq!(nodes, [("n1", "0-1".to_string()), ("n2", "0".to_string())]);
        assert!(
            StepCredential::parse("v1;job=1;attempt=1;step=0;uid=0;gid=0;nodes=n1=x").is_none()
        );
        assert!(StepCredential::parse("v2;job=1").is_none());
    }

    #[test]
    fn a_steps_memory_limits_ride_in_its_credential_by_node() {
        let node = |name: &str, memory| GrantNode {
            name: name.into(),
            addr: "a".into(),
            port: 1,
            cpus: "0".parse().expect("cpus"),
            ntasks: 1,
            memory,
        };
        let nodes = [node("n1", Some(50 << 20)), node("n2", None)];
        let text = step_credential_text(7, 1, 0, 1000, 100, &nodes);
        let c = StepCredential::parse(&text).expect("parses");
        assert_eq!((c.memory_on(0), c.memory_on(1), c.memory_on(2)), (Some(50 << 20), None, None));
        // A list that does not match the nodes, or a word that is no size, is no credential.
        let base = "v1;job=1;attempt=1;step=0;uid=0;gid=0;nodes=n1=0 n2=1";
        assert!(StepCredential::parse(&format!("{base};memory=5")).is_none());
        assert!(StepCredential::parse(&format!("{base};memory=5 x")).is_none());
        assert!(StepCredential::parse(&format!("{base};memory=5 -")).is_some());
    }
}
