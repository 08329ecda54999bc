#!/usr/bin/env bash
# Installs what gangway needs on Debian/Ubuntu (system packages, a Rust toolchain if missing) and
# builds gangway and its example programs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential pkg-config make python3 python3-pip hyperfine
          mpich libmpich-dev libpmi2-0-dev libclang-dev openmpi-bin libopenmpi-dev
          libpmix-dev python3-mpi4py
          hwloc libhwloc-dev libudev-dev
          openssh-server openssh-client libssl-dev iproute2)
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing a Rust toolchain with rustup (Debian's cargo is too old for edition 2024)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
make -s -C examples
# The PyPI mpich wheel's build of the MPI examples (examples/bin-ofi/, for multi-node tests) and
# Open MPI's hello (examples/bin-openmpi/, for benches/multinode.sh). Downloads the wheel once into
# target/mpich-wheel/; a no-op when already built.
make -s -C examples ofi openmpi
cargo build --release -q --bin gangway
# srun, sbatch, squeue, ... as links to the binary (docs/slurm.md); on PATH only for who asks.
slurm_bin=/usr/local/lib/gangway/slurm-bin
$sudo target/release/gangway install-slurm-commands --force "$slurm_bin" >/dev/null
echo "setup: done; gangway is target/release/gangway; Slurm's commands: export PATH=$slurm_bin:\$PATH"
