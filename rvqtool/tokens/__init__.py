"""Token corpora for language models: codes laid out as token streams (patterns), a vocabulary
that says how to invert them (vocab), where the audio comes from (sources), shard writers
(shards), and the resumable job that ties them together (pipeline)."""
