//! Replies to libpmix's upcalls: each wraps the completion callback libpmix gave with the
//! request and calls it exactly once.
//!
//! A reply is consumed by answering it; dropping it unanswered answers [`Status::ERROR`], so a
//! client never waits forever on an owner that forgot it (or was torn down). Once the server
//! is finalized the callbacks point into a library that has shut down: replies then do nothing.

use std::ffi::{c_char, c_void};

use gangway_pmix_sys as sys;

use crate::error::Status;
use crate::value::{CInfos, Info, Proc, Value, copy_fixed};

/// The completion libpmix is waiting for: its callback and the opaque pointer to hand back.
#[derive(Debug)]
struct Pending<F> {
    cbfunc: F,
    cbdata: *mut c_void,
}

// SAFETY: libpmix accepts completions from any thread (it thread-shifts them onto its progress
// thread itself), and `cbdata` is an opaque token that is only passed back, never dereferenced.
unsafe impl<F: Send> Send for Pending<F> {}

/// The answer to a request that only needs a status (finalize, abort, publish, unpublish).
#[derive(Debug)]
#[must_use = "dropping a reply answers the client with an error"]
pub struct OpReply {
    pending: Option<Pending<unsafe extern "C" fn(sys::pmix_status_t, *mut c_void)>>,
}

impl OpReply {
    /// A reply that calls `cbfunc(status, cbdata)`; a null `cbfunc` (libpmix wants no answer)
    /// makes a reply whose answers do nothing.
    pub(crate) fn new(cbfunc: sys::pmix_op_cbfunc_t, cbdata: *mut c_void) -> OpReply {
        OpReply { pending: cbfunc.map(|cbfunc| Pending { cbfunc, cbdata }) }
    }

    /// Answers success.
    pub fn ok(self) {
        self.finish(Status::SUCCESS);
    }

    /// Answers with an error status.
    pub fn fail(self, status: Status) {
        self.finish(status);
    }

    fn finish(mut self, status: Status) {
        self.complete(status);
    }

    fn complete(&mut self, status: Status) {
        if let Some(p) = self.pending.take() {
            crate::running::while_running(|| {
                // SAFETY: libpmix's own completion with its own token, called once (`take`).
                unsafe { (p.cbfunc)(status.0, p.cbdata) }
            });
        }
    }

    /// Forgets the completion without calling it: for an upcall that returns an error status
    /// instead (libpmix then does not expect the callback).
    pub(crate) fn defuse(&mut self) {
        self.pending = None;
    }
}

impl Drop for OpReply {
    fn drop(&mut self) {
        self.complete(Status::ERROR);
    }
}

type ModexCb = unsafe extern "C" fn(
    sys::pmix_status_t,
    *const c_char,
    usize,
    *mut c_void,
    sys::pmix_release_cbfunc_t,
    *mut c_void,
);

/// The answer to a fence or a direct-modex request: the data blob, or an error.
#[derive(Debug)]
#[must_use = "dropping a reply answers the client with an error"]
pub struct ModexReply {
    pending: Option<Pending<ModexCb>>,
}

/// Frees a blob handed to libpmix once it says it is done with it.
unsafe extern "C" fn release_blob(cbdata: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        if !cbdata.is_null() {
            // SAFETY: `cbdata` is the Box<Vec<u8>> leaked in `ModexReply::data`, released
            // exactly once by libpmix.
            drop(unsafe { Box::from_raw(cbdata.cast::<Vec<u8>>()) });
        }
    });
}

impl ModexReply {
    pub(crate) fn new(cbfunc: sys::pmix_modex_cbfunc_t, cbdata: *mut c_void) -> ModexReply {
        ModexReply { pending: cbfunc.map(|cbfunc| Pending { cbfunc, cbdata }) }
    }

    /// Answers with the data: for a fence, every participating node's blob concatenated (in
    /// any order); for a direct modex, the blob the process's node returned.
    pub fn data(mut self, data: Vec<u8>) {
        if let Some(p) = self.pending.take() {
            let blob = Box::new(data);
            let len = blob.len();
            // libpmix treats a null pointer as "no data"; never hand it a dangling one.
            let ptr = if len == 0 { std::ptr::null() } else { blob.as_ptr().cast::<c_char>() };
            let token = Box::into_raw(blob).cast::<c_void>();
            let called = crate::running::while_running(|| {
                // SAFETY: libpmix reads `len` bytes at `ptr` until it calls `release_blob` with
                // `token`, which frees them; the heap buffer does not move meanwhile.
                unsafe {
                    (p.cbfunc)(sys::PMIX_SUCCESS, ptr, len, p.cbdata, Some(release_blob), token)
                }
            });
            if called.is_none() {
                // SAFETY: libpmix never saw `token`; it is still ours to free.
                unsafe { release_blob(token) };
            }
        }
    }

    /// Answers with an error status and no data.
    pub fn fail(mut self, status: Status) {
        self.complete_err(status);
    }

    fn complete_err(&mut self, status: Status) {
        if let Some(p) = self.pending.take() {
            crate::running::while_running(|| {
                // SAFETY: libpmix's own completion and token, called once; no data to release.
                unsafe {
                    (p.cbfunc)(status.0, std::ptr::null(), 0, p.cbdata, None, std::ptr::null_mut())
                }
            });
        }
    }

    pub(crate) fn defuse(&mut self) {
        self.pending = None;
    }
}

impl Drop for ModexReply {
    fn drop(&mut self) {
        self.complete_err(Status::ERROR);
    }
}

/// One published datum, as a lookup returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Who published it.
    pub publisher: Proc,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: Value,
}

type LookupCb =
    unsafe extern "C" fn(sys::pmix_status_t, *mut sys::pmix_pdata_t, usize, *mut c_void);

/// The answer to a lookup.
#[derive(Debug)]
#[must_use = "dropping a reply answers the client with an error"]
pub struct LookupReply {
    pending: Option<Pending<LookupCb>>,
}

impl LookupReply {
    pub(crate) fn new(cbfunc: sys::pmix_lookup_cbfunc_t, cbdata: *mut c_void) -> LookupReply {
        LookupReply { pending: cbfunc.map(|cbfunc| Pending { cbfunc, cbdata }) }
    }

    /// Answers with what was found; an empty list answers `PMIX_ERR_NOT_FOUND`. An entry that
    /// cannot be represented in C (a key over 511 bytes, a NUL in a string) fails the lookup
    /// with `PMIX_ERR_BAD_PARAM` rather than answering something else.
    pub fn found(mut self, data: Vec<Published>) {
        let Some(p) = self.pending.take() else { return };
        if data.is_empty() {
            self.pending = Some(p);
            self.complete_err(Status::NOT_FOUND);
            return;
        }
        // The values' storage lives in `values` until the callback returns: libpmix copies the
        // data into its reply before that (the header: host data is the host's to free after).
        let infos: Vec<Info> =
            data.iter().map(|d| Info { key: d.key.clone(), value: d.value.clone() }).collect();
        let built = CInfos::new(&infos).ok().and_then(|mut values| {
            let mut pdata = Vec::with_capacity(data.len());
            for (i, d) in data.iter().enumerate() {
                let mut pd = sys::pmix_pdata_t { proc_: d.publisher.to_c()?, ..Default::default() };
                copy_fixed(&mut pd.key, &d.key)?;
                // SAFETY: `i` < values.len() (one C info per Published, in order).
                pd.value = unsafe { (*values.as_mut_ptr().add(i)).value };
                pdata.push(pd);
            }
            Some((values, pdata))
        });
        match built {
            Some((values, mut pdata)) => {
                crate::running::while_running(|| {
                    // SAFETY: libpmix's completion and token, called once; `pdata` and the
                    // storage its values point into (`values`) outlive the call.
                    unsafe {
                        (p.cbfunc)(sys::PMIX_SUCCESS, pdata.as_mut_ptr(), pdata.len(), p.cbdata)
                    }
                });
                drop(values);
            }
            None => {
                self.pending = Some(p);
                self.complete_err(Status::BAD_PARAM);
            }
        }
    }

    /// Answers with an error status.
    pub fn fail(mut self, status: Status) {
        self.complete_err(status);
    }

    fn complete_err(&mut self, status: Status) {
        if let Some(p) = self.pending.take() {
            crate::running::while_running(|| {
                // SAFETY: libpmix's completion and token, called once; no data.
                unsafe { (p.cbfunc)(status.0, std::ptr::null_mut(), 0, p.cbdata) }
            });
        }
    }

    pub(crate) fn defuse(&mut self) {
        self.pending = None;
    }
}

impl Drop for LookupReply {
    fn drop(&mut self) {
        self.complete_err(Status::ERROR);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What a fake libpmix completion saw.
    #[derive(Debug, Default)]
    struct Seen {
        calls: Vec<(i32, Vec<u8>)>,
    }

    unsafe extern "C" fn op_cb(status: sys::pmix_status_t, cbdata: *mut c_void) {
        // SAFETY: the tests pass a &Mutex<Seen> as cbdata.
        let seen = unsafe { &*cbdata.cast::<Mutex<Seen>>() };
        seen.lock().unwrap().calls.push((status, Vec::new()));
    }

    unsafe extern "C" fn modex_cb(
        status: sys::pmix_status_t,
        data: *const c_char,
        ndata: usize,
        cbdata: *mut c_void,
        release: sys::pmix_release_cbfunc_t,
        release_data: *mut c_void,
    ) {
        // SAFETY: as libpmix does: read the blob, then release it.
        unsafe {
            let seen = &*cbdata.cast::<Mutex<Seen>>();
            seen.lock().unwrap().calls.push((status, crate::value::c_bytes(data, ndata)));
            if let Some(release) = release {
                release(release_data);
            }
        }
    }

    unsafe extern "C" fn lookup_cb(
        status: sys::pmix_status_t,
        data: *mut sys::pmix_pdata_t,
        ndata: usize,
        cbdata: *mut c_void,
    ) {
        // SAFETY: `ndata` entries, valid during the call; records "key=rank:value" as bytes.
        unsafe {
            let seen = &*cbdata.cast::<Mutex<Seen>>();
            let mut text = String::new();
            for i in 0..ndata {
                let d = &*data.add(i);
                let value = Value::from_c(&d.value);
                let key = crate::value::fixed_str(&d.key);
                text += &format!("{key}={}:{value:?};", d.proc_.rank);
            }
            seen.lock().unwrap().calls.push((status, text.into_bytes()));
        }
    }

    fn token(seen: &Mutex<Seen>) -> *mut c_void {
        std::ptr::from_ref(seen).cast_mut().cast()
    }

    fn take(seen: &Mutex<Seen>) -> Vec<(i32, Vec<u8>)> {
        std::mem::take(&mut seen.lock().unwrap().calls)
    }

    /// One test, run in sequence, because "is the server running" is process-wide.
    #[test]
    fn every_reply_completes_exactly_once() {
        let seen = Mutex::new(Seen::default());
        crate::running::set_running(true);

        OpReply::new(Some(op_cb), token(&seen)).ok();
        assert_eq!(take(&seen), vec![(sys::PMIX_SUCCESS, vec![])], "ok: once, success");

        OpReply::new(Some(op_cb), token(&seen)).fail(Status::NOT_FOUND);
        assert_eq!(take(&seen), vec![(sys::PMIX_ERR_NOT_FOUND, vec![])]);

        drop(OpReply::new(Some(op_cb), token(&seen)));
        assert_eq!(take(&seen), vec![(sys::PMIX_ERROR, vec![])], "dropped: once, an error");

        let mut defused = OpReply::new(Some(op_cb), token(&seen));
        defused.defuse();
        drop(defused);
        assert_eq!(take(&seen), vec![], "defused: never (libpmix got an error status instead)");

        drop(OpReply::new(None, token(&seen)));
        assert_eq!(take(&seen), vec![], "no callback, nothing to call");

        ModexReply::new(Some(modex_cb), token(&seen)).data(b"node data".to_vec());
        assert_eq!(take(&seen), vec![(sys::PMIX_SUCCESS, b"node data".to_vec())]);
        drop(ModexReply::new(Some(modex_cb), token(&seen)));
        assert_eq!(take(&seen), vec![(sys::PMIX_ERROR, vec![])]);

        let published = vec![Published {
            publisher: Proc::new("job", 2),
            key: "svc".into(),
            value: Value::String("port-1".into()),
        }];
        LookupReply::new(Some(lookup_cb), token(&seen)).found(published);
        assert_eq!(take(&seen), vec![(sys::PMIX_SUCCESS, b"svc=2:String(\"port-1\");".to_vec())]);
        LookupReply::new(Some(lookup_cb), token(&seen)).found(vec![]);
        assert_eq!(take(&seen), vec![(sys::PMIX_ERR_NOT_FOUND, vec![])]);
        let bad = vec![Published {
            publisher: Proc::new("job", 0),
            key: "k".repeat(600),
            value: Value::Bool(true),
        }];
        LookupReply::new(Some(lookup_cb), token(&seen)).found(bad);
        assert_eq!(take(&seen), vec![(sys::PMIX_ERR_BAD_PARAM, vec![])], "refused, not truncated");

        // After finalize the callbacks would enter a library that has shut down: nothing runs.
        crate::running::set_running(false);
        OpReply::new(Some(op_cb), token(&seen)).ok();
        drop(ModexReply::new(Some(modex_cb), token(&seen)));
        ModexReply::new(Some(modex_cb), token(&seen)).data(vec![1, 2, 3]);
        assert_eq!(take(&seen), vec![]);
    }
}
