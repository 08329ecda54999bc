//! A self-pipe that wakes a thread blocked in `poll`: how async code reaches a transport's
//! blocking I/O thread (the ssh2 poll loop, and a remote command's stdin writer).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// A self-pipe: writing a byte wakes a thread blocked in `poll` on the read end.
#[derive(Debug)]
pub(crate) struct WakePipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl WakePipe {
    pub(crate) fn new() -> io::Result<WakePipe> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(WakePipe { read, write })
    }

    pub(crate) fn wake(&self) {
        // A full pipe already means "wake up"; nothing else can go wrong that matters.
        let _ = nix::unistd::write(self.write.as_fd(), &[1]);
    }

    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(self.read.as_fd(), &mut buf), Ok(n) if n > 0) {}
    }

    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}
