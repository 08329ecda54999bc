//! What the kernel offers: the cgroup file systems in `/proc/self/mountinfo`, this process's
//! own cgroups in `/proc/self/cgroup`, and the one rule choosing v1 or v2 from them (pure).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The controllers containment uses to enforce limits; the others (freezing, killing, CPU
/// time) work on either version without one of these.
pub const ENFORCING: [&str; 3] = ["cpuset", "memory", "pids"];

/// Which cgroup version a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// One mounted cgroup file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// v1: the controllers bound to this hierarchy (`memory`, `cpu`, ...; `name=systemd`
    /// for named ones). v2: empty (read `cgroup.controllers` instead).
    pub controllers: Vec<String>,
    pub version: Version,
}

/// The cgroup mounts in a `/proc/<pid>/mountinfo` text, in file order.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let mut fields = after.split(' ');
            let fs_type = fields.next()?;
            let _source = fields.next()?;
            let options = fields.next().unwrap_or("");
            let version = match fs_type {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => return None,
            };
            let controllers = match version {
                Version::V1 => options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("relatime"))
                    .filter(|o| {
                        !matches!(
                            *o,
                            "nosuid" | "nodev" | "noexec" | "clone_children" | "favordynmods"
                        )
                    })
                    .map(str::to_string)
                    .collect(),
                Version::V2 => Vec::new(),
            };
            Some(CgroupMount { point: PathBuf::from(unescape(point)), controllers, version })
        })
        .collect()
}

/// mountinfo writes spaces and a few other bytes as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in each hierarchy, from a `/proc/<pid>/cgroup` text: v1 by
/// controller name, the v2 (unified) one under the empty key.
pub fn parse_own_cgroups(text: &str) -> BTreeMap<String, String> {
    let mut own = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            own.insert(String::new(), path.to_string());
        }
        for c in controllers.split(',').filter(|c| !c.is_empty()) {
            own.insert(c.to_string(), path.to_string());
        }
    }
    own
}

/// The version to use: v2 when the unified hierarchy has every enforcing controller (a pure
/// v2 system, or a hybrid one that moved them there); else v1 when a v1 hierarchy holds at
/// least one of them (this machine: memory, cpuset and pids are bound to v1, so a cgroup2
/// mount beside them can only freeze and kill); else v2 for what it can do without them;
/// `None` without any cgroup file system.
pub fn choose(mounts: &[CgroupMount], v2_controllers: &[String]) -> Option<Version> {
    let v2 = mounts.iter().any(|m| m.version == Version::V2);
    let v2_complete = ENFORCING.iter().all(|c| v2_controllers.iter().any(|h| h == c));
    let v1_enforcing = mounts.iter().any(|m| {
        m.version == Version::V1 && m.controllers.iter().any(|c| ENFORCING.contains(&&**c))
    });
    if v2 && v2_complete {
        Some(Version::V2)
    } else if v1_enforcing {
        Some(Version::V1)
    } else if v2 {
        Some(Version::V2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE_V2: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hybrid_machine_with_v1_controllers_is_v1() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[2].controllers, names(&["memory"]));
        assert_eq!(mounts[3].controllers, names(&["name=systemd"]));
        assert_eq!(mounts[4].version, Version::V2);
        assert_eq!(choose(&mounts, &names(&["hugetlb"])), Some(Version::V1));
    }

    #[test]
    fn pure_v2_is_v2_and_nothing_is_none() {
        let mounts = parse_mountinfo(PURE_V2);
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            choose(&mounts, &names(&["cpuset", "cpu", "io", "memory", "pids"])),
            Some(Version::V2)
        );
        // v2 without the enforcing controllers and no v1: still v2 (kill, freeze, CPU time).
        assert_eq!(choose(&mounts, &[]), Some(Version::V2));
        assert_eq!(choose(&[], &[]), None);
    }

    #[test]
    fn hybrid_that_moved_controllers_to_v2_is_v2() {
        let mounts = parse_mountinfo(HYBRID);
        let v1_only_cpu: Vec<_> =
            mounts.into_iter().filter(|m| !m.controllers.contains(&"memory".into())).collect();
        let v1_no_enforcing: Vec<_> =
            v1_only_cpu.into_iter().filter(|m| !m.controllers.contains(&"cpuset".into())).collect();
        assert_eq!(
            choose(&v1_no_enforcing, &names(&["memory", "cpuset", "pids"])),
            Some(Version::V2)
        );
    }

    #[test]
    fn own_cgroups_by_controller() {
        let own =
            parse_own_cgroups("4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice\n");
        assert_eq!(own["memory"], "/process_api/abc");
        assert_eq!(own["cpuacct"], "/x");
        assert_eq!(own["cpu"], "/x");
        assert_eq!(own[""], "/user.slice");
    }

    #[test]
    fn escaped_mount_points() {
        let m = parse_mountinfo("1 2 0:1 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n");
        assert_eq!(m[0].point, PathBuf::from("/mnt/a b"));
    }
}
