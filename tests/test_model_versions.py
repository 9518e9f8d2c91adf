"""Shipped models are versioned: `default` stands for the newest version, code files record the
version that made them, and codes from any shipped version (including files from before versions,
which say just "default") still decode with that version after a newer one ships.

A second version is made here from v1's weights, perturbed and saved the normal way, and the
registry is pointed at both."""
from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import rvqtool
import rvqtool.cli
from rvqtool import registry
from rvqtool import load_codec, load_codes, save_codes
from rvqtool.checkpoint import load_model, read_meta, save_model
from rvqtool.io.hashing import file_sha256
from rvqtool.errors import UserError
from tests.audio import tone

V1_SHA256 = "a7fcdd0afa82f3e17177a86f9f5571a6ff1e34006eeffb9cd68b7a7782cdf30e"  # in every code file since 0.1


def test_shipped_versions_are_intact():
    """v1's bytes are the ones old code files name; every version's JSON names the version and its
    weights' hash (the hash covers the .safetensors only, so the JSON's name can be set when shipping)."""
    assert registry.SHIPPED_VERSIONS[0] == "default-v1"
    assert file_sha256(registry.SHIPPED_DIR / "default-v1.safetensors") == V1_SHA256
    for version in registry.SHIPPED_VERSIONS:
        weights = registry.SHIPPED_DIR / f"{version}.safetensors"
        meta = read_meta(weights)
        assert (meta["name"], meta["sha256"]) == (version, file_sha256(weights))
    assert registry.shipped_version("default") == registry.SHIPPED_VERSIONS[-1]
    assert load_codec("default").name == registry.SHIPPED_VERSIONS[-1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models directory holding the shipped v1 and a v2 made from it."""
    directory = tmp_path_factory.mktemp("models")
    for suffix in (".safetensors", ".json"):
        shutil.copy(registry.SHIPPED_DIR / f"default-v1{suffix}", directory / f"default-v1{suffix}")
    model, _ = load_model(directory / "default-v1.safetensors")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.decoder.parameters():
            param.mul_(1 + 0.05 * torch.randn(param.shape, generator=generator))
    save_model(model, directory / "default-v2.safetensors", "default-v2")
    return directory


@pytest.fixture
def two_versions(models, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED_DIR", models)
    monkeypatch.setattr(registry, "SHIPPED_VERSIONS", ("default-v1", "default-v2"))
    return models


@pytest.fixture(scope="module")
def audio():
    return tone(1.0, seed=3)


@pytest.fixture(scope="module")
def v1_codes(audio):
    """Codes as the shipped v1 writes them."""
    codes = load_codec("default-v1").encode(audio)
    assert (codes.meta.model, codes.meta.model_sha256) == ("default-v1", V1_SHA256)
    return codes


@pytest.fixture(scope="module")
def pre_version_codes(v1_codes):
    """Codes as rvqtool wrote them before versions: model "default", and a model path that is gone."""
    old_path = str(Path(rvqtool.__file__).parent / "models" / "default.safetensors")
    return dataclasses.replace(v1_codes, meta=dataclasses.replace(v1_codes.meta, model="default",
                                                                  model_path=old_path))


@pytest.fixture(scope="module")
def v1_audio(v1_codes):
    return load_codec("default-v1").decode(v1_codes)


def rvq(*argv, monkeypatch, capsys) -> tuple[int, str, str]:
    """The real entry point, in this process (so it sees the patched registry): rc, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["rvq", *map(str, argv)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        rvqtool.cli.main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_default_stands_for_the_newest_version(two_versions, audio):
    v2_sha = read_meta(two_versions / "default-v2.json")["sha256"]
    assert registry.shipped_aliases() == {"default": "default-v2"}
    assert registry.model_path("default") == two_versions / "default-v2.safetensors"
    assert registry.model_path("default-v1") == two_versions / "default-v1.safetensors"
    newest = load_codec("default")
    assert (newest.name, newest.sha256) == ("default-v2", v2_sha)
    assert newest.encode(audio).meta.model == "default-v2"  # the version, not the alias
    pinned = load_codec("default-v1")
    assert (pinned.name, pinned.sha256) == ("default-v1", V1_SHA256)


def test_codes_find_their_version_by_hash(two_versions, v1_codes, pre_version_codes, v1_audio):
    assert registry.model_for_codes(v1_codes.meta) == "default-v1"
    assert registry.model_for_codes(pre_version_codes.meta) == "default-v1"
    v2 = load_codec("default-v2")
    as_if_v2 = dataclasses.replace(v1_codes, meta=dataclasses.replace(v1_codes.meta, model="default-v2",
                                                                      model_sha256=v2.sha256))
    assert registry.model_for_codes(as_if_v2.meta) == "default-v2"
    # the versions decode the same codes differently, far beyond the 16-bit rounding the CLI tests allow
    assert np.abs(v2.decode(as_if_v2) - v1_audio).max() > 1e-3


def test_explicit_wrong_model_names_the_version_to_pass(two_versions, v1_codes):
    with pytest.raises(UserError) as refused:
        load_codec("default").decode(v1_codes)
    message = str(refused.value)
    assert "made by default-v1 (a7fcdd0afa82)" in message and "not by 'default-v2'" in message
    assert message.endswith("pass --model default-v1")


def test_codes_of_a_shipped_name_with_an_unknown_hash_are_refused(two_versions, v1_codes):
    """Not even through the shipped file they record (its hash differs): the error says so."""
    meta = dataclasses.replace(v1_codes.meta, model="default", model_sha256="0" * 64,
                               model_path=str(two_versions / "default-v1.safetensors"))
    with pytest.raises(UserError, match=r"x\.npy: made by model 'default' \(000000000000\), which no model "
                                        r"shipped with this rvqtool matches \(default-v1, default-v2\)"):
        registry.model_for_codes(meta, "x.npy")


@pytest.mark.parametrize("suffix", [".npy", ".rvq"])
def test_rvq_decode_picks_the_version_without_model(two_versions, tmp_path, pre_version_codes, v1_codes,
                                                    v1_audio, monkeypatch, capsys, suffix):
    """Old ("default") and new ("default-v1") code files decode with v1 after `default` moved to v2."""
    for name, codes in (("old", pre_version_codes), ("new", v1_codes)):
        save_codes(codes, tmp_path / f"{name}{suffix}")
        assert load_codes(tmp_path / f"{name}{suffix}").meta.model == codes.meta.model
        rc, _, err = rvq("decode", tmp_path / f"{name}{suffix}", "-o", tmp_path / f"{name}.wav",
                         monkeypatch=monkeypatch, capsys=capsys)
        assert (rc, err) == (0, ""), err
        decoded, rate = sf.read(tmp_path / f"{name}.wav", dtype="float32", always_2d=True)
        assert rate == 24000
        np.testing.assert_allclose(decoded.T, np.clip(v1_audio, -1, 1), atol=1 / 2 ** 15)


def test_rvq_decode_with_the_wrong_model_is_one_line(two_versions, tmp_path, pre_version_codes,
                                                     monkeypatch, capsys):
    save_codes(pre_version_codes, tmp_path / "old.npy")
    rc, out, err = rvq("decode", tmp_path / "old.npy", "-o", tmp_path / "old.wav", "--model", "default",
                       monkeypatch=monkeypatch, capsys=capsys)
    assert (rc, out) == (1, "")
    assert err.splitlines() == [f"error: {tmp_path / 'old.npy'}: made by default-v1 (a7fcdd0afa82), not by "
                                f"'default-v2' ({load_codec('default').sha256[:12]}): pass --model default-v1"]
    assert not (tmp_path / "old.wav").exists()
    rc, _, err = rvq("decode", tmp_path / "old.npy", "-o", tmp_path / "old.wav", "--model", "default-v1",
                     monkeypatch=monkeypatch, capsys=capsys)
    assert (rc, err) == (0, "") and (tmp_path / "old.wav").exists()


def test_rvq_info_lists_the_versions(two_versions, tmp_path, pre_version_codes, monkeypatch, capsys):
    rc, out, _ = rvq("info", monkeypatch=monkeypatch, capsys=capsys)
    lines = out.splitlines()
    assert rc == 0 and lines[:2] == ["type        shipped models", "default     default-v2"]
    assert lines[2].startswith("default-v1  a7fcdd0afa82: 24000 Hz mono, 8 levels x 1024 codes, 0.75-6 kbps")
    assert lines[3].startswith("default-v2  ") and len(lines) == 4
    rc, out, _ = rvq("info", "default", monkeypatch=monkeypatch, capsys=capsys)
    facts = [line.split(None, 1) for line in out.splitlines()]
    assert rc == 0 and ["name", "default-v2"] in facts and ["aliases", "['default']"] in facts
    save_codes(pre_version_codes, tmp_path / "old.npy")
    rc, out, _ = rvq("info", tmp_path / "old.npy", monkeypatch=monkeypatch, capsys=capsys)
    facts = [line.split(None, 1) for line in out.splitlines()]
    assert rc == 0 and ["model", "default"] in facts and ["shipped_model", "default-v1"] in facts
