"""Models of other projects (EnCodec, DAC) run on rvqtool's own modules, one module per family.

A model is named `KIND:PATH` (e.g. `encodec_24khz:/models/encodec_24khz-d7cc33bc.th`): the
checkpoint is read without unpickling objects (`loader.py`), checked tensor by tensor, and mapped
onto our modules. `rvq convert` writes the same model as our safetensors + JSON, whose config names
the architecture. Each family module offers `load(kind, path)` and `build(config)`; they are
registered in rvqtool/registry.py, which resolves every model name.
"""
