#!/usr/bin/env bash
# Regenerates src/bindings.rs from the installed libpmix headers (Debian: libpmix-dev; needs
# libclang-dev too). Review the diff: struct layouts and constants are ABI facts gangway-pmix
# relies on. tests/bindings.rs fails while the committed file is out of date.
set -euo pipefail
cd "$(dirname "$0")"
GANGWAY_PMIX_REGEN=1 cargo test -q -p gangway-pmix-sys --test bindings -- --nocapture
