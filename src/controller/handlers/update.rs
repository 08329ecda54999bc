//! `scontrol update` of a pending job: its name, partition and time limit, checked as a
//! submission would be (the job keeps its place; a running job is refused).

use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Caller, Cluster, Job, JobState};
use crate::exit_code;
use crate::protocol::{JobId, JobUpdate, Reply};
use gangway_scheduler::allocator;

impl Cluster {
    /// Applies `changes` to pending job `id`, or refuses with the reason.
    pub fn update(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        id: JobId,
        changes: &JobUpdate,
        now: u64,
    ) -> Effects {
        let refuse =
            |code: u8, message: String| Effects::reply(conn, Reply::Error { code, message });
        let Some(job) = self.jobs.get(&id) else {
            return refuse(exit_code::FAILURE, format!("job {id} does not exist"));
        };
        if !caller.may_act_on(job) {
            return refuse(
                exit_code::PERMISSION_DENIED,
                format!(
                    "job {id} belongs to {}; only its owner or an administrator may update it",
                    job.user
                ),
            );
        }
        if job.state != JobState::Pending {
            return refuse(
                exit_code::FAILURE,
                format!("job {id} is {}; only pending jobs can be updated", job.state.name()),
            );
        }
        let mut changed: Job = job.clone();
        if let Some(name) = &changes.name {
            changed.sub.name = name.clone();
        }
        if let Some(p) = &changes.partition {
            changed.sub.shape.partition = Some(p.clone());
        }
        if let Some(t) = changes.time_limit_secs {
            changed.sub.shape.time_limit_secs = Some(t);
        }
        let request = changed.request();
        if let Err(rejection) = allocator::validate(&self.alloc, &request) {
            return refuse(exit_code::CANNOT_PLACE, rejection.to_string());
        }
        changed.partition = request
            .partition
            .clone()
            .or_else(|| self.alloc.default_partition().map(|p| p.name.clone()))
            .unwrap_or_default();
        self.jobs.insert(id, changed);
        self.touch_job(id);
        self.event(now, Some(id), None, "update", format!("{changes:?} by {}", caller.user));
        self.needs_schedule = true;
        Effects::reply(conn, Reply::Ok { message: format!("job {id} updated") })
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{alice, batch, cluster, replies_to, root};
    use crate::exit_code;
    use crate::protocol::{JobUpdate, Reply};

    fn code(fx: &[Effect]) -> Option<u8> {
        match replies_to(fx, 1).first() {
            Some(Reply::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn a_pending_job_is_renamed_and_relimited_by_its_owner_only_and_checked() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.hold = true;
        c.submit(1, &root(), sub, 0);
        let changes =
            JobUpdate { name: Some("renamed".into()), time_limit_secs: Some(600), partition: None };
        assert_eq!(
            code(&c.update(1, &alice(), 1, &changes, 1)),
            Some(exit_code::PERMISSION_DENIED)
        );
        assert_eq!(code(&c.update(1, &root(), 1, &changes, 1)), None);
        let info = c.job_info(1).expect("job");
        assert_eq!((info.name.as_str(), info.time_limit), ("renamed", Some(600)));
        let elsewhere = JobUpdate { partition: Some("nope".into()), ..JobUpdate::default() };
        assert_eq!(code(&c.update(1, &root(), 1, &elsewhere, 2)), Some(exit_code::CANNOT_PLACE));
        assert_eq!(
            c.job_info(1).expect("job").partition,
            "batch",
            "a refused update changes nothing"
        );
        // Once it runs, it is no longer the user's to change.
        c.set_held(1, &root(), &[1], false, 3);
        c.schedule(3);
        assert_eq!(code(&c.update(1, &root(), 1, &changes, 4)), Some(exit_code::FAILURE));
        assert_eq!(code(&c.update(1, &root(), 9, &changes, 4)), Some(exit_code::FAILURE));
    }
}
