//! The agent's usage reports (`FromAgent::Usage`) until the controller has them: a report made
//! while the controller is away, or sent on a link that broke before the controller read it,
//! is sent again after the next registration, ahead of the job ends the registration resends
//! (the controller takes a part's figures once: a repeat replaces them with the same).
//!
//! A report is known delivered once a heartbeat sent after it on the same link is
//! acknowledged: the controller reads a link's messages in order, so by then it has read the
//! report too. (The acknowledgement does not wait for the store's commit: a controller killed
//! in between loses what it had not committed, the report included.)

use crate::protocol::{FromAgent, JobId, PartUsage};

/// One report not known to be delivered.
#[derive(Debug)]
struct Unsent {
    job: JobId,
    attempt: u32,
    usage: PartUsage,
    /// The first heartbeat sent after it on the current link (`None`: none yet, or not sent).
    before: Option<u64>,
}

/// The usage reports not yet known to have reached the controller.
#[derive(Debug, Default)]
pub struct UsageLedger {
    unsent: Vec<Unsent>,
}

impl UsageLedger {
    /// Keeps a copy of `report` if it is a usage report (a later report of the same part of
    /// the same attempt replaces an earlier one, as at the controller).
    pub fn track(&mut self, report: &FromAgent) {
        let FromAgent::Usage { job, attempt, usage } = report else { return };
        self.unsent.retain(|u| {
            !(u.job == *job
                && u.attempt == *attempt
                && u.usage.node == usage.node
                && u.usage.part == usage.part)
        });
        self.unsent.push(Unsent {
            job: *job,
            attempt: *attempt,
            usage: usage.clone(),
            before: None,
        });
    }

    /// A heartbeat `seq` goes out: it follows every report sent so far.
    pub fn heartbeat(&mut self, seq: u64) {
        for u in self.unsent.iter_mut().filter(|u| u.before.is_none()) {
            u.before = Some(seq);
        }
    }

    /// Heartbeat `seq` was acknowledged: the reports sent before it arrived.
    pub fn acked(&mut self, seq: u64) {
        self.unsent.retain(|u| u.before.is_none_or(|b| b > seq));
    }

    /// After a registration: every report not known delivered, to send again (in the order
    /// they were made), each waiting for a heartbeat of the new link.
    pub fn resend(&mut self) -> Vec<FromAgent> {
        self.unsent
            .iter_mut()
            .map(|u| {
                u.before = None;
                FromAgent::Usage { job: u.job, attempt: u.attempt, usage: u.usage.clone() }
            })
            .collect()
    }

    /// How many reports wait for delivery.
    pub fn len(&self) -> usize {
        self.unsent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unsent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(job: JobId, part: &str, user_us: u64) -> FromAgent {
        FromAgent::Usage {
            job,
            attempt: 1,
            usage: PartUsage {
                node: "n1".into(),
                part: part.into(),
                user_us,
                system_us: 0,
                peak_memory: None,
                memory_limit: None,
                out_of_memory: None,
            },
        }
    }

    #[test]
    fn a_report_is_kept_until_a_heartbeat_sent_after_it_is_acknowledged() {
        let mut ledger = UsageLedger::default();
        ledger.heartbeat(1);
        ledger.track(&used(7, "batch", 10));
        // An acknowledgement of a heartbeat sent before the report proves nothing.
        ledger.acked(1);
        assert_eq!(ledger.len(), 1);
        ledger.heartbeat(2);
        ledger.track(&used(7, "step 0", 20));
        ledger.acked(2);
        assert_eq!(ledger.len(), 1, "the step's report went out after heartbeat 2");
        ledger.heartbeat(3);
        ledger.acked(3);
        assert!(ledger.is_empty());
    }

    #[test]
    fn what_a_broken_link_lost_is_sent_again_after_registering_and_only_the_latest_per_part() {
        let mut ledger = UsageLedger::default();
        ledger.track(&used(7, "batch", 10));
        ledger.heartbeat(4);
        ledger.track(&used(7, "step 0", 20));
        ledger.track(&used(7, "step 0", 30));
        ledger.track(&FromAgent::Heartbeat { load: 0.0, seq: 5 });
        // The link broke before heartbeat 4 was acknowledged: both go again, in order.
        let again = ledger.resend();
        let parts: Vec<(String, u64)> = again
            .iter()
            .map(|r| match r {
                FromAgent::Usage { usage, .. } => (usage.part.clone(), usage.user_us),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(parts, [("batch".to_string(), 10), ("step 0".to_string(), 30)]);
        // An old link's acknowledgement number does not count for what was resent.
        ledger.acked(4);
        assert_eq!(ledger.len(), 2);
        ledger.heartbeat(6);
        ledger.acked(6);
        assert!(ledger.is_empty());
    }
}
