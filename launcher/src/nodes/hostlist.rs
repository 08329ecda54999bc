//! Slurm-style hostlist expressions: expanding `node[01-16,20],login` into host names and
//! compressing a list of host names back into the shortest such expression.
//!
//! Syntax accepted by [`expand`]:
//! - top-level entries separated by commas (or whitespace) outside brackets: `a,b[1-2],c`;
//! - an entry is literal text (letters, digits, `-`, `.`, `_`) with any number of bracket groups;
//! - a bracket group holds comma-separated numbers and `lo-hi` ranges: `[01-16,20]`;
//! - each number is zero-padded to at least the digit count of its range's start as written, so
//!   `[08-10]` gives `08 09 10` and `[8-10]` gives `8 9 10`;
//! - several groups in one entry form a cartesian product in Slurm's nesting: the last group varies
//!   fastest; the other groups nest with the rightmost of them outermost. With two groups that is
//!   plain reading order: `rack[1-2]-n[1-4]` gives `rack1-n1 .. rack1-n4, rack2-n1 .. rack2-n4`.
//!
//! Order and repeats are kept (`n1,n1` is two entries), because a repeated host means another
//! slot to the callers. [`compress`] is the exact inverse: `expand(&compress(names)?)? == names`.

use thiserror::Error;

/// The most host names one expression may expand to. Real clusters are far smaller; anything
/// bigger is a typo (`node[1-1000000000]`) that would otherwise eat the machine's memory.
pub const MAX_NAMES: usize = 1_000_000;

/// Why a hostlist expression (or a name given to [`compress`]) was refused. Each message names the
/// offending piece and, where one exists, the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostlistError {
    /// Nothing but separators or whitespace.
    #[error("empty host list (give at least one host name, e.g. 'node1' or 'node[1-4]')")]
    Empty,
    /// Two commas in a row, or a leading/trailing comma.
    #[error("empty entry in host list '{expr}' (two commas in a row or a stray comma; remove it)")]
    EmptyEntry {
        /// The expression, shortened for display.
        expr: String,
    },
    /// A `[` that is never closed.
    #[error("unclosed '[' in '{item}' (close it: '{item}]')")]
    Unclosed {
        /// The entry holding the bracket.
        item: String,
    },
    /// A `]` with no `[` before it.
    #[error("']' without a matching '[' in '{item}'")]
    UnmatchedClose {
        /// The entry holding the bracket.
        item: String,
    },
    /// A `[` inside a bracket group.
    #[error(
        "'[' inside brackets in '{item}' (brackets do not nest; write ranges side by side, \
         e.g. 'rack[1-2]-n[1-4]')"
    )]
    Nested {
        /// The entry holding the brackets.
        item: String,
    },
    /// `[]`, or an empty element such as `[1,,2]`.
    #[error("empty number in brackets in '{item}' (put numbers or ranges inside, e.g. '[1-4]')")]
    EmptyElement {
        /// The entry holding the brackets.
        item: String,
    },
    /// Something in brackets that is neither `N` nor `N-M`.
    #[error(
        "'{element}' in '{item}' is not a number or a range (write numbers like '7' or ranges \
         like '1-16')"
    )]
    BadElement {
        /// The entry holding the brackets.
        item: String,
        /// The element as written.
        element: String,
    },
    /// `hi < lo`.
    #[error("range '{element}' in '{item}' runs backwards (write '{fixed}')")]
    Backwards {
        /// The entry holding the range.
        item: String,
        /// The range as written.
        element: String,
        /// The same range, ascending.
        fixed: String,
    },
    /// A number that does not fit in 64 bits.
    #[error("number '{digits}' in '{item}' is too large")]
    NumberTooLarge {
        /// The entry holding the number.
        item: String,
        /// The digits as written (shortened).
        digits: String,
    },
    /// A character that cannot be part of a host name.
    #[error(
        "invalid character {ch:?} in '{item}' (host names use letters, digits, '-', '.' and '_')"
    )]
    InvalidChar {
        /// The entry holding the character.
        item: String,
        /// The character.
        ch: char,
    },
    /// The expansion would exceed the limit.
    #[error(
        "'{item}' would expand to more than {limit} host names in all (check the ranges for an \
         extra digit)"
    )]
    TooMany {
        /// The entry at which the limit was crossed.
        item: String,
        /// The limit in force.
        limit: usize,
    },
    /// A name given to [`compress`] that no expression could reproduce.
    #[error(
        "cannot write {name:?} in a host list (host names use letters, digits, '-', '.' and '_')"
    )]
    InvalidName {
        /// The name, shortened.
        name: String,
    },
}

/// Expands `expr` into host names, in order, repeats kept, refusing more than [`MAX_NAMES`].
///
/// ```
/// use gangway_launcher::nodes::hostlist::expand;
/// assert_eq!(expand("n[1-2],login").unwrap(), ["n1", "n2", "login"]);
/// ```
pub fn expand(expr: &str) -> Result<Vec<String>, HostlistError> {
    expand_with_limit(expr, MAX_NAMES)
}

/// [`expand`] with a caller's limit on the number of names (a hostfile shares one budget across
/// its lines).
pub fn expand_with_limit(expr: &str, limit: usize) -> Result<Vec<String>, HostlistError> {
    let items = split_entries(expr)?;
    // Parse and count everything first, so an absurd expression fails before any allocation.
    let mut patterns = Vec::with_capacity(items.len());
    let mut total: u128 = 0;
    for item in items {
        let pattern = Pattern::parse(item)?;
        total = total.saturating_add(pattern.count());
        if total > limit as u128 {
            return Err(HostlistError::TooMany { item: shorten(item), limit });
        }
        patterns.push(pattern);
    }
    // `total <= limit` here, and `limit` is a usize.
    let mut names = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for pattern in &patterns {
        pattern.expand_into(&mut names);
    }
    Ok(names)
}

/// The number of names `expr` expands to, without expanding it (saturating at `u128::MAX`).
pub fn count(expr: &str) -> Result<u128, HostlistError> {
    let mut total: u128 = 0;
    for item in split_entries(expr)? {
        total = total.saturating_add(Pattern::parse(item)?.count());
    }
    Ok(total)
}

/// Splits `expr` at top-level separators (commas and whitespace outside brackets) into its
/// entries, without parsing them. Callers that put more than a host name in an entry (a
/// `user@` or a `:slots`) split with this and parse each piece themselves.
pub fn split_entries(expr: &str) -> Result<Vec<&str>, HostlistError> {
    let mut entries = Vec::new();
    let mut open_at: Option<usize> = None;
    let mut start = 0;
    // An entry must stand between any two commas, and before and after every comma:
    // `a,,b`, `,a` and `a,` are typos worth reporting, not lists to guess at.
    let mut comma_seen = false;
    let mut entry_since_comma = false;
    for (i, ch) in expr.char_indices() {
        let separator = open_at.is_none() && (ch == ',' || ch.is_whitespace());
        if separator {
            if start < i {
                entries.push(&expr[start..i]);
                entry_since_comma = true;
            }
            if ch == ',' {
                if !entry_since_comma {
                    return Err(HostlistError::EmptyEntry { expr: shorten(expr) });
                }
                comma_seen = true;
                entry_since_comma = false;
            }
            start = i + ch.len_utf8();
            continue;
        }
        match ch {
            '[' if open_at.is_some() => {
                return Err(HostlistError::Nested { item: shorten(entry_around(expr, i)) });
            }
            '[' => open_at = Some(i),
            ']' if open_at.is_none() => {
                return Err(HostlistError::UnmatchedClose { item: shorten(entry_around(expr, i)) });
            }
            ']' => open_at = None,
            _ => {}
        }
    }
    if let Some(open) = open_at {
        return Err(HostlistError::Unclosed { item: shorten(entry_around(expr, open)) });
    }
    if start < expr.len() {
        entries.push(&expr[start..]);
        entry_since_comma = true;
    }
    if comma_seen && !entry_since_comma {
        return Err(HostlistError::EmptyEntry { expr: shorten(expr) });
    }
    if entries.is_empty() {
        return Err(HostlistError::Empty);
    }
    Ok(entries)
}

/// Compresses `names` into the expression `scontrol show hostlist` would print: names that differ
/// only in a trailing number share a prefix and a bracket, consecutive numbers become ranges, and
/// order and repeats are kept, so expanding the result gives `names` back exactly.
///
/// ```
/// use gangway_launcher::nodes::hostlist::compress;
/// assert_eq!(compress(&["n1", "n2", "n3", "n7", "login"]).unwrap(), "n[1-3,7],login");
/// ```
pub fn compress<S: AsRef<str>>(names: &[S]) -> Result<String, HostlistError> {
    let mut runs: Vec<Run<'_>> = Vec::new();
    for name in names {
        let name = name.as_ref();
        if name.is_empty() || !name.chars().all(is_name_char) {
            return Err(HostlistError::InvalidName { name: shorten(name) });
        }
        let (prefix, number) = split_trailing_number(name);
        let Some((value, digits)) = number else {
            runs.push(Run::Single(name));
            continue;
        };
        if let Some(Run::Numbered { prefix: last_prefix, ranges }) = runs.last_mut()
            && *last_prefix == prefix
        {
            // `ranges` is never empty: a run is created with its first range.
            if let Some(last) = ranges.last_mut()
                && last.hi.checked_add(1) == Some(value)
                && pad(value, last.width) == digits
            {
                last.hi = value;
            } else {
                ranges.push(Range { lo: value, hi: value, width: digits.len() });
            }
            continue;
        }
        runs.push(Run::Numbered {
            prefix,
            ranges: vec![Range { lo: value, hi: value, width: digits.len() }],
        });
    }
    let mut out = String::new();
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match run {
            Run::Single(name) => out.push_str(name),
            Run::Numbered { prefix, ranges } => {
                out.push_str(prefix);
                match ranges.as_slice() {
                    [only] if only.lo == only.hi => out.push_str(&pad(only.lo, only.width)),
                    _ => {
                        out.push('[');
                        for (j, r) in ranges.iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            out.push_str(&pad(r.lo, r.width));
                            if r.hi != r.lo {
                                out.push('-');
                                out.push_str(&pad(r.hi, r.width));
                            }
                        }
                        out.push(']');
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Characters a host name may hold (outside brackets).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// `value` zero-padded to at least `width` digits.
fn pad(value: u64, width: usize) -> String {
    format!("{value:0width$}")
}

/// Splits `name` into its prefix and trailing number (value and digits as written). A name
/// without trailing digits, or whose digits overflow 64 bits, has no number and stands alone.
fn split_trailing_number(name: &str) -> (&str, Option<(u64, &str)>) {
    let digits_start = name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, digits) = name.split_at(digits_start);
    match digits.parse::<u64>() {
        Ok(value) if !digits.is_empty() => (prefix, Some((value, digits))),
        _ => (name, None),
    }
}

/// The entry of `expr` that holds byte offset `at` (a char boundary), for error messages.
fn entry_around(expr: &str, at: usize) -> &str {
    let is_sep = |c: char| c == ',' || c.is_whitespace();
    // Separators may be several bytes long (a no-break space is white space too).
    let start = expr[..at]
        .char_indices()
        .rev()
        .find(|(_, c)| is_sep(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let end = expr[at..].find(is_sep).map_or(expr.len(), |i| at + i);
    &expr[start..end]
}

/// `s` cut to a length that fits in one error line; environment variables can be huge.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

/// One numeric range of a bracket group, with the zero-padding width taken from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

impl Range {
    fn len(self) -> u128 {
        u128::from(self.hi - self.lo) + 1
    }
}

/// A piece of one entry.
#[derive(Debug)]
enum Segment<'a> {
    Literal(&'a str),
    /// Index into [`Pattern::groups`].
    Group(usize),
}

/// One parsed top-level entry.
#[derive(Debug)]
struct Pattern<'a> {
    segments: Vec<Segment<'a>>,
    groups: Vec<Vec<Range>>,
}

impl<'a> Pattern<'a> {
    fn parse(item: &'a str) -> Result<Self, HostlistError> {
        let mut segments = Vec::new();
        let mut groups = Vec::new();
        let mut rest = item;
        while !rest.is_empty() {
            match rest.find('[') {
                Some(open) => {
                    if open > 0 {
                        segments.push(Segment::Literal(check_literal(item, &rest[..open])?));
                    }
                    // `split_entries` already checked the brackets balance within an entry.
                    let after = &rest[open + 1..];
                    let close = after
                        .find(']')
                        .ok_or_else(|| HostlistError::Unclosed { item: shorten(item) })?;
                    groups.push(parse_group(item, &after[..close])?);
                    segments.push(Segment::Group(groups.len() - 1));
                    rest = &after[close + 1..];
                }
                None => {
                    segments.push(Segment::Literal(check_literal(item, rest)?));
                    rest = "";
                }
            }
        }
        Ok(Pattern { segments, groups })
    }

    /// How many names this entry expands to (saturating).
    fn count(&self) -> u128 {
        self.groups
            .iter()
            .map(|g| g.iter().map(|r| r.len()).fold(0u128, u128::saturating_add))
            .fold(1u128, u128::saturating_mul)
    }

    /// Appends this entry's names to `out`. Only called once [`Self::count`] is known to be
    /// within the limit, so every group is small enough to list.
    fn expand_into(&self, out: &mut Vec<String>) {
        let values: Vec<Vec<String>> = self
            .groups
            .iter()
            .map(|g| g.iter().flat_map(|r| (r.lo..=r.hi).map(move |v| pad(v, r.width))).collect())
            .collect();
        let k = values.len();
        if k == 0 {
            let mut name = String::new();
            for s in &self.segments {
                if let Segment::Literal(l) = s {
                    name.push_str(l);
                }
            }
            out.push(name);
            return;
        }
        if values.iter().any(Vec::is_empty) {
            return;
        }
        // Nesting from outermost to innermost, as Slurm does it: the groups before the last one
        // from right to left, then the last group.
        let order: Vec<usize> = (0..k - 1).rev().chain(std::iter::once(k - 1)).collect();
        let mut index = vec![0usize; k];
        loop {
            let mut name = String::new();
            for s in &self.segments {
                match s {
                    Segment::Literal(l) => name.push_str(l),
                    Segment::Group(g) => name.push_str(&values[*g][index[*g]]),
                }
            }
            out.push(name);
            // Advance the odometer, innermost group first.
            let mut carried = true;
            for &g in order.iter().rev() {
                index[g] += 1;
                if index[g] < values[g].len() {
                    carried = false;
                    break;
                }
                index[g] = 0;
            }
            if carried {
                return;
            }
        }
    }
}

fn check_literal<'a>(item: &str, literal: &'a str) -> Result<&'a str, HostlistError> {
    match literal.chars().find(|&c| !is_name_char(c)) {
        Some(']') => Err(HostlistError::UnmatchedClose { item: shorten(item) }),
        Some(ch) => Err(HostlistError::InvalidChar { item: shorten(item), ch }),
        None => Ok(literal),
    }
}

/// Parses the inside of one bracket group.
fn parse_group(item: &str, inner: &str) -> Result<Vec<Range>, HostlistError> {
    let mut ranges = Vec::new();
    for element in inner.split(',') {
        if element.is_empty() {
            return Err(HostlistError::EmptyElement { item: shorten(item) });
        }
        let bad = || HostlistError::BadElement { item: shorten(item), element: shorten(element) };
        let (lo_s, hi_s) = match element.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (element, element),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(lo_s) || !all_digits(hi_s) {
            if let Some(ch) = element.chars().find(|&c| !c.is_ascii_digit() && c != '-')
                && !is_name_char(ch)
            {
                return Err(HostlistError::InvalidChar { item: shorten(item), ch });
            }
            return Err(bad());
        }
        let number = |s: &str| {
            s.parse::<u64>().map_err(|_| HostlistError::NumberTooLarge {
                item: shorten(item),
                digits: shorten(s),
            })
        };
        let (lo, hi) = (number(lo_s)?, number(hi_s)?);
        if hi < lo {
            return Err(HostlistError::Backwards {
                item: shorten(item),
                element: element.to_string(),
                fixed: format!("{hi_s}-{lo_s}"),
            });
        }
        ranges.push(Range { lo, hi, width: lo_s.len() });
    }
    Ok(ranges)
}

/// A stretch of consecutive names for [`compress`].
#[derive(Debug)]
enum Run<'a> {
    /// A name without a trailing number.
    Single(&'a str),
    /// Names sharing a prefix, each ending in a number.
    Numbered { prefix: &'a str, ranges: Vec<Range> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ex(expr: &str) -> Vec<String> {
        expand(expr).unwrap()
    }

    #[test]
    fn expands_ranges_and_lists_keeping_padding() {
        let names = ex("node[01-16,20]");
        assert_eq!(names.len(), 17);
        assert_eq!(names[0], "node01");
        assert_eq!(names[8], "node09");
        assert_eq!(names[15], "node16");
        assert_eq!(names[16], "node20");
        assert_eq!(ex("n[08-10]"), ["n08", "n09", "n10"]);
        assert_eq!(ex("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(ex("n[001-2,7]"), ["n001", "n002", "n7"]);
    }

    #[test]
    fn two_groups_read_left_to_right() {
        assert_eq!(
            ex("rack[1-2]-n[1-4]"),
            [
                "rack1-n1", "rack1-n2", "rack1-n3", "rack1-n4", "rack2-n1", "rack2-n2", "rack2-n3",
                "rack2-n4"
            ]
        );
    }

    #[test]
    fn three_groups_nest_as_slurm_does() {
        // The last group varies fastest; of the others the rightmost is outermost.
        assert_eq!(
            ex("a[1-2]b[1-2]c[1-2]"),
            ["a1b1c1", "a1b1c2", "a2b1c1", "a2b1c2", "a1b2c1", "a1b2c2", "a2b2c1", "a2b2c2"]
        );
    }

    #[test]
    fn top_level_lists_suffixes_and_bare_brackets() {
        assert_eq!(ex("a,b[1-2],c"), ["a", "b1", "b2", "c"]);
        assert_eq!(ex("node[1-2].ib0"), ["node1.ib0", "node2.ib0"]);
        assert_eq!(ex("10.0.0.[1-3]"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(ex("[7-8]"), ["7", "8"]);
        assert_eq!(ex(" a , b  c\t"), ["a", "b", "c"]);
        assert_eq!(ex("n1,n1"), ["n1", "n1"]);
        assert_eq!(ex("node_a[1-1]"), ["node_a1"]);
    }

    #[test]
    fn refuses_malformed_expressions_with_the_fix() {
        let err = |e: &str| expand(e).unwrap_err().to_string();
        assert_eq!(err("node[1-3"), "unclosed '[' in 'node[1-3' (close it: 'node[1-3]')");
        assert!(err("node1-3]").contains("']' without a matching '['"));
        assert!(err("n[1[2]]").contains("brackets do not nest"));
        assert!(err("n[]").contains("empty number in brackets"));
        assert!(err("n[1,,2]").contains("empty number in brackets"));
        assert!(err("n[a-b]").contains("'a-b' in 'n[a-b]' is not a number or a range"));
        assert!(err("n[1-2-3]").contains("is not a number or a range"));
        assert_eq!(err("n[5-3]"), "range '5-3' in 'n[5-3]' runs backwards (write '3-5')");
        assert!(err("n[99999999999999999999999]").contains("too large"));
        assert!(err("no de@x").contains("invalid character '@'"));
        assert!(err("n[1 ,2]").contains("invalid character ' '"));
        assert_eq!(err(""), HostlistError::Empty.to_string());
        assert_eq!(err(" , "), err("a,,b").replace("'a,,b'", "' , '"));
        assert!(err("a,,b").contains("empty entry"));
        assert!(err("a,").contains("empty entry"));
        assert!(err(",a").contains("empty entry"));
    }

    #[test]
    fn refuses_absurd_expansions_before_allocating() {
        let e = expand("node[1-1000000000]").unwrap_err();
        assert!(matches!(e, HostlistError::TooMany { limit: MAX_NAMES, .. }), "{e}");
        assert!(e.to_string().contains("more than 1000000 host names"));
        // A product that would overflow any integer type still fails cleanly.
        let huge = "a[0-18446744073709551615]b[0-18446744073709551615]c[0-18446744073709551615]";
        assert!(matches!(expand(huge), Err(HostlistError::TooMany { .. })));
        assert_eq!(count("n[1-1000000000]").unwrap(), 1_000_000_000);
        // Exactly at the limit is fine; the budget is shared across entries.
        assert_eq!(expand_with_limit("a[1-3],b", 4).unwrap().len(), 4);
        assert!(expand_with_limit("a[1-3],b[1-2]", 4).is_err());
    }

    #[test]
    fn compresses_like_scontrol() {
        let c = |names: &[&str]| compress(names).unwrap();
        assert_eq!(c(&["n1", "n2", "n3", "n7", "login"]), "n[1-3,7],login");
        assert_eq!(c(&["node08", "node09", "node10"]), "node[08-10]");
        assert_eq!(c(&["n9", "n10"]), "n[9-10]");
        assert_eq!(c(&["n01", "n2"]), "n[01,2]");
        assert_eq!(c(&["n1"]), "n1");
        assert_eq!(c(&["n1", "n1"]), "n[1,1]");
        assert_eq!(c(&["n3", "n2", "n1"]), "n[3,2,1]");
        assert_eq!(c(&["n1", "m1", "n2"]), "n1,m1,n2");
        assert_eq!(c(&["login", "login"]), "login,login");
        assert_eq!(c(&["10.0.0.1", "10.0.0.2"]), "10.0.0.[1-2]");
        assert_eq!(
            c(&ex("rack[1-2]-n[1-4]").iter().map(String::as_str).collect::<Vec<_>>()),
            "rack1-n[1-4],rack2-n[1-4]"
        );
        assert_eq!(c(&[] as &[&str]), "");
    }

    #[test]
    fn compress_refuses_names_it_cannot_write() {
        for bad in ["", "a,b", "n[1]", "a b", "ünï"] {
            assert!(matches!(compress(&[bad]), Err(HostlistError::InvalidName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn long_inputs_are_shortened_in_messages() {
        let long = format!("{}@", "a".repeat(500));
        let msg = expand(&long).unwrap_err().to_string();
        assert!(msg.len() < 250, "{msg}");
    }

    /// Host names: a prefix that may end in anything, maybe a number with some padding.
    fn name_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["n", "node", "rack1-n", "a.b", "x_", "", "gpu-"]),
            prop::option::of((0u64..40, 0usize..4)),
        )
            .prop_filter_map("a name needs some text", |(prefix, number)| {
                let name = match number {
                    Some((v, w)) => format!("{prefix}{v:0w$}"),
                    None => prefix.to_string(),
                };
                (!name.is_empty()).then_some(name)
            })
    }

    /// A canonical expression: one prefix, ascending ranges with gaps, one padding width.
    fn canonical_entry() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["n", "node", "r1-n", "c."]),
            1usize..4,
            prop::collection::vec((2u64..5, 0u64..4), 1..5),
        )
            .prop_map(|(prefix, width, steps)| {
                let mut parts = Vec::new();
                let mut next = 0u64;
                for (gap, extra) in steps {
                    let lo = next + gap;
                    let hi = lo + extra;
                    parts.push(if lo == hi {
                        pad(lo, width)
                    } else {
                        format!("{}-{}", pad(lo, width), pad(hi, width))
                    });
                    next = hi;
                }
                if parts.len() == 1 && !parts[0].contains('-') {
                    format!("{prefix}{}", parts[0])
                } else {
                    format!("{prefix}[{}]", parts.join(","))
                }
            })
    }

    /// Any expression: entries with zero to three groups of numbers and ranges.
    fn any_expression() -> impl Strategy<Value = String> {
        let group = prop::collection::vec((0u64..30, 0u64..5, 1usize..4), 1..4).prop_map(|rs| {
            let parts: Vec<String> = rs
                .into_iter()
                .map(|(lo, len, w)| format!("{}-{}", pad(lo, w), pad(lo + len, w)))
                .collect();
            format!("[{}]", parts.join(","))
        });
        let entry = (
            prop::sample::select(vec!["n", "rack", "a.", "x_"]),
            prop::collection::vec((group, prop::sample::select(vec!["", "-n", ".ib", "s"])), 0..4),
        )
            .prop_map(|(prefix, groups)| {
                let mut s = prefix.to_string();
                for (g, lit) in groups {
                    s.push_str(&g);
                    s.push_str(lit);
                }
                s
            });
        prop::collection::vec(entry, 1..4).prop_map(|es| es.join(","))
    }

    #[test]
    fn errors_around_multibyte_separators_do_not_panic() {
        // Found by the property test in CI: a no-break space before an unmatched ']'.
        let e = expand("a\u{a0}b]c").expect_err("unmatched");
        assert!(e.to_string().contains("b]c"), "{e}");
    }

    proptest! {
        #[test]
        fn expand_inverts_compress(names in prop::collection::vec(name_strategy(), 0..40)) {
            let expr = compress(&names).unwrap();
            if names.is_empty() {
                prop_assert_eq!(expr, "");
            } else {
                prop_assert_eq!(expand(&expr).unwrap(), names);
            }
        }

        #[test]
        fn canonical_expressions_round_trip(
            entries in prop::collection::vec(canonical_entry(), 1..4)
        ) {
            // Different prefixes side by side stay separate entries, so keep neighbours distinct.
            let mut kept: Vec<String> = Vec::new();
            for e in entries {
                let prefix = |s: &str| s.split(|c: char| c.is_ascii_digit() || c == '[')
                    .next().unwrap_or("").to_string();
                if kept.last().is_none_or(|last| prefix(last) != prefix(&e)) {
                    kept.push(e);
                }
            }
            let expr = kept.join(",");
            prop_assert_eq!(compress(&expand(&expr).unwrap()).unwrap(), expr);
        }

        #[test]
        fn compress_of_any_expansion_is_a_fixpoint(expr in any_expression()) {
            let names = expand(&expr).unwrap();
            let once = compress(&names).unwrap();
            prop_assert_eq!(&expand(&once).unwrap(), &names);
            prop_assert_eq!(compress(&expand(&once).unwrap()).unwrap(), once);
            prop_assert_eq!(count(&expr).unwrap(), names.len() as u128);
        }

        #[test]
        fn expansion_order_is_stable_and_per_entry(expr in any_expression()) {
            let whole = expand(&expr).unwrap();
            prop_assert_eq!(&expand(&expr).unwrap(), &whole);
            let by_entry: Vec<String> = split_entries(&expr).unwrap()
                .into_iter().flat_map(|e| expand(e).unwrap()).collect();
            prop_assert_eq!(whole, by_entry);
        }

        #[test]
        fn two_groups_are_a_row_major_product(
            a in prop::collection::vec(0u64..20, 1..4),
            b in prop::collection::vec(0u64..20, 1..4),
        ) {
            let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let expr = format!("r[{}]-n[{}]", list(&a), list(&b));
            let mut want = Vec::new();
            for x in &a {
                for y in &b {
                    want.push(format!("r{x}-n{y}"));
                }
            }
            prop_assert_eq!(expand(&expr).unwrap(), want);
        }

        #[test]
        fn never_panics_on_arbitrary_input(s in "\\PC{0,40}") {
            let _ = expand(&s);
            let _ = count(&s);
        }

        #[test]
        fn never_panics_on_bracket_soup(s in "[a-c0-9\\[\\],\\- ]{0,30}") {
            if let Ok(names) = expand(&s) {
                prop_assert_eq!(expand(&compress(&names).unwrap()).unwrap(), names);
            }
        }
    }
}
