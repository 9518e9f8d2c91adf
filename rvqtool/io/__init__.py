"""Files users keep: audio, code files, model files. Every write is atomic."""
