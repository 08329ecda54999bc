//! Hostfiles in every common format, detected line by line so one file may mix them:
//!
//! | line | meaning |
//! |---|---|
//! | `node1` | one host (named again on another line: one more slot) |
//! | `node1:4` | MPICH/Hydra: 4 slots |
//! | `node1 slots=4 max_slots=8` | Open MPI: 4 slots, at most 8 when oversubscribing |
//! | `node[01-16]` | a Slurm hostlist expression: 16 hosts, each as above |
//! | `alice@node1`, `node1 user=alice` | log in as `alice` |
//! | `ssh://node1:2222`, `node1 port=2222` | SSH port 2222 |
//! | `# ...` | a comment, also after a host; blank lines are skipped |
//!
//! Parsing works on text ([`parse`]); [`Hostfile`] only adds reading the file.

use std::path::PathBuf;

use super::error::NodeSourceError;
use super::hostlist;
use super::node::Node;
use super::source::NodeSource;
use super::spec::{NodeList, Spec, SpecError};

/// A hostfile named on the command line (`--hostfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostfile {
    /// The path as given; messages show it as given.
    pub path: PathBuf,
}

impl NodeSource for Hostfile {
    /// Reads the file and parses it with [`parse`].
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| NodeSourceError::Read {
            what: "hostfile",
            path: self.path.clone(),
            source,
        })?;
        parse(&text, &self.path.display().to_string())
    }

    fn describe(&self) -> String {
        format!("hostfile {}", self.path.display())
    }
}

/// Parses hostfile `text`; `file` names it in messages (`hosts.txt:3: ...`). Hosts come out in
/// order of first mention, repeats merged into one node with their slots added up.
pub fn parse(text: &str, file: &str) -> Result<Vec<Node>, NodeSourceError> {
    let mut list = NodeList::default();
    // A byte-order mark from a Windows editor would otherwise become part of the first host.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let at_line = |problem: SpecError| NodeSourceError::Line {
            file: file.to_string(),
            line: i + 1,
            problem,
        };
        let content = line.split_once('#').map_or(line, |(before, _)| before);
        let content = glue_equals(content);
        let mut words = content.split_whitespace();
        let Some(first) = words.next() else { continue };
        let mut spec = Spec::parse(first).map_err(at_line)?;
        spec.apply_settings(words).map_err(at_line)?;
        let names = hostlist::expand_with_limit(spec.hosts, list.budget())
            .map_err(|e| at_line(e.into()))?;
        list.add(&names, &spec.settings).map_err(at_line)?;
    }
    if list.is_empty() {
        return Err(NodeSourceError::NoHosts { file: file.to_string() });
    }
    Ok(list.finish())
}

/// Removes whitespace around `=`, so `slots = 4` reads as `slots=4` (people align columns).
fn glue_equals(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut after_equals = false;
    for c in line.chars() {
        if c == '=' {
            out.truncate(out.trim_end().len());
            after_equals = true;
        } else if after_equals && c.is_whitespace() {
            continue;
        } else {
            after_equals = false;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::nodes::hostlist::HostlistError;

    fn node(name: &str, slots: Option<u32>) -> Node {
        Node { slots, ..Node::new(name) }
    }

    fn err(text: &str) -> String {
        parse(text, "hostfile.txt").unwrap_err().to_string()
    }

    fn samples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hostfiles")
    }

    fn sample(name: &str) -> Result<Vec<Node>, NodeSourceError> {
        Hostfile { path: samples().join(name) }.nodes()
    }

    #[test]
    fn plain_lines_and_repeats() {
        let nodes = parse("node1\nnode2\n\n  node1  \n", "f").unwrap();
        assert_eq!(nodes, [node("node1", Some(2)), node("node2", None)]);
    }

    #[test]
    fn mixed_formats_comments_and_whitespace() {
        let text = "# cluster\n\
                    node1:4\n\
                    \tnode2 slots=2 max_slots=4   # trailing comment\n\
                    node3 slots = 4\n\
                    alice@gpu[1-2] slots=8\n\
                    login port=2222 user=bob\r\n\
                    ssh://carol@edge:2200 slots=1\n";
        let nodes = parse(text, "f").unwrap();
        let alice = |n: &str| Node { user: Some("alice".into()), slots: Some(8), ..Node::new(n) };
        assert_eq!(
            nodes,
            [
                node("node1", Some(4)),
                Node { max_slots: Some(4), ..node("node2", Some(2)) },
                node("node3", Some(4)),
                alice("gpu1"),
                alice("gpu2"),
                Node { user: Some("bob".into()), port: Some(2222), ..Node::new("login") },
                Node { user: Some("carol".into()), port: Some(2200), ..node("edge", Some(1)) },
            ]
        );
    }

    #[test]
    fn errors_name_file_line_problem_and_fix() {
        assert_eq!(
            err("node0\n\nnode1 slots=four\n"),
            "hostfile.txt:3: slots must be a whole number >= 1, got 'four' \
             (write 'node1 slots=4' or 'node1:4')"
        );
        assert_eq!(
            err("node1:0"),
            "hostfile.txt:1: slots must be a whole number >= 1, got '0' \
             (write 'node1 slots=4' or 'node1:4')"
        );
        assert_eq!(
            err("node[1-3"),
            "hostfile.txt:1: unclosed '[' in 'node[1-3' (close it: 'node[1-3]')"
        );
        assert!(err("n1 slots=4 max_slots=2").starts_with("hostfile.txt:1: max_slots=2 is below"));
        assert!(err("n1 n2").contains("put 'n2' on a line of its own"));
        assert!(err("n1 cpus=4").contains("unknown setting 'cpus'"));
        assert!(err("n1:2 slots=2").contains("slots given twice"));
        assert!(err("n1\nalice@n1").starts_with("hostfile.txt:2: 'n1' appears again"));
        assert!(err("n[1-3]]").contains("']' without a matching '['"));
        assert_eq!(
            err("# nothing here\n\n   # still nothing\n"),
            "hostfile.txt: no hosts in the file (write one host per line, e.g. 'node1' or \
             'node1 slots=4')"
        );
        assert!(err("").contains("no hosts in the file"));
    }

    #[test]
    fn the_name_budget_is_shared_by_all_lines() {
        let text = "a[1-600000]\nb[1-600000]\n";
        match parse(text, "f") {
            Err(NodeSourceError::Line {
                line: 2,
                problem: SpecError::Hostlist(HostlistError::TooMany { .. }),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(parse("\u{feff}node1\n", "f").unwrap(), [node("node1", None)]);
    }

    #[test]
    fn sample_plain() {
        let want = [node("node1", None), node("node2", None), node("node3", None)];
        assert_eq!(sample("plain.txt").unwrap(), want);
    }

    #[test]
    fn sample_mpich() {
        let want = [node("node1", Some(4)), node("node2", Some(4)), node("node3", Some(2))];
        assert_eq!(sample("mpich.txt").unwrap(), want);
    }

    #[test]
    fn sample_openmpi() {
        let want = [
            Node { max_slots: Some(8), ..node("node1", Some(4)) },
            node("node2", Some(4)),
            node("node3", None),
        ];
        assert_eq!(sample("openmpi.txt").unwrap(), want);
    }

    #[test]
    fn sample_hostlist() {
        let names: Vec<String> =
            sample("hostlist.txt").unwrap().into_iter().map(|n| n.name).collect();
        let want = ["node1", "node2", "node3", "rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"];
        assert_eq!(names, want);
    }

    #[test]
    fn sample_repeats() {
        let want = [node("node1", Some(3)), node("node2", Some(1)), node("node3", Some(2))];
        assert_eq!(sample("repeats.txt").unwrap(), want);
    }

    #[test]
    fn sample_mixed() {
        let nodes = sample("mixed.txt").unwrap();
        let want = [
            node("login", None),
            node("node01", Some(4)),
            node("node02", Some(4)),
            Node { max_slots: Some(16), ..node("gpu1", Some(8)) },
            Node { user: Some("alice".into()), ..node("big1", Some(2)) },
            Node { user: Some("bob".into()), port: Some(2222), ..node("edge", Some(1)) },
            Node { port: Some(2200), ..node("node03", Some(2)) },
        ];
        assert_eq!(nodes, want);
    }

    /// Every valid sample parses; every file in `invalid/` fails with the problem its first
    /// comment names (`# invalid: <problem>` / `# expect: <text in the message>`).
    #[test]
    fn every_sample_file() {
        let mut valid = 0;
        for entry in std::fs::read_dir(samples()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "txt") {
                let nodes = Hostfile { path: path.clone() }.nodes();
                assert!(nodes.is_ok(), "{}: {:?}", path.display(), nodes);
                valid += 1;
            }
        }
        assert!(valid >= 6, "found only {valid} valid samples");
        let mut invalid = 0;
        for entry in std::fs::read_dir(samples().join("invalid")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display()));
            let msg = Hostfile { path: path.clone() }.nodes().unwrap_err().to_string();
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            assert!(msg.contains(expect), "{}: {msg:?} lacks {expect:?}", path.display());
            invalid += 1;
        }
        assert!(invalid >= 8, "found only {invalid} invalid samples");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let msg = sample("does-not-exist.txt").unwrap_err().to_string();
        assert!(msg.starts_with("cannot read hostfile "), "{msg}");
        assert!(msg.contains("does-not-exist.txt"));
    }
}
