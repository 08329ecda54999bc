//! Reading client bytes: an incremental [`Decoder`] per connection that detects the protocol,
//! cuts PMI-1 lines (and `mcmd=` blocks) or PMI-2 frames, and turns each into a [`Request`], or
//! a [`WireError`] that names the problem.

use super::message::{Framed, PMI1_MAX_LINE, PMI2_HEADER_LEN, PMI2_MAX_FRAME, Protocol, Request};

/// Why bytes from a client could not be decoded. Each message names the problem.
///
/// Some errors leave the stream in an unknown place ([`WireError::is_fatal`]); after one of them
/// the decoder keeps returning it. The others consumed exactly the bad message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A PMI-1 line (or the unterminated rest of the buffer) is longer than allowed.
    #[error("PMI-1 line longer than {max} bytes including the newline")]
    LineTooLong {
        /// [`PMI1_MAX_LINE`].
        max: usize,
    },
    /// A token has no `=`.
    #[error("token `{token}` has no `=` (every PMI field is key=value)")]
    MissingEquals {
        /// The token, shortened.
        token: String,
    },
    /// The message has no `cmd=` field.
    #[error("message has no `cmd=` field: `{message}`")]
    MissingCmd {
        /// The message, shortened.
        message: String,
    },
    /// A key the command needs is absent.
    #[error("PMI command `{cmd}` lacks its required `{key}=` field")]
    MissingKey {
        /// The command.
        cmd: String,
        /// The missing key.
        key: &'static str,
    },
    /// A numeric field does not hold a number.
    #[error("PMI field `{key}` must be a non-negative integer, got `{value}`")]
    BadNumber {
        /// The key.
        key: String,
        /// The value, shortened.
        value: String,
    },
    /// A boolean field is neither `TRUE` nor `FALSE`.
    #[error("PMI-2 field `{key}` must be TRUE or FALSE, got `{value}`")]
    BadBool {
        /// The key.
        key: String,
        /// The value, shortened.
        value: String,
    },
    /// The 6-byte PMI-2 length header is not a space-padded decimal number.
    #[error("bad PMI-2 length header `{header}`: expected 6 bytes of space-padded decimal digits")]
    BadLengthHeader {
        /// The header bytes, escaped.
        header: String,
    },
    /// A PMI-2 frame declares more than [`PMI2_MAX_FRAME`] bytes.
    #[error("PMI-2 frame declares {len} bytes, over the {max}-byte limit")]
    FrameTooLong {
        /// The declared length.
        len: usize,
        /// [`PMI2_MAX_FRAME`].
        max: usize,
    },
    /// A message (or one of its fields) is not UTF-8.
    #[error("PMI message is not valid UTF-8: `{message}`")]
    NotUtf8 {
        /// The message, escaped and shortened.
        message: String,
    },
    /// The connection starts with bytes that are neither PMI-1 nor a PMI-2 header.
    #[error(
        "connection starts with `{start}`, which is neither a PMI-1 line (`cmd=`/`mcmd=`) nor a PMI-2 length header"
    )]
    UnknownProtocol {
        /// The first bytes, escaped.
        start: String,
    },
}

impl WireError {
    /// True when the decoder lost its place in the stream; the connection should be dropped.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            WireError::LineTooLong { .. }
                | WireError::BadLengthHeader { .. }
                | WireError::FrameTooLong { .. }
                | WireError::UnknownProtocol { .. }
        )
    }
}

/// Error messages quote client bytes; keep them short and printable.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = bytes.get(..MAX).unwrap_or(bytes);
    let mut s = shown.escape_ascii().to_string();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Detect,
    V1,
    V2,
}

/// A PMI-1 `mcmd=` block being collected line by line.
#[derive(Debug)]
struct Block {
    mcmd: String,
    totspawns: Option<String>,
    spawnssofar: Option<String>,
}

/// What one decoding step produced.
enum Step {
    NeedMore,
    Skipped,
    Got(Framed),
}

/// Incremental per-connection decoder: feed it bytes as they arrive (any split: several messages
/// in one read, partial messages), pull requests.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes pushed and not yet compacted away (the tests check nothing is kept after a
    /// fatal error, hence visible in `wire`).
    pub(super) buf: Vec<u8>,
    /// Bytes before `pos` are consumed; compacted lazily so many small messages stay linear.
    pos: usize,
    mode: Mode,
    block: Option<Block>,
    poisoned: Option<WireError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder for a fresh connection, protocol not yet known.
    pub fn new() -> Self {
        Decoder { buf: Vec::new(), pos: 0, mode: Mode::Detect, block: None, poisoned: None }
    }

    /// The protocol the connection speaks: `None` until its first bytes identify it; switches to
    /// `V2` once a PMI-1 `init` asks for version 2.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.mode {
            Mode::Detect => None,
            Mode::V1 => Some(Protocol::V1),
            Mode::V2 => Some(Protocol::V2),
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        // After a fatal error nothing will be decoded again; don't hold on to the bytes.
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete request; `Ok(None)` means more bytes are needed.
    pub fn next_request(&mut self) -> Result<Option<Framed>, WireError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let result = loop {
            let step = match self.mode {
                Mode::Detect => match self.detect() {
                    Ok(true) => continue,
                    Ok(false) => Ok(Step::NeedMore),
                    Err(e) => Err(e),
                },
                Mode::V1 => self.step_v1(),
                Mode::V2 => self.step_v2(),
            };
            match step {
                Ok(Step::Skipped) => continue,
                Ok(Step::NeedMore) => break Ok(None),
                Ok(Step::Got(f)) => break Ok(Some(f)),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = &result
            && e.is_fatal()
        {
            self.poisoned = Some(e.clone());
            self.buf = Vec::new();
            self.pos = 0;
        }
        self.compact();
        result
    }

    fn compact(&mut self) {
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 4096 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Decides the protocol from the first bytes. Ok(false) = not enough bytes yet.
    fn detect(&mut self) -> Result<bool, WireError> {
        let avail = self.pending();
        if avail.is_empty() {
            return Ok(false);
        }
        if avail.starts_with(b"cmd=") || avail.starts_with(b"mcmd=") {
            self.mode = Mode::V1;
            return Ok(true);
        }
        let header_like = |b: &u8| b.is_ascii_digit() || *b == b' ';
        if avail.len() >= PMI2_HEADER_LEN {
            let head = avail.get(..PMI2_HEADER_LEN).unwrap_or_default();
            if head.iter().all(header_like) && head.iter().any(u8::is_ascii_digit) {
                self.mode = Mode::V2;
                return Ok(true);
            }
        } else if b"cmd=".starts_with(avail)
            || b"mcmd=".starts_with(avail)
            || avail.iter().all(header_like)
        {
            return Ok(false);
        }
        Err(WireError::UnknownProtocol { start: excerpt(avail.get(..16).unwrap_or(avail)) })
    }

    fn step_v1(&mut self) -> Result<Step, WireError> {
        let avail = self.pending();
        let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
            // With PMI1_MAX_LINE bytes and still no newline the line can no longer fit.
            return if avail.len() >= PMI1_MAX_LINE {
                Err(WireError::LineTooLong { max: PMI1_MAX_LINE })
            } else {
                Ok(Step::NeedMore)
            };
        };
        if nl + 1 > PMI1_MAX_LINE {
            return Err(WireError::LineTooLong { max: PMI1_MAX_LINE });
        }
        let mut line = avail.get(..nl).unwrap_or_default().to_vec();
        // Tolerate CRLF from hand-written clients; a value can never end in CR legitimately.
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.pos += nl + 1;
        let line = std::str::from_utf8(&line)
            .map_err(|_| WireError::NotUtf8 { message: excerpt(&line) })?;
        if self.block.is_some() {
            return self.block_line(line);
        }
        let mut pairs = Vec::new();
        for token in line.split(' ').filter(|t| !t.is_empty()) {
            let Some((k, v)) = token.split_once('=') else {
                return Err(WireError::MissingEquals { token: excerpt(token.as_bytes()) });
            };
            pairs.push((k.to_owned(), v.to_owned()));
        }
        let Some((first_key, first_value)) = pairs.first() else {
            // A stray empty line harms nobody; skipping it keeps a sloppy client alive.
            return Ok(Step::Skipped);
        };
        if first_key == "mcmd" {
            self.block =
                Some(Block { mcmd: first_value.clone(), totspawns: None, spawnssofar: None });
            return Ok(Step::Skipped);
        }
        let fields = Fields::new(&pairs, line)?;
        let request = request_v1(&fields)?;
        if let Request::Init { version: 2, .. } = request {
            // A PMI-2 client opens with this PMI-1 line, then switches to frames.
            self.mode = Mode::V2;
        }
        Ok(Step::Got(Framed { request, protocol: Protocol::V1, thrid: None }))
    }

    /// One line inside an `mcmd=` block: `key=value` with spaces allowed, or `endcmd`.
    fn block_line(&mut self, line: &str) -> Result<Step, WireError> {
        if line == "endcmd" {
            let Some(block) = self.block.take() else {
                return Ok(Step::Skipped);
            };
            // One block per executable; the client reads a single reply after the last one.
            let sofar = block.spawnssofar.and_then(|v| v.trim().parse::<u64>().ok());
            let total = block.totspawns.and_then(|v| v.trim().parse::<u64>().ok());
            if let (Some(sofar), Some(total)) = (sofar, total)
                && sofar < total
            {
                return Ok(Step::Skipped);
            }
            let request = if block.mcmd == "spawn" {
                Request::Spawn
            } else {
                Request::Unknown { cmd: block.mcmd }
            };
            return Ok(Step::Got(Framed { request, protocol: Protocol::V1, thrid: None }));
        }
        let Some((k, v)) = line.split_once('=') else {
            self.block = None;
            return Err(WireError::MissingEquals { token: excerpt(line.as_bytes()) });
        };
        if let Some(block) = self.block.as_mut() {
            match k {
                "totspawns" => block.totspawns = Some(v.to_owned()),
                "spawnssofar" => block.spawnssofar = Some(v.to_owned()),
                _ => {}
            }
        }
        Ok(Step::Skipped)
    }

    fn step_v2(&mut self) -> Result<Step, WireError> {
        let avail = self.pending();
        let Some(header) = avail.get(..PMI2_HEADER_LEN) else {
            return Ok(Step::NeedMore);
        };
        let len = parse_header(header)?;
        if len > PMI2_MAX_FRAME {
            return Err(WireError::FrameTooLong { len, max: PMI2_MAX_FRAME });
        }
        let Some(payload) = avail.get(PMI2_HEADER_LEN..PMI2_HEADER_LEN + len) else {
            return Ok(Step::NeedMore);
        };
        let payload = payload.to_vec();
        self.pos += PMI2_HEADER_LEN + len;
        let pairs = parse_v2_payload(&payload)?;
        let fields = Fields::new(&pairs, &String::from_utf8_lossy(&payload))?;
        let request = request_v2(&fields)?;
        Ok(Step::Got(Framed {
            request,
            protocol: Protocol::V2,
            thrid: fields.get("thrid").map(str::to_owned),
        }))
    }
}

/// Leading/trailing spaces (either alignment) and then decimal digits, like a strict `atoi`.
fn parse_header(header: &[u8]) -> Result<usize, WireError> {
    let bad = || WireError::BadLengthHeader { header: excerpt(header) };
    let trimmed = header.trim_ascii();
    if trimmed.is_empty() || !trimmed.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    // Six digits always fit in usize.
    Ok(trimmed.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// Splits `k=v;k=v;...` with `;;` meaning a literal `;` inside a value. Anything after the last
/// terminated pair is junk (the 4.0.x client sends stale bytes there) and ignored; for the same
/// reason a segment without `=` ends the message unless it is the very first one.
pub(super) fn parse_v2_payload(payload: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let utf8 = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|e| WireError::NotUtf8 { message: excerpt(e.as_bytes()) })
    };
    let mut pairs = Vec::new();
    let mut rest = payload;
    while let Some(sep) = rest.iter().position(|&b| b == b'=' || b == b';') {
        let (key, after) = rest.split_at(sep);
        if after.first() == Some(&b';') {
            if pairs.is_empty() {
                return Err(WireError::MissingEquals { token: excerpt(key) });
            }
            break;
        }
        let mut value = Vec::new();
        let mut i = 1;
        let mut terminated = false;
        while let Some(&b) = after.get(i) {
            if b == b';' {
                if after.get(i + 1) == Some(&b';') {
                    value.push(b';');
                    i += 2;
                    continue;
                }
                terminated = true;
                i += 1;
                break;
            }
            value.push(b);
            i += 1;
        }
        if !terminated {
            break;
        }
        pairs.push((utf8(key.to_vec())?, utf8(value)?));
        rest = after.get(i..).unwrap_or_default();
    }
    Ok(pairs)
}

/// The fields of one message, looked up by key (first occurrence wins).
struct Fields<'a> {
    cmd: &'a str,
    pairs: &'a [(String, String)],
}

impl<'a> Fields<'a> {
    fn new(pairs: &'a [(String, String)], whole: &str) -> Result<Self, WireError> {
        let cmd = pairs
            .iter()
            .find(|(k, _)| k == "cmd")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| WireError::MissingCmd { message: excerpt(whole.as_bytes()) })?;
        Ok(Fields { cmd, pairs })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn req(&self, key: &'static str) -> Result<&'a str, WireError> {
        self.get(key).ok_or_else(|| WireError::MissingKey { cmd: self.cmd.to_owned(), key })
    }

    fn string(&self, key: &'static str) -> Result<String, WireError> {
        self.req(key).map(str::to_owned)
    }

    fn num(&self, key: &'static str) -> Result<u32, WireError> {
        parse_u32(key, self.req(key)?)
    }

    fn opt_num(&self, key: &'static str) -> Result<Option<u32>, WireError> {
        self.get(key).map(|v| parse_u32(key, v)).transpose()
    }

    fn opt_bool(&self, key: &'static str) -> Result<Option<bool>, WireError> {
        self.get(key)
            .map(|v| {
                if v.eq_ignore_ascii_case("TRUE") {
                    Ok(true)
                } else if v.eq_ignore_ascii_case("FALSE") {
                    Ok(false)
                } else {
                    Err(WireError::BadBool { key: key.to_owned(), value: excerpt(v.as_bytes()) })
                }
            })
            .transpose()
    }
}

fn parse_u32(key: &str, value: &str) -> Result<u32, WireError> {
    value
        .trim()
        .parse()
        .map_err(|_| WireError::BadNumber { key: key.to_owned(), value: excerpt(value.as_bytes()) })
}

fn request_v1(f: &Fields<'_>) -> Result<Request, WireError> {
    Ok(match f.cmd {
        "init" => {
            Request::Init { version: f.num("pmi_version")?, subversion: f.num("pmi_subversion")? }
        }
        "initack" => Request::Initack { id: f.num("pmiid")? },
        "get_maxes" => Request::GetMaxes,
        "get_appnum" => Request::GetAppnum,
        "get_my_kvsname" => Request::GetKvsName,
        "get_universe_size" => Request::GetUniverseSize,
        "put" => Request::Put {
            kvsname: f.get("kvsname").map(str::to_owned),
            key: f.string("key")?,
            value: f.get("value").unwrap_or_default().to_owned(),
        },
        "get" => {
            Request::Get { kvsname: f.get("kvsname").map(str::to_owned), key: f.string("key")? }
        }
        "barrier_in" => Request::Fence,
        "finalize" => Request::Finalize,
        // An abort is honoured even when its code is missing or garbled: the rank wants the job
        // dead either way, and failing to parse it would only replace its code with ours.
        "abort" => Request::Abort {
            code: f.get("exitcode").and_then(|v| v.trim().parse().ok()).unwrap_or(-1),
            message: None,
        },
        "publish_name" => {
            Request::Publish { service: f.string("service")?, port: f.string("port")? }
        }
        "unpublish_name" => Request::Unpublish { service: f.string("service")? },
        "lookup_name" => Request::Lookup { service: f.string("service")? },
        "spawn" => Request::Spawn,
        other => Request::Unknown { cmd: other.to_owned() },
    })
}

fn request_v2(f: &Fields<'_>) -> Result<Request, WireError> {
    Ok(match f.cmd {
        "init" => {
            Request::Init { version: f.num("pmi_version")?, subversion: f.num("pmi_subversion")? }
        }
        // Slurm's libpmi2 sends `srcid` instead of `pmirank` when PMI_ID is set.
        "fullinit" => Request::FullInit {
            rank: match f.opt_num("pmirank")? {
                Some(rank) => Some(rank),
                None => f.opt_num("srcid")?,
            },
            jobid: f.get("pmijobid").map(str::to_owned),
        },
        "job-getid" => Request::JobGetId,
        "kvs-put" => Request::Put {
            kvsname: None,
            key: f.string("key")?,
            value: f.get("value").unwrap_or_default().to_owned(),
        },
        "kvs-get" => Request::Get { kvsname: None, key: f.string("key")? },
        "kvs-fence" => Request::Fence,
        "info-putnodeattr" => Request::NodeAttrPut {
            key: f.string("key")?,
            value: f.get("value").unwrap_or_default().to_owned(),
        },
        "info-getnodeattr" => Request::NodeAttrGet {
            key: f.string("key")?,
            wait: f.opt_bool("wait")?.unwrap_or(false),
        },
        "info-getjobattr" => Request::JobAttrGet { key: f.string("key")? },
        "finalize" => Request::Finalize,
        "abort" => Request::Abort { code: -1, message: f.get("msg").map(str::to_owned) },
        "name-publish" => Request::Publish { service: f.string("name")?, port: f.string("port")? },
        "name-unpublish" => Request::Unpublish { service: f.string("name")? },
        "name-lookup" => Request::Lookup { service: f.string("name")? },
        "spawn" => Request::Spawn,
        other => Request::Unknown { cmd: other.to_owned() },
    })
}
