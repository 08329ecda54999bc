//! The PMI wire formats: decoding PMI-1 lines and PMI-2 frames into [`Request`]s, and encoding
//! [`Reply`]s back into the exact bytes MPICH's clients expect.
//!
//! Pure: bytes in, values out. The server owns the sockets and feeds whatever each read returned
//! into one [`Decoder`] per connection.
//!
//! Error replies that the protocols leave open are our choice and are written down here:
//! an unknown PMI-1 command `X` is answered `cmd=X rc=-1 msg=unknown_command_X`, an unknown PMI-2
//! command `X` is answered `cmd=X-response;rc=-1;errmsg=unknown command X;`. Replies that exist
//! only in one protocol (e.g. `fullinit` in PMI-2, `initack` in PMI-1) are still encodable in the
//! other, using the same command name, so that [`encode`] is total.

use std::fmt::Write as _;

/// Longest PMI-1 line, newline included (MPICH's `PMIU_MAXLINE`), in both directions.
pub const PMI1_MAX_LINE: usize = 1024;
/// Longest PMI-2 payload we accept (the 6-byte length header is not counted).
pub const PMI2_MAX_FRAME: usize = 65536;
/// Length of the PMI-2 decimal length header.
pub const PMI2_HEADER_LEN: usize = 6;
/// `kvsname_max` announced in the `maxes` reply.
pub const KVSNAME_MAX: u32 = 256;
/// `keylen_max` announced in the `maxes` reply.
pub const KEYLEN_MAX: u32 = 64;
/// `vallen_max` announced in the `maxes` reply. MPICH shrinks its own limit so a put fits a line.
pub const VALLEN_MAX: u32 = 1024;

/// Which PMI dialect a message was written in (and the reply must be written in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// PMI-1 "simple": newline-terminated `cmd=... k=v` lines.
    V1,
    /// PMI-2: length-prefixed `cmd=...;k=v;` frames.
    V2,
}

/// One decoded request with the context needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// What the client asked for.
    pub request: Request,
    /// The dialect of this message; encode the reply with it.
    pub protocol: Protocol,
    /// PMI-2 `thrid`, which the reply must echo (multi-threaded MPICH matches replies by it).
    pub thrid: Option<String>,
}

/// Semantic requests of both protocols.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Request {
    /// `cmd=init pmi_version=V pmi_subversion=S` (PMI-1 line; also the first line of PMI-2).
    Init {
        /// `pmi_version`.
        version: u32,
        /// `pmi_subversion`.
        subversion: u32,
    },
    /// PMI-1 `cmd=initack pmiid=N` (`PMI_PORT` + `PMI_ID` mode).
    Initack {
        /// The client's `PMI_ID`.
        id: u32,
    },
    /// PMI-2 `fullinit`.
    FullInit {
        /// `pmirank`, if the client sent one.
        rank: Option<u32>,
        /// `pmijobid`, if the client sent one.
        jobid: Option<String>,
    },
    /// PMI-1 `get_maxes`.
    GetMaxes,
    /// PMI-1 `get_appnum`.
    GetAppnum,
    /// PMI-1 `get_my_kvsname`.
    GetKvsName,
    /// PMI-1 `get_universe_size`.
    GetUniverseSize,
    /// PMI-2 `job-getid`.
    JobGetId,
    /// PMI-1 `put` / PMI-2 `kvs-put`. A missing value is the empty string.
    Put {
        /// PMI-1 `kvsname` (PMI-2 has none).
        kvsname: Option<String>,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// PMI-1 `get` / PMI-2 `kvs-get` (PMI-2 `jobid`/`srcid` are ignored).
    Get {
        /// PMI-1 `kvsname` (PMI-2 has none).
        kvsname: Option<String>,
        /// The key.
        key: String,
    },
    /// PMI-1 `barrier_in` / PMI-2 `kvs-fence`.
    Fence,
    /// PMI-2 `info-putnodeattr`.
    NodeAttrPut {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// PMI-2 `info-getnodeattr`.
    NodeAttrGet {
        /// The key.
        key: String,
        /// `wait=TRUE`: hold the reply until the key is put on this node.
        wait: bool,
    },
    /// PMI-2 `info-getjobattr`.
    JobAttrGet {
        /// The attribute name, e.g. `PMI_process_mapping`.
        key: String,
    },
    /// PMI-1 `publish_name` / PMI-2 `name-publish`.
    Publish {
        /// The service name.
        service: String,
        /// The port string.
        port: String,
    },
    /// PMI-1 `unpublish_name` / PMI-2 `name-unpublish`.
    Unpublish {
        /// The service name.
        service: String,
    },
    /// PMI-1 `lookup_name` / PMI-2 `name-lookup`.
    Lookup {
        /// The service name.
        service: String,
    },
    /// `finalize`.
    Finalize,
    /// `abort`: never answered; the job must be killed.
    Abort {
        /// PMI-1 `exitcode`; -1 for PMI-2, which carries no code.
        code: i32,
        /// PMI-2 `msg`.
        message: Option<String>,
    },
    /// A complete PMI-1 `mcmd=spawn` sequence or a PMI-2 `spawn`; we refuse it.
    Spawn,
    /// A well-formed message with a command we do not know; answered with an error reply.
    Unknown {
        /// The command name as sent.
        cmd: String,
    },
}

/// Every answer the PMI service gives. [`encode`] turns one into bytes for either protocol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    /// Answer to `init`: rc=0, echoing the client's version.
    InitResponse {
        /// Echoed `pmi_version`.
        version: u32,
        /// Echoed `pmi_subversion`.
        subversion: u32,
    },
    /// The four-line PMI-1 `initack` answer.
    Initack {
        /// Job size.
        size: u32,
        /// The client's rank (its `PMI_ID`).
        rank: u32,
    },
    /// `maxes` with [`KVSNAME_MAX`], [`KEYLEN_MAX`], [`VALLEN_MAX`].
    Maxes,
    /// `appnum`.
    Appnum(u32),
    /// `my_kvsname`.
    KvsName(String),
    /// `universe_size`.
    UniverseSize(u32),
    /// `job-getid-response`.
    JobId(String),
    /// The put was stored.
    PutDone,
    /// The put was refused; the message is shown to the user by the client.
    PutFailed {
        /// Why.
        message: String,
    },
    /// The key was found.
    GetFound {
        /// Its value.
        value: String,
    },
    /// The key was not found (the PMI-1 message names it).
    GetNotFound {
        /// The key asked for.
        key: String,
    },
    /// The fence/barrier completed.
    FenceDone,
    /// `info-putnodeattr` stored.
    NodeAttrPutDone,
    /// `info-putnodeattr` refused; the message says why.
    NodeAttrPutFailed {
        /// Why.
        message: String,
    },
    /// `info-getnodeattr` found.
    NodeAttrFound {
        /// The value.
        value: String,
    },
    /// `info-getnodeattr` not found (only without `wait`).
    NodeAttrNotFound,
    /// `info-getjobattr` found.
    JobAttrFound {
        /// The value.
        value: String,
    },
    /// `info-getjobattr` not found.
    JobAttrNotFound,
    /// Publish succeeded.
    PublishOk,
    /// Publish refused: the service name is taken.
    PublishDuplicate,
    /// Publish refused for another reason (a limit); the message says why.
    PublishFailed {
        /// Why.
        message: String,
    },
    /// Unpublish succeeded.
    UnpublishOk,
    /// Unpublish of a name nobody published.
    UnpublishNotFound,
    /// Lookup found the service.
    LookupFound {
        /// The port published for it.
        port: String,
    },
    /// Lookup of a name nobody published.
    LookupNotFound,
    /// `finalize` acknowledged.
    FinalizeAck,
    /// PMI-2 `fullinit-response` (never with `spawner-jobid`: our jobs are never spawned).
    FullInit {
        /// The rank.
        rank: u32,
        /// Job size.
        size: u32,
        /// The application number.
        appnum: u32,
    },
    /// Spawn is not supported.
    SpawnRefused {
        /// Why, for the user.
        message: String,
    },
    /// The command is unknown.
    UnknownCommand {
        /// The command name as sent.
        cmd: String,
    },
}

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
    buf: Vec<u8>,
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
fn parse_v2_payload(payload: &[u8]) -> Result<Vec<(String, String)>, WireError> {
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

/// A reply as a command name plus ordered fields, before protocol-specific formatting.
struct Parts {
    cmd: String,
    fields: Vec<(&'static str, String)>,
}

fn parts(cmd: impl Into<String>, fields: &[(&'static str, &str)]) -> Parts {
    Parts { cmd: cmd.into(), fields: fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect() }
}

/// PMI-1 spellings (Hydra's wording where Hydra has one).
fn parts_v1(reply: &Reply) -> Parts {
    let n = |x: u32| x.to_string();
    match reply {
        Reply::InitResponse { version, subversion } => parts(
            "response_to_init",
            &[("pmi_version", &n(*version)), ("pmi_subversion", &n(*subversion)), ("rc", "0")],
        ),
        // Multi-line; handled by `encode` itself. Kept here so this match stays total.
        Reply::Initack { .. } => parts("initack", &[]),
        Reply::Maxes => parts(
            "maxes",
            &[
                ("kvsname_max", &n(KVSNAME_MAX)),
                ("keylen_max", &n(KEYLEN_MAX)),
                ("vallen_max", &n(VALLEN_MAX)),
            ],
        ),
        Reply::Appnum(a) => parts("appnum", &[("appnum", &n(*a))]),
        Reply::KvsName(k) => parts("my_kvsname", &[("kvsname", k)]),
        Reply::UniverseSize(s) => parts("universe_size", &[("size", &n(*s))]),
        Reply::JobId(j) => parts("job-getid-response", &[("jobid", j), ("rc", "0")]),
        Reply::PutDone => parts("put_result", &[("rc", "0"), ("msg", "success")]),
        Reply::PutFailed { message } => parts("put_result", &[("rc", "-1"), ("msg", message)]),
        Reply::GetFound { value } => {
            parts("get_result", &[("rc", "0"), ("msg", "success"), ("value", value)])
        }
        Reply::GetNotFound { key } => parts(
            "get_result",
            &[("rc", "-1"), ("msg", &format!("key_{key}_not_found")), ("value", "unknown")],
        ),
        Reply::FenceDone => parts("barrier_out", &[]),
        Reply::NodeAttrPutDone => parts("info-putnodeattr-response", &[("rc", "0")]),
        Reply::NodeAttrPutFailed { message } => {
            parts("info-putnodeattr-response", &[("rc", "-1"), ("msg", message)])
        }
        Reply::NodeAttrFound { value } => {
            parts("info-getnodeattr-response", &[("found", "TRUE"), ("value", value), ("rc", "0")])
        }
        Reply::NodeAttrNotFound => {
            parts("info-getnodeattr-response", &[("found", "FALSE"), ("rc", "0")])
        }
        Reply::JobAttrFound { value } => {
            parts("info-getjobattr-response", &[("found", "TRUE"), ("value", value), ("rc", "0")])
        }
        Reply::JobAttrNotFound => {
            parts("info-getjobattr-response", &[("found", "FALSE"), ("rc", "0")])
        }
        Reply::PublishOk => parts("publish_result", &[("rc", "0"), ("msg", "success")]),
        Reply::PublishDuplicate => {
            parts("publish_result", &[("rc", "1"), ("msg", "key_already_present")])
        }
        Reply::PublishFailed { message } => {
            parts("publish_result", &[("rc", "-1"), ("msg", message)])
        }
        Reply::UnpublishOk => parts("unpublish_result", &[("rc", "0"), ("msg", "success")]),
        Reply::UnpublishNotFound => {
            parts("unpublish_result", &[("rc", "1"), ("msg", "service_not_found")])
        }
        Reply::LookupFound { port } => {
            parts("lookup_result", &[("rc", "0"), ("msg", "success"), ("port", port)])
        }
        Reply::LookupNotFound => {
            parts("lookup_result", &[("rc", "1"), ("msg", "service_not_found")])
        }
        Reply::FinalizeAck => parts("finalize_ack", &[]),
        Reply::FullInit { rank, size, appnum } => parts(
            "fullinit-response",
            &[
                ("pmi-version", "2"),
                ("pmi-subversion", "0"),
                ("rank", &n(*rank)),
                ("size", &n(*size)),
                ("appnum", &n(*appnum)),
                ("debugged", "FALSE"),
                ("pmiverbose", "FALSE"),
                ("rc", "0"),
            ],
        ),
        Reply::SpawnRefused { message } => parts("spawn_result", &[("rc", "-1"), ("msg", message)]),
        Reply::UnknownCommand { cmd } => {
            parts(cmd.as_str(), &[("rc", "-1"), ("msg", &format!("unknown_command_{cmd}"))])
        }
    }
}

/// PMI-2 spellings.
fn parts_v2(reply: &Reply) -> Parts {
    let n = |x: u32| x.to_string();
    match reply {
        Reply::InitResponse { version, subversion } => parts(
            "response_to_init",
            &[("pmi_version", &n(*version)), ("pmi_subversion", &n(*subversion)), ("rc", "0")],
        ),
        Reply::Initack { size, rank } => parts(
            "initack",
            &[("size", &n(*size)), ("rank", &n(*rank)), ("debug", "0"), ("rc", "0")],
        ),
        Reply::Maxes => parts(
            "maxes",
            &[
                ("kvsname_max", &n(KVSNAME_MAX)),
                ("keylen_max", &n(KEYLEN_MAX)),
                ("vallen_max", &n(VALLEN_MAX)),
                ("rc", "0"),
            ],
        ),
        Reply::Appnum(a) => parts("appnum", &[("appnum", &n(*a)), ("rc", "0")]),
        Reply::KvsName(k) => parts("my_kvsname", &[("kvsname", k), ("rc", "0")]),
        Reply::UniverseSize(s) => parts("universe_size", &[("size", &n(*s)), ("rc", "0")]),
        Reply::JobId(j) => parts("job-getid-response", &[("jobid", j), ("rc", "0")]),
        Reply::PutDone => parts("kvs-put-response", &[("rc", "0")]),
        Reply::PutFailed { message } => {
            parts("kvs-put-response", &[("rc", "-1"), ("errmsg", message)])
        }
        Reply::GetFound { value } => {
            parts("kvs-get-response", &[("found", "TRUE"), ("value", value), ("rc", "0")])
        }
        Reply::GetNotFound { .. } => parts("kvs-get-response", &[("found", "FALSE"), ("rc", "0")]),
        Reply::FenceDone => parts("kvs-fence-response", &[("rc", "0")]),
        Reply::NodeAttrPutDone => parts("info-putnodeattr-response", &[("rc", "0")]),
        Reply::NodeAttrPutFailed { message } => {
            parts("info-putnodeattr-response", &[("rc", "-1"), ("errmsg", message)])
        }
        Reply::NodeAttrFound { value } => {
            parts("info-getnodeattr-response", &[("found", "TRUE"), ("value", value), ("rc", "0")])
        }
        Reply::NodeAttrNotFound => {
            parts("info-getnodeattr-response", &[("found", "FALSE"), ("rc", "0")])
        }
        Reply::JobAttrFound { value } => {
            parts("info-getjobattr-response", &[("found", "TRUE"), ("value", value), ("rc", "0")])
        }
        Reply::JobAttrNotFound => {
            parts("info-getjobattr-response", &[("found", "FALSE"), ("rc", "0")])
        }
        Reply::PublishOk => parts("name-publish-response", &[("rc", "0")]),
        Reply::PublishFailed { message } => {
            parts("name-publish-response", &[("rc", "-1"), ("errmsg", message)])
        }
        Reply::PublishDuplicate => parts(
            "name-publish-response",
            &[("rc", "1"), ("errmsg", "service name already published")],
        ),
        Reply::UnpublishOk => parts("name-unpublish-response", &[("rc", "0")]),
        Reply::UnpublishNotFound => parts(
            "name-unpublish-response",
            &[("rc", "1"), ("errmsg", "service name not published")],
        ),
        Reply::LookupFound { port } => {
            // MPICH's client reads `port`, Slurm's libpmi2 reads `value`: send both.
            parts(
                "name-lookup-response",
                &[("port", port), ("value", port), ("found", "TRUE"), ("rc", "0")],
            )
        }
        Reply::LookupNotFound => parts(
            "name-lookup-response",
            &[("found", "FALSE"), ("rc", "1"), ("errmsg", "service name not published")],
        ),
        Reply::FinalizeAck => parts("finalize-response", &[("rc", "0")]),
        Reply::FullInit { rank, size, appnum } => parts(
            "fullinit-response",
            &[
                ("pmi-version", "2"),
                ("pmi-subversion", "0"),
                ("rank", &n(*rank)),
                ("size", &n(*size)),
                ("appnum", &n(*appnum)),
                ("debugged", "FALSE"),
                ("pmiverbose", "FALSE"),
                ("rc", "0"),
            ],
        ),
        Reply::SpawnRefused { message } => {
            parts("spawn-response", &[("rc", "-1"), ("errmsg", message)])
        }
        Reply::UnknownCommand { cmd } => parts(
            format!("{cmd}-response"),
            &[("rc", "-1"), ("errmsg", &format!("unknown command {cmd}"))],
        ),
    }
}

/// PMI-1 has no escaping: whitespace would split or end the line, so it becomes `_`.
fn v1_text(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()
}

/// PMI-2 doubles `;` inside values.
fn v2_text(s: &str) -> String {
    s.replace(';', ";;")
}

/// Encodes `reply` in `protocol`; for PMI-2 the `thrid` of the request is echoed.
pub fn encode(reply: &Reply, protocol: Protocol, thrid: Option<&str>) -> Vec<u8> {
    match protocol {
        Protocol::V1 => {
            if let Reply::Initack { size, rank } = reply {
                return format!(
                    "cmd=initack\ncmd=set size={size}\ncmd=set rank={rank}\ncmd=set debug=0\n"
                )
                .into_bytes();
            }
            let p = parts_v1(reply);
            let mut line = format!("cmd={}", v1_text(&p.cmd));
            for (k, v) in &p.fields {
                let _ = write!(line, " {k}={}", v1_text(v));
            }
            line.push('\n');
            line.into_bytes()
        }
        Protocol::V2 => {
            let p = parts_v2(reply);
            let mut payload = format!("cmd={};", v2_text(&p.cmd));
            if let Some(t) = thrid {
                let _ = write!(payload, "thrid={};", v2_text(t));
            }
            for (k, v) in &p.fields {
                let _ = write!(payload, "{k}={};", v2_text(v));
            }
            // Right-aligned like Hydra's `%6u`; every client parses both alignments.
            let mut out = format!("{:>6}", payload.len()).into_bytes();
            out.extend_from_slice(payload.as_bytes());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(d: &mut Decoder) -> Vec<Result<Framed, WireError>> {
        let mut out = Vec::new();
        loop {
            match d.next_request() {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    fn v1(input: &str) -> Vec<Result<Request, WireError>> {
        let mut d = Decoder::new();
        d.push(input.as_bytes());
        decode_all(&mut d).into_iter().map(|r| r.map(|f| f.request)).collect()
    }

    fn one_v1(line: &str) -> Request {
        let mut got = v1(line);
        assert_eq!(got.len(), 1, "{line:?} gave {got:?}");
        got.remove(0).expect("decodes")
    }

    fn frame(payload: &str) -> Vec<u8> {
        let mut v = format!("{:<6}", payload.len()).into_bytes();
        v.extend_from_slice(payload.as_bytes());
        v
    }

    fn v2_decoder() -> Decoder {
        let mut d = Decoder::new();
        d.push(b"cmd=init pmi_version=2 pmi_subversion=0\n");
        assert_eq!(
            d.next_request().unwrap().unwrap().request,
            Request::Init { version: 2, subversion: 0 }
        );
        d
    }

    fn one_v2(payload: &str) -> Framed {
        let mut d = v2_decoder();
        d.push(&frame(payload));
        let got = d.next_request().unwrap().expect("a whole frame");
        assert_eq!(d.next_request(), Ok(None));
        got
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn v1_requests_of_the_hello_transcript() {
        assert_eq!(
            one_v1("cmd=init pmi_version=1 pmi_subversion=1\n"),
            Request::Init { version: 1, subversion: 1 }
        );
        assert_eq!(one_v1("cmd=get_maxes\n"), Request::GetMaxes);
        assert_eq!(one_v1("cmd=get_appnum\n"), Request::GetAppnum);
        assert_eq!(one_v1("cmd=get_my_kvsname\n"), Request::GetKvsName);
        assert_eq!(one_v1("cmd=get_universe_size\n"), Request::GetUniverseSize);
        assert_eq!(
            one_v1("cmd=get kvsname=kvs_test_0 key=PMI_process_mapping\n"),
            Request::Get { kvsname: Some("kvs_test_0".into()), key: "PMI_process_mapping".into() }
        );
        assert_eq!(one_v1("cmd=barrier_in\n"), Request::Fence);
        assert_eq!(
            one_v1("cmd=put kvsname=kvs_test_0 key=-bcast-1-0 value=2F6465762F\n"),
            Request::Put {
                kvsname: Some("kvs_test_0".into()),
                key: "-bcast-1-0".into(),
                value: "2F6465762F".into()
            }
        );
        assert_eq!(one_v1("cmd=finalize\n"), Request::Finalize);
        assert_eq!(one_v1("cmd=initack pmiid=7\n"), Request::Initack { id: 7 });
    }

    #[test]
    fn v1_abort_publish_lookup() {
        assert_eq!(one_v1("cmd=abort exitcode=13\n"), Request::Abort { code: 13, message: None });
        assert_eq!(one_v1("cmd=abort\n"), Request::Abort { code: -1, message: None });
        assert_eq!(
            one_v1("cmd=publish_name service=svc port=tag#0$\n"),
            Request::Publish { service: "svc".into(), port: "tag#0$".into() }
        );
        assert_eq!(
            one_v1("cmd=unpublish_name service=svc\n"),
            Request::Unpublish { service: "svc".into() }
        );
        assert_eq!(
            one_v1("cmd=lookup_name service=svc\n"),
            Request::Lookup { service: "svc".into() }
        );
    }

    #[test]
    fn v1_value_may_contain_equals_and_be_empty() {
        assert_eq!(
            one_v1("cmd=put kvsname=k key=big value=segments=2\n"),
            Request::Put {
                kvsname: Some("k".into()),
                key: "big".into(),
                value: "segments=2".into()
            }
        );
        assert_eq!(
            one_v1("cmd=put kvsname=k key=e value=\n"),
            Request::Put { kvsname: Some("k".into()), key: "e".into(), value: String::new() }
        );
        // An absent value means the empty string too.
        assert_eq!(
            one_v1("cmd=put key=e\n"),
            Request::Put { kvsname: None, key: "e".into(), value: String::new() }
        );
    }

    #[test]
    fn v1_token_without_equals_is_an_error_and_only_that_line_is_lost() {
        let got = v1("cmd=put key=a oops\ncmd=get_maxes\n");
        assert_eq!(
            got,
            vec![Err(WireError::MissingEquals { token: "oops".into() }), Ok(Request::GetMaxes)]
        );
        assert!(!WireError::MissingEquals { token: "x".into() }.is_fatal());
    }

    #[test]
    fn v1_missing_cmd_missing_key_bad_number() {
        let mut d = Decoder::new();
        d.push(b"cmd=get_maxes\nkey=a value=b\ncmd=get kvsname=k\ncmd=init pmi_version=one pmi_subversion=1\ncmd=initack pmiid=-3\n");
        let got: Vec<_> = decode_all(&mut d).into_iter().map(|r| r.map(|f| f.request)).collect();
        assert_eq!(got[0], Ok(Request::GetMaxes));
        assert_eq!(got[1], Err(WireError::MissingCmd { message: "key=a value=b".into() }));
        assert_eq!(got[2], Err(WireError::MissingKey { cmd: "get".into(), key: "key" }));
        assert_eq!(
            got[3],
            Err(WireError::BadNumber { key: "pmi_version".into(), value: "one".into() })
        );
        assert_eq!(got[4], Err(WireError::BadNumber { key: "pmiid".into(), value: "-3".into() }));
        let msg = got[2].clone().unwrap_err().to_string();
        assert!(msg.contains("`get`") && msg.contains("`key=`"), "{msg}");
        let msg = got[3].clone().unwrap_err().to_string();
        assert!(msg.contains("pmi_version") && msg.contains("one"), "{msg}");
    }

    #[test]
    fn v1_unknown_command_decodes_as_unknown() {
        assert_eq!(
            one_v1("cmd=getbyidx kvsname=k idx=0\n"),
            Request::Unknown { cmd: "getbyidx".into() }
        );
    }

    #[test]
    fn v1_blank_lines_and_double_spaces_are_tolerated() {
        assert_eq!(
            v1("cmd=get_maxes\n\ncmd=get  kvsname=k  key=a\n"),
            vec![
                Ok(Request::GetMaxes),
                Ok(Request::Get { kvsname: Some("k".into()), key: "a".into() })
            ]
        );
    }

    #[test]
    fn v1_crlf_is_tolerated() {
        assert_eq!(
            v1("cmd=get_maxes\r\ncmd=barrier_in\n"),
            vec![Ok(Request::GetMaxes), Ok(Request::Fence)]
        );
    }

    #[test]
    fn v1_line_limit_is_1024_bytes_with_newline() {
        let prefix = "cmd=put kvsname=k key=a value=";
        let fits = format!("{prefix}{}\n", "x".repeat(PMI1_MAX_LINE - 1 - prefix.len()));
        assert_eq!(fits.len(), PMI1_MAX_LINE);
        assert!(matches!(one_v1(&fits), Request::Put { .. }));

        let too_long = format!("{prefix}{}\n", "x".repeat(PMI1_MAX_LINE - prefix.len()));
        assert_eq!(v1(&too_long), vec![Err(WireError::LineTooLong { max: PMI1_MAX_LINE })]);
    }

    #[test]
    fn v1_oversized_line_errors_before_the_newline_arrives() {
        let mut d = Decoder::new();
        d.push(b"cmd=put key=a value=");
        d.push(&[b'x'; PMI1_MAX_LINE - 21]);
        assert_eq!(d.next_request(), Ok(None), "1023 bytes may still end in a newline");
        d.push(b"x");
        let err = d.next_request().unwrap_err();
        assert_eq!(err, WireError::LineTooLong { max: PMI1_MAX_LINE });
        assert!(err.is_fatal());
        // The stream is lost: the error sticks and nothing more is buffered.
        d.push(b"\ncmd=get_maxes\n");
        assert_eq!(d.next_request(), Err(err));
        assert!(d.buf.is_empty());
    }

    #[test]
    fn v1_several_messages_in_one_push_and_byte_by_byte() {
        let input = "cmd=init pmi_version=1 pmi_subversion=1\ncmd=get_maxes\ncmd=barrier_in\n";
        let all = v1(input);
        assert_eq!(all.len(), 3);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in input.bytes() {
            d.push(&[b]);
            while let Some(f) = d.next_request().unwrap() {
                got.push(Ok(f.request));
            }
        }
        assert_eq!(got, all);
    }

    #[test]
    fn v1_partial_line_waits() {
        let mut d = Decoder::new();
        assert_eq!(d.protocol(), None);
        d.push(b"cm");
        assert_eq!(d.next_request(), Ok(None));
        assert_eq!(d.protocol(), None);
        d.push(b"d=get_app");
        assert_eq!(d.next_request(), Ok(None));
        assert_eq!(d.protocol(), Some(Protocol::V1));
        d.push(b"num\n");
        let f = d.next_request().unwrap().unwrap();
        assert_eq!(f, Framed { request: Request::GetAppnum, protocol: Protocol::V1, thrid: None });
    }

    #[test]
    fn v1_spawn_block_is_consumed_whole() {
        let block = "mcmd=spawn\nnprocs=2\nexecname=./a.out\ntotspawns=1\nspawnssofar=1\narg1=hello world\nargcnt=1\npreput_num=0\ninfo_num=0\nendcmd\ncmd=get_maxes\n";
        assert_eq!(v1(block), vec![Ok(Request::Spawn), Ok(Request::GetMaxes)]);
    }

    #[test]
    fn v1_multi_executable_spawn_yields_one_request_after_the_last_block() {
        let input = "mcmd=spawn\ntotspawns=2\nspawnssofar=1\nendcmd\nmcmd=spawn\ntotspawns=2\nspawnssofar=2\nendcmd\n";
        assert_eq!(v1(input), vec![Ok(Request::Spawn)]);
    }

    #[test]
    fn v1_spawn_block_line_without_equals_is_an_error() {
        let got = v1("mcmd=spawn\nnprocs=1\ngarbage\ncmd=get_maxes\n");
        assert_eq!(
            got,
            vec![Err(WireError::MissingEquals { token: "garbage".into() }), Ok(Request::GetMaxes)]
        );
    }

    #[test]
    fn not_utf8_is_reported_and_skipped() {
        let mut d = Decoder::new();
        d.push(b"cmd=put key=\xff\xfe\ncmd=get_maxes\n");
        assert!(matches!(d.next_request(), Err(WireError::NotUtf8 { .. })));
        assert_eq!(d.next_request().unwrap().unwrap().request, Request::GetMaxes);
    }

    #[test]
    fn unknown_first_bytes_are_fatal() {
        let mut d = Decoder::new();
        d.push(b"GET / HTTP/1.1\r\n");
        let err = d.next_request().unwrap_err();
        assert!(matches!(err, WireError::UnknownProtocol { .. }));
        assert!(err.is_fatal());
        assert!(err.to_string().contains("GET / HTTP"), "{err}");
        assert_eq!(d.protocol(), None);
    }

    #[test]
    fn init_version_2_switches_to_frames_in_the_same_push() {
        let mut d = Decoder::new();
        let mut bytes = b"cmd=init pmi_version=2 pmi_subversion=0\n".to_vec();
        bytes.extend(frame("cmd=fullinit;pmijobid=job.0;pmirank=3;threaded=FALSE;"));
        d.push(&bytes);
        let init = d.next_request().unwrap().unwrap();
        assert_eq!(init.protocol, Protocol::V1, "the init reply is a PMI-1 line");
        assert_eq!(d.protocol(), Some(Protocol::V2));
        let full = d.next_request().unwrap().unwrap();
        assert_eq!(
            full,
            Framed {
                request: Request::FullInit { rank: Some(3), jobid: Some("job.0".into()) },
                protocol: Protocol::V2,
                thrid: None
            }
        );
        assert_eq!(
            encode(&Reply::InitResponse { version: 2, subversion: 0 }, init.protocol, None),
            b"cmd=response_to_init pmi_version=2 pmi_subversion=0 rc=0\n"
        );
    }

    #[test]
    fn init_version_1_stays_on_lines() {
        let mut d = Decoder::new();
        d.push(b"cmd=init pmi_version=1 pmi_subversion=1\ncmd=get_maxes\n");
        assert!(d.next_request().unwrap().is_some());
        assert_eq!(d.protocol(), Some(Protocol::V1));
        assert_eq!(d.next_request().unwrap().unwrap().request, Request::GetMaxes);
    }

    #[test]
    fn v2_from_the_first_bytes_with_either_alignment() {
        for header in ["17    ", "    17", " 17   "] {
            let mut d = Decoder::new();
            d.push(header.as_bytes());
            assert_eq!(d.next_request(), Ok(None));
            assert_eq!(d.protocol(), Some(Protocol::V2));
            d.push(b"cmd=job-getid;");
            assert_eq!(d.next_request(), Ok(None));
            d.push(b"x=;");
            assert_eq!(d.next_request().unwrap().unwrap().request, Request::JobGetId, "{header:?}");
        }
    }

    #[test]
    fn v2_requests() {
        let cases: Vec<(&str, Request)> = vec![
            (
                "cmd=fullinit;pmirank=0;threaded=FALSE;",
                Request::FullInit { rank: Some(0), jobid: None },
            ),
            (
                "cmd=fullinit;pmijobid=j;srcid=2;threaded=FALSE;",
                Request::FullInit { rank: Some(2), jobid: Some("j".into()) },
            ),
            ("cmd=job-getid;", Request::JobGetId),
            (
                "cmd=kvs-put;key=K;value=V;",
                Request::Put { kvsname: None, key: "K".into(), value: "V".into() },
            ),
            ("cmd=kvs-get;jobid=J;srcid=3;key=K;", Request::Get { kvsname: None, key: "K".into() }),
            ("cmd=kvs-fence;", Request::Fence),
            (
                "cmd=info-putnodeattr;key=K;value=V;",
                Request::NodeAttrPut { key: "K".into(), value: "V".into() },
            ),
            (
                "cmd=info-getnodeattr;key=K;wait=TRUE;",
                Request::NodeAttrGet { key: "K".into(), wait: true },
            ),
            (
                "cmd=info-getnodeattr;key=K;wait=FALSE;",
                Request::NodeAttrGet { key: "K".into(), wait: false },
            ),
            ("cmd=info-getnodeattr;key=K;", Request::NodeAttrGet { key: "K".into(), wait: false }),
            (
                "cmd=info-getjobattr;key=PMI_process_mapping;",
                Request::JobAttrGet { key: "PMI_process_mapping".into() },
            ),
            ("cmd=finalize;", Request::Finalize),
            (
                "cmd=abort;isworld=TRUE;msg=bad thing;",
                Request::Abort { code: -1, message: Some("bad thing".into()) },
            ),
            (
                "cmd=name-publish;name=svc;port=p1;infokeycount=0;",
                Request::Publish { service: "svc".into(), port: "p1".into() },
            ),
            (
                "cmd=name-unpublish;name=svc;infokeycount=0;",
                Request::Unpublish { service: "svc".into() },
            ),
            ("cmd=name-lookup;name=svc;infokeycount=0;", Request::Lookup { service: "svc".into() }),
            (
                "cmd=spawn;ncmds=1;preputcount=0;subcmd=a.out;maxprocs=2;argc=0;infokeycount=0;",
                Request::Spawn,
            ),
            ("cmd=frobnicate;", Request::Unknown { cmd: "frobnicate".into() }),
        ];
        for (payload, want) in cases {
            let got = one_v2(payload);
            assert_eq!(got.request, want, "{payload}");
            assert_eq!(got.protocol, Protocol::V2);
        }
    }

    #[test]
    fn v2_doubled_semicolon_is_a_literal_and_junk_after_the_last_pair_is_ignored() {
        assert_eq!(
            one_v2("cmd=kvs-put;key=K;value=a;;b;;;").request,
            Request::Put { kvsname: None, key: "K".into(), value: "a;b;".into() }
        );
        // The 4.0.x client's length is 6 too long: stale bytes trail the last pair.
        assert_eq!(one_v2("cmd=kvs-fence;ALSE;x").request, Request::Fence);
        assert_eq!(one_v2("cmd=kvs-fence;stale=").request, Request::Fence);
    }

    #[test]
    fn v2_unknown_keys_ignored_and_thrid_copied() {
        let f = one_v2("cmd=kvs-get;thrid=0x7f00;colour=blue;key=K;");
        assert_eq!(f.thrid.as_deref(), Some("0x7f00"));
        assert_eq!(f.request, Request::Get { kvsname: None, key: "K".into() });
        assert_eq!(
            text(encode(&Reply::GetFound { value: "v".into() }, f.protocol, f.thrid.as_deref())),
            "    58cmd=kvs-get-response;thrid=0x7f00;found=TRUE;value=v;rc=0;"
        );
    }

    #[test]
    fn v2_malformed_messages_are_recoverable() {
        let mut d = v2_decoder();
        for payload in [
            "oops;cmd=kvs-fence;",
            "key=K;value=V;",
            "cmd=kvs-put;value=V;",
            "cmd=info-getnodeattr;key=K;wait=maybe;",
            "cmd=fullinit;pmirank=x;",
            "",
        ] {
            d.push(&frame(payload));
        }
        d.push(&frame("cmd=kvs-fence;"));
        let got: Vec<_> = decode_all(&mut d).into_iter().map(|r| r.map(|f| f.request)).collect();
        assert_eq!(
            got,
            vec![
                Err(WireError::MissingEquals { token: "oops".into() }),
                Err(WireError::MissingCmd { message: "key=K;value=V;".into() }),
                Err(WireError::MissingKey { cmd: "kvs-put".into(), key: "key" }),
                Err(WireError::BadBool { key: "wait".into(), value: "maybe".into() }),
                Err(WireError::BadNumber { key: "pmirank".into(), value: "x".into() }),
                Err(WireError::MissingCmd { message: String::new() }),
                Ok(Request::Fence),
            ]
        );
    }

    #[test]
    fn v2_bad_length_header_is_fatal() {
        for header in ["12ab  ", "      ", "-5    ", "1 2   "] {
            let mut d = v2_decoder();
            d.push(header.as_bytes());
            d.push(b"cmd=kvs-fence;");
            let err = d.next_request().unwrap_err();
            assert!(matches!(err, WireError::BadLengthHeader { .. }), "{header:?}: {err:?}");
            assert!(err.is_fatal());
            assert_eq!(d.next_request(), Err(err));
        }
    }

    #[test]
    fn v2_frame_over_the_limit_is_refused_from_its_header() {
        let mut d = v2_decoder();
        d.push(b"999999");
        assert_eq!(
            d.next_request(),
            Err(WireError::FrameTooLong { len: 999_999, max: PMI2_MAX_FRAME })
        );
        let mut d = v2_decoder();
        d.push(format!("{:<6}", PMI2_MAX_FRAME + 1).as_bytes());
        assert!(matches!(d.next_request(), Err(WireError::FrameTooLong { .. })));
        // Exactly at the limit is fine.
        let mut d = v2_decoder();
        let mut payload = "cmd=kvs-put;key=K;value=".to_owned();
        payload.push_str(&"v".repeat(PMI2_MAX_FRAME - payload.len() - 1));
        payload.push(';');
        d.push(&frame(&payload));
        assert!(matches!(d.next_request().unwrap().unwrap().request, Request::Put { .. }));
    }

    #[test]
    fn v2_several_frames_in_one_push_and_split_inside_header() {
        let mut bytes = frame("cmd=kvs-put;key=a;value=1;");
        bytes.extend(frame("cmd=kvs-fence;"));
        bytes.extend(frame("cmd=kvs-get;key=a;"));
        let mut d = v2_decoder();
        d.push(&bytes[..3]);
        assert_eq!(d.next_request(), Ok(None));
        d.push(&bytes[3..]);
        let got: Vec<_> = decode_all(&mut d);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].clone().unwrap().request, Request::Fence);
    }

    #[test]
    fn v1_replies_match_the_spec_tables() {
        let cases: Vec<(Reply, &str)> = vec![
            (
                Reply::InitResponse { version: 1, subversion: 1 },
                "cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0\n",
            ),
            (Reply::Maxes, "cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024\n"),
            (Reply::Appnum(0), "cmd=appnum appnum=0\n"),
            (Reply::KvsName("kvs_test_0".into()), "cmd=my_kvsname kvsname=kvs_test_0\n"),
            (Reply::UniverseSize(4), "cmd=universe_size size=4\n"),
            (Reply::PutDone, "cmd=put_result rc=0 msg=success\n"),
            (
                Reply::PutFailed { message: "wrong kvsname x".into() },
                "cmd=put_result rc=-1 msg=wrong_kvsname_x\n",
            ),
            (
                Reply::GetFound { value: "(vector,(0,1,2))".into() },
                "cmd=get_result rc=0 msg=success value=(vector,(0,1,2))\n",
            ),
            (
                Reply::GetNotFound { key: "hostname[1]".into() },
                "cmd=get_result rc=-1 msg=key_hostname[1]_not_found value=unknown\n",
            ),
            (Reply::FenceDone, "cmd=barrier_out\n"),
            (Reply::FinalizeAck, "cmd=finalize_ack\n"),
            (Reply::PublishOk, "cmd=publish_result rc=0 msg=success\n"),
            (Reply::PublishDuplicate, "cmd=publish_result rc=1 msg=key_already_present\n"),
            (Reply::UnpublishOk, "cmd=unpublish_result rc=0 msg=success\n"),
            (Reply::UnpublishNotFound, "cmd=unpublish_result rc=1 msg=service_not_found\n"),
            (
                Reply::LookupFound { port: "p1".into() },
                "cmd=lookup_result rc=0 msg=success port=p1\n",
            ),
            (Reply::LookupNotFound, "cmd=lookup_result rc=1 msg=service_not_found\n"),
            (
                Reply::SpawnRefused { message: "spawn is not supported".into() },
                "cmd=spawn_result rc=-1 msg=spawn_is_not_supported\n",
            ),
            (
                Reply::UnknownCommand { cmd: "getbyidx".into() },
                "cmd=getbyidx rc=-1 msg=unknown_command_getbyidx\n",
            ),
            (
                Reply::Initack { size: 4, rank: 2 },
                "cmd=initack\ncmd=set size=4\ncmd=set rank=2\ncmd=set debug=0\n",
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(text(encode(&reply, Protocol::V1, Some("ignored"))), want);
        }
    }

    #[test]
    fn v1_replies_never_break_the_line() {
        let out = text(encode(&Reply::GetFound { value: "a b\nc".into() }, Protocol::V1, None));
        assert_eq!(out, "cmd=get_result rc=0 msg=success value=a_b_c\n");
    }

    #[test]
    fn v2_replies_match_the_spec_tables() {
        let cases: Vec<(Reply, &str)> = vec![
            (
                Reply::FullInit { rank: 3, size: 4, appnum: 0 },
                "cmd=fullinit-response;pmi-version=2;pmi-subversion=0;rank=3;size=4;appnum=0;debugged=FALSE;pmiverbose=FALSE;rc=0;",
            ),
            (Reply::JobId("job.0".into()), "cmd=job-getid-response;jobid=job.0;rc=0;"),
            (Reply::PutDone, "cmd=kvs-put-response;rc=0;"),
            (Reply::PutFailed { message: "no".into() }, "cmd=kvs-put-response;rc=-1;errmsg=no;"),
            (Reply::FenceDone, "cmd=kvs-fence-response;rc=0;"),
            (
                Reply::GetFound { value: "a;b".into() },
                "cmd=kvs-get-response;found=TRUE;value=a;;b;rc=0;",
            ),
            (Reply::GetNotFound { key: "k".into() }, "cmd=kvs-get-response;found=FALSE;rc=0;"),
            (Reply::NodeAttrPutDone, "cmd=info-putnodeattr-response;rc=0;"),
            (
                Reply::NodeAttrFound { value: "v".into() },
                "cmd=info-getnodeattr-response;found=TRUE;value=v;rc=0;",
            ),
            (Reply::NodeAttrNotFound, "cmd=info-getnodeattr-response;found=FALSE;rc=0;"),
            (
                Reply::JobAttrFound { value: "(vector,(0,1,2))".into() },
                "cmd=info-getjobattr-response;found=TRUE;value=(vector,(0,1,2));rc=0;",
            ),
            (Reply::JobAttrNotFound, "cmd=info-getjobattr-response;found=FALSE;rc=0;"),
            (Reply::FinalizeAck, "cmd=finalize-response;rc=0;"),
            (Reply::PublishOk, "cmd=name-publish-response;rc=0;"),
            (Reply::UnpublishOk, "cmd=name-unpublish-response;rc=0;"),
            (
                Reply::LookupFound { port: "p".into() },
                "cmd=name-lookup-response;port=p;value=p;found=TRUE;rc=0;",
            ),
            (
                Reply::SpawnRefused { message: "no spawn".into() },
                "cmd=spawn-response;rc=-1;errmsg=no spawn;",
            ),
            (
                Reply::UnknownCommand { cmd: "frob".into() },
                "cmd=frob-response;rc=-1;errmsg=unknown command frob;",
            ),
        ];
        for (reply, payload) in cases {
            let want = format!("{:>6}{payload}", payload.len());
            assert_eq!(text(encode(&reply, Protocol::V2, None)), want);
        }
    }

    #[test]
    fn v2_error_replies_have_nonzero_rc() {
        for reply in [Reply::PublishDuplicate, Reply::UnpublishNotFound, Reply::LookupNotFound] {
            let out = text(encode(&reply, Protocol::V2, None));
            assert!(out.contains(";rc=1;"), "{out}");
        }
    }

    #[test]
    fn every_reply_encodes_in_both_protocols() {
        let all = [
            Reply::InitResponse { version: 2, subversion: 0 },
            Reply::Initack { size: 1, rank: 0 },
            Reply::Maxes,
            Reply::Appnum(1),
            Reply::KvsName("k".into()),
            Reply::UniverseSize(1),
            Reply::JobId("j".into()),
            Reply::FullInit { rank: 0, size: 1, appnum: 0 },
            Reply::NodeAttrPutDone,
        ];
        for reply in all {
            let v1 = encode(&reply, Protocol::V1, None);
            assert!(v1.starts_with(b"cmd=") && v1.ends_with(b"\n"));
            let v2 = encode(&reply, Protocol::V2, None);
            let len: usize = std::str::from_utf8(&v2[..6]).unwrap().trim().parse().unwrap();
            assert_eq!(len, v2.len() - 6);
            assert!(v2.ends_with(b";"));
        }
    }

    /// Client-side rendering of a request, so properties can round-trip through the decoder.
    fn client_bytes(req: &Request, protocol: Protocol) -> Vec<u8> {
        match protocol {
            Protocol::V1 => {
                let line = match req {
                    Request::Init { version, subversion } => {
                        format!("cmd=init pmi_version={version} pmi_subversion={subversion}")
                    }
                    Request::GetMaxes => "cmd=get_maxes".into(),
                    Request::Fence => "cmd=barrier_in".into(),
                    Request::Put { kvsname: Some(k), key, value } => {
                        format!("cmd=put kvsname={k} key={key} value={value}")
                    }
                    Request::Get { kvsname: Some(k), key } => {
                        format!("cmd=get kvsname={k} key={key}")
                    }
                    Request::Abort { code, .. } => format!("cmd=abort exitcode={code}"),
                    other => panic!("no v1 form in this test: {other:?}"),
                };
                format!("{line}\n").into_bytes()
            }
            Protocol::V2 => {
                let e = |s: &str| s.replace(';', ";;");
                let payload = match req {
                    Request::Fence => "cmd=kvs-fence;".into(),
                    Request::Put { key, value, .. } => {
                        format!("cmd=kvs-put;key={};value={};", e(key), e(value))
                    }
                    Request::Get { key, .. } => {
                        format!("cmd=kvs-get;jobid=j;srcid=0;key={};", e(key))
                    }
                    Request::NodeAttrGet { key, wait } => format!(
                        "cmd=info-getnodeattr;key={};wait={};",
                        e(key),
                        if *wait { "TRUE" } else { "FALSE" }
                    ),
                    Request::Abort { message, .. } => {
                        format!(
                            "cmd=abort;isworld=TRUE;msg={};",
                            e(message.as_deref().unwrap_or(""))
                        )
                    }
                    other => panic!("no v2 form in this test: {other:?}"),
                };
                frame(&payload)
            }
        }
    }

    fn v1_word() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_=\\-\\[\\]/(),]{0,40}"
    }

    fn v2_text_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_ =;\\-\\[\\]/(),\n]{0,60}"
    }

    fn v1_request() -> impl Strategy<Value = Request> {
        let key = "[A-Za-z0-9_\\-\\[\\]/]{1,30}";
        prop_oneof![
            Just(Request::GetMaxes),
            Just(Request::Fence),
            Just(Request::Init { version: 1, subversion: 1 }),
            (key, v1_word()).prop_map(|(key, value)| Request::Put {
                kvsname: Some("kvs_0".into()),
                key,
                value
            }),
            key.prop_map(|key| Request::Get { kvsname: Some("kvs_0".into()), key }),
            any::<i32>().prop_map(|code| Request::Abort { code, message: None }),
        ]
    }

    fn v2_request() -> impl Strategy<Value = Request> {
        let key = "[A-Za-z0-9_\\-\\[\\]/;]{1,30}";
        prop_oneof![
            Just(Request::Fence),
            (key, v2_text_strategy()).prop_map(|(key, value)| Request::Put {
                kvsname: None,
                key,
                value
            }),
            key.prop_map(|key| Request::Get { kvsname: None, key }),
            (key, any::<bool>()).prop_map(|(key, wait)| Request::NodeAttrGet { key, wait }),
            v2_text_strategy().prop_map(|m| Request::Abort { code: -1, message: Some(m) }),
        ]
    }

    fn split_and_decode(bytes: &[u8], cuts: &[usize]) -> Vec<Result<Framed, WireError>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            d.push(&bytes[last..c]);
            last = c;
            out.extend(decode_all(&mut d));
        }
        out
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let _ = split_and_decode(&bytes, &cuts);
        }

        #[test]
        fn arbitrary_bytes_after_a_v1_or_v2_start_never_panic(
            v2 in any::<bool>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut all = if v2 {
                b"cmd=init pmi_version=2 pmi_subversion=0\n".to_vec()
            } else {
                b"cmd=".to_vec()
            };
            all.extend(bytes);
            let _ = split_and_decode(&all, &cuts);
        }

        #[test]
        fn v1_messages_decode_the_same_however_split(
            reqs in proptest::collection::vec(v1_request(), 1..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let bytes: Vec<u8> = reqs.iter().flat_map(|r| client_bytes(r, Protocol::V1)).collect();
            let got: Vec<Request> = split_and_decode(&bytes, &cuts)
                .into_iter()
                .map(|r| r.map(|f| f.request))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(got, reqs);
        }

        #[test]
        fn v2_messages_decode_the_same_however_split(
            reqs in proptest::collection::vec(v2_request(), 1..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = b"cmd=init pmi_version=2 pmi_subversion=0\n".to_vec();
            bytes.extend(reqs.iter().flat_map(|r| client_bytes(r, Protocol::V2)));
            let got: Vec<Request> = split_and_decode(&bytes, &cuts)
                .into_iter()
                .map(|r| r.map(|f| f.request))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(&got[0], &Request::Init { version: 2, subversion: 0 });
            prop_assert_eq!(&got[1..], &reqs[..]);
        }

        #[test]
        fn v2_reply_values_round_trip_through_escaping(value in v2_text_strategy()) {
            // Our encoder and decoder agree on `;;`, whatever the value holds.
            let bytes = encode(&Reply::GetFound { value: value.clone() }, Protocol::V2, None);
            let pairs = parse_v2_payload(&bytes[6..]).unwrap();
            prop_assert!(pairs.contains(&("value".to_owned(), value)));
        }
    }
}
