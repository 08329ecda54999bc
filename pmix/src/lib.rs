//! gangway's PMIx server: what Open MPI ranks wire up through, on libpmix (PMIx 4.2), with
//! libpmix's threads and C callbacks kept behind a channel.
//!
//! [`Server::start`] loads libpmix at run time (a node without it only fails PMIx jobs, with
//! an error naming the package) and starts the server; every request libpmix makes of its host
//! arrives as an [`Event`] on the returned channel, carrying a reply ([`OpReply`],
//! [`ModexReply`], [`LookupReply`]) that completes the request exactly once, with an error if
//! the owner drops it. The owner registers the job ([`Namespace`]) and each local rank, and
//! gives each rank the environment from [`Server::setup_fork`]. See README.md for the design.

mod error;
mod event;
mod host;
mod namespace;
mod reply;
mod running;
mod server;
mod value;

pub use error::{PmixError, Status};
pub use event::Event;
pub use namespace::Namespace;
pub use reply::{LookupReply, ModexReply, OpReply, Published};
pub use server::{OPEN_MPI_ENV, Server};
pub use value::{Info, Proc, Value};
