"""`factory train`: the SFT trainer (config.py: the recipe; data.py: files to masked tokens; sft.py: trl + peft)."""
