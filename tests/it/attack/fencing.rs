//! (filled in by the trust-and-fencing work)
