//! What the Slurm commands share in reading their words: clap parsing that names a Slurm flag
//! gangway does not take yet, comma-separated lists, and the current user (whose jobs `--me`
//! and the default filters mean).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::cli::directives::SLURM_OPTIONS;
use crate::cli::error::CliError;

/// Parses `args` with clap for `command`, turning clap's complaints into a usage error that
/// names the flag: a Slurm option gangway does not take yet is told apart from a typo.
/// `--help` and `--version` print and exit here, as clap does.
pub fn parse<T: clap::FromArgMatches>(
    command: clap::Command,
    name: &'static str,
    args: Vec<OsString>,
) -> Result<T, CliError> {
    let command = command.name(name).bin_name(name);
    let parsed = command
        .try_get_matches_from(std::iter::once(OsString::from(name)).chain(args))
        .and_then(|m| T::from_arg_matches(&m));
    parsed.map_err(|e| usage_error(name, e))
}

/// A clap error as a `CliError` (help and version print and exit).
pub fn usage_error(name: &str, e: clap::Error) -> CliError {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        ErrorKind::UnknownArgument => {
            let flag = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            CliError::Usage(unsupported(name, &flag))
        }
        _ => CliError::Usage(
            e.to_string().trim_start_matches("error: ").lines().next().unwrap_or("").trim().into(),
        ),
    }
}

/// Why `flag` is refused: a Slurm option gangway has not implemented, or not one at all.
pub fn unsupported(name: &str, flag: &str) -> String {
    let bare = flag.split('=').next().unwrap_or(flag);
    let known = match bare.strip_prefix("--") {
        Some(long) => SLURM_OPTIONS.iter().any(|(l, _, _)| *l == long),
        None => bare
            .strip_prefix('-')
            .and_then(|s| s.chars().next())
            .is_some_and(|c| SLURM_OPTIONS.iter().any(|(_, s, _)| *s == Some(c))),
    };
    if known {
        format!(
            "{bare} is a Slurm option gangway does not support yet (docs/slurm.md lists what is supported)"
        )
    } else {
        format!("unrecognized option '{bare}' (see {name} --help)")
    }
}

/// A comma-separated list as its items (empty items dropped).
pub fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}
