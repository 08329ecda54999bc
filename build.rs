//! Links the `gangway` executable as non-PIE: every `gangway run` starts a fresh process, and
//! a position-independent binary this size pays ~0.5 ms of relocation page faults per start.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
