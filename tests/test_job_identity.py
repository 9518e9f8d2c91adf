"""A job's identity is its inputs, options and the model's name and SHA-256, never where the model
lies on this machine: a token job planned with the model in one place is resumed (or its other
parts run) with the same model elsewhere; vocab.json, plan.json and code files carry no absolute
path; plan.json written by an older rvqtool, which recorded the model's path, still resumes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rvqtool.registry import SHIPPED_DIR, shipped_aliases
from tests.cli_harness import write_audio

DEFAULT = shipped_aliases()["default"]   # the newest shipped version, which `default` names

ARGS = ["--shard-size", "120", "-f", "jsonl"]    # one 0.3 s file a shard


@pytest.fixture(scope="module")
def root(tmp_path_factory, rvq):
    """corpus/, the default model copied to two places (as two checkouts or two nodes hold it),
    and the job run whole with the first copy."""
    d = tmp_path_factory.mktemp("identity")
    for i in range(3):
        write_audio(d / "corpus" / f"{i}.wav", 0.3, seed=i)
    for place in ("here", "there"):
        (d / place).mkdir()
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(SHIPPED_DIR / f"{DEFAULT}{suffix}", d / place / f"model{suffix}")
    res = rvq("tokenize", "corpus", "-o", "whole", *ARGS, "--model", d / "here" / "model", cwd=d)
    assert res.rc == 0, res
    return d


def finals(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def test_parts_run_with_the_model_elsewhere_make_the_same_job(rvq, root):
    first = rvq("tokenize", "corpus", "-o", "moved", *ARGS, "--model", root / "here" / "model",
                "--shard-index", "0", "--num-shards", "2", cwd=root)
    assert first.rc == 0, first
    second = rvq("tokenize", "corpus", "-o", "moved", *ARGS, "--model", root / "there" / "model",
                 "--shard-index", "1", "--num-shards", "2", cwd=root)
    assert second.rc == 0, second
    resumed = rvq("tokenize", "corpus", "-o", "moved", *ARGS, "-v", "--model", root / "there" / "model", cwd=root)
    assert resumed.rc == 0 and "0 files encoded into 0 shards, 3 shards already done" in resumed.stderr, resumed
    assert finals(root / "moved") == finals(root / "whole")


def test_no_local_path_in_what_a_job_keeps(root):
    for name in ("vocab.json", "plan.json", "manifest.json", "shard-00000.json"):
        text = (root / "whole" / name).read_text()
        assert str(root) not in text and "model_path" not in text, name
    model = json.loads((root / "whole" / "vocab.json").read_text())["model"]
    assert model["name"] == DEFAULT and len(model["sha256"]) == 64


def test_code_files_record_only_a_hint(rvq, root):
    """Shipped model: its name and hash, no path. A model file: the path as given (relative here),
    a hint for decoding without --model that no check relies on."""
    assert rvq("encode", "corpus/0.wav", "-o", "shipped.npy", cwd=root).rc == 0
    assert rvq("encode", "corpus/0.wav", "-o", "copied.npy", "--model", "here/model", cwd=root).rc == 0
    shipped = json.loads((root / "shipped.npy.json").read_text())
    copied = json.loads((root / "copied.npy.json").read_text())
    assert (shipped["model"], shipped["model_path"]) == (DEFAULT, "")
    assert copied["model_path"] == "here/model.safetensors"
    assert copied["model_sha256"] == shipped["model_sha256"]
    res = rvq("decode", "copied.npy", "-o", "copied.wav", cwd=root)
    assert res.rc == 0, res


def test_a_plan_written_by_an_older_version_still_resumes(rvq, root):
    """Before, plan.json's vocabulary (and so the hash its shard records name) held the model's
    absolute path. Such a directory, one shard done, resumes: that shard is kept, the rest done."""
    out = root / "old"
    res = rvq("tokenize", "corpus", "-o", "old", *ARGS, "--shard-index", "0", "--num-shards", "3", cwd=root)
    assert res.rc == 0, res
    from rvqtool.tokens.plan import plan_hash

    plan = json.loads((out / "plan.json").read_text())
    plan["vocab"]["codes_meta"]["model_path"] = "/home/someone/rvqtool/rvqtool/models/default-v2.safetensors"
    (out / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    record = json.loads((out / "shard-00000.json").read_text())
    record["plan_sha256"] = plan_hash(plan)
    (out / "shard-00000.json").write_text(json.dumps(record, indent=1) + "\n")
    res = rvq("tokenize", "corpus", "-o", "old", *ARGS, "-v", cwd=root)
    assert res.rc == 0 and "2 files encoded into 2 shards, 1 shards already done" in res.stderr, res
    expected = finals(root / "whole")
    got = finals(out)
    assert json.loads(got.pop("manifest.json"))["plan_sha256"] == plan_hash(plan)
    assert got.pop("plan.json") == (out / "plan.json").read_bytes()      # kept as it was
    for name in ("manifest.json", "plan.json", "shard-00000.json", "shard-00001.json", "shard-00002.json"):
        expected.pop(name)
        got.pop(name, None)
    assert got == expected     # the shards' data, vocab.json, documents.jsonl, failures.jsonl
