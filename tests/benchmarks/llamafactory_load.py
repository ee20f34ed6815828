"""Manual check: LLaMA-Factory's own data loader reads a mix stage's output through its dataset_info.json.

LLaMA-Factory is not a dependency (it pins older transformers and pulls gradio, torchaudio, ...), so this runs
against an unpacked wheel: its audio/video imports are stubbed and its version check is off, neither of which
touches the text path checked here (dataset_info.json -> Parquet folder -> align_dataset).

Setup (once):  pip download llamafactory==0.9.5 --no-deps -d /tmp/lf && unzip -q /tmp/lf/*.whl -d /tmp/lf/src
               pip install --no-deps --target /tmp/lf/deps peft==0.18.1 trl==0.24.0 accelerate==1.11.0 \
                   omegaconf antlr4-python3-runtime==4.9.3
Usage:  DISABLE_VERSION_CHECK=1 PYTHONPATH=/tmp/lf/src:/tmp/lf/deps python tests/benchmarks/llamafactory_load.py RUN_DIR
Prints one JSON line: per dataset of RUN_DIR/mix/dataset_info.json, the rows LLaMA-Factory loaded against the
rows the manifest says were written, and how many came out multi-turn.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

for _name in ("torchaudio", "av", "torchvision", "torchvision.transforms", "torchvision.io"):
    _stub = types.ModuleType(_name)
    _stub.__spec__ = importlib.machinery.ModuleSpec(_name, None)
    sys.modules[_name] = _stub


def main() -> None:
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    mix_dir = Path(sys.argv[1]) / "mix"
    info = json.loads((mix_dir / "dataset_info.json").read_text())
    manifest = json.loads((mix_dir / "manifest.json").read_text())
    out = {"check": "llamafactory_load", "format": manifest["format"], "datasets": {}}
    for name, entry in info.items():
        data_args = DataArguments(dataset_dir=str(mix_dir), dataset=[name], template="default")
        args = (ModelArguments(model_name_or_path="none"), data_args)
        ds = _get_merged_dataset([name], *args, Seq2SeqTrainingArguments(output_dir="/tmp/lf-out"), "sft")
        out["datasets"][name] = {
            "loaded": ds.num_rows,
            "written": manifest["split"][entry["file_name"]],
            "multi_turn": sum(len(p) > 1 for p in ds["_prompt"]),
            "with_system": sum(bool(s) for s in ds["_system"]),
        }
    out["ok"] = all(d["loaded"] == d["written"] for d in out["datasets"].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
