//! Slurm's `-S`/`--sort` specifications for `squeue` and `sinfo` (pure): field letters, each
//! after an optional `+` (ascending, the default) or `-` (descending), and for sinfo `#P`
//! (partitions in the configuration's order); commas may separate them (`-t,i`, `P,-p`,
//! `#P,-t`). The first key decides, later ones break its ties; rows equal in every key keep
//! the order the controller gave them.

use std::cmp::Ordering;

/// One key of a sort specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: char,
    pub descending: bool,
    /// `#P`: partitions in the configuration's order rather than by name.
    pub config_order: bool,
}

/// Reads `spec` (the value of `-S`): every letter must be one of `known`, which are the
/// letters the command's Slurm sorts by. Slurm's squeue also takes `cluster`; with one
/// cluster it orders nothing and is skipped.
pub fn parse(spec: &str, known: &str) -> Result<Vec<SortKey>, String> {
    let lower = spec.to_ascii_lowercase();
    let mut text = spec.to_string();
    if let Some(at) = lower.find("cluster") {
        text.replace_range(at..at + "cluster".len(), "");
    }
    let mut keys = Vec::new();
    let (mut descending, mut config_order) = (false, false);
    for c in text.chars() {
        match c {
            ',' | ' ' => {}
            '+' => descending = false,
            '-' => descending = true,
            '#' => config_order = true,
            c if known.contains(c) && c.is_ascii_alphabetic() => {
                keys.push(SortKey { field: c, descending, config_order });
                (descending, config_order) = (false, false);
            }
            c => {
                return Err(format!(
                    "--sort {spec}: '{c}' is not a sort field; use field letters ({known}), each after an optional + or - (e.g. -t,i)"
                ));
            }
        }
    }
    if keys.is_empty() {
        return Err(format!("--sort '{spec}': no field to sort by (e.g. -t,i)"));
    }
    Ok(keys)
}

/// Sorts `rows` by `keys`, `compare` telling how two rows compare on one field (ascending).
pub fn sort_by<T>(
    rows: &mut [T],
    keys: &[SortKey],
    compare: impl Fn(&T, &T, &SortKey) -> Ordering,
) {
    rows.sort_by(|a, b| {
        keys.iter()
            .map(|k| {
                let o = compare(a, b, k);
                if k.descending { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// Names as Slurm orders hosts: `node2` before `node10` (runs of digits compare as numbers).
pub fn natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let number = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut digits = String::new();
                    while let Some(d) = it.next_if(char::is_ascii_digit) {
                        digits.push(d);
                    }
                    let trimmed = digits.trim_start_matches('0').to_string();
                    (trimmed.len(), trimmed)
                };
                // Compared by length, then digit by digit: no overflow however long.
                let o = number(&mut x).cmp(&number(&mut y));
                if o.is_ne() {
                    return o;
                }
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(&q);
                }
                x.next();
                y.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_take_their_direction_and_partition_order() {
        let keys = parse("-t,i", "ti").unwrap();
        assert_eq!(
            keys,
            [
                SortKey { field: 't', descending: true, config_order: false },
                SortKey { field: 'i', descending: false, config_order: false }
            ]
        );
        let keys = parse("#P,-t", "Pt").unwrap();
        assert!(keys[0].config_order && !keys[0].descending && keys[1].descending);
        assert_eq!(parse("+P", "P").unwrap()[0].field, 'P');
        assert_eq!(parse("cluster,-p", "p").unwrap().len(), 1);
    }

    #[test]
    fn a_letter_the_command_does_not_sort_by_is_named() {
        let err = parse("-t,%", "ti").unwrap_err();
        assert!(err.contains("'%' is not a sort field") && err.contains("(ti)"), "{err}");
        assert!(parse(",", "ti").unwrap_err().contains("no field"));
    }

    #[test]
    fn the_first_key_decides_and_the_next_breaks_ties() {
        let mut rows = vec![("b", 1), ("a", 2), ("b", 3), ("a", 1)];
        let keys = parse("-n,v", "nv").unwrap();
        sort_by(&mut rows, &keys, |a, b, k| match k.field {
            'n' => a.0.cmp(b.0),
            _ => a.1.cmp(&b.1),
        });
        assert_eq!(rows, [("b", 1), ("b", 3), ("a", 1), ("a", 2)]);
    }

    #[test]
    fn hosts_order_by_their_numbers() {
        let mut names = vec!["node10", "node2", "gpu1", "node1", "node02"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["gpu1", "node1", "node2", "node02", "node10"]);
    }

    proptest! {
        #[test]
        fn natural_order_is_a_total_order_consistent_with_numbers(a in 0u64..100_000, b in 0u64..100_000, p in "[a-z]{0,3}") {
            let (x, y) = (format!("{p}{a}"), format!("{p}{b}"));
            prop_assert_eq!(natural(&x, &y), a.cmp(&b));
            prop_assert_eq!(natural(&y, &x), b.cmp(&a));
            prop_assert_eq!(natural(&x, &x), Ordering::Equal);
        }
    }
}
