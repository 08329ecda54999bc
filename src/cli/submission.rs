//! What a submission carries from the submitter's process besides its flags: its umask and the
//! directory it was made in.

/// This process's umask, for the job to run with (as Slurm does): read from `/proc` so that it
/// is never changed, even for a moment.
pub fn submitter_umask() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        let line = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    from_proc.unwrap_or_else(|| {
        // Without /proc: set and restore (commands are single-threaded when they submit).
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }) & 0o777
}

/// The current directory, where an `alloc` or `run` job's processes start (`/` if it is gone).
pub fn submit_dir() -> String {
    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "/".into())
}

/// The file name of a command, for a job's default name.
pub fn command_name(command: &std::ffi::OsStr, fallback: &str) -> String {
    std::path::Path::new(command)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.into())
}

/// This machine's name, recorded in the submission's environment so that the job can be told
/// where it was submitted from (`SLURM_SUBMIT_HOST`).
pub fn submit_host() -> (String, String) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    (crate::controller::slurm_env::SUBMIT_HOST.to_string(), host)
}
