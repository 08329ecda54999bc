//! `--constraint`: which node features a job needs, as Slurm spells them (`gpu`, `a100&ib`,
//! `skylake|icelake`, `(a|b)&ib`; `,` is read as `&`). Parsed where it enters; on the wire as
//! its text, read again (and so checked again) by the controller. The features of each node
//! come from the controller's configuration (`[node.NAME] features = [...]`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A feature expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Constraint {
    Feature(String),
    All(Vec<Constraint>),
    Any(Vec<Constraint>),
}

impl Constraint {
    /// Whether a node with these features satisfies it.
    pub fn matches(&self, features: &[String]) -> bool {
        match self {
            Constraint::Feature(f) => features.iter().any(|x| x == f),
            Constraint::All(parts) => parts.iter().all(|p| p.matches(features)),
            Constraint::Any(parts) => parts.iter().any(|p| p.matches(features)),
        }
    }
}

impl FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Constraint, String> {
        let tokens = tokens(s)?;
        let mut at = 0;
        let c = any(&tokens, &mut at)?;
        match tokens.get(at) {
            None => Ok(c),
            Some(t) => Err(format!("unexpected '{t}' in '{s}'")),
        }
    }
}

fn tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in s.chars() {
        match ch {
            '&' | ',' | '|' | '(' | ')' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(if ch == ',' { "&".into() } else { ch.to_string() });
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') => word.push(c),
            c if c.is_whitespace() => {}
            '[' | ']' | '*' => {
                return Err(format!(
                    "'{ch}' (matching sets and counts) is not supported; use & | and parentheses"
                ));
            }
            other => return Err(format!("'{other}' cannot be part of a feature name")),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    if out.is_empty() {
        return Err("an empty constraint; name a feature (e.g. gpu, a100&ib)".into());
    }
    Ok(out)
}

fn any(t: &[String], at: &mut usize) -> Result<Constraint, String> {
    let mut parts = vec![all(t, at)?];
    while t.get(*at).is_some_and(|x| x == "|") {
        *at += 1;
        parts.push(all(t, at)?);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Constraint::Any(parts) })
}

fn all(t: &[String], at: &mut usize) -> Result<Constraint, String> {
    let mut parts = vec![one(t, at)?];
    while t.get(*at).is_some_and(|x| x == "&") {
        *at += 1;
        parts.push(one(t, at)?);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Constraint::All(parts) })
}

fn one(t: &[String], at: &mut usize) -> Result<Constraint, String> {
    let Some(tok) = t.get(*at) else { return Err("a feature name is missing at the end".into()) };
    *at += 1;
    match tok.as_str() {
        "(" => {
            let inner = any(t, at)?;
            if t.get(*at).map(String::as_str) != Some(")") {
                return Err("a '(' is not closed".into());
            }
            *at += 1;
            Ok(inner)
        }
        "&" | "|" | ")" => Err(format!("a feature name is missing before '{tok}'")),
        name => Ok(Constraint::Feature(name.to_string())),
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Constraint], sep: &str| {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                match p {
                    Constraint::Feature(_) => write!(f, "{p}")?,
                    _ => write!(f, "({p})")?,
                }
            }
            Ok(())
        };
        match self {
            Constraint::Feature(name) => f.write_str(name),
            Constraint::All(parts) => join(f, parts, "&"),
            Constraint::Any(parts) => join(f, parts, "|"),
        }
    }
}

impl TryFrom<String> for Constraint {
    type Error = String;
    fn try_from(s: String) -> Result<Constraint, String> {
        s.parse()
    }
}

impl From<Constraint> for String {
    fn from(c: Constraint) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(c: &str, features: &[&str]) -> bool {
        let f: Vec<String> = features.iter().map(|s| s.to_string()).collect();
        c.parse::<Constraint>().expect(c).matches(&f)
    }

    #[test]
    fn expressions_match_node_features() {
        assert!(has("gpu", &["gpu", "ib"]));
        assert!(!has("gpu", &["ib"]));
        assert!(has("gpu&ib", &["ib", "gpu"]) && !has("gpu&ib", &["gpu"]));
        assert!(has("a100|h100", &["h100"]) && !has("a100|h100", &["v100"]));
        assert!(has("gpu,ib", &["gpu", "ib"]) && !has("gpu,ib", &["gpu"]));
        // & binds tighter than |, parentheses change that.
        assert!(has("a|b&c", &["a"]));
        assert!(!has("(a|b)&c", &["a"]) && has("(a|b)&c", &["b", "c"]));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert!("".parse::<Constraint>().unwrap_err().contains("empty"));
        assert!("gpu&".parse::<Constraint>().unwrap_err().contains("missing"));
        assert!("(gpu|ib".parse::<Constraint>().unwrap_err().contains("not closed"));
        assert!("gpu)".parse::<Constraint>().unwrap_err().contains("unexpected ')'"));
        assert!("[a|b]".parse::<Constraint>().unwrap_err().contains("not supported"));
        assert!("gpu*2".parse::<Constraint>().unwrap_err().contains("not supported"));
    }

    #[test]
    fn the_text_reads_back_the_same() {
        for s in ["gpu", "a&b", "a|b&c", "(a|b)&c"] {
            let c: Constraint = s.parse().unwrap();
            assert_eq!(c.to_string().parse::<Constraint>().unwrap(), c, "{s}");
        }
        let json = serde_json::to_string(&"(a|b)&c".parse::<Constraint>().unwrap()).unwrap();
        assert_eq!(json, "\"(a|b)&c\"");
        assert!(serde_json::from_str::<Constraint>("\"a&\"").is_err());
    }
}
