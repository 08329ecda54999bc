//! What the owner task and the connection tasks exchange: [`Input`] for the owner, one
//! outbound queue per connection carrying messages for that kind of peer only (clients get
//! [`Reply`] lines, agents [`ToAgent`] messages), and what every connection task shares.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::{self, UnboundedSender};

use crate::auth::Key;
use crate::controller::effects::ConnId;
use crate::controller::limits::{self, Gate, OUTBOUND_BYTES, OUTBOUND_MESSAGES, Outbox, OutboxRx};
use crate::controller::state::Caller;
use crate::protocol::{FromAgent, Reply, Request, ToAgent};

/// Something for the owner task.
#[derive(Debug)]
pub(super) enum Input {
    Client {
        conn: ConnId,
        caller: Caller,
        request: Box<Request>,
    },
    /// An answer the connection task made itself (a malformed request, a token): queued behind
    /// the owner's replies, so that one bounded queue holds everything a client is sent.
    Say {
        conn: ConnId,
        reply: Reply,
    },
    ClientGone {
        conn: ConnId,
    },
    Agent {
        conn: ConnId,
        node: String,
        msg: FromAgent,
    },
    AgentGone {
        conn: ConnId,
    },
    /// May this node's agent vouch for this uid? (Asked before a relayed session is served.)
    Vouch {
        node: String,
        uid: u32,
        answer: tokio::sync::oneshot::Sender<Result<(), (u8, String)>>,
    },
}

/// What a connection task sends its peer: a message of that peer's type `M`, already in JSON
/// (serialized by the owner, so that the outbound queue can count its bytes), or the end.
#[derive(Debug)]
pub(super) enum Outbound<M> {
    Message(Encoded<M>),
    Close,
}

/// A message of type `M` in JSON: a [`Reply`] cannot be queued for an agent, nor a [`ToAgent`]
/// for a client.
#[derive(Debug)]
pub(super) struct Encoded<M> {
    text: String,
    peer: PhantomData<fn() -> M>,
}

impl<M: Serialize> Encoded<M> {
    pub(super) fn new(msg: &M) -> Encoded<M> {
        Encoded { text: serde_json::to_string(msg).unwrap_or_default(), peer: PhantomData }
    }
}

impl<M> Encoded<M> {
    /// The JSON text, without a line end.
    pub(super) fn into_text(self) -> String {
        self.text
    }
}

impl<M> Outbound<M> {
    /// What it takes of the outbound queue's byte budget.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Outbound::Message(m) => m.text.len() + 1,
            Outbound::Close => 0,
        }
    }
}

/// What a command's connection is sent.
pub(super) type ToClient = Outbound<Reply>;
/// What an agent's connection is sent.
pub(super) type ToAgentConn = Outbound<ToAgent>;

/// A new connection's outbound queue, for the owner.
#[derive(Debug)]
pub(super) enum NewOutbox {
    Client(ConnId, Outbox<ToClient>),
    Agent(ConnId, Outbox<ToAgentConn>),
}

/// What every connection task needs: the key, the owner's queues, and the limits.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) key: Key,
    pub(super) input: mpsc::Sender<Input>,
    pub(super) outboxes: UnboundedSender<NewOutbox>,
    pub(super) gate: Gate,
    /// The largest request after authentication.
    pub(super) request_bytes: usize,
    pub(super) auth_timeout: Duration,
    /// Who the per-user connection limit does not apply to.
    pub(super) admins: Vec<String>,
    pub(super) controller_uid: u32,
}

impl Shared {
    /// Whether the per-user connection limit spares this user (root, the controller's own
    /// user, administrators).
    pub(super) fn exempt(&self, uid: u32, user: &str) -> bool {
        uid == 0 || uid == self.controller_uid || self.admins.iter().any(|a| a == user)
    }

    /// A new client connection's outbound queue, registered with the owner.
    pub(super) fn client_outbox(&self, conn: ConnId) -> OutboxRx<ToClient> {
        let (tx, rx) = limits::outbox(OUTBOUND_MESSAGES, OUTBOUND_BYTES);
        let _ = self.outboxes.send(NewOutbox::Client(conn, tx));
        rx
    }

    /// A new agent connection's outbound queue, registered with the owner.
    pub(super) fn agent_outbox(&self, conn: ConnId) -> OutboxRx<ToAgentConn> {
        let (tx, rx) = limits::outbox(OUTBOUND_MESSAGES, OUTBOUND_BYTES);
        let _ = self.outboxes.send(NewOutbox::Agent(conn, tx));
        rx
    }
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Who a uid is, for the request loop (admin is decided by the owner).
pub(super) fn caller_for(uid: u32, gid: u32) -> Caller {
    let user = user_name(uid);
    Caller { uid, gid, admin: false, user }
}
