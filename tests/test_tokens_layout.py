"""Token layouts, vocabularies, sources and shard indexes, without a model: exact references
for each pattern, round trips, the Megatron index bytes, and the plan's exact frame counts."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import soundfile as sf

from rvqtool.errors import UserError
from rvqtool.io.codes import CodesMeta
from rvqtool.tokens import patterns, shards, sources
from rvqtool.tokens.plan import audio_frames, resampled_length, tokens_per_shard
from rvqtool.tokens.vocab import Vocab

META = CodesMeta("default", "ab" * 32, 24000, 75.0, 320, 8, 1024, 3200, 1, "mono", 24000, "")
CODES = np.array([[1, 2, 3], [0, 3, 1]])      # n_q=2, T=3, codebook_size=4


def test_flat_level_major_and_delay_references():
    pad = 8
    assert patterns.to_tokens(CODES, "flat", 4, 0, pad).tolist() == [1, 4, 2, 7, 3, 5]
    assert patterns.to_tokens(CODES, "coarse", 4, 0, pad).tolist() == [1, 4, 2, 7, 3, 5]
    assert patterns.to_tokens(CODES, "level-major", 4, 0, pad).tolist() == [1, 2, 3, 4, 7, 5]
    # step s holds (level 0 of frame s, level 1 of frame s-1); PAD before level 1 starts and after level 0 ends
    assert patterns.to_tokens(CODES, "delay", 4, 0, pad).tolist() == [1, pad, 2, 4, 3, 7, pad, 5]
    assert patterns.to_tokens(CODES, "flat", 4, 100, 108).tolist() == [101, 104, 102, 107, 103, 105]


@pytest.mark.parametrize("pattern", patterns.PATTERNS)
@pytest.mark.parametrize("n_q,frames", [(1, 1), (3, 7), (8, 50)])
def test_every_pattern_inverts(pattern, n_q, frames):
    codes = np.random.default_rng(n_q * frames).integers(0, 1024, (n_q, frames))
    body = patterns.to_tokens(codes, pattern, 1024, 7, 7 + n_q * 1024)
    assert len(body) == patterns.body_length(pattern, n_q, frames)
    assert patterns.frames_of(pattern, n_q, len(body)) == frames
    for strict in (True, False):
        assert np.array_equal(patterns.to_codes(body, pattern, n_q, 1024, 7, 7 + n_q * 1024, strict), codes)


def test_strict_inverse_refuses_what_the_pattern_cannot_make():
    body = patterns.to_tokens(CODES, "delay", 4, 0, 8)
    with pytest.raises(UserError, match="PAD belongs"):
        patterns.to_codes(np.r_[body[:1], 5, body[2:]], "delay", 2, 4, 0, 8)
    with pytest.raises(UserError, match="level's range"):
        patterns.to_codes(np.array([4, 1, 2, 7, 3, 5]), "flat", 2, 4, 0, 8)   # level 1 token in a level 0 slot
    with pytest.raises(UserError, match="not a whole"):
        patterns.to_codes(np.array([1, 4, 2]), "flat", 2, 4, 0, 8)
    # lenient (an LM's sample): cut to whole frames, wrong-level tokens read modulo, specials as 0
    assert patterns.to_codes(np.array([4, 1, 2, 8, 3]), "flat", 2, 4, 0, 8, strict=False).tolist() == [[0, 2], [1, 0]]


@pytest.mark.parametrize("pattern", patterns.PATTERNS)
def test_vocab_documents_and_json(pattern, tmp_path):
    n_q = 3 if pattern == "coarse" else 8
    vocab = Vocab.for_codes(META, pattern, n_q, offset=50257, sep=True)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.sep_id) == tuple(50257 + n_q * 1024 + i for i in range(4))
    assert vocab.size == vocab.sep_id + 1 and vocab.dtype == np.uint16
    codes = np.random.default_rng(1).integers(0, 1024, (8, 20))
    doc = vocab.document(codes)
    assert doc.dtype == np.uint16 and len(doc) == vocab.document_length(20)
    assert (doc[0], doc[-2], doc[-1]) == (vocab.bos_id, vocab.eos_id, vocab.sep_id)
    back = vocab.to_codes(doc, length=20 * 320 - 5, source_sample_rate=44100)
    assert np.array_equal(back.codes[0], codes[:n_q])
    assert (back.meta.n_q, back.meta.length, back.meta.source_sample_rate, back.meta.model) == (n_q, 6395, 44100, "default")
    vocab.save(tmp_path / "vocab.json")
    data = json.loads((tmp_path / "vocab.json").read_text())
    assert data["audio_tokens"] == [50257, 50257 + n_q * 1024] and data["model"]["name"] == "default"
    assert data["sample_rate"] == 24000 and data["frame_rate"] == 75.0 and data["pattern"] == pattern
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    with pytest.raises(UserError, match="not one whole document"):
        vocab.to_codes(doc[1:])


def test_vocab_grows_to_uint32_and_specials_can_be_left_out():
    vocab = Vocab.for_codes(META, "flat", 8, offset=65536 - 8 * 1024 - 2)
    assert vocab.size == 65537 and vocab.dtype == np.uint32
    bare = Vocab.for_codes(META, "flat", 2, bos=False, eos=False)
    assert np.array_equal(bare.document(CODES), patterns.to_tokens(CODES, "flat", 1024, 0, 2048))
    sampled = np.r_[bare.bos_id, bare.document(CODES), 5, bare.eos_id, 9, 9]   # stops at the first EOS
    assert np.array_equal(bare.codes(sampled, strict=False), np.c_[CODES, [5, 0]][:, :3])


def test_sources_directories_globs_manifests_stdin(tmp_path):
    for name in ("b/2.wav", "b/1.flac", "a.wav", "b/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    suffixes = frozenset({".wav", ".flac"})
    found = sources.collect([str(tmp_path)], suffixes)
    assert [s.id for s in found] == ["a", "b/1", "b/2"]                          # sorted, recursive
    found = sources.collect([str(tmp_path / "b" / "*.wav"), str(tmp_path / "a.wav")], suffixes)
    assert [s.path for s in found] == [str(tmp_path / "b" / "2.wav"), str(tmp_path / "a.wav")]   # input order
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "text": "hello", "speaker": 3}\n'
                                      '{"audio_filepath": "b/1.flac", "id": "x1", "lang": "fr"}\n')
    m = sources.collect([str(tmp_path / "m.jsonl")], suffixes)
    assert [(s.path, s.id, s.text, s.metadata) for s in m] == [
        (str(tmp_path / "a.wav"), "a", "hello", {"speaker": 3}), (str(tmp_path / "b/1.flac"), "x1", None, {"lang": "fr"})]
    (tmp_path / "m.csv").write_text("file,transcript,split\nb/2.wav,hi there,train\n")
    assert [(s.text, s.metadata) for s in sources.collect([str(tmp_path / "m.csv")], suffixes)] == [("hi there", {"split": "train"})]
    (tmp_path / "m.txt").write_text("# a comment\na.wav\n\nb/2.wav\n")
    assert [s.id for s in sources.collect([str(tmp_path / "m.txt")], suffixes)] == ["a", "b/2"]
    assert [s.id for s in sources.collect(["-"], suffixes, io.StringIO("x/1.wav\n\n./y/2.flac\n"))] == ["x/1", "y/2"]
    with pytest.raises(UserError, match="share the id 'a'"):
        sources.collect([str(tmp_path / "m.txt"), str(tmp_path / "m.jsonl")], suffixes)
    with pytest.raises(UserError, match="no file matches"):
        sources.collect([str(tmp_path / "*.ogg")], suffixes)
    with pytest.raises(UserError, match="no such file"):
        sources.collect([str(tmp_path / "nope.wav")], suffixes)
    (tmp_path / "bad.jsonl").write_text('{"path": "a.wav"}\n[1]\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        sources.collect([str(tmp_path / "bad.jsonl")], suffixes)


@pytest.mark.parametrize("bad_id", ["a\nb", "tab\there", "nul\x00", "nel\x85", "ls\u2028", "\r"])
def test_ids_with_line_breaks_are_refused(tmp_path, bad_id):
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "x.wav", "id": bad_id}) + "\n")
    with pytest.raises(UserError, match="line break or another control character") as refused:
        sources.collect([str(tmp_path / "m.jsonl")], frozenset({".wav"}))
    assert "\n" not in str(refused.value) and repr(bad_id) in str(refused.value)
    (tmp_path / "ok.jsonl").write_text(json.dumps({"path": "x.wav", "id": "../../é x/y"}) + "\n")
    assert sources.collect([str(tmp_path / "ok.jsonl")], frozenset({".wav"}))[0].id == "../../é x/y"


def test_megatron_index_layout(tmp_path):
    offsets = np.array([0, 5, 12, 13])
    data = shards.megatron_index(offsets, np.dtype(np.uint16))
    expected = (b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, 3, 4) + np.array([5, 7, 1], "<i4").tobytes()
                + np.array([0, 10, 24], "<i8").tobytes() + np.array([0, 1, 2, 3], "<i8").tobytes())
    assert data == expected
    (tmp_path / "x.idx").write_bytes(data)
    dtype, back = shards.read_megatron_index(tmp_path / "x.idx")
    assert dtype == np.uint16 and back.tolist() == offsets.tolist()


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000])
def test_planned_frames_are_exact(tmp_path, rate):
    """The plan counts each file's frames from its header; the codec must agree exactly, or
    tokenize (from audio) and export (from codes) would cut shards differently."""
    import soxr

    for n in (1, 7, 999, 12345, 44101):
        stream = soxr.ResampleStream(rate, 24000, 1, dtype="float32", quality="HQ")
        x = np.zeros((n, 1), np.float32)
        got = sum(len(stream.resample_chunk(x[i:i + 4096], last=i + 4096 >= n)) for i in range(0, n, 4096))
        assert resampled_length(n, rate, 24000) == got
    sf.write(str(tmp_path / "x.wav"), np.zeros(12345, np.float32), rate)
    assert audio_frames(str(tmp_path / "x.wav"), 24000, 320) == -(-resampled_length(12345, rate, 24000) // 320)


def test_shard_size_parsing():
    assert [tokens_per_shard(t) for t in ("100M", "250k", "5000", "1.5G", "2e6")] == [10 ** 8, 250000, 5000, 1.5e9, 2000000]
    with pytest.raises(UserError, match="--shard-size"):
        tokens_per_shard("lots")


def test_the_old_pipeline_module_still_names_the_job():
    """`rvqtool.tokens.pipeline` was split by stage; for one release it re-exports the same objects."""
    from rvqtool.tokens import engines, jobdir, pipeline, plan, run

    assert pipeline.make_plan is plan.make_plan and pipeline.TokenOptions is plan.TokenOptions
    assert pipeline.JobDir is jobdir.JobDir and pipeline.run_job is run.run_job
    assert pipeline.local_engine is engines.local_engine
    assert all(hasattr(pipeline, name) for name in pipeline.__all__)


def test_a_failure_is_a_value_naming_the_file_and_why(tmp_path):
    """Workers return failures among results (a typed value, not a bare string): a user error in its
    own words, anything else named as unexpected."""
    from rvqtool.errors import Failure, UserError
    from rvqtool.tokens.encoders import CodeReader

    assert Failure.of("a.wav", UserError("a.wav: audio has no samples")) == Failure("a.wav", "a.wav: audio has no samples")
    assert Failure.of("a.wav", ValueError("boom")).reason == "a.wav: unexpected ValueError: boom"
    missing = str(tmp_path / "gone.npy")
    assert CodeReader().encode_group([missing]) == [Failure(missing, f"{missing}: no such file")]
