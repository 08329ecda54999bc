//! What the node's PMI service tells others: the supervisor ([`PmiEvent`]) and, for a job whose
//! root is elsewhere, the job's root ([`ToRoot`]). A leaf, so the PMI-1/2 and PMIx halves of
//! the service can both speak it without importing each other.

use super::node::ReqId;
use super::pmix_root::PmixUp;
use super::wire::Request;

/// What the supervisor hears from the PMI service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PmiEvent {
    /// The rank spoke PMI for the first time (so it is an MPI process).
    Connected { rank: u32 },
    /// The rank called finalize.
    Finalized { rank: u32 },
    /// The rank called `MPI_Abort` (or PMI abort): stop the job with this code.
    Abort { rank: u32, code: i32, message: Option<String> },
    /// The job cannot go on: a protocol violation, or a rank left without finalize.
    Failed { rank: Option<u32>, reason: String },
    /// Something the job's user should know that does not stop the job (printed as a warning).
    Warning { message: String },
    /// The service has finished with an exited rank: anything its departure means (a missing
    /// finalize, an abandoned fence) was reported before this. The job's outcome is only known
    /// once every exited rank is settled, so the supervisor waits for it.
    Settled { rank: u32 },
}

/// Where a node's fences and name requests go when the job's root is elsewhere (a proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRoot {
    Fence {
        epoch: u64,
        pairs: Vec<(String, String)>,
    },
    Name {
        id: ReqId,
        request: Request,
    },
    /// A PMIx fence or direct-modex message (`pmix_root`).
    Pmix(PmixUp),
}
