# Sourced by make_corpus.sh, make_heldout.sh and make_corpus_extra.sh: the one way a corpus is built.
#   build_with BUILDER.py OUTDIR PACKAGE...
# installs the Debian packages (needs root), a venv with the builders' Python dependencies
# (CORPUS_VENV, default /tmp/corpus-venv), and runs BUILDER.py OUTDIR from this directory.
build_with() {
  local builder="$1" out="$2"
  shift 2
  local here venv="${CORPUS_VENV:-/tmp/corpus-venv}"
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy scipy soundfile soxr
  mkdir -p "$out"
  "$venv/bin/python" "$here/$builder" "$out"
  du -sh "$out"
}
