"""The window arithmetic on its own: windows cover every frame once, read their context (left and
right apart, as a causal model asks) and never read past the padded signal."""
from __future__ import annotations

import pytest

from rvqtool.windowing import Windowing, segment_frames, segments

HOP = 10


@pytest.mark.parametrize("context", [(0, 0), (20, 0), (30, 50), (40, 40)])
@pytest.mark.parametrize("length", [1, 9, 10, 95, 100, 101, 333])
def test_encode_windows_cover_each_frame_once_with_their_context(context, length):
    windows = Windowing(HOP, chunk_frames=3, encoder_context=context, decoder_context=(1, 1))
    cut = windows.encode_windows(length)
    n_frames = -(-length // HOP)
    assert [w.first_frame for w in cut] == list(range(0, n_frames, 3))
    assert [w.end_frame for w in cut] == [w.first_frame for w in cut[1:]] + [n_frames]
    left, right = context
    for w in cut:
        assert w.first_sample == max(0, w.first_frame * HOP - left)
        assert w.end_sample == min(w.end_frame * HOP + right, n_frames * HOP)
        assert w.first_sample % HOP == 0 and w.end_sample % HOP == 0


def test_streaming_cuts_full_windows_as_the_whole_signal_would():
    windows = Windowing(HOP, chunk_frames=3, encoder_context=(20, 30), decoder_context=(0, 0))
    whole = windows.encode_windows(1000)
    assert not windows.full_window_ready(0, 59) and windows.full_window_ready(0, 60)
    # once ready, a window is the same whatever the final length
    assert windows.encode_window(3, -(-90 // HOP)) == whole[1]
    assert windows.first_sample_needed(3) == whole[1].first_sample == 10


def test_unbounded_and_odd_contexts_from_a_model():
    class Model:
        class config:
            hop_length, frame_rate = HOP, 100.0

        def __init__(self, encoder, decoder):
            self.encoder, self.decoder = encoder, decoder

        def encoder_context(self):
            return self.encoder

        def decoder_context(self):
            return self.decoder

    assert Windowing.for_model(Model(None, None), 0.05) == Windowing(HOP, 5, (100, 100), (5, 5))
    assert Windowing.for_model(Model((11, 0), (2, 0)), 0.05) == Windowing(HOP, 5, (20, 0), (2, 0))


def test_decode_windows_read_their_frames_of_context():
    cut = Windowing(HOP, 4, (0, 0), (2, 1)).decode_windows(10)
    assert cut == [(0, 4, 0, 5), (4, 8, 2, 9), (8, 10, 6, 10)]


def test_segments_and_their_frames():
    assert segments(25, None, None) == [(0, 25)] and segments(25, 0, 0) == [(0, 25)]
    spans = segments(25, 10, 9)
    assert spans == [(0, 10), (9, 19), (18, 25)]
    assert segment_frames(spans, 4) == 3 + 3 + 2
