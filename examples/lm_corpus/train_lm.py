#!/usr/bin/env python3
"""Proof that `rvq tokenize` shards feed a trainer: a small next-token transformer (a GPT: causal
self-attention blocks) trained on the `bin` shards for a few minutes on CPU, printing its loss as
it falls, then sampling tokens from BOS and decoding them to a WAV.

It reads the shards the way a nanoGPT-style loader does: `np.memmap` of each `shard-N.bin` (dtype
from vocab.json), random windows of `--block` tokens; `vocab.json` gives the vocabulary size and
turns the sample back into codes. A large corpus would draw windows shard by shard instead of
concatenating the shards, as done here.

Usage: python examples/lm_corpus/train_lm.py SHARDS_DIR --minutes 3 --out sample.wav
(see run.sh beside this file for the whole pipeline)
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rvqtool import load_codec
from rvqtool.registry import model_for_codes
from rvqtool.tokens.vocab import Vocab


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attention.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size: int, block: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.block = block
        self.tokens, self.positions = nn.Embedding(vocab_size, dim), nn.Embedding(block, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tokens(idx) + self.positions(torch.arange(idx.shape[1], device=idx.device))
        return self.head(self.norm(self.blocks(x)))

    @torch.no_grad()
    def sample(self, start: list[int], count: int, stop: int, temperature: float, top_k: int,
               generator: torch.Generator) -> list[int]:
        out = list(start)
        for _ in range(count):
            logits = self(torch.tensor([out[-self.block:]]))[0, -1] / temperature
            logits[logits < torch.topk(logits, top_k).values[-1]] = -math.inf
            token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            out.append(token)
            if token == stop:
                break
        return out


def load_tokens(shards: Path, vocab: Vocab) -> np.ndarray:
    manifest = json.loads((shards / "manifest.json").read_text())
    if manifest["format_of_shards"] != "bin":
        raise SystemExit(f"{shards}: made with --format {manifest['format_of_shards']}; this example reads bin shards")
    parts = [np.memmap(shards / name, dtype=vocab.dtype, mode="r")
             for s in manifest["shards"] for name in s["files"] if name.endswith(".bin")]
    return np.concatenate(parts).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", type=Path)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample-seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("sample.wav"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    vocab = Vocab.load(args.shards / "vocab.json")
    data = load_tokens(args.shards, vocab)
    split = int(len(data) * 0.95)
    train, held = torch.from_numpy(data[:split]), torch.from_numpy(data[split:])
    print(f"{len(data):,} tokens ({vocab.pattern}, {vocab.n_q} levels, vocabulary {vocab.size}); "
          f"uniform guess = loss {math.log(vocab.size):.2f}")
    model = TinyGPT(vocab.size, args.block, args.dim, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)

    def batch(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(tokens) - args.block - 1, (args.batch,), generator=generator)
        windows = torch.stack([tokens[s:s + args.block + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]

    start, step = time.monotonic(), 0
    while time.monotonic() - start < 60 * args.minutes:
        x, y = batch(train)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 25 == 0 or step == 1:
            with torch.no_grad():
                hx, hy = batch(held) if len(held) > args.block + 1 else (x, y)
                held_loss = F.cross_entropy(model(hx).flatten(0, 1), hy.flatten())
            print(f"step {step:5d}  {time.monotonic() - start:6.0f} s  loss {loss.item():.3f}  "
                  f"held-out {held_loss.item():.3f}", flush=True)

    model.eval()
    frames = int(args.sample_seconds * float(vocab.codes_meta["frame_rate"]))
    count = vocab.document_length(frames) - 1
    tokens = model.sample([vocab.bos_id], count, vocab.eos_id, 1.0, 50, generator)
    np.save(args.out.with_suffix(".npy"), np.array(tokens, dtype=np.int64))
    codes = vocab.to_codes(np.array(tokens), strict=False)   # an LM's sample: read leniently
    codec = load_codec(model_for_codes(codes.meta))   # the shipped version with their hash, else their file
    codec.decode_to_file(codes, args.out)
    print(f"sampled {len(tokens)} tokens = {codes.frames} frames -> {args.out} "
          f"({codes.meta.length / codes.meta.sample_rate:.2f} s); tokens in {args.out.with_suffix('.npy')}")


if __name__ == "__main__":
    main()
