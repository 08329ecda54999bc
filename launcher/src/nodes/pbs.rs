//! Nodes of the PBS/Torque allocation `gangway run` finds itself in: the file named by
//! `PBS_NODEFILE`, one host name per line and one line per slot, so a host listed four times
//! has four slots.

use std::path::PathBuf;

use super::error::NodeSourceError;
use super::hostlist::{HostlistError, is_name_char, shorten};
use super::node::Node;
use super::source::NodeSource;
use super::spec::{NodeList, Settings, SpecError};
use super::variables::PBS_NODEFILE;

/// The node file of a PBS job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbsNodefile {
    /// The value of `PBS_NODEFILE`.
    pub path: PathBuf,
}

impl NodeSource for PbsNodefile {
    /// Reads the file and parses it with [`parse`].
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| NodeSourceError::Read {
            what: PBS_NODEFILE,
            path: self.path.clone(),
            source,
        })?;
        parse(&text, &self.path.display().to_string())
    }

    fn describe(&self) -> String {
        format!("PBS allocation ({PBS_NODEFILE}={})", self.path.display())
    }
}

/// Parses node file `text` (`file` names it in messages): every line is one slot of the host it
/// names; hosts come out in order of first appearance with their lines counted as slots. Blank
/// lines and `#` comments are skipped, which PBS never writes but people editing a copy do.
pub fn parse(text: &str, file: &str) -> Result<Vec<Node>, NodeSourceError> {
    let mut list = NodeList::default();
    let one_slot = Settings { slots: Some(1), ..Settings::default() };
    for (i, line) in text.lines().enumerate() {
        let at_line = |problem: SpecError| NodeSourceError::Line {
            file: file.to_string(),
            line: i + 1,
            problem,
        };
        let name = line.split_once('#').map_or(line, |(before, _)| before).trim();
        if name.is_empty() {
            continue;
        }
        // A node file holds plain names; brackets or spaces mean it is not one.
        if let Some(ch) = name.chars().find(|&c| !is_name_char(c)) {
            return Err(at_line(HostlistError::InvalidChar { item: shorten(name), ch }.into()));
        }
        if list.budget() == 0 {
            let limit = super::hostlist::MAX_NAMES;
            return Err(at_line(HostlistError::TooMany { item: shorten(name), limit }.into()));
        }
        list.add(&[name.to_string()], &one_slot).map_err(at_line)?;
    }
    if list.is_empty() {
        return Err(NodeSourceError::NoHosts { file: file.to_string() });
    }
    Ok(list.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_slots_in_first_appearance_order() {
        let text = "n2.cluster\nn2.cluster\nn1.cluster\n\nn2.cluster\n";
        let nodes = parse(text, "nodefile").unwrap();
        let got: Vec<_> = nodes.iter().map(|n| (n.name.as_str(), n.slots)).collect();
        assert_eq!(got, [("n2.cluster", Some(3)), ("n1.cluster", Some(1))]);
        // Even a host listed once has its slot count stated: that is what the file means.
        assert_eq!(parse("solo", "f").unwrap(), [Node { slots: Some(1), ..Node::new("solo") }]);
    }

    #[test]
    fn errors() {
        let e = parse("n1\nn2 n3\n", "/var/spool/pbs/aux/7").unwrap_err().to_string();
        assert!(e.starts_with("/var/spool/pbs/aux/7:2: invalid character ' ' in 'n2 n3'"), "{e}");
        let e = parse("-n1\n", "nodefile").unwrap_err().to_string();
        assert!(e.starts_with("nodefile:1: '-n1' starts with '-'"), "{e}");
        let e = parse("\n \n", "nodefile").unwrap_err().to_string();
        assert!(e.starts_with("nodefile: no hosts in the file"), "{e}");
    }

    #[test]
    fn reads_the_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hostfiles/pbs-nodefile");
        let source = PbsNodefile { path };
        let got: Vec<_> = source.nodes().unwrap().into_iter().map(|n| (n.name, n.slots)).collect();
        assert_eq!(
            got,
            [
                ("node1".to_string(), Some(4)),
                ("node2".to_string(), Some(4)),
                ("node3".to_string(), Some(2))
            ]
        );
        assert!(source.describe().starts_with("PBS allocation (PBS_NODEFILE="));
    }
}
