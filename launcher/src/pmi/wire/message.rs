//! What both PMI dialects say: the requests a rank makes ([`Request`]), the replies it gets
//! ([`Reply`]), which dialect a message was in ([`Protocol`]), and the sizes the protocols fix.

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

/// Every answer the PMI service gives. `encode` turns one into bytes for either protocol.
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
