//! Writing replies: each [`Reply`] as the exact bytes MPICH's PMI-1 or PMI-2 client expects,
//! Hydra's wording where Hydra has one.

use std::fmt::Write as _;

use super::message::{KEYLEN_MAX, KVSNAME_MAX, Protocol, Reply, VALLEN_MAX};

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
