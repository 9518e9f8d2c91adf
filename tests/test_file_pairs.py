"""Artifacts that were pairs of files (a .npy and its .npy.json; a model's weights and its JSON; a
training state's tensors and its step): a writer killed between two renames (a forked child that
dies with os._exit at its n-th os.replace: no cleanup runs, as with kill -9) never leaves a pair
that loads as one write's. Code files: the mixed pair is refused in one line and a batch re-run
redoes it; models and training states are one file now, so the new one loads whole."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rvqtool.checkpoint import load_model, save_model
from rvqtool.config import CodecConfig
from rvqtool.describe import describe
from rvqtool.errors import UserError
from rvqtool.io.atomic import remove_abandoned
from rvqtool.io.codes import Codes, CodesMeta, is_complete, load_codes, save_codes
from rvqtool.model.native import NativeCodecModel
from rvqtool.train.trainer import TrainOptions, _load_state, _save_state
from tests.cli_harness import files_under, write_audio

KILLED = 137
TINY = CodecConfig(encoder_filters=4, decoder_filters=4, dimension=8, n_quantizers=2, codebook_size=16)
META = CodesMeta(model="one", model_sha256="1" * 64, sample_rate=24000, frame_rate=75.0, hop_length=320,
                 n_q=8, codebook_size=1024, length=20 * 320, channels=1, channel_mode="mono",
                 source_sample_rate=24000)


def killed_before_replace(n: int, write: Callable[[], None]) -> None:
    """Run `write` in a forked child that dies just before its n-th os.replace."""
    pid = os.fork()
    if pid == 0:
        try:
            real, calls = os.replace, []

            def replace_then_die(src, dst):
                calls.append(dst)
                if len(calls) == n:
                    os._exit(KILLED)
                real(src, dst)

            os.replace = replace_then_die
            write()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED, "the write ended before the chosen instant"


def temporaries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".part" in p.name)


def codes(model: str, seed: int) -> Codes:
    meta = replace(META, model=model, model_sha256=str(seed) * 64)
    return Codes(np.random.default_rng(seed).integers(0, 1024, (1, 8, 20)), meta)


# ---- code files ---------------------------------------------------------------------------------
def test_code_pair_killed_between_its_renames_is_refused_then_redone(tmp_path):
    """New metadata over old codes (the sidecar is renamed first): refused by every reader, not
    complete for a re-run, its temporary removed as abandoned; a new write fixes it."""
    path = tmp_path / "x.npy"
    save_codes(codes("one", 1), path)
    killed_before_replace(2, lambda: save_codes(codes("two", 2), path))
    message = f"{path} does not match its metadata x.npy.json (interrupted write?): re-encode it"
    for read in (load_codes, describe):
        with pytest.raises(UserError) as refused:
            read(str(path))
        assert str(refused.value) == message
    assert not is_complete(path)
    assert len(temporaries(tmp_path)) == 1          # the dead writer's .npy
    remove_abandoned(tmp_path)
    assert temporaries(tmp_path) == []
    save_codes(codes("two", 2), path)
    again = load_codes(path)
    assert again.meta.model == "two" and np.array_equal(again.codes, codes("two", 2).codes)
    assert is_complete(path)


def test_code_pair_killed_before_its_first_rename_is_the_old_one(tmp_path):
    path = tmp_path / "x.npy"
    save_codes(codes("one", 1), path)
    killed_before_replace(1, lambda: save_codes(codes("two", 2), path))
    old = load_codes(path)
    assert old.meta.model == "one" and np.array_equal(old.codes, codes("one", 1).codes) and is_complete(path)
    remove_abandoned(tmp_path)
    assert temporaries(tmp_path) == []


def test_a_live_writers_temporary_is_kept(tmp_path):
    live, dead = tmp_path / f".x.npy.{os.getpid()}-0123abcd.part.npy", tmp_path / ".x.npy.1-89abcdef.part.npy"
    live.write_bytes(b"being written")
    dead.write_bytes(b"left by a kill")
    other = tmp_path / ".notes.part"           # not a name rvqtool writes
    other.write_bytes(b"")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        remove_abandoned(tmp_path)
    assert live.exists() and other.exists() and not dead.exists()


def test_a_sidecar_of_an_older_version_loads_as_before(tmp_path):
    path = tmp_path / "x.npy"
    save_codes(codes("one", 1), path)
    meta = json.loads((tmp_path / "x.npy.json").read_text())
    del meta["npy"]
    (tmp_path / "x.npy.json").write_text(json.dumps(meta))
    assert load_codes(path).meta.model == "one" and is_complete(path)


def test_cli_refuses_a_mixed_pair_and_a_rerun_redoes_it(rvq, tmp_path):
    """default-v1's codes under default-v2's metadata (what the kill left): `rvq decode` decoded
    them (SI-SDR -25.8 dB) and `rvq encode DIR` called the file done; now both see the mismatch."""
    write_audio(tmp_path / "corpus" / "a.wav", 0.3)
    write_audio(tmp_path / "corpus" / "b.wav", 0.2, seed=1)
    assert rvq("encode", "corpus", "-o", "out", "--model", "default-v1", cwd=tmp_path).rc == 0
    assert rvq("encode", "corpus", "-o", "new", cwd=tmp_path).rc == 0
    shutil.copy(tmp_path / "new" / "a.npy.json", tmp_path / "out" / "a.npy.json")
    (tmp_path / "out" / ".a.npy.4242-0badf00d.part.npy").write_bytes(b"")   # the kill's temporary
    for argv in (["decode", "out/a.npy", "-o", "a.wav"], ["info", "out/a.npy"]):
        res = rvq(*argv, cwd=tmp_path)
        assert res.rc == 1 and res.err_lines == ["error: out/a.npy does not match its metadata a.npy.json "
                                                 "(interrupted write?): re-encode it"], res
    assert not (tmp_path / "a.wav").exists()
    b_before = files_under(tmp_path / "out")["b.npy"]
    res = rvq("encode", "corpus", "-o", "out", "-v", cwd=tmp_path)
    assert res.rc == 0 and "1 done, 1 already done" in res.stderr, res
    assert (tmp_path / "out" / "a.npy").read_bytes() == (tmp_path / "new" / "a.npy").read_bytes()
    assert files_under(tmp_path / "out")["b.npy"] == b_before     # b was whole: skipped
    assert temporaries(tmp_path / "out") == []
    assert rvq("decode", "out/a.npy", "-o", "a.wav", cwd=tmp_path).rc == 0


# ---- model files --------------------------------------------------------------------------------
def tiny_model(seed: int) -> NativeCodecModel:
    torch.manual_seed(seed)
    model = NativeCodecModel(TINY)
    model.quantizer.init_from_latents(torch.randn(64, 8))
    return model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ours = a.state_dict()
    return all(torch.equal(v, ours[k]) for k, v in b.state_dict().items() if "cluster_size" not in k and "embed_avg" not in k)


@pytest.mark.parametrize("before", [1, 2])
def test_model_file_killed_while_replaced_is_one_whole_model(tmp_path, before):
    """Killed before the weights' rename: the old model; before the JSON's (it was renamed second,
    and a kill there left a model refused as 'corrupt'): the new one, whole."""
    path = tmp_path / "m.safetensors"
    old, new = tiny_model(0), tiny_model(1)
    save_model(old, path, "old")
    killed_before_replace(before, lambda: save_model(new, path, "new", extra_meta={"training": {"steps": 2}}))
    loaded, meta = load_model(path)
    expected, name = (old, "old") if before == 1 else (new, "new")
    assert meta["name"] == name and same_weights(expected, loaded)
    if before == 2:
        assert meta["training"] == {"steps": 2} and not path.with_suffix(".json").exists()
    save_model(new, path, "new")
    assert load_model(path)[1]["name"] == "new" and json.loads(path.with_suffix(".json").read_text())["name"] == "new"


# ---- training state -----------------------------------------------------------------------------
def state_parts(seed: int):
    model = tiny_model(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, optimizer, torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("before", [1, 2])
def test_training_state_killed_while_replaced_resumes_one_checkpoint(tmp_path, before):
    """Step 1 saved, step 2 killed before the state's rename or after it (before its JSON's: the
    step was renamed second, so step-2 weights resumed as step 1): the step and the weights loaded
    are one checkpoint's."""
    path = tmp_path / "train_state.safetensors"
    options = TrainOptions()
    one, two = state_parts(1), state_parts(2)
    _save_state(path, *one, 1, options, {}, {})
    killed_before_replace(before, lambda: _save_state(path, *two, 2, options, {}, {}))
    model, optimizer, generator = state_parts(3)
    step, _, _ = _load_state(path, model, optimizer, generator)
    assert (step, same_weights((one if step == 1 else two)[0], model)) == (before, True)


def test_training_state_of_an_older_version_resumes(tmp_path):
    """Tensors in one file, the step in train_state.json beside it: as written before."""
    from rvqtool.train.state_tensors import to_tensors

    model, optimizer, generator = state_parts(1)
    tensors = {**to_tensors(model, optimizer, "model.", "optim."), "rng.generator": generator.get_state(),
               "rng.torch": torch.get_rng_state()}
    path = tmp_path / "train_state.safetensors"
    save_file(tensors, str(path))
    path.with_suffix(".json").write_text(json.dumps({"step": 7, "config": json.loads(TINY.to_json())}))
    fresh = state_parts(3)
    step, _, meta = _load_state(path, *fresh)
    assert step == 7 and meta["config"]["dimension"] == 8 and same_weights(model, fresh[0])
