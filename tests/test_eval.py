"""`rvq eval` and rvqtool.evaluation: scores equal the metrics of an independent round trip, means
and pooled bitrates are exact, code usage counts, Opus alignment, inputs and categories, the
optional metrics (skipped without the `eval` extra), JSON / CSV / PNG outputs and bad input."""
from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np
import pytest
import soundfile as sf

from rvqtool import load_codec
from rvqtool.registry import shipped_aliases
from rvqtool.errors import UserError
from rvqtool.evaluation import EvalOptions, evaluate, opus, resolve, scores
from rvqtool.evaluation.report import summarize, table, write as write_result
from rvqtool.evaluation.usage import CodeUsage
from rvqtool.metrics import mel_distance, si_sdr
from tests.audio import CLIPS, tone, write

DEFAULT = shipped_aliases()["default"]  # eval names systems by the model version

RATE = 24000
CORE = ("si_sdr", "mel", "stft")


@pytest.fixture(scope="module")
def codec():
    return load_codec("default")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """speech/a.wav (1 s), speech/b.flac (0.6 s at 16 kHz), music/c.wav (0.8 s): a tiny held-out tree."""
    root = tmp_path_factory.mktemp("clips")
    (root / "speech").mkdir()
    (root / "music").mkdir()
    write(root / "speech" / "a.wav", tone(1.0, seed=1))
    write(root / "speech" / "b.flac", tone(0.6, 16000, seed=2), 16000)
    write(root / "music" / "c.wav", tone(0.8, seed=3))
    return root


def test_scores_equal_an_independent_round_trip(codec, clips):
    items = resolve([str(clips)])
    result = evaluate(codec, items, EvalOptions((8, 2), CORE))
    assert [(r["file"], r["n_q"]) for r in result["files"]] == [
        ("music/c.wav", 8), ("music/c.wav", 2), ("speech/a.wav", 8), ("speech/a.wav", 2),
        ("speech/b.flac", 8), ("speech/b.flac", 2)]
    reference = sf.read(str(clips / "speech" / "a.wav"), dtype="float32")[0]
    for row in [r for r in result["files"] if r["file"] == "speech/a.wav"]:
        decoded = codec.decode(codec.encode(reference, n_q=row["n_q"]))[0]
        assert row["si_sdr"] == si_sdr(decoded, reference)
        assert row["mel"] == mel_distance(decoded, reference, RATE)
        assert row["stft"] == scores.stft_distance(decoded, reference)
        assert row["kbps"] == row["kbps_measured"] == 0.75 * row["n_q"]
        assert row["encode_seconds"] > 0 and row["decode_xrt"] > 0
    assert row["category"] == "speech" and row["seconds"] == 1.0
    # more levels, closer to the original (on every file)
    by_file = {(r["file"], r["n_q"]): r for r in result["files"]}
    assert all(by_file[(f, 8)]["mel"] < by_file[(f, 2)]["mel"] for f, _ in by_file)
    means = {(m["system"], m["category"]): m for m in result["means"]}
    assert set(means) == {(f"{DEFAULT} {q}q", c) for q in (8, 2) for c in ("music", "speech", "all")}
    speech = [r["mel"] for r in result["files"] if r["category"] == "speech" and r["n_q"] == 8]
    assert means[(f"{DEFAULT} 8q", "speech")]["mel"] == pytest.approx(np.mean(speech), rel=1e-12)
    assert means[(f"{DEFAULT} 8q", "speech")]["n"] == 2
    usage = result["code_usage"][f"{DEFAULT} 8q"]
    assert [u["level"] for u in usage] == list(range(1, 9))
    frames = sum(math.ceil(s * RATE / 320) for s in (1.0, 0.6, 0.8))
    assert all(u["codes"] == frames for u in usage)
    assert all(1 <= u["perplexity"] <= frames and 0 < u["share_used"] <= frames / 1024 for u in usage)


def test_code_usage_counts_perplexity_and_share():
    usage = CodeUsage.empty(2, 8)
    usage.add(np.array([[[0, 1, 2, 3, 0, 1, 2, 3], [5, 5, 5, 5, 5, 5, 5, 5]]]))  # [channels, levels, T]
    assert usage.counts[0].tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    assert usage.perplexity() == pytest.approx([4.0, 1.0])
    assert usage.share_used() == [0.5, 0.125]
    assert usage.entropy_bits() == pytest.approx([2.0, 0.0])


def test_summary_pools_bitrate_and_speed_but_averages_quality():
    rows = [
        {"system": "s", "kbps": 6.0, "n_q": 8, "category": "a", "seconds": 1.0, "payload_bytes": 500,
         "encode_seconds": 0.5, "decode_seconds": 1.0, "mel": 1.0},
        {"system": "s", "kbps": 6.0, "n_q": 8, "category": "b", "seconds": 3.0, "payload_bytes": 3500,
         "encode_seconds": 0.5, "decode_seconds": 1.0, "mel": float("nan")},
        {"system": "s", "kbps": 6.0, "n_q": 8, "category": "b", "seconds": 2.0, "payload_bytes": 1000,
         "encode_seconds": 1.0, "decode_seconds": 2.0, "mel": 3.0},
    ]
    means = {m["category"]: m for m in summarize(rows, ("mel",))}
    assert means["all"]["kbps_measured"] == pytest.approx(5000 * 8 / 6 / 1000)
    assert means["all"]["mel"] == 2.0 and means["b"]["mel"] == 3.0  # NaN (no score) left out
    assert means["all"]["encode_xrt"] == 3.0 and means["all"]["decode_xrt"] == 1.5
    assert (means["a"]["n"], means["b"]["n"], means["all"]["n"]) == (1, 2, 3)
    text = table([means["all"]], ("mel",), "category").splitlines()
    assert text[0].split() == ["system", "kbps", "category", "mel", "enc", "xRT", "dec", "xRT"]
    assert text[1].split() == ["s", "6.67", "all", "2.000", "3.0", "1.5"]


def test_summary_reports_subsets_apart_and_names_the_visqol_mode():
    rows = [{"system": "s", "kbps": 6.0, "n_q": 8, "category": c, "subset": sub, "seconds": 1.0, "payload_bytes": 750,
             "visqol": v, "visqol_mode": mode}
            for c, sub, v, mode in (("speech", "real-wideband", 2.0, "speech"), ("speech", "synthetic", 3.0, "speech"),
                                    ("music", "", 4.0, "audio"))]
    means = {(m["category"], m.get("subset")): m for m in summarize(rows, ("visqol",))}
    assert set(means) == {("speech", None), ("music", None), ("all", None),
                          ("speech", "real-wideband"), ("speech", "synthetic")}
    assert means["speech", "real-wideband"]["visqol"] == 2.0 and means["speech", None]["visqol"] == 2.5
    assert [means[k]["visqol_mode"] for k in (("speech", None), ("music", None), ("all", None))] == [
        "speech", "audio", "audio+speech"]
    text = table([means["speech", "real-wideband"], means["all", None]], ("visqol",), "category").splitlines()
    assert text[0].split()[3:5] == ["ViSQOL", "ViSQOL"] and text[0].split()[5] == "mode"
    assert text[1].split()[2:5] == ["speech/real-wideband", "2.00", "speech"]
    assert text[2].split()[2:5] == ["all", "3.00", "audio+speech"]


def test_visqol_mode_follows_the_category_unless_asked():
    assert [scores.visqol_mode("auto", c) for c in ("speech", "music", "env", "-")] == ["speech", "audio", "audio", "audio"]
    assert scores.visqol_mode("audio", "speech") == "audio" and scores.visqol_mode("speech", "music") == "speech"
    with pytest.raises(UserError, match="--visqol-mode: choose from auto, speech, audio; got 'voice'"):
        scores.visqol_mode("voice", "speech")


def test_eval_scores_each_file_in_its_visqol_mode(codec, clips, monkeypatch):
    """Speech files reach ViSQOL in speech mode at 16 kHz, others in audio mode at 48 kHz; rows say which."""
    seen = []

    def fake_api(mode):
        class Api:
            def measure_from_arrays(self, ref, est, rate):
                seen.append((mode, rate))
                return type("Result", (), {"moslqo": {"speech": 2.0, "audio": 4.0}[mode]})()
        return Api()

    monkeypatch.setattr(scores, "_visqol_api", fake_api)
    items = resolve([str(clips)])
    for choice, expected in (("auto", {"speech": "speech", "music": "audio"}), ("audio", {"speech": "audio", "music": "audio"})):
        seen.clear()
        result = evaluate(codec, items, EvalOptions((2,), ("mel", "visqol"), visqol_mode=choice))
        modes = {r["file"].split("/")[-1]: (r["visqol_mode"], r["visqol"]) for r in result["files"]}
        want = {"speech": expected["speech"], "music": expected["music"]}
        assert modes == {n: (want[c], {"speech": 2.0, "audio": 4.0}[want[c]])
                         for n, c in (("a.wav", "speech"), ("b.flac", "speech"), ("c.wav", "music"))}
        assert sorted(seen) == sorted((want[c], scores.VISQOL_RATE[want[c]]) for c in ("speech", "speech", "music"))
        assert {m["category"]: m["visqol_mode"] for m in result["means"]}["all"] == "+".join(sorted(set(want.values())))
    assert "visqol_mode" not in evaluate(codec, items[:1], EvalOptions((2,), ("mel",)))["files"][0]


def test_inputs_directories_manifests_and_files(clips, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"file,category\n{clips}/music/c.wav,tunes\n{clips}/speech/a.wav,\n")
    items = resolve([str(manifest), str(clips), str(clips / "speech" / "a.wav")])
    assert [(i.name.split("/")[-1], i.category) for i in items] == [
        ("c.wav", "tunes"), ("a.wav", "-"), ("b.flac", "speech")]  # each file once, first mention wins
    manifest.write_text(f"file,category,subset\n{clips}/speech/a.wav,speech,real-wideband\n{clips}/music/c.wav,music,\n")
    assert [(i.category, i.subset) for i in resolve([str(manifest)])] == [("speech", "real-wideband"), ("music", "")]
    (tmp_path / "paths.csv").write_text(f"path\n{clips}/music/c.wav\n")   # every command's column names, eval's too
    assert [i.path for i in resolve([str(tmp_path / "paths.csv")])] == [clips / "music" / "c.wav"]
    with pytest.raises(UserError, match="bad.csv: row 1 has no path .a manifest needs a 'path' column"):
        (tmp_path / "bad.csv").write_text("name\nx.wav\n")
        resolve([str(tmp_path / "bad.csv")])
    with pytest.raises(UserError, match="no audio files"):
        (tmp_path / "empty").mkdir()
        resolve([str(tmp_path / "empty")])


def test_opus_alignment_undoes_a_small_lag_only():
    reference = tone(0.5, seed=4)
    delayed = np.r_[np.zeros(2, np.float32), reference][:len(reference)]
    aligned, lag = opus.align(delayed, reference)
    assert lag == 2 and len(aligned) == len(reference)
    np.testing.assert_array_equal(aligned[:-2], reference[:-2])
    early = np.r_[reference[3:], np.zeros(3, np.float32)]
    assert opus.align(early, reference)[1] == -3
    far = np.r_[np.zeros(40, np.float32), reference][:len(reference)]
    assert abs(opus.lag_of(far, reference)) <= opus.MAX_LAG  # searched only within +-8 samples


@pytest.mark.skipif(not opus.available(), reason="opusenc/opusdec (opus-tools) not installed")
def test_opus_round_trip_at_6_kbps():
    reference = tone(2.0, seed=5)
    result = opus.round_trip(reference, RATE, 6.0)
    assert result.audio.shape == reference.shape and abs(result.lag) <= opus.MAX_LAG
    kbps = result.packet_bytes * 8 / 2.0 / 1000
    assert 3.0 < kbps < 8.0 and result.file_bytes > result.packet_bytes
    assert si_sdr(result.audio, reference) > 0


def test_missing_tools_are_one_line_errors(codec, clips, monkeypatch):
    items = resolve([str(clips / "music")])
    monkeypatch.setattr(opus.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="needs opusenc and opusdec on PATH"):
        evaluate(codec, items, EvalOptions((2,), ("mel",), compare_opus=True))
    monkeypatch.setattr(scores.importlib.util, "find_spec", lambda name: None)
    from rvqtool.evaluation import plots
    monkeypatch.setattr(plots.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"--plots needs matplotlib"):
        evaluate(codec, items, EvalOptions((2,), ("mel",), plots_dir=clips / "never"))
    assert not (clips / "never").exists()


def test_metric_selection():
    assert scores.select("mel, si_sdr,mel") == ("mel", "si_sdr")
    assert scores.select("all")[:3] == CORE
    with pytest.raises(UserError, match="unknown nope"):
        scores.select("mel,nope")


def test_missing_extra_is_skipped_by_all_and_refused_by_name(monkeypatch):
    monkeypatch.setattr(scores.importlib.util, "find_spec", lambda name: None)
    assert scores.select("all") == CORE
    with pytest.raises(UserError, match=r"pesq: not installed \(pip install 'rvqtool\[eval\]'\)"):
        scores.select("mel,pesq")


def test_visqol_without_its_lattice_runtime_counts_as_missing(monkeypatch):
    """Speech mode would fall back to a mapping that scores 1-2 points higher: no such silent switch."""
    find_spec = scores.importlib.util.find_spec
    monkeypatch.setattr(scores.importlib.util, "find_spec",
                        lambda name: None if name == "ai_edge_litert" else find_spec(name))
    assert not scores.installed("visqol") and "visqol" not in scores.select("all")
    with pytest.raises(UserError, match="visqol: not installed"):
        scores.select("visqol")


def test_pesq_and_stoi_against_known_values():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    reference = sf.read(str(CLIPS["speech"]), dtype="float32")[0][:4 * RATE]
    same = scores.score(reference, reference, RATE, ("pesq", "stoi"))
    assert same["pesq"] == pytest.approx(4.64, abs=0.01) and same["stoi"] == pytest.approx(1.0, abs=1e-6)
    noisy = reference + 0.02 * np.random.default_rng(0).standard_normal(len(reference)).astype(np.float32)
    worse = scores.score(noisy, reference, RATE, ("pesq", "stoi"))
    assert worse["pesq"] < 3.0 and worse["stoi"] < 0.99
    assert math.isnan(scores.score(tone(1.0), np.zeros(RATE, np.float32), RATE, ("pesq",))["pesq"])  # no speech


@pytest.mark.skipif(os.environ.get("RVQ_TEST_VISQOL") != "1",
                    reason="ViSQOL compiles ~15-50 s with numba on first use: set RVQ_TEST_VISQOL=1")
def test_visqol_ranks_clean_above_noisy():
    pytest.importorskip("visqol")
    pytest.importorskip("ai_edge_litert")
    reference = tone(3.0, seed=6)
    noisy = reference + 0.05 * np.random.default_rng(1).standard_normal(len(reference)).astype(np.float32)
    clean, bad = (scores.score(x, reference, RATE, ("visqol",))["visqol"] for x in (reference, noisy))
    assert clean > 4.5 and 1.0 <= bad < clean
    speech = sf.read(str(CLIPS["speech"]), dtype="float32")[0][:3 * RATE]
    noisy = speech + 0.02 * np.random.default_rng(2).standard_normal(len(speech)).astype(np.float32)
    clean, bad = (scores.score(x, speech, RATE, ("visqol",), "speech")["visqol"] for x in (speech, noisy))
    assert clean > 4.0 and 1.0 <= bad < clean  # speech mode (lattice mapping): identical input ~4.57


def test_json_and_csv_outputs(tmp_path):
    result = {"files": [{"file": "a.wav", "system": "s", "mel": 1.5, "pesq": None}],
              "means": [{"system": "s", "category": "all", "mel": 1.5, "pesq": None}]}
    write_result(tmp_path / "r.json", result)
    assert json.loads((tmp_path / "r.json").read_text()) == result
    write_result(tmp_path / "r.csv", result)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [(r["file"], r["mel"], r["pesq"], r["category"]) for r in rows] == [("a.wav", "1.5", "", ""),
                                                                              ("(mean)", "1.5", "", "all")]
    with pytest.raises(UserError, match="json or .csv"):
        write_result(tmp_path / "r.txt", result)


# ---- the command line ------------------------------------------------------------------------------
def test_cli_eval_table_json_csv(rvq, clips, tmp_path):
    compare = ["--compare", "opus"] if opus.available() else []
    res = rvq("eval", clips, "--n-q", "8", "--n-q", "2", "--metrics", "mel,si_sdr", *compare, "--threads", "1",
              "-o", "r.json", cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res
    lines = res.stdout.decode().splitlines()
    systems = [f"{DEFAULT} 8q", f"{DEFAULT} 2q"] + (["opus 6k", "opus 1.5k"] if compare else [])
    assert lines[0].split()[:5] == ["system", "kbps", "file", "mel", "SI-SDR"]
    assert len([line for line in lines if "speech/a.wav" in line]) == len(systems)
    means_at = lines.index("") + 1
    assert lines[means_at].split()[2] == "category"
    assert [" ".join(line.split()[:2]) for line in lines[means_at + 1:] if line.split()[3:4] == ["all"]] == systems
    assert lines[-2].startswith(f"code usage, {DEFAULT} 8q: perplexity per level: L1 ")
    result = json.loads((tmp_path / "r.json").read_text())
    assert {(m["system"], m["category"]) for m in result["means"]} == {
        (s, c) for s in systems for c in ("speech", "music", "all")}
    assert len(result["files"]) == 3 * len(systems) and result["metrics"] == ["mel", "si_sdr"]
    res = rvq("eval", clips / "music", "--metrics", "mel", "--means-only", "-o", "r.csv", cwd=tmp_path)
    assert res.rc == 0, res
    assert len(res.stdout.decode().splitlines()) == 3  # header, the mean, code usage
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["file"] for r in rows] == ["c.wav", "(mean)"] and rows[0]["mel"] == rows[1]["mel"]


@pytest.mark.skipif(os.environ.get("RVQ_TEST_VISQOL") != "1",
                    reason="ViSQOL compiles ~15-50 s with numba on first use: set RVQ_TEST_VISQOL=1")
def test_cli_eval_visqol_modes_quietly(rvq, clips, tmp_path):
    pytest.importorskip("visqol")
    pytest.importorskip("ai_edge_litert")
    res = rvq("eval", clips, "--n-q", "2", "--metrics", "visqol", cwd=tmp_path)
    assert res.rc == 0, res  # clips too short for a ViSQOL patch get no score, not an error
    assert [line.split()[4:6] for line in res.stdout.decode().splitlines() if "music/c.wav" in line] == [["-", "audio"]]
    for category, seed in (("speech", 7), ("music", 8)):
        (tmp_path / "long" / category).mkdir(parents=True)
        write(tmp_path / "long" / category / "x.wav", tone(3.0, seed=seed))
    res = rvq("eval", tmp_path / "long", "--n-q", "2", "--metrics", "visqol", "--means-only", "-o", "r.json",
              cwd=tmp_path)
    assert res.rc == 0 and res.stderr == "", res  # the lattice runtime's INFO line is not let through
    lines = res.stdout.decode().splitlines()
    assert lines[0].split()[3:6] == ["ViSQOL", "ViSQOL", "mode"]
    assert {line.split()[3]: line.split()[5] for line in lines[1:4]} == {
        "music": "audio", "speech": "speech", "all": "audio+speech"}
    files = json.loads((tmp_path / "r.json").read_text())["files"]
    assert {(r["category"], r["visqol_mode"]) for r in files} == {("speech", "speech"), ("music", "audio")}


def test_cli_eval_plots(rvq, clips, tmp_path):
    pytest.importorskip("matplotlib")
    res = rvq("eval", clips / "speech" / "a.wav", "--n-q", "4", "--metrics", "mel", "--plots", "plots", cwd=tmp_path)
    assert res.rc == 0, res
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(pngs) == 2 and pngs[0] == f"code_usage_{DEFAULT}_4q.png" and pngs[1].startswith("spectrogram_")
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_cli_eval_bad_input(rvq, clips, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    res = rvq("eval", clips / "music" / "c.wav", tmp_path / "bad.wav", "--metrics", "mel", cwd=tmp_path)
    assert res.rc == 1 and "Traceback" not in res.stderr, res
    assert res.err_lines[0].startswith("error: ") and "bad.wav" in res.err_lines[0]
    assert res.err_lines[-1] == "eval: 1 done, 1 failed"
    assert "c.wav" in res.stdout.decode()  # the good file is still scored
    for args, words, rc in ((["--metrics", "nope"], "unknown nope", 2), (["-o", "r.txt"], ".json or .csv", 1),
                            (["--compare", "mp3"], "only 'opus'", 2), (["--n-q", "9"], "between 1 and 8", 2),
                            (["--visqol-mode", "voice"], "--visqol-mode: choose from auto, speech, audio", 2)):
        res = rvq("eval", clips / "music" / "c.wav", *args, cwd=tmp_path)   # rc 2: a usage mistake
        assert res.rc == rc and len(res.err_lines) == 1 and words in res.stderr, res
    res = rvq("eval", tmp_path / "nothere.wav", cwd=tmp_path)
    assert res.rc == 1 and res.err_lines == [f"error: {tmp_path / 'nothere.wav'}: no such file"], res
