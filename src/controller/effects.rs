//! What the controller's handlers ask the I/O layer to do: one [`Effects`] value per call,
//! whatever the handler (a reply to a client is an effect like a message to an agent). The
//! server carries them out once the changes they report are committed.

use crate::protocol::{Reply, ToAgent};

/// A client connection's id (alloc/run holders and step launchers are tied to one).
pub type ConnId = u64;

/// Something the I/O layer must do.
#[derive(Debug, Clone)]
pub enum Effect {
    ToAgent {
        node: String,
        msg: ToAgent,
    },
    /// To one agent connection, whichever node it claims to be.
    ToAgentConn {
        conn: ConnId,
        msg: ToAgent,
    },
    ToClient {
        conn: ConnId,
        reply: Reply,
    },
    /// Close a client's connection after its replies.
    CloseClient {
        conn: ConnId,
    },
    /// Close an agent's connection (refused, or replaced by a newer one).
    CloseAgent {
        conn: ConnId,
    },
    /// Run the configured mail program for a job's `--mail-type` (see `controller::mail`).
    Mail {
        to: String,
        subject: String,
    },
}

/// The outbox every handler returns, in the order its effects must happen.
#[derive(Debug, Clone, Default)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// Nothing to do.
    pub fn new() -> Effects {
        Effects(Vec::new())
    }

    /// One reply to a client.
    pub fn reply(conn: ConnId, reply: Reply) -> Effects {
        Effects(vec![Effect::ToClient { conn, reply }])
    }

    /// A last reply to a client, and its connection closed after it.
    pub fn reply_and_close(conn: ConnId, reply: Reply) -> Effects {
        Effects(vec![Effect::ToClient { conn, reply }, Effect::CloseClient { conn }])
    }

    /// Adds a reply to a client.
    pub fn to_client(&mut self, conn: ConnId, reply: Reply) {
        self.0.push(Effect::ToClient { conn, reply });
    }

    /// Adds the closing of a client's connection.
    pub fn close_client(&mut self, conn: ConnId) {
        self.0.push(Effect::CloseClient { conn });
    }

    /// Adds a message to a node's current agent.
    pub fn mail(&mut self, to: String, subject: String) {
        self.0.push(Effect::Mail { to, subject });
    }

    pub fn to_agent(&mut self, node: &str, msg: ToAgent) {
        self.0.push(Effect::ToAgent { node: node.to_string(), msg });
    }

    /// Adds a message to one agent connection, whichever node it claims to be.
    pub fn to_agent_conn(&mut self, conn: ConnId, msg: ToAgent) {
        self.0.push(Effect::ToAgentConn { conn, msg });
    }

    /// Adds the closing of an agent's connection.
    pub fn close_agent(&mut self, conn: ConnId) {
        self.0.push(Effect::CloseAgent { conn });
    }

    /// Adds `more` after these.
    pub fn append(&mut self, more: Effects) {
        self.0.extend(more.0);
    }

    /// Splits off the effects `leave_now` picks (e.g. what may leave before a commit).
    pub fn split_off(self, leave_now: impl Fn(&Effect) -> bool) -> (Effects, Effects) {
        let (now, later) = self.0.into_iter().partition(leave_now);
        (Effects(now), Effects(later))
    }
}

impl std::ops::Deref for Effects {
    type Target = [Effect];

    fn deref(&self) -> &[Effect] {
        &self.0
    }
}

impl IntoIterator for Effects {
    type Item = Effect;
    type IntoIter = std::vec::IntoIter<Effect>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Effects {
    type Item = &'a Effect;
    type IntoIter = std::slice::Iter<'a, Effect>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Extend<Effect> for Effects {
    fn extend<I: IntoIterator<Item = Effect>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}
