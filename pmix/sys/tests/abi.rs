//! The Rust declarations against the C compiler: sizes, offsets and constant values, printed by
//! a small C program built against the installed `pmix_server.h`, must equal what Rust sees.
//!
//! bindgen's layout assertions pin the structs to what clang computed when the bindings were
//! generated; this test checks the header on *this* machine with the system C compiler, and
//! also the macro constants (keys, type and status codes) that no layout test covers.
//! Skips, loudly, without a C compiler or the libpmix headers.

use std::ffi::CStr;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use gangway_pmix_sys::*;

/// `(C expression, value Rust sees)`: each expression is printed by the C program with the
/// conversion for its kind.
enum Check {
    Int(String, i64),
    Str(String, String),
}

fn key(bytes: &[u8]) -> String {
    CStr::from_bytes_with_nul(bytes).expect("NUL-terminated key").to_str().expect("ASCII").into()
}

macro_rules! ints {
    ($($c:ident),* $(,)?) => { vec![$( Check::Int(stringify!($c).into(), i64::from($c)) ),*] };
}
macro_rules! strs {
    ($($c:ident),* $(,)?) => { vec![$( Check::Str(stringify!($c).into(), key($c)) ),*] };
}
macro_rules! layout {
    ($t:ident { $($f:ident),* $(,)? }) => {{
        let mut v =
            vec![Check::Int(concat!("sizeof(", stringify!($t), ")").into(), size_of::<$t>() as i64)];
        // bindgen renames fields that are Rust keywords (`type` -> `type_`).
        $( v.push(Check::Int(
            format!("offsetof({}, {})", stringify!($t), stringify!($f).trim_end_matches('_')),
            offset_of!($t, $f) as i64,
        )); )*
        v
    }};
}

fn checks() -> Vec<Check> {
    let mut all = Vec::new();
    all.extend(layout!(pmix_proc_t { nspace, rank }));
    all.extend(layout!(pmix_value_t { type_, data }));
    all.extend(layout!(pmix_info_t { key, flags, value }));
    all.extend(layout!(pmix_pdata_t { proc_, key, value }));
    all.extend(layout!(pmix_data_array_t { type_, size, array }));
    all.extend(layout!(pmix_byte_object_t { bytes, size }));
    all.extend(layout!(pmix_app_t { cmd, argv, env, cwd, maxprocs, info, ninfo }));
    all.extend(layout!(pmix_server_module_t {
        client_connected,
        client_finalized,
        abort,
        fence_nb,
        direct_modex,
        publish,
        lookup,
        unpublish,
        spawn,
        connect,
        disconnect,
        register_events,
        deregister_events,
        listener,
        notify_event,
        query,
        tool_connected,
        log,
        allocate,
        job_control,
        monitor,
        get_credential,
        validate_credential,
        iof_pull,
        push_stdin,
        group,
        fabric,
        client_connected2,
    }));
    all.extend(ints!(
        PMIX_MAX_NSLEN,
        PMIX_MAX_KEYLEN,
        PMIX_RANK_WILDCARD,
        PMIX_RANK_UNDEF,
        PMIX_SUCCESS,
        PMIX_ERROR,
        PMIX_ERR_NOT_SUPPORTED,
        PMIX_ERR_NOT_FOUND,
        PMIX_ERR_BAD_PARAM,
        PMIX_ERR_INIT,
        PMIX_ERR_TIMEOUT,
        PMIX_ERR_UNREACH,
        PMIX_ERR_LOST_CONNECTION,
        PMIX_ERR_PROC_TERM_WO_SYNC,
        PMIX_ERR_PARTIAL_SUCCESS,
        PMIX_OPERATION_SUCCEEDED,
        PMIX_EVENT_ACTION_COMPLETE,
        PMIX_UNDEF,
        PMIX_BOOL,
        PMIX_BYTE,
        PMIX_STRING,
        PMIX_SIZE,
        PMIX_PID,
        PMIX_INT,
        PMIX_INT8,
        PMIX_INT16,
        PMIX_INT32,
        PMIX_INT64,
        PMIX_UINT,
        PMIX_UINT8,
        PMIX_UINT16,
        PMIX_UINT32,
        PMIX_UINT64,
        PMIX_STATUS,
        PMIX_PROC,
        PMIX_INFO,
        PMIX_BYTE_OBJECT,
        PMIX_DATA_RANGE,
        PMIX_PERSIST,
        PMIX_DATA_ARRAY,
        PMIX_PROC_RANK,
        PMIX_REGEX,
        PMIX_INFO_REQD,
    ));
    all.extend(strs!(
        PMIX_SERVER_TMPDIR,
        PMIX_SYSTEM_TMPDIR,
        PMIX_SERVER_NSPACE,
        PMIX_SERVER_RANK,
        PMIX_UNIV_SIZE,
        PMIX_JOB_SIZE,
        PMIX_MAX_PROCS,
        PMIX_LOCAL_SIZE,
        PMIX_NODE_SIZE,
        PMIX_NUM_NODES,
        PMIX_APP_SIZE,
        PMIX_LOCAL_PEERS,
        PMIX_LOCALLDR,
        PMIX_APPLDR,
        PMIX_NODE_MAP,
        PMIX_PROC_MAP,
        PMIX_JOBID,
        PMIX_APPNUM,
        PMIX_RANK,
        PMIX_GLOBAL_RANK,
        PMIX_APP_RANK,
        PMIX_LOCAL_RANK,
        PMIX_NODE_RANK,
        PMIX_NODEID,
        PMIX_HOSTNAME,
        PMIX_PROC_DATA,
        PMIX_SPAWNED,
        PMIX_TMPDIR,
        PMIX_NSDIR,
        PMIX_TDIR_RMCLEAN,
        PMIX_COLLECT_DATA,
        PMIX_LOCAL_COLLECTIVE_STATUS,
        PMIX_PROCID,
        PMIX_WAIT,
        PMIX_RANGE,
        PMIX_PERSISTENCE,
        PMIX_USERID,
        PMIX_EVENT_HDLR_NAME,
    ));
    all
}

fn c_program(checks: &[Check]) -> String {
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <pmix_server.h>\n#include <pmix.h>\n\
         int main(void) {\n",
    );
    for c in checks {
        match c {
            Check::Int(expr, _) => {
                src += &format!("    printf(\"%s=%lld\\n\", \"{expr}\", (long long)({expr}));\n")
            }
            Check::Str(expr, _) => {
                src += &format!("    printf(\"%s=%s\\n\", \"{expr}\", {expr});\n")
            }
        }
    }
    src + "    return 0;\n}\n"
}

fn pkg_config_cflags() -> Option<Vec<String>> {
    let out = Command::new("pkg-config").args(["--cflags", "pmix"]).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
    })
}

/// Skips loudly; with `GANGWAY_REQUIRE_PMIX=1` (CI) a skip is a failure.
fn skip(why: &str) {
    assert!(
        std::env::var_os("GANGWAY_REQUIRE_PMIX").is_none(),
        "GANGWAY_REQUIRE_PMIX is set but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

#[test]
fn rust_layouts_and_constants_equal_the_c_header() {
    let Some(cflags) = pkg_config_cflags() else {
        skip("`pkg-config pmix` failed (install libpmix-dev and pkg-config)");
        return;
    };
    let checks = checks();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pmix-abi");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&src, c_program(&checks)).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = match Command::new(&cc).args(&cflags).arg("-o").arg(&exe).arg(&src).output() {
        Ok(out) => out,
        Err(e) => {
            skip(&format!("no C compiler ({cc}: {e})"));
            return;
        }
    };
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let c_values: std::collections::HashMap<&str, &str> =
        printed.lines().filter_map(|l| l.split_once('=')).collect();
    let mut wrong = Vec::new();
    for c in &checks {
        let (expr, rust) = match c {
            Check::Int(e, v) => (e.as_str(), v.to_string()),
            Check::Str(e, v) => (e.as_str(), v.clone()),
        };
        let c_value = c_values.get(expr).copied().unwrap_or("<missing>");
        if c_value != rust {
            wrong.push(format!("{expr}: C says {c_value}, Rust says {rust}"));
        }
    }
    assert!(wrong.is_empty(), "ABI mismatch with the installed header:\n{}", wrong.join("\n"));
    eprintln!("{} layouts and constants agree with the installed pmix_server.h", checks.len());
}
