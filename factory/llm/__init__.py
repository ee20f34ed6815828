"""LLM backends for generating stages: the client protocol and request types (`client.py`), the OpenAI-compatible
client (`openai_compat.py`), the in-process transformers client (`local.py`), the on-disk response cache
(`cache.py`) and the backend config (`config.py`). Callers use `make_client(cfg, cache_path)` and nothing else."""
