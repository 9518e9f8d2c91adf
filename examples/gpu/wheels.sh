# Sourced by the scripts that run on a lent GPU machine (no internet): if any of the Python modules
# named is missing, install the wheels examples/gpu/prepare.py put in build/gpu/wheels (carried with
# the tree) into /tmp/site and put that on PYTHONPATH. Needs PY (the interpreter).

# The tree runs there uninstalled: kernels/ is rvqtool.kernels only through the package mapping of
# an install (pyproject.toml), so a link stands in for it (harmless where the link exists).
[ -e rvqtool/kernels ] || ln -s ../kernels rvqtool/kernels
install_wheels() {
  if ! $PY -c "import $(IFS=,; echo "$*")" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site build/gpu/wheels/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
}
