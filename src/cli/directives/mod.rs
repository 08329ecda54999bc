//! Batch-script directives: the `#GANGWAY` and `#SBATCH` lines at the top of a script given to
//! `gangway batch`, read the way Slurm's `sbatch` reads them, checked line by line against the
//! batch command's flags, and merged in front of the command line so the command line wins.
//!
//! # Which lines are directives
//!
//! The script is split into lines at `\n`; a `\r` before it is dropped (CRLF scripts), and a UTF-8
//! byte-order mark before the first line is skipped. Line numbers count from 1. From the top:
//!
//! - A line that starts, in column 0, with `#GANGWAY` or `#SBATCH` followed by a space, a tab or
//!   the end of the line is a **directive**. The tags are case-sensitive, as in Slurm: `#sbatch` and
//!   an indented `  #SBATCH` are ordinary comments. A tag glued to more text (`#SBATCH--nodes=2`) is
//!   an error rather than a comment, so a mistyped directive is never silently dropped.
//! - A line that is empty, only whitespace, or whose first non-whitespace character is `#` (the
//!   `#!` line, any other comment) is skipped.
//! - The first other line is the script's first command: reading stops there (Slurm's rule). Tagged
//!   lines after it are not directives; they are reported in [`Directives::late`] so the batch
//!   command can warn about them.
//!
//! A script without `#!`, or an empty one, is fine: it simply has no [`Directives::shebang`] (or no
//! directives). Directive lines must be UTF-8; other lines (comments, the body) may hold any bytes.
//!
//! # How a directive's words are split
//!
//! The text after the tag is split like a POSIX shell splits a command line, with the `shlex`
//! crate: whitespace separates words; `'...'` and `"..."` group them (`--job-name="my job"` is
//! one word, `--job-name=my job`); a backslash escapes the next character; a `#` that starts a word
//! begins a comment to the end of the line (`#SBATCH -N 2  # two nodes`). Two deliberate
//! differences from `sbatch`, which has its own splitter: a `#` inside a word is kept
//! (`-J run#3` is `run#3`; Slurm would cut the line at it), and inside single quotes a backslash is
//! literal, as in a shell. An unterminated quote or a lone trailing backslash is an error naming
//! the line, as is a directive with no words or whose first word is not a flag.
//!
//! `shlex` was chosen over `shell-words`: both follow POSIX quoting, but `shlex` is already in
//! the build (through `cc`), is widely used, has no dependencies, and handles `#` comments.
//!
//! # Precedence
//!
//! [`merged_args`] puts every `#SBATCH` directive first (in file order), then every `#GANGWAY`
//! directive (in file order), then the command line. With clap's "last one wins"
//! (`Command::args_override_self(true)`, which the batch command must set), a flag given on the
//! command line beats both kinds of directive, a `#GANGWAY` line beats an `#SBATCH` line for the same
//! flag wherever the two stand in the file (a script adapted for gangway keeps its Slurm lines for
//! Slurm and adds gangway-specific ones), and among lines of one kind the later wins, as in
//! `sbatch`. Flags that accumulate (a `Vec` of values) collect from all of them, in that order.
//!
//! # Checking, and errors that name the line
//!
//! [`validate`] parses each directive line on its own against the batch command's
//! [`clap::Command`] (any command: nothing here knows the batch flags), so a bad value is reported
//! with the line it came from:
//!
//! ```text
//! job.sh:3: #SBATCH --time=1:99: invalid value '1:99' for '--time <TIME>': time limit '1:99': seconds must be 0-59 (...)
//! ```
//!
//! Errors that only a combination of lines can show (a flag that requires another one set on a
//! different line, two conflicting flags on different lines) are left to the final parse of the
//! merged arguments; [`Validated::source_of`] tells which directive set a flag, so a later
//! check of a value (one done after parsing, as `run` does) can still name the line.
//!
//! # Slurm options gangway does not support yet
//!
//! A flag the batch command does not know but `sbatch` does (`--licenses`, `--wckey`,
//! `--mail-type`, ... see [`SLURM_OPTIONS`]) is an error naming the line and the flag, unless the
//! user opts out with [`IGNORE_UNKNOWN_FLAG`] (`--ignore-unknown-directives`): then the flag and its
//! value are dropped, the rest of the line is kept, and each drop is listed in
//! [`Validated::ignored`] for a warning. A flag neither knows (a typo such as `--tiem`) is always
//! an error, with clap's suggestion.
//!
//! The batch command is expected to accept at least [`EXPECTED_BATCH_FLAGS`]: the `#SBATCH`
//! flags most scripts use.

mod extract;
mod mapping;

pub use extract::{
    Directive, DirectiveError, Directives, LateDirective, Problem, Sentinel, extract, extract_bytes,
};
pub use mapping::{
    EXPECTED_BATCH_FLAGS, IGNORE_UNKNOWN_FLAG, Ignored, SLURM_OPTIONS, SlurmValue,
    UnknownDirectives, Validated, merged_args, valid_output_pattern, valid_time_limit, validate,
};
