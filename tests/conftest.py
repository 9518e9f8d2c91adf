import pytest


@pytest.fixture(scope="session")
def rvq():
    """Runs the `rvq` CLI: rvq("encode", "x.wav", "-o", "x.npy", cwd=tmp_path) -> Result(rc, stdout, stderr)."""
    from tests.cli_harness import Rvq

    runner = Rvq()
    yield runner
    runner.close()
