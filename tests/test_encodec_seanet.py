"""The inference fast paths of the time-major SEANet stacks (rvqtool/model/encodec_seanet.py, shared
by EnCodec and Mimi) give the plain layer-by-layer computation's numbers bit for bit: residual
units in steps of rows written over their input or into the next conv's padded buffer, and
Mimi's downsampling convs as stepped matrix products. Codes stay identical only if these do."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rvqtool.config import CodecConfig
from rvqtool.model import encodec_seanet, mimi
from rvqtool.model.encodec_seanet import EncodecDecoder, EncodecEncoder, EncodecResidualUnit, run_stack
from rvqtool.model.mimi import MimiDecoder, MimiEncoder

ENCODEC = CodecConfig(encoder_filters=8, decoder_filters=8, dimension=16, lstm_layers=1, causal=True,
                      extra={"pad_mode": "reflect", "true_skip": False})
MIMI = CodecConfig(ratios=(2, 8, 6, 5, 4), encoder_filters=8, decoder_filters=8, dimension=16, last_kernel_size=3,
                   causal=True, extra={"architecture": "mimi"})


def _layer_by_layer(layers, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


@pytest.fixture
def small_steps(monkeypatch):
    """Steps of a few hundred rows, so a short input takes several (and a ragged last one)."""
    monkeypatch.setattr(encodec_seanet, "_ROWS", 256)
    monkeypatch.setattr(mimi, "_ROWS", 64)


@pytest.mark.parametrize("layers", [encodec_seanet._Layers(ENCODEC), mimi._Layers()], ids=["encodec", "mimi"])
def test_unit_in_steps_equals_whole_pass(small_steps, layers):
    torch.manual_seed(0)
    unit = EncodecResidualUnit(32, 1, ENCODEC, layers).eval()
    x = torch.randn(2, 3 * 256 + 76, 32)   # a ragged last step; 16 hidden channels x 844 rows: no scalar tail
    with torch.inference_mode():
        whole = unit(x)
        assert unit.steppable
        assert torch.equal(unit.forward_(x.clone()), whole)
        out = torch.empty_like(x)
        assert unit.forward_(x.clone(), out, elu=True) is out
        assert torch.equal(out, F.elu(whole))


@pytest.mark.parametrize("make, config, shape", [
    (EncodecEncoder, ENCODEC, (2, 1, 24000 + 37)), (EncodecDecoder, ENCODEC, (2, 16, 61)),
    (MimiEncoder, MIMI, (2, 24000, 1)), (MimiDecoder, MIMI, (2, 50, 16))], ids=["encodec-enc", "encodec-dec", "mimi-enc", "mimi-dec"])
def test_stacks_equal_layer_by_layer(small_steps, monkeypatch, make, config, shape):
    torch.manual_seed(0)
    model = make(config).eval()
    for p in model.parameters():   # unit-scale activations through the stack
        p.data.normal_(0, 0.3)
    x = torch.randn(shape)
    with torch.inference_mode():
        fast = model(x)
        monkeypatch.setattr(mimi, "_ROWS", 10 ** 9)   # the downsampling convs' products in one piece
        time_major = x if make in (MimiEncoder, MimiDecoder) else x.transpose(1, 2)
        plain = _layer_by_layer(model.model, time_major.clone())
        plain = plain if make in (MimiEncoder, MimiDecoder) else plain.transpose(1, 2)
    assert fast.shape == plain.shape
    assert torch.equal(fast, plain)


def test_scratch_is_reused_at_inference_and_never_under_autograd():
    """Padded conv inputs come from per-thread scratch at inference (no page faults from call to
    call), which no output may alias; with autograd on they are fresh (a backward pass keeps them)."""
    x = torch.randn(1, 500, 8)
    model = EncodecEncoder(ENCODEC).eval()
    with torch.inference_mode():
        first = encodec_seanet.pad_time(x, 3, 2, "reflect")
        assert encodec_seanet.pad_time(x, 3, 2, "reflect").data_ptr() == first.data_ptr()
        a, b = torch.randn(1, 1, 6000), torch.randn(1, 1, 6000)
        out_a = model(a)
        kept = out_a.clone()
        model(b)
        assert torch.equal(out_a, kept)
    weight = torch.randn(1, 500, 8, requires_grad=True)
    padded = encodec_seanet.pad_time(weight, 3, 2, "zero", elu=True)
    assert padded.data_ptr() != encodec_seanet.pad_time(weight, 3, 2, "zero", elu=True).data_ptr()
    padded.sum().backward()
    assert torch.allclose(weight.grad, torch.where(weight > 0, 1.0, torch.exp(weight)).detach(), rtol=1e-6)


def test_cached_pack_keeps_one_packing_per_weight_and_function():
    """A packed kernel is reused for the same weight and packing, and never served to another
    packing of that weight or to a changed weight."""
    module, weight = torch.nn.Module(), torch.randn(4, 3, 6)
    packed = encodec_seanet.cached_pack(module, weight, encodec_seanet.channels_last_kernel)
    assert encodec_seanet.cached_pack(module, weight, encodec_seanet.channels_last_kernel) is packed
    other = encodec_seanet.cached_pack(module, weight, encodec_seanet.pack_transposed)
    assert torch.equal(other, encodec_seanet.pack_transposed(weight))
    with torch.no_grad():
        weight.mul_(2)
    again = encodec_seanet.cached_pack(module, weight, encodec_seanet.pack_transposed)
    assert torch.equal(again, encodec_seanet.pack_transposed(weight))
