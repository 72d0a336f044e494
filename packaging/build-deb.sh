#!/usr/bin/env bash
# Builds target/debian/pinetboot_<version>_<arch>.deb: a release build, the man pages and
# shell completions generated from the clap types into packaging/gen/ (outside target/, as
# cargo-deb's assets expect), then `cargo deb --no-build`.
# Needs cargo-deb (`cargo install cargo-deb --locked`). Extra arguments go to `cargo deb`
# (e.g. `--output DIR`, `--fast`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Reproducible man page dates: the last commit's time, if this is a git checkout.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || true)"
  [ -n "$SOURCE_DATE_EPOCH" ] && export SOURCE_DATE_EPOCH
fi

cargo build --release --locked
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="${target_dir:-target}/release/pinetboot"

rm -rf packaging/gen
"$bin" --quiet generate man packaging/gen/man
"$bin" --quiet generate completions packaging/gen/completions

cargo deb --no-build --locked "$@"
