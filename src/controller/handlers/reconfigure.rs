//! `gangway reconfigure` and SIGHUP: the scheduling sections of the controller's file
//! (`[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`) read again and put in force. The
//! file is checked whole before anything changes: a bad one is refused with its line and the
//! policy in force stays. Fair-share usage follows users by name; pending jobs whose account
//! or QOS went away wait as `Unsatisfiable`, running ones run on.
//!
//! Other settings (partitions, nodes, timeouts, listen address) still need a restart; a file
//! that changes them is applied for its scheduling part and the reply says the rest waits.

use gangway_scheduler::Timestamp;

use crate::controller::config::Config;
use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Caller, Cluster};
use crate::exit_code;
use crate::protocol::Reply;

impl Cluster {
    /// `gangway reconfigure`: `loaded` is the file as the server read it (or why it could not).
    pub fn reconfigure(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        loaded: Result<Config, String>,
        now: u64,
    ) -> Effects {
        if !caller.admin {
            return Effects::reply(conn, Reply::Error {
                code: exit_code::PERMISSION_DENIED,
                message: "only an administrator (root, or a user in the controller's `admins`) may reconfigure the controller".into(),
            });
        }
        let reply = match self.reload(loaded, &caller.user, now) {
            Ok(message) => Reply::Ok { message },
            Err(message) => Reply::Error { code: exit_code::USAGE, message },
        };
        Effects::reply(conn, reply)
    }

    /// Puts the scheduling sections of `loaded` in force (SIGHUP calls this directly); the
    /// answer says what changed, or why nothing did.
    pub fn reload(
        &mut self,
        loaded: Result<Config, String>,
        by: &str,
        now: u64,
    ) -> Result<String, String> {
        let refused = |why: String| format!("{why}; nothing changed, the policy in force stays");
        let config = loaded.map_err(refused)?;
        self.sched
            .reconfigure(config.scheduler.clone(), Timestamp(now))
            .map_err(|e| refused(format!("{}: {e}", config.path.display())))?;
        let mut message = format!(
            "scheduling policy reloaded from {}: {} accounts, {} users, {} QOS",
            config.path.display(),
            config.scheduler.accounts.len(),
            config.scheduler.users.len(),
            config.scheduler.qos.len()
        );
        if config.partitions != self.config.partitions || config.nodes != self.config.nodes {
            message.push_str(
                "; partitions and nodes changed too: those take effect when the controller restarts",
            );
        }
        self.sched_config = config.scheduler.clone();
        self.config.scheduler = config.scheduler;
        // Every pending job's account and QOS are looked up again: report and re-judge them.
        let active: Vec<_> = self.active.iter().copied().collect();
        self.resync.extend(active);
        self.needs_schedule = true;
        self.usage_due = true;
        self.event(now, None, None, "reconfigure", format!("by {by}: {message}"));
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::controller::config::Config;
    use crate::controller::scenario::{alice, batch, cluster_with, replies_to, root};
    use crate::exit_code;
    use crate::protocol::Reply;

    const BASE: &str = "cluster = \"t\"\nstate_dir = \"/nonexistent\"\nkey_file = \"/nonexistent\"\nheartbeat_interval = \"1s\"\nsuspect_timeout = \"3s\"\nlost_timeout = \"6s\"\nkill_grace = \"2s\"\n[[partition]]\nname = \"batch\"\nnodes = \"n[1-3]\"\ndefault = true\n";

    fn load(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    fn submit_to(c: &mut crate::controller::state::Cluster, account: &str) -> Reply {
        let mut sub = batch(1, 1);
        sub.shape.account = Some(account.into());
        let fx = c.submit(40, &alice(), sub, 0);
        replies_to(&fx, 40).first().copied().cloned().expect("reply")
    }

    #[test]
    fn a_bad_file_changes_nothing_and_a_good_one_takes_effect() {
        let mut c = cluster_with("[[account]]\nname = \"physics\"\nusers = [\"alice\"]\n");
        // Not an administrator: refused.
        let fx = c.reconfigure(1, &alice(), load(""), 0);
        assert!(
            matches!(replies_to(&fx, 1)[..], [Reply::Error { code, .. }] if *code == exit_code::PERMISSION_DENIED)
        );
        // A parent that does not exist, on line 17: refused with the line, nothing changes.
        let bad = "[[account]]\nname = \"physics\"\nusers = [\"alice\"]\n[[account]]\nname = \"chemistry\"\nparent = \"nope\"\n";
        let fx = c.reconfigure(2, &root(), load(bad), 0);
        let [Reply::Error { code, message }] = &replies_to(&fx, 2)[..] else { panic!("{fx:?}") };
        assert_eq!(*code, exit_code::USAGE);
        assert!(message.contains("line 15") && message.contains("nothing changed"), "{message}");
        assert!(matches!(submit_to(&mut c, "chemistry"), Reply::Error { .. }));
        // A good file: chemistry exists and alice is in it.
        let good = "[[account]]\nname = \"physics\"\nusers = [\"alice\"]\n[[account]]\nname = \"chemistry\"\nusers = [\"alice\"]\n";
        let fx = c.reconfigure(3, &root(), load(good), 0);
        assert!(matches!(replies_to(&fx, 3)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert!(matches!(submit_to(&mut c, "chemistry"), Reply::Submitted { .. }));
        let events = c.take_dirty().events;
        assert!(events.iter().any(|e| e.kind == "reconfigure" && e.detail.contains("2 accounts")));
    }
}
