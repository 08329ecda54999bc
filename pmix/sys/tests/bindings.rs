//! The committed bindings (`src/bindings.rs`) against the installed libpmix headers.
//!
//! The bindings are generated once and committed, so building gangway needs neither libclang
//! nor `libpmix-dev`. This test regenerates them from the headers on this machine and fails on
//! any difference; with `GANGWAY_PMIX_REGEN=1` it writes the new file instead (`regen.sh`).
//! Without the headers or libclang it skips, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use bindgen::callbacks::{IntKind, ParseCallbacks};

/// The functions gangway calls. Everything else in the headers (the client and tool APIs) stays
/// out: a smaller table of symbols is a smaller surface to keep right.
const FUNCTIONS: &[&str] = &[
    "PMIx_server_init",
    "PMIx_server_finalize",
    "PMIx_generate_regex",
    "PMIx_generate_ppn",
    "PMIx_server_register_nspace",
    "PMIx_server_deregister_nspace",
    "PMIx_server_register_client",
    "PMIx_server_deregister_client",
    "PMIx_server_setup_fork",
    "PMIx_server_dmodex_request",
    "PMIx_Register_event_handler",
    "PMIx_Deregister_event_handler",
    "PMIx_Error_string",
    "PMIx_Get_version",
];

/// Types the host module and the values need beyond what the functions pull in.
const TYPES: &[&str] = &["pmix_server_module_t", "pmix_pdata_t", "pmix_app_t"];

/// Gives the integer macros the C types they are used as, so the wrapper needs no casts:
/// status codes are `pmix_status_t` (int), data-type codes `pmix_data_type_t` (uint16_t),
/// ranks `pmix_rank_t` (uint32_t).
#[derive(Debug)]
struct MacroTypes;

/// Data-type codes (`PMIX_BOOL` ... `PMIX_DATA_TYPE_MAX`) as listed in `pmix_common.h`; the
/// ABI test checks each value against the header.
const DATA_TYPES: &[&str] = &[
    "PMIX_UNDEF",
    "PMIX_BOOL",
    "PMIX_BYTE",
    "PMIX_STRING",
    "PMIX_SIZE",
    "PMIX_PID",
    "PMIX_INT",
    "PMIX_INT8",
    "PMIX_INT16",
    "PMIX_INT32",
    "PMIX_INT64",
    "PMIX_UINT",
    "PMIX_UINT8",
    "PMIX_UINT16",
    "PMIX_UINT32",
    "PMIX_UINT64",
    "PMIX_FLOAT",
    "PMIX_DOUBLE",
    "PMIX_TIMEVAL",
    "PMIX_TIME",
    "PMIX_STATUS",
    "PMIX_VALUE",
    "PMIX_PROC",
    "PMIX_APP",
    "PMIX_INFO",
    "PMIX_PDATA",
    "PMIX_BYTE_OBJECT",
    "PMIX_KVAL",
    "PMIX_PERSIST",
    "PMIX_POINTER",
    "PMIX_SCOPE",
    "PMIX_DATA_RANGE",
    "PMIX_COMMAND",
    "PMIX_INFO_DIRECTIVES",
    "PMIX_DATA_TYPE",
    "PMIX_PROC_STATE",
    "PMIX_PROC_INFO",
    "PMIX_DATA_ARRAY",
    "PMIX_PROC_RANK",
    "PMIX_QUERY",
    "PMIX_COMPRESSED_STRING",
    "PMIX_ALLOC_DIRECTIVE",
    "PMIX_IOF_CHANNEL",
    "PMIX_ENVAR",
    "PMIX_COORD",
    "PMIX_REGATTR",
    "PMIX_REGEX",
    "PMIX_JOB_STATE",
    "PMIX_LINK_STATE",
    "PMIX_PROC_CPUSET",
    "PMIX_GEOMETRY",
    "PMIX_DEVICE_DIST",
    "PMIX_ENDPOINT",
    "PMIX_TOPO",
    "PMIX_DEVTYPE",
    "PMIX_LOCTYPE",
    "PMIX_COMPRESSED_BYTE_OBJECT",
    "PMIX_PROC_NSPACE",
    "PMIX_PROC_STATS",
    "PMIX_DISK_STATS",
    "PMIX_NET_STATS",
    "PMIX_NODE_STATS",
    "PMIX_DATA_BUFFER",
    "PMIX_DATA_TYPE_MAX",
];

impl ParseCallbacks for MacroTypes {
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        if DATA_TYPES.contains(&name) {
            Some(IntKind::U16)
        } else if name.starts_with("PMIX_RANK_") {
            Some(IntKind::U32)
        } else if name.starts_with("PMIX_ERR_")
            || name.starts_with("PMIX_EVENT_")
            || name.starts_with("PMIX_OPERATION_")
            || matches!(name, "PMIX_SUCCESS" | "PMIX_ERROR")
        {
            Some(IntKind::Int)
        } else {
            None
        }
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The include directories of the installed libpmix, from `pkg-config pmix`.
fn include_dirs() -> Option<Vec<String>> {
    let out = Command::new("pkg-config").args(["--cflags-only-I", "pmix"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("-I").map(str::to_owned))
        .collect();
    dirs.iter().any(|d| Path::new(d).join("pmix_server.h").exists()).then_some(dirs)
}

fn generate(dirs: &[String]) -> Result<String, String> {
    let mut builder = bindgen::Builder::default()
        .header(crate_dir().join("wrapper.h").to_string_lossy())
        .clang_args(dirs.iter().map(|d| format!("-I{d}")))
        .allowlist_var("PMIX_.*")
        .parse_callbacks(Box::new(MacroTypes))
        // Loaded with libloading at run time: gangway must start on nodes without libpmix.
        .dynamic_library_name("PmixLib")
        .dynamic_link_require_all(true)
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(false)
        .generate_comments(false)
        .use_core()
        // The workspace denies unsafe operations outside `unsafe {}`, generated code included.
        .wrap_unsafe_ops(true)
        .raw_line("// Generated by bindgen from pmix_server.h and pmix.h (libpmix 4.2.2).")
        .raw_line("// Do not edit: run pmix/sys/regen.sh. tests/bindings.rs checks it is current.");
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    let bindings = builder.generate().map_err(|e| e.to_string())?;
    Ok(bindings.to_string())
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
fn committed_bindings_match_the_installed_header() {
    let Some(dirs) = include_dirs() else {
        skip(
            "pmix_server.h not found through `pkg-config pmix` \
             (install libpmix-dev to check the committed bindings)",
        );
        return;
    };
    // bindgen panics when it cannot load libclang; that is an environment gap, not a failure.
    let generated = match std::panic::catch_unwind(|| generate(&dirs)) {
        Ok(result) => result.expect("bindgen failed on the installed header"),
        Err(_) => {
            skip("libclang could not be loaded (install libclang-dev)");
            return;
        }
    };
    let path = crate_dir().join("src/bindings.rs");
    if std::env::var_os("GANGWAY_PMIX_REGEN").is_some() {
        std::fs::write(&path, &generated).expect("write src/bindings.rs");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("read src/bindings.rs");
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "src/bindings.rs differs from what the installed libpmix headers generate \
             (first difference at line {}). Run pmix/sys/regen.sh and review the diff: \
             a layout or constant change means the ABI facts in gangway-pmix changed too.",
            first + 1
        );
    }
}
