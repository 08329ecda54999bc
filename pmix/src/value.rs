//! PMIx values on both sides of the FFI: [`Value`] and [`Info`] in Rust, [`CInfos`] (the C
//! array plus every allocation it points into, freed together) for what gangway hands libpmix,
//! and copies of what libpmix hands gangway.
//!
//! Nothing here keeps a pointer libpmix owns: `from_c` copies, and `CInfos` owns all its memory
//! with Rust allocations that libpmix never frees (it only reads the registration arrays, and
//! copies reply data before the callback returns).

use std::ffi::{CStr, CString, c_char};

use gangway_pmix_sys as sys;

/// A process: namespace and rank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proc {
    /// The namespace (the job's PMIx name).
    pub nspace: String,
    /// The rank, or [`Proc::WILDCARD`] for "every rank of the namespace".
    pub rank: u32,
}

impl Proc {
    /// `PMIX_RANK_WILDCARD`: all ranks of a namespace.
    pub const WILDCARD: u32 = sys::PMIX_RANK_WILDCARD;

    /// A process of `nspace`.
    pub fn new(nspace: impl Into<String>, rank: u32) -> Proc {
        Proc { nspace: nspace.into(), rank }
    }

    /// Copies a C `pmix_proc_t`.
    pub(crate) fn from_c(p: &sys::pmix_proc_t) -> Proc {
        Proc { nspace: fixed_str(&p.nspace), rank: p.rank }
    }

    /// The C form. `None` when the namespace does not fit (255 bytes) or holds a NUL.
    pub(crate) fn to_c(&self) -> Option<sys::pmix_proc_t> {
        let mut p = sys::pmix_proc_t { rank: self.rank, ..Default::default() };
        copy_fixed(&mut p.nspace, &self.nspace)?;
        Some(p)
    }
}

impl std::fmt::Display for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rank == Proc::WILDCARD {
            write!(f, "{}:*", self.nspace)
        } else {
            write!(f, "{}:{}", self.nspace, self.rank)
        }
    }
}

/// A PMIx value of one of the types gangway registers or receives. Anything else libpmix sends
/// is kept as [`Value::Unsupported`] with its type code, so it can be reported, not misread.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `PMIX_BOOL`.
    Bool(bool),
    /// `PMIX_STRING`.
    String(String),
    /// `PMIX_BYTE_OBJECT`.
    Bytes(Vec<u8>),
    /// `PMIX_REGEX`: the output of `PMIx_generate_regex`/`ppn`, every byte of it (a compressed
    /// regex contains NULs).
    Regex(Vec<u8>),
    /// `PMIX_UINT16`.
    U16(u16),
    /// `PMIX_UINT32`.
    U32(u32),
    /// `PMIX_UINT64`.
    U64(u64),
    /// `PMIX_INT` (a C `int`).
    Int(i32),
    /// `PMIX_INT32`.
    I32(i32),
    /// `PMIX_INT64`.
    I64(i64),
    /// `PMIX_SIZE`.
    Size(usize),
    /// `PMIX_PROC_RANK`.
    Rank(u32),
    /// `PMIX_STATUS`.
    Status(i32),
    /// `PMIX_PROC`.
    Proc(Proc),
    /// `PMIX_DATA_ARRAY` of `PMIX_INFO`: nested key/value pairs (per-process data).
    Infos(Vec<Info>),
    /// A type gangway does not interpret.
    Unsupported {
        /// The `pmix_data_type_t` code.
        type_code: u16,
    },
}

/// A key and its value (`pmix_info_t`).
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// The key, e.g. `pmix.job.size`.
    pub key: String,
    /// The value.
    pub value: Value,
}

impl Info {
    /// A pair from a key constant of the bindings (`PMIX_JOB_SIZE`, ...) and a value.
    pub fn new(key: &[u8], value: Value) -> Info {
        Info { key: key_str(key), value }
    }
}

/// A key constant of the bindings (`b"pmix.job.size\0"`) as a string.
pub(crate) fn key_str(key: &[u8]) -> String {
    CStr::from_bytes_until_nul(key)
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(key).into_owned())
}

/// A NUL-terminated fixed-size C field (`pmix_nspace_t`, `pmix_key_t`) as a string; a field
/// without a NUL is taken whole.
pub(crate) fn fixed_str(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Writes `s` and a NUL into a fixed-size C field; `None` if it does not fit or contains NUL.
pub(crate) fn copy_fixed(field: &mut [c_char], s: &str) -> Option<()> {
    if s.len() >= field.len() || s.bytes().any(|b| b == 0) {
        return None;
    }
    for (dst, &b) in field.iter_mut().zip(s.as_bytes()) {
        *dst = b as c_char;
    }
    field[s.len()] = 0;
    Some(())
}

/// Copies a C string; `None` for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string valid for the duration of the call.
pub(crate) unsafe fn c_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Copies `len` bytes at `p` (empty for a null pointer or zero length).
///
/// # Safety
/// `p` is null or valid for reads of `len` bytes for the duration of the call.
pub(crate) unsafe fn c_bytes(p: *const c_char, len: usize) -> Vec<u8> {
    if p.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: valid for `len` bytes per the caller's contract; u8 and c_char have one layout.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec()
}

impl Value {
    /// Copies a C value. Nested arrays other than info arrays, and exotic types, come back as
    /// [`Value::Unsupported`].
    ///
    /// # Safety
    /// `v` is a valid, initialised `pmix_value_t` whose pointers are valid for the call.
    pub(crate) unsafe fn from_c(v: &sys::pmix_value_t) -> Value {
        let d = &v.data;
        // SAFETY (all union reads below): `type_` says which member libpmix wrote.
        unsafe {
            match v.type_ {
                sys::PMIX_BOOL => Value::Bool(d.flag),
                sys::PMIX_STRING => Value::String(c_string(d.string).unwrap_or_default()),
                sys::PMIX_BYTE_OBJECT => Value::Bytes(c_bytes(d.bo.bytes, d.bo.size)),
                sys::PMIX_REGEX => Value::Regex(c_bytes(d.bo.bytes, d.bo.size)),
                sys::PMIX_UINT16 => Value::U16(d.uint16),
                sys::PMIX_UINT32 => Value::U32(d.uint32),
                sys::PMIX_UINT64 => Value::U64(d.uint64),
                sys::PMIX_INT => Value::Int(d.integer),
                sys::PMIX_INT32 => Value::I32(d.int32),
                sys::PMIX_INT64 => Value::I64(d.int64),
                sys::PMIX_SIZE => Value::Size(d.size),
                sys::PMIX_PROC_RANK => Value::Rank(d.rank),
                sys::PMIX_STATUS => Value::Status(d.status),
                sys::PMIX_PROC if !d.proc_.is_null() => Value::Proc(Proc::from_c(&*d.proc_)),
                sys::PMIX_DATA_ARRAY if !d.darray.is_null() => {
                    let a = &*d.darray;
                    if a.type_ == sys::PMIX_INFO && (!a.array.is_null() || a.size == 0) {
                        Value::Infos(infos_from_c(a.array.cast::<sys::pmix_info_t>(), a.size))
                    } else {
                        Value::Unsupported { type_code: sys::PMIX_DATA_ARRAY }
                    }
                }
                other => Value::Unsupported { type_code: other },
            }
        }
    }
}

/// Copies a C info array.
///
/// # Safety
/// `info` is null (then `n` is ignored) or points to `n` valid, initialised `pmix_info_t`.
pub(crate) unsafe fn infos_from_c(info: *const sys::pmix_info_t, n: usize) -> Vec<Info> {
    if info.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller's contract.
    let slice = unsafe { std::slice::from_raw_parts(info, n) };
    slice
        .iter()
        // SAFETY: each element is a valid pmix_info_t per the caller's contract.
        .map(|i| Info { key: fixed_str(&i.key), value: unsafe { Value::from_c(&i.value) } })
        .collect()
}

/// Why a Rust value cannot be given to libpmix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CValueError {
    /// A key longer than `PMIX_MAX_KEYLEN` or holding a NUL.
    Key(String),
    /// A string value holding a NUL.
    Nul(String),
    /// A type gangway only receives, never sends.
    Unsupported(String),
}

/// A C info array and everything it points into. Dropping it frees all of it at once; it must
/// outlive every libpmix call that reads the array.
#[derive(Default)]
pub(crate) struct CInfos {
    infos: Vec<sys::pmix_info_t>,
    strings: Vec<CString>,
    blobs: Vec<Vec<u8>>,
    #[expect(
        clippy::vec_box,
        reason = "boxed so the addresses handed to C stay put when the Vec grows"
    )]
    procs: Vec<Box<sys::pmix_proc_t>>,
    #[expect(
        clippy::vec_box,
        reason = "boxed so the addresses handed to C stay put when the Vec grows"
    )]
    arrays: Vec<Box<sys::pmix_data_array_t>>,
    nested: Vec<CInfos>,
}

impl std::fmt::Debug for CInfos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CInfos").field("len", &self.infos.len()).finish_non_exhaustive()
    }
}

// SAFETY: CInfos owns every allocation its raw pointers point into; nothing is shared with
// another owner, so moving it to another thread moves the whole graph.
unsafe impl Send for CInfos {}

impl CInfos {
    /// Builds the C form of `infos`.
    pub(crate) fn new(infos: &[Info]) -> Result<CInfos, CValueError> {
        let mut c = CInfos::default();
        for info in infos {
            let mut ci = sys::pmix_info_t::default();
            copy_fixed(&mut ci.key, &info.key).ok_or_else(|| CValueError::Key(info.key.clone()))?;
            c.fill(&mut ci.value, &info.key, &info.value)?;
            c.infos.push(ci);
        }
        Ok(c)
    }

    fn fill(
        &mut self,
        v: &mut sys::pmix_value_t,
        key: &str,
        value: &Value,
    ) -> Result<(), CValueError> {
        // Each arm writes the union member that `type_` names; pointers go to storage this
        // struct owns (heap buffers, which do not move when the owning Vecs grow).
        match value {
            Value::Bool(b) => (v.type_, v.data.flag) = (sys::PMIX_BOOL, *b),
            Value::String(s) => {
                let cs = CString::new(s.as_str()).map_err(|_| CValueError::Nul(key.into()))?;
                v.type_ = sys::PMIX_STRING;
                v.data.string = cs.as_ptr().cast_mut();
                self.strings.push(cs);
            }
            Value::Bytes(b) | Value::Regex(b) => {
                let blob = b.clone();
                v.type_ = if matches!(value, Value::Regex(_)) {
                    sys::PMIX_REGEX
                } else {
                    sys::PMIX_BYTE_OBJECT
                };
                v.data.bo = sys::pmix_byte_object_t {
                    bytes: blob.as_ptr().cast::<c_char>().cast_mut(),
                    size: blob.len(),
                };
                self.blobs.push(blob);
            }
            Value::U16(x) => (v.type_, v.data.uint16) = (sys::PMIX_UINT16, *x),
            Value::U32(x) => (v.type_, v.data.uint32) = (sys::PMIX_UINT32, *x),
            Value::U64(x) => (v.type_, v.data.uint64) = (sys::PMIX_UINT64, *x),
            Value::Int(x) => (v.type_, v.data.integer) = (sys::PMIX_INT, *x),
            Value::I32(x) => (v.type_, v.data.int32) = (sys::PMIX_INT32, *x),
            Value::I64(x) => (v.type_, v.data.int64) = (sys::PMIX_INT64, *x),
            Value::Size(x) => (v.type_, v.data.size) = (sys::PMIX_SIZE, *x),
            Value::Rank(x) => (v.type_, v.data.rank) = (sys::PMIX_PROC_RANK, *x),
            Value::Status(x) => (v.type_, v.data.status) = (sys::PMIX_STATUS, *x),
            Value::Proc(p) => {
                let mut cp = Box::new(p.to_c().ok_or_else(|| CValueError::Nul(key.into()))?);
                v.type_ = sys::PMIX_PROC;
                v.data.proc_ = &mut *cp;
                self.procs.push(cp);
            }
            Value::Infos(inner) => {
                let mut nested = CInfos::new(inner)?;
                let mut array = Box::new(sys::pmix_data_array_t {
                    type_: sys::PMIX_INFO,
                    size: nested.infos.len(),
                    array: nested.infos.as_mut_ptr().cast(),
                });
                v.type_ = sys::PMIX_DATA_ARRAY;
                v.data.darray = &mut *array;
                self.arrays.push(array);
                self.nested.push(nested);
            }
            Value::Unsupported { .. } => return Err(CValueError::Unsupported(key.into())),
        }
        Ok(())
    }

    /// The array, for libpmix calls that take `pmix_info_t info[]` (they do not write to it).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::pmix_info_t {
        if self.infos.is_empty() { std::ptr::null_mut() } else { self.infos.as_mut_ptr() }
    }

    /// The array, read-only.
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> *const sys::pmix_info_t {
        self.infos.as_ptr()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.infos.len()
    }
}

/// The full length of a regex returned by `PMIx_generate_regex`/`ppn`: a native regex is a C
/// string (its NUL included, as libpmix's own copy does); a compressed one is
/// `"blob:\0component=<name>:\0size=<n>:\0"` followed by `n` bytes of zlib data.
///
/// # Safety
/// `p` points to a regex produced by libpmix (valid for the length this function computes).
pub(crate) unsafe fn regex_len(p: *const c_char) -> usize {
    // SAFETY: every read stays inside the regex's documented layout, one C string at a time.
    unsafe {
        let first = CStr::from_ptr(p);
        if first.to_bytes() != b"blob:" {
            return first.to_bytes().len() + 1;
        }
        let mut off = first.to_bytes().len() + 1;
        let component = CStr::from_ptr(p.add(off));
        off += component.to_bytes().len() + 1;
        let size_field = CStr::from_ptr(p.add(off));
        off += size_field.to_bytes().len() + 1;
        let n = std::str::from_utf8(size_field.to_bytes())
            .ok()
            .and_then(|s| s.strip_prefix("size="))
            .and_then(|s| s.strip_suffix(':'))
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        off + n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infos_round_trip_through_c() {
        let infos = vec![
            Info::new(sys::PMIX_JOB_SIZE, Value::U32(4)),
            Info::new(sys::PMIX_LOCAL_PEERS, Value::String("0,1,2,3".into())),
            Info::new(sys::PMIX_SPAWNED, Value::Bool(false)),
            Info::new(sys::PMIX_NODE_MAP, Value::Regex(b"pmix:n[1:0-1]\0".to_vec())),
            Info::new(
                sys::PMIX_PROC_DATA,
                Value::Infos(vec![
                    Info::new(sys::PMIX_RANK, Value::Rank(3)),
                    Info::new(sys::PMIX_LOCAL_RANK, Value::U16(1)),
                ]),
            ),
            Info::new(b"x\0", Value::Proc(Proc::new("ns", 2))),
        ];
        let c = CInfos::new(&infos).unwrap();
        // SAFETY: `c` is alive and holds `c.len()` initialised entries.
        let back = unsafe { infos_from_c(c.infos.as_ptr(), c.len()) };
        assert_eq!(back, infos);
    }

    #[test]
    fn bad_keys_and_strings_are_refused_not_truncated() {
        let long = "k".repeat(600);
        assert_eq!(
            CInfos::new(&[Info { key: long.clone(), value: Value::Bool(true) }]).unwrap_err(),
            CValueError::Key(long)
        );
        assert_eq!(
            CInfos::new(&[Info { key: "k".into(), value: Value::String("a\0b".into()) }])
                .unwrap_err(),
            CValueError::Nul("k".into())
        );
        assert!(Proc::new("n".repeat(256), 0).to_c().is_none());
        assert_eq!(Proc::from_c(&Proc::new("n".repeat(255), 7).to_c().unwrap()).rank, 7);
    }

    #[test]
    fn regex_lengths() {
        let native = b"pmix:node[2:1-3]\0";
        // SAFETY: a NUL-terminated buffer.
        assert_eq!(unsafe { regex_len(native.as_ptr().cast()) }, native.len());
        let mut blob = b"blob:\0component=zlib:\0size=5:\0".to_vec();
        let header = blob.len();
        blob.extend_from_slice(&[0, 1, 0, 2, 0]);
        // SAFETY: a well-formed blob of header + 5 bytes.
        assert_eq!(unsafe { regex_len(blob.as_ptr().cast()) }, header + 5);
    }

    #[test]
    fn proc_display() {
        assert_eq!(Proc::new("job", 3).to_string(), "job:3");
        assert_eq!(Proc::new("job", Proc::WILDCARD).to_string(), "job:*");
    }
}
