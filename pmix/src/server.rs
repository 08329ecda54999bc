//! The server's life: start (load libpmix, `PMIx_server_init` with the host module), the calls
//! the owner makes (register, fork set-up, direct modex, deregister), and finalize.
//!
//! libpmix keeps one server per process and cannot be initialised again after finalize, so the
//! state is global: a phase (idle, running, used) here, and a running flag (`running.rs`) that
//! replies check, under a read lock, before calling into the library. Finalize takes the write
//! lock first, so no completion can run during or after `PMIx_server_finalize`.
//!
//! The register/deregister calls pass no callback, which makes libpmix block until its
//! progress thread has done them (well under a millisecond). They must therefore never be made
//! from an upcall; the owner task never runs on libpmix's thread, so it never is.

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gangway_pmix_sys as sys;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::oneshot;

use crate::error::{PmixError, Status};
use crate::event::Event;
use crate::namespace::Namespace;
use crate::running;
use crate::value::{CInfos, Info, Proc, Value, c_bytes, c_string, copy_fixed, regex_len};

/// What gangway adds to libpmix's variables for every PMIx rank.
///
/// Open MPI 4.1's `schizo/orte` component declares any process not started by its own daemon a
/// singleton, which forces `ess=singleton` and ignores the PMIx server; excluding it lets
/// `ess=pmi` take the PMIx path. (`OMPI_MCA_ess=pmi` alone does not help: the component
/// overrides it.) Later Open MPI versions have no such component, so this is harmless there.
pub const OPEN_MPI_ENV: &[(&str, &str)] = &[("OMPI_MCA_schizo", "^orte")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Running,
    /// A server ran (or failed to initialise) in this process: libpmix cannot start again.
    Used,
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Idle);

fn set_phase(from: Phase, to: Phase) -> Result<(), Phase> {
    let mut phase = PHASE.lock().unwrap_or_else(|p| p.into_inner());
    if *phase != from {
        return Err(*phase);
    }
    *phase = to;
    Ok(())
}

/// The PMIx server of this process. Dropping it finalizes the server.
pub struct Server {
    lib: &'static sys::PmixLib,
    tmpdir: PathBuf,
    finalized: bool,
}

impl Server {
    /// Loads libpmix and starts the server, with its rendezvous files in `tmpdir` (created if
    /// missing; it must be on a local file system the ranks can reach). Returns the server and
    /// the channel every upcall arrives on.
    ///
    /// Fails with [`PmixError::Unavailable`], which names the package to install, when libpmix
    /// is not on this node; nothing else in the process is affected.
    pub fn start(tmpdir: &Path) -> Result<(Server, UnboundedReceiver<Event>), PmixError> {
        let lib = sys::load()?;
        running::remember_library(lib);
        // SAFETY: PMIx_Get_version takes nothing and returns a static string.
        let version = unsafe { c_string((lib.PMIx_Get_version)()) }.unwrap_or_default();
        if !supported_version(&version) {
            return Err(PmixError::UnsupportedVersion { found: version });
        }
        std::fs::create_dir_all(tmpdir)
            .map_err(|source| PmixError::TmpDir { path: tmpdir.to_owned(), source })?;
        set_phase(Phase::Idle, Phase::Running).map_err(|phase| match phase {
            Phase::Running => PmixError::AlreadyRunning,
            _ => PmixError::AlreadyUsed,
        })?;
        let (tx, rx) = unbounded_channel();
        crate::host::set_sink(Some(tx));
        let dir = tmpdir.to_string_lossy().into_owned();
        // Both the server's and the "system" rendezvous files go to gangway's directory, so
        // nothing is left in /tmp and two jobs on a node never meet.
        let infos = [
            Info::new(sys::PMIX_SERVER_TMPDIR, Value::String(dir.clone())),
            Info::new(sys::PMIX_SYSTEM_TMPDIR, Value::String(dir)),
        ];
        let mut c = CInfos::new(&infos).map_err(|_| PmixError::TmpDir {
            path: tmpdir.to_owned(),
            source: std::io::Error::other("the path contains a NUL byte"),
        });
        let mut module = crate::host::module();
        let rc = match &mut c {
            // SAFETY: libpmix copies the module and reads the infos during the call; both
            // outlive it. The host functions have the signatures the header declares.
            Ok(c) => unsafe { (lib.PMIx_server_init)(&mut module, c.as_mut_ptr(), c.len()) },
            Err(_) => sys::PMIX_ERR_BAD_PARAM,
        };
        if let Err(e) = c.and_then(|_| PmixError::check("PMIx_server_init", rc)) {
            crate::host::set_sink(None);
            let _ = set_phase(Phase::Running, Phase::Used);
            return Err(e);
        }
        running::set_running(true);
        let server = Server { lib, tmpdir: tmpdir.to_owned(), finalized: false };
        server.watch_lost_connections();
        Ok((server, rx))
    }

    /// Registers the handler that turns libpmix's lost-connection events into
    /// [`Event::ClientLost`]. Not fatal if it fails: the launcher also sees its ranks exit.
    fn watch_lost_connections(&self) {
        let mut codes = [sys::PMIX_ERR_LOST_CONNECTION];
        let mut c = CInfos::new(&[Info::new(
            sys::PMIX_EVENT_HDLR_NAME,
            Value::String("gangway-lost-client".into()),
        )]);
        let Ok(c) = &mut c else { return };
        // SAFETY: a blocking registration (no callback); libpmix copies codes and infos.
        let rc = unsafe {
            (self.lib.PMIx_Register_event_handler)(
                codes.as_mut_ptr(),
                codes.len(),
                c.as_mut_ptr(),
                c.len(),
                Some(crate::host::lost_connection),
                None,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            tracing::warn!(target: "gangway::pmix", "cannot watch for lost PMIx clients: {}", Status(rc));
        }
    }

    /// The directory of the server's rendezvous files.
    pub fn tmpdir(&self) -> &Path {
        &self.tmpdir
    }

    /// Registers a job: its sizes, maps and per-process data, and how many of its ranks this
    /// node will start. Must come before any of those ranks is registered or started.
    pub fn register_namespace(&self, ns: &Namespace) -> Result<(), PmixError> {
        ns.validate()?;
        let node_map = self.generate(
            "PMIx_generate_regex",
            self.lib.PMIx_generate_regex,
            &ns.node_list(),
            ns,
        )?;
        let proc_map = self.generate(
            "PMIx_generate_ppn",
            self.lib.PMIx_generate_ppn,
            &ns.ranks_per_node(),
            ns,
        )?;
        let infos = ns.infos(node_map, proc_map);
        let mut c = CInfos::new(&infos).map_err(|e| PmixError::BadNamespace {
            name: ns.name.clone(),
            reason: format!("a value cannot be passed to libpmix: {e:?}"),
        })?;
        let nspace = nspace_field(&ns.name)?;
        let nlocal = i32::try_from(ns.local_ranks().len()).unwrap_or(i32::MAX);
        // SAFETY: blocking form (no callback): libpmix reads the infos until it returns.
        let rc = unsafe {
            (self.lib.PMIx_server_register_nspace)(
                nspace.as_ptr(),
                nlocal,
                c.as_mut_ptr(),
                c.len(),
                None,
                std::ptr::null_mut(),
            )
        };
        PmixError::check("PMIx_server_register_nspace", rc)
    }

    /// Encodes a node list or per-node rank list the way libpmix wants it (a regex, possibly
    /// compressed), copying libpmix's buffer and freeing it.
    fn generate(
        &self,
        call: &'static str,
        f: unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> sys::pmix_status_t,
        input: &str,
        ns: &Namespace,
    ) -> Result<Value, PmixError> {
        let input = CString::new(input).map_err(|_| PmixError::BadNamespace {
            name: ns.name.clone(),
            reason: "a node name contains NUL".into(),
        })?;
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: `input` is a C string; libpmix allocates `out` with malloc.
        let rc = unsafe { f(input.as_ptr(), &mut out) };
        PmixError::check(call, rc)?;
        if out.is_null() {
            return Err(PmixError::Call { call, status: Status::ERROR });
        }
        // SAFETY: `out` is libpmix's regex (see `regex_len`); copied, then freed with the
        // allocator that made it.
        let bytes = unsafe {
            let bytes = c_bytes(out, regex_len(out));
            libc::free(out.cast::<c_void>());
            bytes
        };
        Ok(Value::Regex(bytes))
    }

    /// Registers one local rank that will connect as user `uid`/`gid` (libpmix checks the
    /// connecting process's credentials against them).
    pub fn register_client(&self, proc: &Proc, uid: u32, gid: u32) -> Result<(), PmixError> {
        let p = proc_c(proc)?;
        // SAFETY: blocking form (no callback); no server object.
        let rc = unsafe {
            (self.lib.PMIx_server_register_client)(
                &p,
                uid,
                gid,
                std::ptr::null_mut(),
                None,
                std::ptr::null_mut(),
            )
        };
        PmixError::check("PMIx_server_register_client", rc)
    }

    /// The environment a registered rank needs to find this server: libpmix's variables
    /// (namespace, rank, server URIs, security and storage modes, directories), then
    /// [`OPEN_MPI_ENV`]. Set them in the rank's environment, over anything inherited.
    pub fn setup_fork(&self, proc: &Proc) -> Result<Vec<(String, String)>, PmixError> {
        let p = proc_c(proc)?;
        let mut env: *mut *mut c_char = std::ptr::null_mut();
        // SAFETY: libpmix appends malloc'ed "NAME=value" strings to a malloc'ed, NULL-ended
        // array that starts empty (null).
        let rc = unsafe { (self.lib.PMIx_server_setup_fork)(&p, &mut env) };
        // SAFETY: the array and strings are libpmix's malloc'ed argv; copied, then freed.
        let vars = unsafe { take_argv(env) };
        PmixError::check("PMIx_server_setup_fork", rc)?;
        let mut out: Vec<(String, String)> = vars
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        out.extend(OPEN_MPI_ENV.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())));
        Ok(out)
    }

    /// Asks libpmix for a local rank's published data, to answer a direct-modex request from
    /// another node. The blob arrives on the returned channel once the rank has put it.
    pub fn dmodex_request(
        &self,
        proc: &Proc,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Status>>, PmixError> {
        let p = proc_c(proc)?;
        let (tx, rx) = oneshot::channel();
        let token = Box::into_raw(Box::new(tx)).cast::<c_void>();
        // SAFETY: libpmix copies the process and calls `dmodex_done` once with `token`.
        let rc = unsafe { (self.lib.PMIx_server_dmodex_request)(&p, Some(dmodex_done), token) };
        if let Err(e) = PmixError::check("PMIx_server_dmodex_request", rc) {
            // SAFETY: on error libpmix does not call back; the token is still ours.
            drop(unsafe { Box::from_raw(token.cast::<DmodexSender>()) });
            return Err(e);
        }
        Ok(rx)
    }

    /// Forgets one client (only for exceptional cases; deregistering the namespace forgets all
    /// of its clients).
    pub fn deregister_client(&self, proc: &Proc) -> Result<(), PmixError> {
        let p = proc_c(proc)?;
        // SAFETY: blocking form (no callback).
        unsafe { (self.lib.PMIx_server_deregister_client)(&p, None, std::ptr::null_mut()) };
        Ok(())
    }

    /// Forgets a finished job and everything about it.
    pub fn deregister_namespace(&self, name: &str) -> Result<(), PmixError> {
        let nspace = nspace_field(name)?;
        // SAFETY: blocking form (no callback).
        unsafe {
            (self.lib.PMIx_server_deregister_nspace)(nspace.as_ptr(), None, std::ptr::null_mut())
        };
        Ok(())
    }

    /// Stops the server. Replies still pending afterwards are dropped silently (the library
    /// they would call is gone), and the event channel closes.
    pub fn finalize(mut self) -> Result<(), PmixError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), PmixError> {
        if std::mem::replace(&mut self.finalized, true) {
            return Ok(());
        }
        running::set_running(false);
        crate::host::set_sink(None);
        // SAFETY: the server was initialised by `start`; no completion can run any more.
        let rc = unsafe { (self.lib.PMIx_server_finalize)() };
        let _ = set_phase(Phase::Running, Phase::Used);
        PmixError::check("PMIx_server_finalize", rc)
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tmpdir", &self.tmpdir)
            .field("finalized", &self.finalized)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// PMIx 4.x and 5.x keep the 4.2 layouts the bindings were generated from (5 only appends to
/// the host module); 3.x and older differ.
fn supported_version(version: &str) -> bool {
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse::<u32>().ok());
    matches!(major, Some(4 | 5))
}

/// A namespace as the full fixed-size field libpmix copies from.
fn nspace_field(name: &str) -> Result<sys::pmix_nspace_t, PmixError> {
    let mut field: sys::pmix_nspace_t = [0; 256];
    copy_fixed(&mut field, name).ok_or_else(|| PmixError::BadProc(name.to_owned()))?;
    Ok(field)
}

fn proc_c(proc: &Proc) -> Result<sys::pmix_proc_t, PmixError> {
    proc.to_c().ok_or_else(|| PmixError::BadProc(proc.nspace.clone()))
}

/// Copies and frees a malloc'ed, NULL-terminated array of malloc'ed C strings.
///
/// # Safety
/// `argv` is null or such an array, owned by the caller and not used afterwards.
unsafe fn take_argv(argv: *mut *mut c_char) -> Vec<String> {
    let mut out = Vec::new();
    if argv.is_null() {
        return out;
    }
    // SAFETY: per the caller's contract; each string and the array are freed exactly once.
    unsafe {
        let mut i = 0;
        loop {
            let s = *argv.add(i);
            if s.is_null() {
                break;
            }
            out.extend(c_string(s));
            libc::free(s.cast::<c_void>());
            i += 1;
        }
        libc::free(argv.cast::<c_void>());
    }
    out
}

type DmodexSender = oneshot::Sender<Result<Vec<u8>, Status>>;

/// libpmix's answer to `PMIx_server_dmodex_request`: the blob is libpmix's (freed after we
/// return), so it is copied.
unsafe extern "C" fn dmodex_done(
    status: sys::pmix_status_t,
    data: *mut c_char,
    size: usize,
    cbdata: *mut c_void,
) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `cbdata` is the Box leaked by `dmodex_request`, handed back exactly once.
        let tx = unsafe { Box::from_raw(cbdata.cast::<DmodexSender>()) };
        let result = if status == sys::PMIX_SUCCESS {
            // SAFETY: libpmix's blob, valid for `size` bytes during this call.
            Ok(unsafe { c_bytes(data, size) })
        } else {
            Err(Status(status))
        };
        let _ = tx.send(result);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(supported_version("OpenPMIx 4.2.2 (PMIx Standard: 4.2, Stable ABI: 4.2)"));
        assert!(supported_version("OpenPMIx 5.0.7"));
        assert!(!supported_version("PMIx 3.2.3"));
        assert!(!supported_version(""));
    }

    #[test]
    fn argv_is_copied_and_freed() {
        // SAFETY: builds a malloc'ed argv exactly as libpmix does.
        let argv = unsafe {
            let a = libc::calloc(3, std::mem::size_of::<*mut c_char>()).cast::<*mut c_char>();
            *a = libc::strdup(c"A=1".as_ptr());
            *a.add(1) = libc::strdup(c"B=x=y".as_ptr());
            a
        };
        // SAFETY: the array above, used once.
        assert_eq!(unsafe { take_argv(argv) }, vec!["A=1", "B=x=y"]);
    }
}
