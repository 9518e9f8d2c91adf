"""The codecs a command decodes with: the model --model names, else, code file by code file, the
model the codes were made with (`registry.model_for_codes`), each loaded once per run."""
from __future__ import annotations

from typing import Optional

from rvqtool.codec import Codec, load_codec
from rvqtool.io.codes import Codes
from rvqtool.io.code_stream import NpyCodes
from rvqtool.registry import model_for_codes


class CodecsForCodes:
    def __init__(self, model: Optional[str], device: str):
        self.model, self.device = model, device
        self._loaded: dict[str, Codec] = {}

    def codec_for(self, codes: Codes | NpyCodes, name: str = "codes") -> Codec:
        """The model named by --model, else the shipped version with the codes' hash, else the file
        the codes record; `name` (the file's) is what a refusal names."""
        model = self.model if self.model is not None else model_for_codes(codes.meta, name)
        if model not in self._loaded:
            self._loaded[model] = load_codec(model, self.device)
        return self._loaded[model]
