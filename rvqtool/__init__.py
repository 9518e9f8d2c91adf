"""rvqtool: a neural audio codec and the tools to turn audio into tokens.

    from rvqtool import load_codec
    codec = load_codec("default")
    codes = codec.encode_file("speech.wav")     # Codes: .codes [channels, n_q, T] + .meta
    audio = codec.decode(codes)                 # float32 [channels, samples] at codec.output_sample_rate
"""
from rvqtool.codec import Codec, load_codec
from rvqtool.config import CodecConfig
from rvqtool.errors import UserError
from rvqtool.io.codes import Codes, CodesMeta, load_codes, save_codes

__version__ = "0.1.0"
__all__ = ["Codec", "CodecConfig", "Codes", "CodesMeta", "UserError", "load_codec", "load_codes", "save_codes"]
