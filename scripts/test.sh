#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests (real MPICH, real processes).
# Tests that need root (namespaces, the virtual cluster) skip with a loud message when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
make -s -C examples
cargo test --workspace --all-targets
