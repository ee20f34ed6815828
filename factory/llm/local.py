"""The transformers backend: a local model folder run in-process, prompts batched through `generate`.

The folder is loaded with `local_files_only=True` (nothing is downloaded). Each prompt is the tokenizer's chat
template with the generation prompt appended; prompts are padded on the left, so every row of a batch ends where
its generation starts. Requests are grouped by their sampling parameters (one `generate` call takes one set) and,
within a group, sorted by prompt length so that a batch pads little; results still come back in request order.
`n` choices are `num_return_sequences` (a greedy request, temperature 0, decodes once and repeats the text).
Only the new tokens are decoded; a choice ends at the first EOS token or `stop` string, which is cut from the
text, as OpenAI does. A row stops generating once its last new tokens decode to text holding a stop string
(`_stop_strings`, a stopping criterion that decodes a short tail of each row per step: transformers' own
`stop_strings` needs tokenizer internals that not every tokenizer has), so a rambling model does not run on to
max_tokens. Prompt tokens count once per request, completion tokens per choice, every generated token included.
A plain-text completion request (`ChatRequest.completion`, for base models) is tokenised as is, with the
tokenizer's special tokens (BOS), and no chat template.

`factory eval` also passes a LoRA `adapter` folder (merged into the base after loading; its saved tokenizer is
used when there is one, with the embeddings resized to it), a `chat_template` to use instead of the tokenizer's
(or a `fallback_template` for a tokenizer without one), and a `model_key` for the cache (content hashes of the
model and adapter, so a retrained adapter at the same path never reuses old answers).

A batch is seeded with `torch.manual_seed(seed of its first request)`, so a run is reproducible for the same
requests and `batch_size`, though one request's sample depends on the batch it landed in. The cache key does not
know this: a cached answer is reused whatever batch it came from, which is what resuming wants.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

from factory.errors import UserError
from factory.llm.cache import ResponseCache
from factory.llm.client import BaseClient, ChatRequest, ChatResult, defaults_of
from factory.llm.config import BackendConfig

log = logging.getLogger("factory")


class TransformersClient(BaseClient):
    def __init__(
        self,
        cfg: BackendConfig,
        cache: ResponseCache | None,
        adapter: Path | None = None,
        chat_template: str | None = None,
        model_key: str | None = None,
        fallback_template: str | None = None,
    ) -> None:
        folder = Path(cfg.model)
        if not (folder / "config.json").is_file():
            raise UserError(
                f"backend.model: {cfg.model} is not a local model folder (no config.json); the transformers "
                "backend loads a folder written by save_pretrained and never downloads"
            )
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise UserError(
                "backend.kind transformers needs torch and transformers (pip install -e '.[embed]')"
            ) from None
        super().__init__(model_key or str(cfg.model), defaults_of(cfg), cache)
        self.cfg = cfg
        self._torch = torch
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise UserError("backend.device: cuda asked for, but torch sees no CUDA device")
        self.device = "cuda" if use_cuda else "cpu"
        own_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").is_file()
        self.tokenizer = AutoTokenizer.from_pretrained(
            adapter if own_tokenizer else folder, local_files_only=True
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if chat_template:
            self.tokenizer.chat_template = chat_template
        elif not getattr(self.tokenizer, "chat_template", None) and fallback_template:
            self.tokenizer.chat_template = fallback_template
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"backend.model: the tokenizer in {cfg.model} has no chat template")
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype="auto" if use_cuda else torch.float32
        )
        if adapter is not None:
            model = _with_adapter(model, adapter, len(self.tokenizer))
        self.model_obj = model.to(self.device)
        self.model_obj.eval()
        eos = self.model_obj.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._end = self._eos | {self.tokenizer.pad_token_id}  # a row stopped early is padded after its end

    def _prompt(self, request: ChatRequest) -> str:
        """The text the model continues: a completion request's own, else the chat template's rendering."""
        if request.raw_prompt is not None:
            return request.raw_prompt
        messages = [{"role": role, "content": content} for role, content in request.messages]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        # a chat template writes its own special tokens (BOS); a plain prompt gets the tokenizer's
        special = request.raw_prompt is not None
        return self.tokenizer(self._prompt(request), add_special_tokens=special)["input_ids"]

    def _run(self, todo: list[tuple[str, ChatRequest]], deliver: Callable[[ChatResult], None]) -> None:
        groups: dict[str, list[tuple[str, ChatRequest, list[int]]]] = {}
        for key, request in todo:
            params = request.effective_params(self.defaults)
            ids = self._prompt_ids(request)
            shared = {k: v for k, v in params.items() if k != "seed"}
            groups.setdefault(repr((sorted(shared.items()), request.n)), []).append((key, request, ids))
        for items in groups.values():
            items.sort(key=lambda item: len(item[2]))
            for start in range(0, len(items), self.cfg.batch_size):
                for result in self._generate(items[start : start + self.cfg.batch_size]):
                    deliver(result)

    def _generate(self, batch: list[tuple[str, ChatRequest, list[int]]]) -> list[ChatResult]:
        torch = self._torch
        request = batch[0][1]
        params = request.effective_params(self.defaults)
        n = request.n
        sample = params.get("temperature", 0) > 0
        if params.get("seed") is not None:
            torch.manual_seed(params["seed"])
        inputs = self.tokenizer.pad({"input_ids": [ids for _, _, ids in batch]}, return_tensors="pt").to(
            self.device
        )
        kwargs = {
            "max_new_tokens": params.get("max_tokens", 1024),
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs |= {
                "do_sample": True,
                "temperature": params["temperature"],
                "top_p": params.get("top_p", 1.0),
            }
            kwargs["num_return_sequences"] = n
        else:
            kwargs["do_sample"] = False
        stop = [s for s in params.get("stop") or [] if s]  # an empty stop string would end every row at once
        if stop:
            kwargs["stopping_criteria"] = _stop_strings(self.tokenizer, stop, inputs["input_ids"].shape[1])
        self._requests += len(batch)
        with torch.inference_mode():
            out = self.model_obj.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        per_request = n if sample else 1
        results = []
        for b, (key, _, ids) in enumerate(batch):
            texts, reasons, completion_tokens = [], [], 0
            for row in new[b * per_request : (b + 1) * per_request]:
                text, reason, used = self._decode(row, stop)
                texts.append(text)
                reasons.append(reason)
                completion_tokens += used
            if not sample:
                texts, reasons, completion_tokens = texts * n, reasons * n, completion_tokens * n
            results.append(
                ChatResult(
                    key,
                    texts,
                    prompt_tokens=len(ids),
                    completion_tokens=completion_tokens,
                    finish_reasons=reasons,
                )
            )
        return results

    def _decode(self, row: list[int], stop: list[str]) -> tuple[str, str, int]:
        """(text, finish reason, tokens generated) of one sequence of new tokens."""
        end = next((i for i, t in enumerate(row) if t in self._end), None)
        used = row if end is None else row[: end + 1]
        text = self.tokenizer.decode(row[:end] if end is not None else row, skip_special_tokens=True)
        reason = "length" if end is None else "stop"
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            text, reason = text[: min(cuts)], "stop"
        return text, reason, len(used)


def _stop_strings(tokenizer, stop: list[str], start: int):
    """A stopping criterion that ends each row whose new tokens (after position `start`) end in text holding a stop
    string: it decodes the last few tokens of every row per step (a token is at least a character, so a tail of
    the longest stop's length plus a margin always holds a stop string that has just been completed)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = max(len(s) for s in stop) + 8

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = input_ids[:, start:][:, -window:].tolist()
            texts = tokenizer.batch_decode(tails, skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopStrings()])


def _with_adapter(model, adapter: Path, vocab: int):
    """The base with a LoRA adapter merged in (plain weights generate faster than a PeftModel)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise UserError("adapter: loading an adapter needs peft (pip install -e '.[train]')") from None
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(
            f"adapter: {adapter} has no adapter_config.json (give the output_dir of factory train)"
        )
    if vocab > model.get_input_embeddings().num_embeddings:  # the trainer added template markers as tokens
        model.resize_token_embeddings(vocab)
    with warnings.catch_warnings():  # peft calls a transformers method that warns it is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
