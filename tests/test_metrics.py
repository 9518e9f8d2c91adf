"""Metrics against independent implementations: librosa's mel filters and STFT, SI-SDR identities."""
import numpy as np
import pytest
import soundfile as sf

from rvqtool.metrics import MEL_BANDS, MEL_WINDOWS, mel_distance, mel_filters, si_sdr
from tests.audio import CLIPS, tone

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("window,bands", list(zip(MEL_WINDOWS, MEL_BANDS)))
def test_mel_filters_equal_librosa(window, bands):
    ours = mel_filters(24000, window, bands)
    theirs = librosa.filters.mel(sr=24000, n_fft=window, n_mels=bands)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_mel_distance_equals_a_librosa_computation_of_dacs_definition():
    reference, _ = sf.read(CLIPS["speech"], dtype="float32")
    reference = reference[:48000]
    estimate = reference + 0.01 * np.random.default_rng(0).standard_normal(len(reference)).astype(np.float32)
    want = 0.0
    for window, bands in zip(MEL_WINDOWS, MEL_BANDS):
        basis = librosa.filters.mel(sr=24000, n_fft=window, n_mels=bands)
        logs = [np.log10(np.maximum(basis @ np.abs(librosa.stft(y, n_fft=window, hop_length=window // 4,
                                                                  window="hann", center=True, pad_mode="reflect")),
                                    1e-5)) for y in (estimate, reference)]
        want += np.abs(logs[0] - logs[1]).mean()
    assert mel_distance(estimate, reference, 24000) == pytest.approx(want, rel=1e-4)
    assert mel_distance(reference, reference, 24000) == 0.0


def test_si_sdr_identities():
    x = tone(1.0)
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    noise -= noise.mean()
    noise *= np.linalg.norm(x - x.mean()) / np.linalg.norm(noise) / 10  # 20 dB below the signal
    noise -= (noise @ (x - x.mean())) / ((x - x.mean()) @ (x - x.mean())) * (x - x.mean())  # orthogonal
    assert si_sdr(x, x) > 60
    assert si_sdr(0.3 * x, x) > 60  # scale-invariant
    assert si_sdr(x + noise, x) == pytest.approx(20.0, abs=0.2)
