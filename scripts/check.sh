#!/usr/bin/env bash
# What a maintainer checks before a release, without any server:
#
#   scripts/check.sh            # all of it
#
# 1. formatting (`cargo fmt --check`);
# 2. lints on every target and feature, warnings denied. Clippy's
#    `incompatible_msrv` lint (in its default set) reads `rust-version` from
#    Cargo.toml and flags any std API newer than it: that keeps the declared
#    MSRV honest on a machine that has only one toolchain;
# 3. docs with warnings denied (broken intra-doc links fail);
# 4. the crate without default features: builds, unit tests and doctests
#    (no transport, no TLS);
# 5. the module graph has no cycle (scripts/module-graph.py);
# 6. `cargo package`: the packaged file list, then the packaged crate built
#    and tested on its own, from its unpacked .crate, as a user gets it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

step() { printf '\n---- check: %s ----\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings; incompatible_msrv vs rust-version)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features -p bosh-prebind

step "no default features: build, unit tests, doctests"
cargo build -p bosh-prebind --no-default-features
cargo test -p bosh-prebind --no-default-features --lib
cargo test -p bosh-prebind --no-default-features --doc

step "module graph"
python3 scripts/module-graph.py

step "cargo package"
cargo package -p bosh-prebind --list
# Builds the packaged sources (cargo verifies the package by default).
cargo package -p bosh-prebind
crate=$(ls -t target/package/bosh-prebind-*.crate | head -n 1)
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$crate" -C "$unpacked"
dir=$(ls -d "$unpacked"/bosh-prebind-*)
step "tests of the packaged crate ($dir)"
# Its own workspace (the .crate has none above it); dependencies come from
# our build cache (same lock file), only the crate itself is rebuilt.
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
(cd "$dir" && CARGO_TARGET_DIR="$target" cargo test --all-features)
echo "check.sh: all checks passed"
