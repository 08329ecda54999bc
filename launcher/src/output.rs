//! Rank stdout/stderr: file name patterns, whole-line assembly with labels, and the one writer.
//!
//! Every destination (our stdout, our stderr, each output file) is written by a single thread
//! that receives whole lines, so lines of different ranks can never be mixed mid-line. What it
//! has queued is bounded ([`crate::flow`]): a rank's pipe is read only while there is room.

use std::sync::Arc;

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::thread::JoinHandle;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::flow::{Budget, OutputTx, Progress, SINK_BUDGET};

/// A line longer than this is cut, so one runaway rank cannot hold the others' output forever.
pub const MAX_LINE: usize = 64 * 1024;

/// The values an `--output`/`--error` pattern may refer to.
#[derive(Debug, Clone)]
pub struct PatternVars<'a> {
    pub job_id: &'a str,
    pub rank: u32,
    pub node_id: u32,
    pub host: &'a str,
    pub user: &'a str,
}

/// An output file pattern that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output pattern '{pattern}': {problem} (known: {known})")]
pub struct PatternError {
    pattern: String,
    problem: String,
    /// The escapes of the kind of pattern that failed (`run`'s per-rank ones, or a batch job's).
    known: &'static str,
}

const RUN_ESCAPES: &str =
    "%j job id, %t rank, %n node id, %N host, %u user, %% a percent sign; %3t pads to 3 digits";

const BATCH_ESCAPES: &str = "%j job id, %x job name, %u user, %N first node, %A array job id, %a array task id, %% a percent sign; %5j pads to 5 digits";

/// Where a batch job's output goes when neither `--output` nor a directive says: the submit
/// directory, like Slurm's `slurm-%j.out`.
pub const DEFAULT_BATCH_OUTPUT: &str = "gangway-%j.out";

/// The same for a task of a job array (Slurm's `slurm-%A_%a.out`).
pub const DEFAULT_ARRAY_OUTPUT: &str = "gangway-%A_%a.out";

/// What `%a` is for a job that is no array task (Slurm's `NO_VAL - 1`).
const NOT_AN_ARRAY_TASK: &str = "4294967294";

/// The values a batch job's `--output`/`--error` pattern may refer to.
#[derive(Debug, Clone)]
pub struct BatchPatternVars<'a> {
    pub job_id: &'a str,
    pub job_name: &'a str,
    pub user: &'a str,
    /// The first node of the allocation (the one the batch script runs on).
    pub first_node: &'a str,
    /// An array task's array job id and index (`%A`, `%a`); for another job `%A` is its id.
    pub array: Option<(&'a str, &'a str)>,
}

/// Expands `%j %t %n %N %u %%` (with optional zero-padding width, `%4t`) in a file pattern.
pub fn expand_pattern(pattern: &str, vars: &PatternVars<'_>) -> Result<String, PatternError> {
    expand_with(pattern, RUN_ESCAPES, |c| match c {
        'j' => Some(vars.job_id.to_string()),
        't' => Some(vars.rank.to_string()),
        'n' => Some(vars.node_id.to_string()),
        'N' => Some(vars.host.to_string()),
        'u' => Some(vars.user.to_string()),
        _ => None,
    })
}

/// Expands a batch job's `--output`/`--error` pattern: `%j %x %u %N %%`, with an optional
/// zero-padding width (`%5j`). The per-rank escapes of `run` (`%t`, `%n`) are refused: the batch
/// script is one process, and Slurm's meaning for them would only surprise.
pub fn expand_batch_pattern(
    pattern: &str,
    vars: &BatchPatternVars<'_>,
) -> Result<String, PatternError> {
    expand_with(pattern, BATCH_ESCAPES, |c| match c {
        'j' => Some(vars.job_id.to_string()),
        'x' => Some(vars.job_name.to_string()),
        'u' => Some(vars.user.to_string()),
        'N' => Some(vars.first_node.to_string()),
        'A' => Some(vars.array.map_or(vars.job_id, |a| a.0).to_string()),
        'a' => Some(vars.array.map_or(NOT_AN_ARRAY_TASK, |a| a.1).to_string()),
        _ => None,
    })
}

/// The one expander behind both kinds of pattern: `%%`, widths and errors are handled here, and
/// `value` supplies each escape letter's text (`None`: not an escape of this kind of pattern).
fn expand_with(
    pattern: &str,
    known: &'static str,
    value: impl Fn(char) -> Option<String>,
) -> Result<String, PatternError> {
    let fail = |problem: String| PatternError { pattern: pattern.to_string(), problem, known };
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        let width: usize = if width.is_empty() {
            0
        } else {
            width
                .parse()
                .ok()
                .filter(|w| *w <= 64)
                .ok_or_else(|| fail(format!("width '{width}' is too large")))?
        };
        let piece = match chars.next() {
            Some('%') => "%".to_string(),
            Some(letter) => match value(letter) {
                Some(text) => text,
                None => return Err(fail(format!("unknown '%{letter}'"))),
            },
            None => return Err(fail("ends with a lone '%'".into())),
        };
        out.push_str(&format!("{piece:0>width$}"));
    }
    Ok(out)
}

/// Whether a pattern gives each rank a file of its own.
pub fn pattern_is_per_rank(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.by_ref().find(|c| !c.is_ascii_digit()) {
                Some('t') => return true,
                _ => continue,
            }
        }
    }
    false
}

/// Turns a rank's byte stream into whole (optionally labelled) lines.
#[derive(Debug)]
pub struct LineAssembler {
    pending: Vec<u8>,
    label: Option<Vec<u8>>,
    raw: bool,
}

impl LineAssembler {
    /// Whole lines, each prefixed with `label` when given.
    pub fn lines(label: Option<String>) -> Self {
        LineAssembler { pending: Vec::new(), label: label.map(String::into_bytes), raw: false }
    }

    /// Bytes passed through untouched: for a destination only one rank writes to.
    pub fn raw() -> Self {
        LineAssembler { pending: Vec::new(), label: None, raw: true }
    }

    /// Appends to `out` every line completed by `data`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if self.raw {
            out.extend_from_slice(data);
            return;
        }
        while let Some(pos) = memchr(b'\n', data) {
            let (line, rest) = data.split_at(pos + 1);
            self.emit(line, out);
            data = rest;
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let head: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit_whole(&head, out);
            out.push(b'\n');
        }
    }

    /// Appends the unfinished last line, closed with a newline so the next line starts clean.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.emit_whole(&pending, out);
            out.push(b'\n');
        }
    }

    fn emit(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        if let Some(label) = &self.label {
            out.extend_from_slice(label);
        }
        out.append(&mut self.pending);
        out.extend_from_slice(tail);
    }

    fn emit_whole(&self, line: &[u8], out: &mut Vec<u8>) {
        if let Some(label) = &self.label {
            out.extend_from_slice(label);
        }
        out.extend_from_slice(line);
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

pub use crate::flow::DestinationId;
/// Our own standard output.
pub const STDOUT: DestinationId = 0;
/// Our own standard error.
pub const STDERR: DestinationId = 1;

/// The writer thread and the channel into it.
#[derive(Debug)]
pub struct OutputSink {
    tx: Option<OutputTx>,
    thread: Option<JoinHandle<()>>,
}

impl OutputSink {
    /// Starts the writer; `files` become destinations 2, 3, ... in order.
    pub fn start(files: Vec<File>) -> Self {
        let (tx, rx) = unbounded_channel();
        let budget = Budget::new(SINK_BUDGET);
        let written = Arc::clone(&budget);
        let thread = std::thread::Builder::new()
            .name("gangway-output".into())
            .spawn(move || write_loop(files, rx, &written))
            .ok();
        OutputSink { tx: Some(OutputTx::new(tx, budget)), thread }
    }

    /// A sender for a reader task.
    pub fn sender(&self) -> Option<OutputTx> {
        self.tx.clone()
    }

    /// Waits until everything sent so far has been written.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(
    files: Vec<File>,
    mut rx: UnboundedReceiver<(DestinationId, Vec<u8>)>,
    budget: &Budget,
) {
    // SAFETY: fds 1 and 2 are open for the life of the process; ManuallyDrop keeps them open.
    let std_streams = unsafe {
        [ManuallyDrop::new(File::from_raw_fd(1)), ManuallyDrop::new(File::from_raw_fd(2))]
    };
    let mut broken = vec![false; files.len() + 2];
    while let Some((dest, bytes)) = rx.blocking_recv() {
        // Written or dropped, the bytes leave the queue: room for more.
        let _room = GiveBack(budget, bytes.len());
        if broken.get(dest).copied().unwrap_or(true) {
            continue;
        }
        let result = match dest {
            STDOUT | STDERR => (&*std_streams[dest]).write_all(&bytes),
            n => match files.get(n - 2) {
                Some(mut f) => f.write_all(&bytes),
                None => continue,
            },
        };
        // A closed pipe (`gangway run ... | head`) must not stop the job; drop that stream.
        if result.is_err() {
            broken[dest] = true;
        }
    }
}

/// Gives bytes back to a budget when dropped.
struct GiveBack<'a>(&'a Budget, usize);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.give(self.1);
    }
}

/// Copies one rank stream into the sink, whole lines at a time, until end of file; reading
/// waits while the sink's budget is spent, so the rank blocks on a full pipe meanwhile.
pub async fn pump(
    mut source: impl AsyncRead + Unpin,
    mut assembler: LineAssembler,
    dest: DestinationId,
    sink: OutputTx,
    progress: Arc<Progress>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match source.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        progress.read(n);
        let mut out = Vec::new();
        assembler.push(&buf[..n], &mut out);
        if !out.is_empty() && sink.send_when_room((dest, out), &progress).await.is_err() {
            return;
        }
    }
    let mut out = Vec::new();
    assembler.finish(&mut out);
    if !out.is_empty() {
        let _ = sink.send_when_room((dest, out), &progress).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> PatternVars<'static> {
        PatternVars { job_id: "42", rank: 3, node_id: 1, host: "n1", user: "ann" }
    }

    #[test]
    fn patterns_expand() {
        assert_eq!(expand_pattern("out-%j-%t.%n.%N.%u%%", &vars()).unwrap(), "out-42-3.1.n1.ann%");
        assert_eq!(expand_pattern("r%3t", &vars()).unwrap(), "r003");
        assert!(pattern_is_per_rank("x-%t"));
        assert!(pattern_is_per_rank("x-%04t"));
        assert!(!pattern_is_per_rank("x-%%t"));
        assert!(!pattern_is_per_rank("x-%j"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert!(expand_pattern("a%q", &vars()).unwrap_err().to_string().contains("unknown '%q'"));
        assert!(expand_pattern("a%", &vars()).unwrap_err().to_string().contains("lone '%'"));
        assert!(expand_pattern("a%999t", &vars()).unwrap_err().to_string().contains("too large"));
    }

    fn batch_vars() -> BatchPatternVars<'static> {
        BatchPatternVars {
            job_id: "42",
            job_name: "sim",
            user: "ann",
            first_node: "n1",
            array: None,
        }
    }

    #[test]
    fn array_patterns_name_the_array_and_the_task() {
        let task = BatchPatternVars { job_id: "45", array: Some(("42", "3")), ..batch_vars() };
        assert_eq!(expand_batch_pattern("out_%A_%a.%j", &task).unwrap(), "out_42_3.45");
        assert_eq!(expand_batch_pattern(DEFAULT_ARRAY_OUTPUT, &task).unwrap(), "gangway-42_3.out");
        // As Slurm: a job that is no task is its own array, with task NO_VAL - 1.
        assert_eq!(expand_batch_pattern("%A_%a", &batch_vars()).unwrap(), "42_4294967294");
    }

    #[test]
    fn batch_patterns_expand() {
        let out = expand_batch_pattern("%x-%j.%u.%N%%", &batch_vars()).unwrap();
        assert_eq!(out, "sim-42.ann.n1%");
        assert_eq!(
            expand_batch_pattern(DEFAULT_BATCH_OUTPUT, &batch_vars()).unwrap(),
            "gangway-42.out"
        );
        assert_eq!(expand_batch_pattern("o%5j", &batch_vars()).unwrap(), "o00042");
        assert_eq!(expand_batch_pattern("plain", &batch_vars()).unwrap(), "plain");
    }

    #[test]
    fn bad_batch_patterns_name_the_escape() {
        for (bad, problem) in [
            ("a%t", "unknown '%t'"),
            ("a%q", "unknown '%q'"),
            ("a%", "lone '%'"),
            ("%99j", "too large"),
        ] {
            let err = expand_batch_pattern(bad, &batch_vars()).unwrap_err().to_string();
            assert!(err.contains(problem), "{err}");
            assert!(err.contains(&format!("'{bad}'")), "{err}");
            assert!(err.contains("%x job name"), "{err}");
        }
        // `run`'s message keeps listing its own escapes.
        let err = expand_pattern("a%x", &vars()).unwrap_err().to_string();
        assert!(err.contains("%t rank") && !err.contains("%x job name"), "{err}");
    }

    #[test]
    fn lines_are_labelled_and_completed() {
        let mut asm = LineAssembler::lines(Some("2: ".into()));
        let mut out = Vec::new();
        asm.push(b"hel", &mut out);
        assert!(out.is_empty());
        asm.push(b"lo\nwor", &mut out);
        assert_eq!(out, b"2: hello\n");
        out.clear();
        asm.push(b"ld\n\nx", &mut out);
        assert_eq!(out, b"2: world\n2: \n");
        out.clear();
        asm.finish(&mut out);
        assert_eq!(out, b"2: x\n");
        out.clear();
        asm.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn runaway_lines_are_cut() {
        let mut asm = LineAssembler::lines(None);
        let mut out = Vec::new();
        asm.push(&vec![b'a'; MAX_LINE + 10], &mut out);
        assert_eq!(out.len(), MAX_LINE + 1);
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn raw_passes_bytes_through() {
        let mut asm = LineAssembler::raw();
        let mut out = Vec::new();
        asm.push(b"no newline", &mut out);
        asm.finish(&mut out);
        assert_eq!(out, b"no newline");
    }
}
