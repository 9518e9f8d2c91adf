"""`rvq train --init-from`: a machine that kept no training state continues from a model file."""
import json

import pytest
import torch
from safetensors.torch import load_file

from rvqtool import UserError
from rvqtool.train.trainer import train
from tests.test_train import TINY, corpus, options  # noqa: F401  (corpus is a fixture)


def test_a_new_run_starts_from_the_models_weights_and_step(corpus, tmp_path):
    start = train([corpus], tmp_path / "a", TINY, options(3))
    # at the model's own step count nothing trains: the written model is the starting one
    same = train([corpus], tmp_path / "b", TINY, options(3), init_from=start)
    first, copied = load_file(start), load_file(same)
    assert first.keys() == copied.keys() and all(torch.equal(first[k], copied[k]) for k in first)
    # further steps continue the step count (and so the learning-rate schedule) and keep codebooks fitted
    more = train([corpus], tmp_path / "c", TINY, options(5), init_from=start)
    log = [json.loads(line) for line in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 5] and all(r["n_q"] >= 1 for r in log)
    assert json.loads(more.with_suffix(".json").read_text())["training"]["steps"] == 5
    state = load_file(tmp_path / "c" / "train_state.safetensors")
    assert not torch.equal(state["model.quantizer.embed"], first["quantizer.embed"])  # it did train
    assert bool(state["model.quantizer.initialized"])


def test_init_from_and_resume_exclude_each_other(corpus, tmp_path):
    start = train([corpus], tmp_path / "a", TINY, options(3))
    with pytest.raises(UserError, match="--init-from"):
        train([corpus], tmp_path / "b", TINY, options(4), init_from=start, resume=True)


def test_decoder_only_keeps_the_codes_and_trains_the_decoder(corpus, tmp_path):
    import dataclasses

    from rvqtool.codec import load_codec
    from tests.audio import tone

    start = train([corpus], tmp_path / "a", TINY, options(3))
    frozen = dataclasses.replace(options(6), decoder_only=True)
    tuned = train([corpus], tmp_path / "b", TINY, frozen, init_from=start)
    before, after = load_file(start), load_file(tuned)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)   # the decoder learned, nothing else moved
    wav = tone(0.5, seed=7)
    old, new = load_codec(start).encode(wav).codes, load_codec(tuned).encode(wav).codes
    assert len(set(old.reshape(-1).tolist())) > 1 and (old == new).all()
    # a run keeps its choice: the optimiser holds moments for the decoder's parameters only
    train([corpus], tmp_path / "b", TINY, dataclasses.replace(frozen, steps=7), resume=True)
    with pytest.raises(UserError, match="--decoder-only"):
        train([corpus], tmp_path / "b", TINY, options(8), resume=True)


def test_decoder_only_needs_trained_codebooks(corpus, tmp_path):
    import dataclasses

    with pytest.raises(UserError, match="--init-from"):
        train([corpus], tmp_path / "a", TINY, dataclasses.replace(options(4), decoder_only=True))


def test_a_new_istft_decoder_on_a_models_encoder_and_codebooks(corpus, tmp_path):
    """--init-from with --decoder istft --decoder-only: the encoder and codebooks (so the codes) are
    the model's, the decoder is a new inverse-STFT one trained from step 0, and the run resumes."""
    import dataclasses

    from rvqtool.checkpoint import load_model
    from rvqtool.codec import load_codec
    from tests.audio import tone

    start = train([corpus], tmp_path / "a", TINY, options(3))
    fields = {"decoder": "istft", "decoder_filters": 8, "decoder_layers": 2}
    frozen = dataclasses.replace(options(4), decoder_only=True)
    made = train([corpus], tmp_path / "b", TINY, frozen, init_from=start, new_decoder=fields)
    model, meta = load_model(made)
    assert model.config == dataclasses.replace(TINY, **fields) and meta["training"]["steps"] == 4
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]   # counted from 0, not from the model's 3
    before, after = load_file(start), load_file(made)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("decoder."))
    wav = tone(0.5, seed=7)
    assert (load_codec(start).encode(wav).codes == load_codec(made).encode(wav).codes).all()
    assert load_codec(made).decode(load_codec(made).encode(wav)).shape == (1, len(wav))
    resumed = train([corpus], tmp_path / "b", TINY, dataclasses.replace(frozen, steps=6), resume=True)
    assert load_model(resumed)[0].config.decoder == "istft"
