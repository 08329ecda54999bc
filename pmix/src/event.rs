//! What libpmix asks of the host, as owned Rust messages for the owner task.
//!
//! Every field is a copy made before the upcall returned; requests that libpmix waits on carry
//! a reply that must be answered (or dropped, which answers an error).

use crate::error::Status;
use crate::reply::{LookupReply, ModexReply, OpReply};
use crate::value::{Info, Proc};

/// An upcall from libpmix.
#[derive(Debug)]
pub enum Event {
    /// A registered client connected. libpmix 4.2 has already accepted it and does not wait
    /// for the host, so there is nothing to answer.
    ClientConnected {
        /// The client.
        proc: Proc,
    },
    /// A client called `PMIx_Finalize`; it stays blocked until the reply.
    ClientFinalized {
        /// The client.
        proc: Proc,
        /// Releases the client.
        reply: OpReply,
    },
    /// A client's connection closed before it finalized: it exited or crashed inside MPI.
    /// libpmix reports this about a second after the fact (it batches such events), so a
    /// launcher that reaps its ranks usually knows first; this is the PMIx-side view.
    ClientLost {
        /// The client.
        proc: Proc,
    },
    /// A client called `PMIx_Abort` (`MPI_Abort`): stop the job with `status`.
    Abort {
        /// Who aborted.
        proc: Proc,
        /// The exit status it asked for.
        status: i32,
        /// Its message, if any.
        message: Option<String>,
        /// The processes to terminate; empty means the caller's whole namespace.
        targets: Vec<Proc>,
        /// Releases the caller (it then exits by itself).
        reply: OpReply,
    },
    /// Every local participant entered a fence. The host gathers `data` from every node that
    /// hosts a participant and answers with all of it concatenated.
    Fence {
        /// The participants (a wildcard rank means the whole namespace).
        procs: Vec<Proc>,
        /// Whether the participants asked for data (`PMIX_COLLECT_DATA`); without it, `data` is
        /// normally empty and the fence is only a barrier.
        collect_data: bool,
        /// `PARTIAL_SUCCESS` when a local participant went away before entering.
        local_status: Status,
        /// This node's contribution, opaque to the host.
        data: Vec<u8>,
        /// Hands every node's data back to the local participants.
        reply: ModexReply,
    },
    /// libpmix needs the data a remote process published (direct modex): the host asks that
    /// process's node (`Server::dmodex_request` there) and answers with the blob.
    DirectModex {
        /// The remote process.
        proc: Proc,
        /// The blob, or `NOT_FOUND`.
        reply: ModexReply,
    },
    /// `PMIx_Publish` (`MPI_Publish_name`).
    Publish {
        /// The publisher.
        proc: Proc,
        /// The key/value pairs to publish.
        data: Vec<Info>,
        /// The directives that came with them (range, persistence, the publisher's user id).
        directives: Vec<Info>,
        /// Success, or `BAD_PARAM` for a key already published.
        reply: OpReply,
    },
    /// `PMIx_Lookup` (`MPI_Lookup_name`).
    Lookup {
        /// Who asks.
        proc: Proc,
        /// The keys wanted.
        keys: Vec<String>,
        /// Whether to hold the answer until the keys are published (`PMIX_WAIT`).
        wait: bool,
        /// The values found.
        reply: LookupReply,
    },
    /// `PMIx_Unpublish`.
    Unpublish {
        /// Who asks.
        proc: Proc,
        /// The keys to remove (all of the caller's when empty).
        keys: Vec<String>,
        /// Success or `NOT_FOUND`.
        reply: OpReply,
    },
    /// A client called `PMIx_Spawn` (`MPI_Comm_spawn`). Already refused with
    /// `PMIX_ERR_NOT_SUPPORTED`; this tells the owner so it can say why the rank's call failed.
    SpawnRefused {
        /// The caller.
        proc: Proc,
        /// The commands it wanted to start.
        commands: Vec<String>,
    },
}
