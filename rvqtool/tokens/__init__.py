"""Token corpora for language models: codes laid out as token streams (patterns), a vocabulary
that says how to invert them (vocab), where the audio comes from (sources), shard writers
(shards), and the resumable job that ties them together, stage by stage: plan, jobdir (the
output directory), run (the write loop and manifest), engines (who encodes). `tokenize` and
`export` (api) make every choice the CLI makes."""
from rvqtool.tokens.api import RunOptions, export, tokenize
from rvqtool.tokens.plan import TokenOptions
from rvqtool.tokens.run import Summary

__all__ = ["RunOptions", "Summary", "TokenOptions", "export", "tokenize"]
