//! The host module: the `extern "C"` functions libpmix calls on its progress thread.
//!
//! Each one (job control excepted: see there) copies what it was given into an [`Event`], wraps
//! the completion callback in a reply, posts the event to the owner's channel and returns at
//! once (libpmix asks hosts to return quickly and finish asynchronously). No panic leaves these functions: each body runs
//! under `catch_unwind`, and the reply is built last, right before the send, so a panic while
//! copying can never leave both an error return and a pending reply (which would complete a
//! request libpmix has already cleaned up).

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use gangway_pmix_sys as sys;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::Status;
use crate::event::Event;
use crate::reply::{LookupReply, ModexReply, OpReply};
use crate::value::{Info, Proc, c_string, infos_from_c, key_str};

/// Where upcalls post their events: the running server's channel, or nothing.
static SINK: Mutex<Option<UnboundedSender<Event>>> = Mutex::new(None);

pub(crate) fn set_sink(sink: Option<UnboundedSender<Event>>) {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = sink;
}

/// Posts `event`. If nobody listens any more, its reply is defused and an error returned:
/// libpmix then fails the request itself and does not wait for a callback.
fn deliver(event: Event) -> sys::pmix_status_t {
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(sink) = sink else {
        return defuse(event);
    };
    match sink.send(event) {
        Ok(()) => sys::PMIX_SUCCESS,
        Err(returned) => defuse(returned.0),
    }
}

fn defuse(mut event: Event) -> sys::pmix_status_t {
    match &mut event {
        Event::ClientFinalized { reply, .. }
        | Event::Abort { reply, .. }
        | Event::Publish { reply, .. }
        | Event::Unpublish { reply, .. } => reply.defuse(),
        Event::Fence { reply, .. } | Event::DirectModex { reply, .. } => reply.defuse(),
        Event::Lookup { reply, .. } => reply.defuse(),
        Event::ClientConnected { .. } | Event::ClientLost { .. } | Event::SpawnRefused { .. } => {}
    }
    sys::PMIX_ERR_NOT_AVAILABLE
}

/// Runs an upcall body; a panic becomes `PMIX_ERROR` instead of unwinding into C.
fn guarded(body: impl FnOnce() -> sys::pmix_status_t) -> sys::pmix_status_t {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(sys::PMIX_ERROR)
}

/// Copies a process pointer (a null one, which libpmix never sends, becomes an empty name).
///
/// # Safety
/// `p` is null or points to a valid `pmix_proc_t`.
unsafe fn proc_at(p: *const sys::pmix_proc_t) -> Proc {
    // SAFETY: per the caller's contract.
    unsafe { p.as_ref() }.map(Proc::from_c).unwrap_or_else(|| Proc::new("", Proc::WILDCARD))
}

/// Copies an array of processes.
///
/// # Safety
/// `p` is null or points to `n` valid `pmix_proc_t`.
unsafe fn procs_at(p: *const sys::pmix_proc_t, n: usize) -> Vec<Proc> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller's contract.
    unsafe { std::slice::from_raw_parts(p, n) }.iter().map(Proc::from_c).collect()
}

/// Copies a NULL-terminated argv-style array of strings.
///
/// # Safety
/// `p` is null or a NULL-terminated array of valid C strings.
unsafe fn argv_at(p: *mut *mut c_char) -> Vec<String> {
    let mut out = Vec::new();
    if p.is_null() {
        return out;
    }
    // SAFETY: walks the array up to its NULL terminator, per the caller's contract.
    unsafe {
        let mut i = 0;
        while let Some(s) = c_string(*p.add(i)) {
            out.push(s);
            i += 1;
        }
    }
    out
}

fn is_key(info: &Info, key: &[u8]) -> bool {
    info.key == key_str(key)
}

unsafe extern "C" fn client_connected(
    proc_: *const sys::pmix_proc_t,
    _server_object: *mut c_void,
    cbfunc: sys::pmix_op_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process.
        let proc = unsafe { proc_at(proc_) };
        let _ = deliver(Event::ClientConnected { proc });
        // libpmix 4.2 passes no callback and only needs a success status. Later versions pass
        // one and read PMIX_SUCCESS as "called": answer it here, the connection is accepted.
        if let Some(cb) = cbfunc {
            // SAFETY: libpmix's own completion and token, called once.
            unsafe { cb(sys::PMIX_SUCCESS, cbdata) };
        }
        sys::PMIX_SUCCESS
    })
}

unsafe extern "C" fn client_finalized(
    proc_: *const sys::pmix_proc_t,
    _server_object: *mut c_void,
    cbfunc: sys::pmix_op_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process.
        let proc = unsafe { proc_at(proc_) };
        if cbfunc.is_none() {
            // Nothing waits for an answer (libpmix reporting a departure itself).
            let _ = deliver(Event::ClientFinalized { proc, reply: OpReply::new(None, cbdata) });
            return sys::PMIX_OPERATION_SUCCEEDED;
        }
        deliver(Event::ClientFinalized { proc, reply: OpReply::new(cbfunc, cbdata) })
    })
}

unsafe extern "C" fn abort(
    proc_: *const sys::pmix_proc_t,
    _server_object: *mut c_void,
    status: c_int,
    msg: *const c_char,
    procs: *mut sys::pmix_proc_t,
    nprocs: usize,
    cbfunc: sys::pmix_op_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes valid pointers (or null), freed only after we return.
        let (proc, message, targets) =
            unsafe { (proc_at(proc_), c_string(msg), procs_at(procs, nprocs)) };
        deliver(Event::Abort {
            proc,
            status,
            message,
            targets,
            reply: OpReply::new(cbfunc, cbdata),
        })
    })
}

unsafe extern "C" fn fence_nb(
    procs: *const sys::pmix_proc_t,
    nprocs: usize,
    info: *const sys::pmix_info_t,
    ninfo: usize,
    data: *mut c_char,
    ndata: usize,
    cbfunc: sys::pmix_modex_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes `nprocs` processes, `ninfo` infos and `ndata` bytes, valid
        // until the upcall returns; all are copied here.
        let (procs, infos, data) = unsafe {
            (procs_at(procs, nprocs), infos_from_c(info, ninfo), crate::value::c_bytes(data, ndata))
        };
        let collect_data = infos.iter().any(|i| {
            is_key(i, sys::PMIX_COLLECT_DATA) && !matches!(i.value, crate::Value::Bool(false))
        });
        let local_status = infos
            .iter()
            .find(|i| is_key(i, sys::PMIX_LOCAL_COLLECTIVE_STATUS))
            .and_then(|i| match i.value {
                crate::Value::Status(s) => Some(Status(s)),
                _ => None,
            })
            .unwrap_or(Status::SUCCESS);
        deliver(Event::Fence {
            procs,
            collect_data,
            local_status,
            data,
            reply: ModexReply::new(cbfunc, cbdata),
        })
    })
}

unsafe extern "C" fn direct_modex(
    proc_: *const sys::pmix_proc_t,
    _info: *const sys::pmix_info_t,
    _ninfo: usize,
    cbfunc: sys::pmix_modex_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process.
        let proc = unsafe { proc_at(proc_) };
        deliver(Event::DirectModex { proc, reply: ModexReply::new(cbfunc, cbdata) })
    })
}

/// Keys libpmix adds to a publish as directives rather than data.
const PUBLISH_DIRECTIVES: &[&[u8]] =
    &[sys::PMIX_RANGE, sys::PMIX_PERSISTENCE, sys::PMIX_USERID, sys::PMIX_GRPID, sys::PMIX_TIMEOUT];

unsafe extern "C" fn publish(
    proc_: *const sys::pmix_proc_t,
    info: *const sys::pmix_info_t,
    ninfo: usize,
    cbfunc: sys::pmix_op_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process and `ninfo` infos.
        let (proc, infos) = unsafe { (proc_at(proc_), infos_from_c(info, ninfo)) };
        let (directives, data) =
            infos.into_iter().partition(|i| PUBLISH_DIRECTIVES.iter().any(|k| is_key(i, k)));
        deliver(Event::Publish { proc, data, directives, reply: OpReply::new(cbfunc, cbdata) })
    })
}

unsafe extern "C" fn lookup(
    proc_: *const sys::pmix_proc_t,
    keys: *mut *mut c_char,
    info: *const sys::pmix_info_t,
    ninfo: usize,
    cbfunc: sys::pmix_lookup_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process, a NULL-terminated key list and `ninfo` infos.
        let (proc, keys, infos) =
            unsafe { (proc_at(proc_), argv_at(keys), infos_from_c(info, ninfo)) };
        let wait = infos
            .iter()
            .any(|i| is_key(i, sys::PMIX_WAIT) && !matches!(i.value, crate::Value::Bool(false)));
        deliver(Event::Lookup { proc, keys, wait, reply: LookupReply::new(cbfunc, cbdata) })
    })
}

unsafe extern "C" fn unpublish(
    proc_: *const sys::pmix_proc_t,
    keys: *mut *mut c_char,
    _info: *const sys::pmix_info_t,
    _ninfo: usize,
    cbfunc: sys::pmix_op_cbfunc_t,
    cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process and a NULL-terminated key list.
        let (proc, keys) = unsafe { (proc_at(proc_), argv_at(keys)) };
        deliver(Event::Unpublish { proc, keys, reply: OpReply::new(cbfunc, cbdata) })
    })
}

unsafe extern "C" fn spawn(
    proc_: *const sys::pmix_proc_t,
    _job_info: *const sys::pmix_info_t,
    _ninfo: usize,
    apps: *const sys::pmix_app_t,
    napps: usize,
    _cbfunc: sys::pmix_spawn_cbfunc_t,
    _cbdata: *mut c_void,
) -> sys::pmix_status_t {
    guarded(|| {
        // SAFETY: libpmix passes a valid process and `napps` applications.
        let proc = unsafe { proc_at(proc_) };
        let commands = if apps.is_null() {
            Vec::new()
        } else {
            // SAFETY: `napps` valid applications; `cmd` is a C string or null.
            unsafe { std::slice::from_raw_parts(apps, napps) }
                .iter()
                .map(|a| unsafe { c_string(a.cmd) }.unwrap_or_default())
                .collect()
        };
        let _ = deliver(Event::SpawnRefused { proc, commands });
        // An error status means libpmix will not wait for the callback: the client's
        // PMIx_Spawn (MPI_Comm_spawn) fails at once with "not supported".
        sys::PMIX_ERR_NOT_SUPPORTED
    })
}

/// Job control (`PMIx_Job_control`) from a rank. Its being present is what matters: libpmix
/// refuses every job-control request, clean-up registrations included, when the host has no
/// such function, and it handles a request made only of clean-up directives
/// (`PMIX_REGISTER_CLEANUP`, `..._DIR`, ...) itself, without calling this. That is how Open MPI
/// hands over its shared-memory files (`/dev/shm/vader_segment.*`), which libpmix then removes
/// when the client or the namespace is deregistered, however the rank ended. Anything else
/// (kill, signal, checkpoint) is refused: an error return means libpmix will not wait for the
/// callback.
unsafe extern "C" fn job_control(
    _requestor: *const sys::pmix_proc_t,
    _targets: *const sys::pmix_proc_t,
    _ntargets: usize,
    _directives: *const sys::pmix_info_t,
    _ndirs: usize,
    _cbfunc: sys::pmix_info_cbfunc_t,
    _cbdata: *mut c_void,
) -> sys::pmix_status_t {
    sys::PMIX_ERR_NOT_SUPPORTED
}

/// The host module handed to `PMIx_server_init` (libpmix copies it). Functions left out are
/// refused by libpmix itself with `PMIX_ERR_NOT_SUPPORTED`.
pub(crate) fn module() -> sys::pmix_server_module_t {
    sys::pmix_server_module_t {
        client_connected: Some(client_connected),
        client_finalized: Some(client_finalized),
        abort: Some(abort),
        fence_nb: Some(fence_nb),
        direct_modex: Some(direct_modex),
        publish: Some(publish),
        lookup: Some(lookup),
        unpublish: Some(unpublish),
        spawn: Some(spawn),
        job_control: Some(job_control),
        ..Default::default()
    }
}

/// libpmix's event handler for `PMIX_ERR_LOST_CONNECTION`: a client went away unfinalized.
/// The first process is the event's source; libpmix folds further ones that went within its
/// one-second window into `PMIX_PROCID` entries.
pub(crate) unsafe extern "C" fn lost_connection(
    _registration: usize,
    _status: sys::pmix_status_t,
    source: *const sys::pmix_proc_t,
    info: *mut sys::pmix_info_t,
    ninfo: usize,
    _results: *mut sys::pmix_info_t,
    _nresults: usize,
    cbfunc: sys::pmix_event_notification_cbfunc_fn_t,
    cbdata: *mut c_void,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libpmix passes a valid source and `ninfo` infos.
        let (first, infos) =
            unsafe { (source.as_ref().map(Proc::from_c), infos_from_c(info, ninfo)) };
        let mut lost: Vec<Proc> = first.into_iter().collect();
        for i in &infos {
            if is_key(i, sys::PMIX_PROCID)
                && let crate::Value::Proc(p) = &i.value
                && !lost.contains(p)
            {
                lost.push(p.clone());
            }
        }
        for proc in lost.into_iter().filter(|p| !p.nspace.is_empty()) {
            let _ = deliver(Event::ClientLost { proc });
        }
    }));
    // Let libpmix run the rest of its handler chain (its own defaults included).
    if let Some(cb) = cbfunc {
        // SAFETY: libpmix's own continuation and token, called once.
        unsafe {
            cb(
                sys::PMIX_EVENT_ACTION_COMPLETE,
                std::ptr::null_mut(),
                0,
                None,
                std::ptr::null_mut(),
                cbdata,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count(_status: sys::pmix_status_t, _cbdata: *mut c_void) {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    /// One test, in sequence, because the event sink is process-wide.
    #[test]
    fn upcalls_copy_their_arguments_and_refuse_when_nobody_listens() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        set_sink(Some(tx));
        let caller = Proc::new("job", 1).to_c().unwrap();
        let mut targets = vec![Proc::new("job", 0).to_c().unwrap()];
        let msg = CString::new("bye").unwrap();
        // SAFETY: valid arguments, as libpmix passes them.
        let rc = unsafe {
            abort(
                &caller,
                std::ptr::null_mut(),
                3,
                msg.as_ptr(),
                targets.as_mut_ptr(),
                targets.len(),
                Some(count),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, sys::PMIX_SUCCESS, "accepted: the reply will complete it");
        // libpmix frees its arguments when the upcall returns; the event must not care.
        drop(msg);
        targets.clear();
        match rx.try_recv() {
            Ok(Event::Abort { proc, status, message, targets, mut reply }) => {
                assert_eq!((proc, status), (Proc::new("job", 1), 3));
                assert_eq!(message.as_deref(), Some("bye"));
                assert_eq!(targets, vec![Proc::new("job", 0)]);
                reply.defuse();
            }
            other => panic!("{other:?}"),
        }

        let data = b"blob".to_vec();
        let infos = crate::value::CInfos::new(&[Info::new(
            sys::PMIX_COLLECT_DATA,
            crate::Value::Bool(true),
        )])
        .unwrap();
        // SAFETY: one wildcard proc, one info, four bytes: as libpmix passes them.
        let rc = unsafe {
            let wildcard = Proc::new("job", Proc::WILDCARD).to_c().unwrap();
            fence_nb(
                &wildcard,
                1,
                infos.as_ptr(),
                1,
                data.as_ptr().cast_mut().cast(),
                data.len(),
                None,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, sys::PMIX_SUCCESS);
        match rx.try_recv() {
            Ok(Event::Fence { procs, collect_data, local_status, data, .. }) => {
                assert_eq!(procs, vec![Proc::new("job", Proc::WILDCARD)]);
                assert!(collect_data);
                assert_eq!(local_status, Status::SUCCESS);
                assert_eq!(data, b"blob");
            }
            other => panic!("{other:?}"),
        }

        // The owner is gone: an error status, and the callback is never called.
        drop(rx);
        let before = CALLS.load(Ordering::SeqCst);
        // SAFETY: as above.
        let rc = unsafe {
            client_finalized(&caller, std::ptr::null_mut(), Some(count), std::ptr::null_mut())
        };
        assert_ne!(rc, sys::PMIX_SUCCESS);
        assert_eq!(CALLS.load(Ordering::SeqCst), before, "an error status, never both");
        set_sink(None);
        // SAFETY: as above.
        let rc = unsafe {
            spawn(&caller, std::ptr::null(), 0, std::ptr::null(), 0, None, std::ptr::null_mut())
        };
        assert_eq!(rc, sys::PMIX_ERR_NOT_SUPPORTED, "spawn is refused whatever happens");
    }
}
