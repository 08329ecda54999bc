//! Reading a file the kernel generates on each read (`/proc`, cgroupfs) whole, in as few
//! `read` calls as it takes: such files report size 0, so `read_to_string` starts with a
//! 32-byte buffer and asks the kernel to produce the file again at every doubling (eight
//! calls for `/proc/self/mountinfo` here), on a local run's start-up path.

use std::io::Read;
use std::path::Path;

/// The whole file; its first `read` asks for 16 KiB, more than `mountinfo` holds on most
/// machines.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut text = String::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}
