"""Reading a token directory back: find a document (by index or id) and load its tokens from
whichever shard format holds it. What `rvq detokenize` and the tests use."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from rvqtool.errors import UserError
from rvqtool.tokens import shards
from rvqtool.tokens.vocab import load_vocab


class TokenDir:
    def __init__(self, path: Path, tokenizer=None):
        """`tokenizer`: a preset corpus's own tokenizer.json, where its ids map back through it."""
        self.path = Path(path)
        if not (self.path / "manifest.json").is_file():
            raise UserError(f"{self.path}: no manifest.json (not a finished token directory; "
                            "run the same rvq tokenize command again to finish it)")
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
            self.format = self.manifest["format_of_shards"]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise UserError(f"{self.path / 'manifest.json'}: not a token manifest ({exc})")
        self.vocab = load_vocab(self.path / "vocab.json", tokenizer)

    def documents(self) -> list[dict]:
        try:
            with open(self.path / "documents.jsonl", encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except (ValueError, OSError) as exc:
            raise UserError(f"{self.path / 'documents.jsonl'}: unreadable ({exc})")

    def find(self, doc: int | None = None, doc_id: str | None = None) -> dict:
        docs = self.documents()
        if doc is not None:
            if not 0 <= doc < len(docs):
                raise UserError(f"--doc {doc}: this directory holds documents 0 to {len(docs) - 1}")
            return docs[doc]
        match = next((d for d in docs if d["id"] == doc_id), None)
        if match is None:
            raise UserError(f"--id {doc_id}: no document with this id")
        return match

    def tokens(self, entry: dict) -> np.ndarray:
        """The document's tokens, read from its shard."""
        name = shards.shard_name(entry["shard"])
        if self.format == "bin":
            index = self.path / (name + ".idx")
            dtype = shards.read_megatron_index(index)[0] if index.exists() else self.vocab.dtype
            data = np.memmap(self.path / (name + ".bin"), dtype=dtype.newbyteorder("<"), mode="r")
            return np.array(data[entry["offset"]: entry["offset"] + entry["n_tokens"]])
        if self.format == "jsonl":
            with open(self.path / (name + ".jsonl"), encoding="utf-8") as f:
                for position, line in enumerate(f):
                    if position == entry["position"]:
                        return np.array(json.loads(line)["tokens"], dtype=self.vocab.dtype)
        if self.format == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(self.path / (name + ".parquet"), columns=["tokens"])
            return np.array(table.column("tokens")[entry["position"]].as_py(), dtype=self.vocab.dtype)
        if self.format == "wds":
            with tarfile.open(self.path / (name + ".tar")) as tar:
                member = tar.extractfile(f"{entry['shard']:05d}-{entry['position']:06d}.npy")
                return np.load(io.BytesIO(member.read()))
        raise UserError(f"{self.path}: shard {name} not found")
