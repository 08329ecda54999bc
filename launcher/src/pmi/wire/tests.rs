//! The wire formats against the specs' tables, MPICH's transcripts, and arbitrary bytes.

use super::decode::parse_v2_payload;
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
    assert_eq!(one_v1("cmd=lookup_name service=svc\n"), Request::Lookup { service: "svc".into() });
}

#[test]
fn v1_value_may_contain_equals_and_be_empty() {
    assert_eq!(
        one_v1("cmd=put kvsname=k key=big value=segments=2\n"),
        Request::Put { kvsname: Some("k".into()), key: "big".into(), value: "segments=2".into() }
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
        (Reply::LookupFound { port: "p1".into() }, "cmd=lookup_result rc=0 msg=success port=p1\n"),
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
                    format!("cmd=abort;isworld=TRUE;msg={};", e(message.as_deref().unwrap_or("")))
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
