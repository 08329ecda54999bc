//! `--mail-type` mail: which changes of a job are mailed, with Slurm's subject lines, and the
//! running of the configured `mail_program` — spawned, bounded in time and logged when it fails,
//! never waited for by the controller's loop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, JobState};
use crate::protocol::{JobId, MailEvent};

/// How long a mail program may run before it is killed (a hung MTA must not pile up children).
const MAIL_PROGRAM_LIMIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// The mail `event` of job `id` asks for, if it asked and a mail program is configured.
    pub(crate) fn mail(&self, id: JobId, event: MailEvent, now: u64) -> Effects {
        let mut fx = Effects::new();
        if self.config.mail_program.is_none() {
            return fx;
        }
        let Some(job) = self.jobs.get(&id) else { return fx };
        let Some(request) = &job.sub.end_handling.mail else { return fx };
        if !request.wants(event) {
            return fx;
        }
        let to = request.user.clone().unwrap_or_else(|| job.user.clone());
        let run = clock(now.saturating_sub(job.start_time.unwrap_or(now)));
        let per_task = request.wants(MailEvent::ArrayTasks);
        let head = match (job.task, &job.array) {
            // One mail per array, as Slurm sends them without ARRAY_TASKS: its first task's
            // start, and its own end once every task is over (`settle_array`).
            (Some(t), _) if !per_task => {
                let first = self.array_tasks.get(&t.array).is_some_and(|m| m.len() == 1);
                if event != MailEvent::Begin || !first || job.attempt > 1 {
                    return fx;
                }
                format!(
                    "Slurm Array Summary Job_id={}_* ({}) Name={}",
                    t.array, t.array, job.sub.name
                )
            }
            (Some(t), _) => {
                format!("Slurm Job_id={id} ({}_{}) Name={}", t.array, t.index, job.sub.name)
            }
            (None, Some(_)) if per_task => return fx,
            (None, Some(_)) => {
                format!("Slurm Array Summary Job_id={id}_* ({id}) Name={}", job.sub.name)
            }
            (None, None) => format!("Slurm Job_id={id} Name={}", job.sub.name),
        };
        let ended = |word: &str| {
            let code = job.exit_code.unwrap_or(0);
            format!("{head} {word}, Run time {run}, {}, ExitCode {code}", job.state.name())
        };
        let subject = match event {
            MailEvent::Begin => {
                format!("{head} Began, Queued time {}", clock(now.saturating_sub(job.submit_time)))
            }
            MailEvent::End => ended("Ended"),
            MailEvent::Fail => ended("Failed"),
            MailEvent::Requeue => format!("{head} Requeued, Run time {run}"),
            MailEvent::TimeLimit => format!("{head} Reached time limit, Run time {run}"),
            MailEvent::TimeLimit50 => format!("{head} Reached 50% of time limit, Run time {run}"),
            MailEvent::TimeLimit80 => format!("{head} Reached 80% of time limit, Run time {run}"),
            MailEvent::TimeLimit90 => format!("{head} Reached 90% of time limit, Run time {run}"),
            MailEvent::ArrayTasks => return fx,
        };
        fx.mail(to, subject);
        fx
    }

    /// The end mail of a job that just reached `state`: FAIL for a failure when asked, else END.
    pub(crate) fn end_mail(&self, id: JobId, state: JobState, now: u64) -> Effects {
        let failed = matches!(
            state,
            JobState::Failed | JobState::Timeout | JobState::NodeFail | JobState::OutOfMemory
        );
        let wants_fail = self
            .jobs
            .get(&id)
            .and_then(|j| j.sub.end_handling.mail.as_ref())
            .is_some_and(|m| m.wants(MailEvent::Fail));
        if failed && wants_fail {
            self.mail(id, MailEvent::Fail, now)
        } else {
            self.mail(id, MailEvent::End, now)
        }
    }

    /// The time-limit marks (50, 80, 90 %) a running job has passed since the last call.
    pub(crate) fn time_limit_marks(
        &mut self,
        id: JobId,
        start: u64,
        limit_secs: u64,
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&id) else { return fx };
        if job.sub.end_handling.mail.is_none() || limit_secs == 0 {
            return fx;
        }
        let percent = (now.saturating_sub(start) / 10 / limit_secs).min(100) as u8;
        let passed = job.mail_marks;
        for (mark, event) in [
            (50, MailEvent::TimeLimit50),
            (80, MailEvent::TimeLimit80),
            (90, MailEvent::TimeLimit90),
        ] {
            if percent >= mark && passed < mark {
                fx.append(self.mail(id, event, now));
            }
        }
        if !fx.is_empty()
            && let Some(j) = self.jobs.get_mut(&id)
        {
            j.mail_marks = percent.max(passed);
            self.touch_job(id);
        }
        fx
    }
}

/// `HH:MM:SS`, or `D-HH:MM:SS` past a day, from milliseconds.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 { format!("{d}-{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}") }
}

/// Runs `program -s SUBJECT TO` with an empty body, in the background; a failure, or a program
/// still running after a minute (then killed), is logged.
pub fn send(program: &Path, to: String, subject: String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("-s").arg(&subject).arg(&to);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let program = program.to_owned();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(program = %program.display(), %to, %subject, error = %e, "cannot start the mail program");
            return;
        }
    };
    tokio::spawn(async move {
        match tokio::time::timeout(MAIL_PROGRAM_LIMIT, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                tracing::debug!(%to, %subject, "mail sent");
            }
            Ok(Ok(out)) => tracing::warn!(
                program = %program.display(), %to, %subject, status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "the mail program failed"
            ),
            Ok(Err(e)) => {
                tracing::warn!(program = %program.display(), error = %e, "the mail program failed")
            }
            // Dropping the child (kill_on_drop) kills it.
            Err(_) => {
                tracing::warn!(program = %program.display(), %to, %subject, "the mail program ran over a minute; killed")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{batch, cluster, root, starts};
    use crate::protocol::{FromAgent, MailRequest, end_handling::parse_mail_types};

    fn subjects(fx: &Effects) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Mail { to, subject } => Some(format!("{to}: {subject}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mail_goes_out_on_the_changes_asked_for_with_slurms_subjects() {
        let mut c = cluster();
        c.config.mail_program = Some("/bin/true".into());
        let mut sub = batch(1, 1);
        sub.name = "sim".into();
        sub.shape.time_limit_secs = Some(100);
        let events = parse_mail_types("BEGIN,FAIL,TIME_LIMIT_80").unwrap();
        sub.end_handling.mail = Some(MailRequest { events, user: Some("ann@site".into()) });
        c.submit(1, &root(), sub, 0);
        let fx = c.schedule(2_000);
        let node = starts(&fx)[0].0.clone();
        assert_eq!(
            subjects(&fx),
            ["ann@site: Slurm Job_id=1 Name=sim Began, Queued time 00:00:02"]
        );
        let mut mails = Vec::new();
        for t in (3_000..=90_000).step_by(1000) {
            mails.extend(subjects(&c.tick(t, crate::controller::state::Mono(t))));
            for i in 1..=3u64 {
                let hb = FromAgent::Heartbeat { load: 0.0, seq: 0 };
                c.from_agent(100 + i, &format!("n{i}"), hb, t, crate::controller::state::Mono(t));
            }
        }
        assert_eq!(
            mails,
            ["ann@site: Slurm Job_id=1 Name=sim Reached 80% of time limit, Run time 00:01:20"]
        );
        let conn = 100 + node[1..].parse::<u64>().unwrap();
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 3, message: None };
        let fx = c.from_agent(conn, &node, ended, 95_000, crate::controller::state::Mono(95_000));
        assert_eq!(
            subjects(&fx),
            ["ann@site: Slurm Job_id=1 Name=sim Failed, Run time 00:01:33, FAILED, ExitCode 3"]
        );
        // Not asked for: no mail, and none at all without a mail program.
        c.submit(2, &root(), batch(1, 1), 96_000);
        assert!(subjects(&c.schedule(96_000)).is_empty());
        c.config.mail_program = None;
        let mut sub = batch(1, 1);
        sub.end_handling.mail =
            Some(MailRequest { events: parse_mail_types("ALL").unwrap(), user: None });
        c.submit(3, &root(), sub, 97_000);
        assert!(subjects(&c.schedule(97_000)).is_empty());
    }

    #[test]
    fn an_array_mails_once_unless_array_tasks_is_asked() {
        let mut c = cluster();
        c.config.mail_program = Some("/bin/true".into());
        for (types, t0) in [("BEGIN,END", 0), ("BEGIN,END,ARRAY_TASKS", 100_000)] {
            let mut sub = crate::controller::scenario::array("1-3");
            sub.name = "sweep".into();
            sub.end_handling.mail =
                Some(MailRequest { events: parse_mail_types(types).unwrap(), user: None });
            c.submit(1, &root(), sub, t0);
            let fx = c.schedule(t0 + 1_000);
            let tasks: Vec<(String, JobId)> =
                starts(&fx).into_iter().map(|(n, j, _)| (n, j)).collect();
            let mut mails = subjects(&fx);
            for (i, (node, job)) in tasks.iter().enumerate() {
                let conn = 100 + node[1..].parse::<u64>().unwrap();
                let ended =
                    FromAgent::JobEnded { job: *job, attempt: 1, exit_code: 0, message: None };
                let t = t0 + 2_000 + i as u64;
                mails.extend(subjects(&c.from_agent(
                    conn,
                    node,
                    ended,
                    t,
                    crate::controller::state::Mono(t),
                )));
            }
            let a = tasks[0].1 - 1;
            if types.contains("ARRAY_TASKS") {
                assert_eq!(mails.len(), 6, "{mails:?}");
                let first = &mails[0];
                assert!(
                    first.starts_with(&format!(
                        "root: Slurm Job_id={} ({a}_1) Name=sweep Began",
                        a + 1
                    )),
                    "{mails:?}"
                );
            } else {
                assert_eq!(
                    mails,
                    [
                        format!(
                            "root: Slurm Array Summary Job_id={a}_* ({a}) Name=sweep Began, Queued time 00:00:01"
                        ),
                        format!(
                            "root: Slurm Array Summary Job_id={a}_* ({a}) Name=sweep Ended, Run time 00:00:01, COMPLETED, ExitCode 0"
                        ),
                    ]
                );
            }
        }
    }
}
