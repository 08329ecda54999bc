//! How long joining a cgroup takes: every write to `cgroup.procs` takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing, and unless some cgroup hierarchy is mounted with
//! `favordynmods` that write lock first waits for an RCU grace period (measured here: 12-14 ms
//! per write under load, 0.3 ms with `favordynmods`). The option is global (one rwsem for all
//! hierarchies, v1 and v2), so one mount carrying it is enough; its price is a slightly dearer
//! fork and exit. It is off by default: an agent turns it on for its node only when asked
//! (`GANGWAY_CGROUP_FAVORDYNMODS=1`; measured here, runs were slower with it, see
//! docs/containment.md), and `gangway run` leaves the machine's mounts alone.

use std::ffi::CString;
use std::path::PathBuf;

use crate::ContainmentError;
use crate::mounts::Version;

/// The option that spares migrations the grace period.
pub const FAVORDYNMODS: &str = "favordynmods";

/// What [`favor_dynamic_moves`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrations {
    /// A cgroup mount already carries `favordynmods`.
    AlreadyFast(PathBuf),
    /// This cgroup2 mount was remounted with it.
    MadeFast(PathBuf),
    /// Not set, and the caller asked to leave the mounts alone.
    Kept,
    /// No cgroup2 mount to carry it (a v1-only machine): each join waits.
    NoCgroup2,
}

/// One cgroup mount's line, as the remount needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountLine {
    point: PathBuf,
    mount_options: String,
    super_options: String,
    version: Version,
}

fn parse(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut b = before.split(' ');
            let point = b.nth(4)?;
            let mount_options = b.next()?.to_string();
            let mut a = after.split(' ');
            let version = match a.next()? {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => return None,
            };
            let _source = a.next()?;
            let super_options = a.next().unwrap_or("").to_string();
            let point = PathBuf::from(point.replace("\\040", " "));
            Some(MountLine { point, mount_options, super_options, version })
        })
        .collect()
}

/// What to do for a mountinfo text: the verdict and, for a remount, the mount's
/// flags and data (its own super options plus `favordynmods`, so nothing else changes).
fn plan(text: &str) -> (Migrations, Option<(u64, String)>) {
    let mounts = parse(text);
    if let Some(m) = mounts.iter().find(|m| m.super_options.split(',').any(|o| o == FAVORDYNMODS)) {
        return (Migrations::AlreadyFast(m.point.clone()), None);
    }
    let Some(m) = mounts.iter().find(|m| m.version == Version::V2) else {
        return (Migrations::NoCgroup2, None);
    };
    let mut flags = libc::MS_REMOUNT;
    for o in m.mount_options.split(',') {
        flags |= match o {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "relatime" => libc::MS_RELATIME,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            _ => 0,
        };
    }
    let data: Vec<&str> = m
        .super_options
        .split(',')
        .filter(|o| !o.is_empty() && !matches!(*o, "rw" | "ro"))
        .chain([FAVORDYNMODS])
        .collect();
    (Migrations::MadeFast(m.point.clone()), Some((flags, data.join(","))))
}

/// Makes cgroup migrations on this machine skip the RCU grace period (see the module doc):
/// nothing when a cgroup mount already has `favordynmods`, else the cgroup2 mount is remounted
/// with it (root only; an error otherwise). `keep_mounts`: only tell, change nothing.
pub fn favor_dynamic_moves(keep_mounts: bool) -> Result<Migrations, ContainmentError> {
    let io = |what: &'static str, path: PathBuf| {
        move |source| ContainmentError::Io { path, what, source }
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("read", PathBuf::from("/proc/self/mountinfo")))?;
    let (verdict, remount) = plan(&text);
    if keep_mounts && matches!(verdict, Migrations::MadeFast(_)) {
        return Ok(Migrations::Kept);
    }
    let (Migrations::MadeFast(point), Some((flags, data))) = (&verdict, remount) else {
        return Ok(verdict);
    };
    let target = CString::new(point.as_os_str().as_encoded_bytes())
        .map_err(|e| io("remount", point.clone())(std::io::Error::other(e)))?;
    let data = CString::new(data).expect("mount options hold no NUL");
    // SAFETY: valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            target.as_ptr(),
            c"cgroup2".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(
            io("remount with favordynmods", point.clone())(std::io::Error::last_os_error()),
        );
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE_V2: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn the_cgroup2_mount_is_remounted_with_its_own_options_plus_favordynmods() {
        let (verdict, remount) = plan(HYBRID);
        assert_eq!(verdict, Migrations::MadeFast("/sys/fs/cgroup/unified".into()));
        assert_eq!(remount, Some((libc::MS_REMOUNT | libc::MS_RELATIME, "favordynmods".into())));
        let (_, remount) = plan(PURE_V2);
        let flags = libc::MS_REMOUNT
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_RELATIME;
        assert_eq!(remount, Some((flags, "nsdelegate,memory_recursiveprot,favordynmods".into())));
    }

    #[test]
    fn a_mount_with_favordynmods_is_enough_and_v1_only_has_no_cgroup2() {
        let fast = HYBRID.replace("cgroup rw,cpu", "cgroup rw,cpu,favordynmods");
        assert_eq!(plan(&fast), (Migrations::AlreadyFast("/sys/fs/cgroup/cpu".into()), None));
        let v1_only = HYBRID.lines().next().unwrap();
        assert_eq!(plan(v1_only), (Migrations::NoCgroup2, None));
    }
}
