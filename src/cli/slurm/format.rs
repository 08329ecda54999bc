//! Slurm's output format strings, for `squeue`, `sinfo` and `sacct` (pure): `-o` with
//! `%[.|-][width]letter` and any text between the fields (`%i|%T`, `%.18i %.9P`), and `-O` with
//! field names (`JobID:10,Name:.30`). A field with a width is cut or padded to it ('.' pads on
//! the left, as Slurm right-justifies); one without is printed whole.

/// A field: a `%` letter or an `-O` name (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Letter(char),
    Name(String),
}

/// One piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(String),
    Field { key: Key, width: Option<usize>, right: bool },
}

/// Reads a `-o` format: `%%` is a percent sign, anything else outside a field is kept as is.
pub fn parse_letters(format: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            text.push('%');
            continue;
        }
        let mut right = false;
        match chars.peek() {
            Some('.') => {
                right = true;
                chars.next();
            }
            Some('-') => {
                chars.next();
            }
            _ => {}
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let Some(letter) = chars.next() else {
            text.push('%');
            text.push_str(&digits);
            break;
        };
        if !text.is_empty() {
            items.push(Item::Text(std::mem::take(&mut text)));
        }
        let width = digits.parse().ok().filter(|w| *w > 0);
        items.push(Item::Field { key: Key::Letter(letter), width, right });
    }
    if !text.is_empty() {
        items.push(Item::Text(text));
    }
    items
}

/// Reads a `-O`/`--Format` list: `name[:[.][width][suffix]]`, comma-separated; a field without a
/// width gets `default_width` (Slurm's is 20), one with width 0 is printed whole.
pub fn parse_names(format: &str, default_width: usize) -> Vec<Item> {
    let mut items = Vec::new();
    for spec in format.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let (right, rest) = match rest.strip_prefix('.') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let suffix = &rest[digits.len()..];
        let width = match digits.parse::<usize>() {
            Ok(0) => None,
            Ok(w) => Some(w),
            Err(_) => Some(default_width),
        };
        items.push(Item::Field { key: Key::Name(name.to_ascii_lowercase()), width, right });
        if !suffix.is_empty() {
            items.push(Item::Text(suffix.to_string()));
        }
    }
    items
}

fn fit(value: &str, width: Option<usize>, right: bool) -> String {
    match width {
        None => value.to_string(),
        Some(w) => {
            let cut: String = value.chars().take(w).collect();
            if right { format!("{cut:>w$}") } else { format!("{cut:<w$}") }
        }
    }
}

/// One line: each field's text (from `value`) fitted to its width, with the text between.
pub fn line(items: &[Item], value: impl Fn(&Key) -> String) -> String {
    let mut out = String::new();
    for item in items {
        match item {
            Item::Text(t) => out.push_str(t),
            Item::Field { key, width, right } => out.push_str(&fit(&value(key), *width, *right)),
        }
    }
    // Slurm pads the last column too; a trailing blank helps no reader or script.
    out.trim_end().to_string()
}

/// A header (when asked) and one line per row.
pub fn render<R>(
    items: &[Item],
    rows: &[R],
    header: Option<&dyn Fn(&Key) -> String>,
    value: impl Fn(&R, &Key) -> String,
) -> String {
    let mut out = String::new();
    if let Some(header) = header {
        out.push_str(&line(items, header));
        out.push('\n');
    }
    for r in rows {
        out.push_str(&line(items, |k| value(r, k)));
        out.push('\n');
    }
    out
}

/// `sacct --parsable2` (and `--parsable`, which ends each line with the separator too).
pub fn render_parsable<R>(
    names: &[String],
    rows: &[R],
    header: Option<&dyn Fn(&str) -> String>,
    value: impl Fn(&R, &str) -> String,
    trailing: bool,
) -> String {
    let mut out = String::new();
    let end = if trailing { "|" } else { "" };
    if let Some(header) = header {
        let h: Vec<String> = names.iter().map(|n| header(n)).collect();
        out.push_str(&format!("{}{end}\n", h.join("|")));
    }
    for r in rows {
        let v: Vec<String> = names.iter().map(|n| value(r, n)).collect();
        out.push_str(&format!("{}{end}\n", v.join("|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(items: &[Item]) -> String {
        line(items, |k| match k {
            Key::Letter(c) => format!("<{c}>"),
            Key::Name(n) => format!("<{n}>"),
        })
    }

    #[test]
    fn widths_justify_and_cut_and_any_separator_is_kept() {
        let items = parse_letters("%.6i|%-5T %j%%");
        assert_eq!(show(&items), "   <i>|<T>   <j>%");
        let items = parse_letters("%.2j");
        assert_eq!(show(&items), "<j");
    }

    #[test]
    fn field_names_take_widths_suffixes_and_a_default() {
        let items = parse_names("JobID:6,Name:.5|,state:0", 20);
        assert_eq!(show(&items), "<jobid<name|<state>");
        let items = parse_names("jobid", 8);
        assert_eq!(show(&items), "<jobid>");
        assert_eq!(line(&parse_names("jobid,state", 8), |_| "x".into()), "x       x");
    }
}
