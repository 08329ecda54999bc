//! The attack suite: each way an unprivileged user, a network attacker or a failing node once
//! broke gangway's guarantees, reproduced end to end (as root, on a virtual cluster; bounded in
//! time and count). See docs/cluster.md, "Security model".

mod bounds;
mod fencing;
mod identity;
mod launcher;
