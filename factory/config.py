"""The pipeline config: typed sections, validation on load, and error messages that name the key.

Every section is a pydantic model that refuses unknown keys (`Section`). The top-level model is assembled from
the stage sections the caller passes in (`stages.STAGES`), so this module knows no stage by name. Relative paths
in a config are taken relative to the current directory, as a user types them at the project root.

`load_config` turns every problem into a `ConfigError` whose message names the full key path
(`stages.clean.min_tokenz`) and, where a valid key is close, the key meant.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from factory.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


InputFormat = Literal["alpaca", "sharegpt", "messages", "text"]
FileType = Literal["jsonl", "json", "parquet", "csv", "tsv", "hf_disk", "hf"]


class InputSpec(Section):
    """One entry of `inputs:`: where records come from and how to read them."""

    path: str = Field(
        description="A file, a directory or a glob; local, or a URI pyarrow's filesystems read "
        "(s3://bucket/prefix/, gs://..., hdfs://..., file:///...; the driver reads it). Text files may be "
        "compressed (.gz, .zst)."
    )
    format: InputFormat | None = Field(
        default=None,
        description="Record format. Omitted: detected from the first record (the log says which).",
    )
    source: str = Field(
        default="default", description="Source tag written to every record; `mix` groups by it."
    )
    type: FileType | None = Field(
        default=None,
        description="File type. Omitted: from the extension; a directory saved with `datasets.save_to_disk` is "
        "`hf_disk`; `hf` loads a local dataset directory with `datasets.load_dataset`.",
    )
    split: str | None = Field(
        default=None, description="Split to read from a `datasets` dataset (default: train)."
    )
    kind: Literal["chat", "text", "code"] | None = Field(
        default=None,
        description="meta.kind of the records. Omitted: `chat` for chat formats, `text` for `text`.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Rename fields before conversion: {canonical name: name in the file}, e.g. {output: response}.",
    )


class RayConfig(Section):
    """Where `executor: ray` runs (`pip install 'factory[ray]'`)."""

    address: str | None = Field(
        default=None,
        description="A running cluster: `auto` (the one `ray start` made on this machine), `host:6379`, or "
        "`ray://host:10001`. None: a local cluster with `workers` CPUs for this run.",
    )


class IngestConfig(Section):
    """Reading `inputs` into canonical record shards."""

    shard_rows: int = Field(
        default=5_000,
        ge=1,
        description="Records per shard: the unit of work, of parallelism and of resume. 5,000 keeps both cores "
        "busy on small corpora and each Parquet file at a few MB.",
    )
    max_raw_in_detail: int = Field(
        default=2_000, ge=0, description="Characters of a bad line kept in its reject's `detail`."
    )


def build_config_model(stage_sections: dict[str, type[Section]]) -> type[Section]:
    """The top-level config model: run_dir, inputs, executor, workers and one optional section per stage."""
    stage_fields: dict[str, Any] = {"ingest": (IngestConfig, Field(default_factory=IngestConfig))}
    for name, model in stage_sections.items():
        stage_fields[name] = (model, Field(default_factory=model, description=f"The `{name}` stage."))
    stages_model = create_model("StagesConfig", __base__=Section, **stage_fields)
    return create_model(
        "Config",
        __base__=Section,
        run_dir=(
            str,
            Field(
                description="The run directory: one folder per stage; a local path or a URI on an object store "
                "(`s3://bucket/runs/x`, gs://, hdfs://; see Run directory)."
            ),
        ),
        inputs=(
            list[InputSpec],
            Field(
                default_factory=list,
                description="Where records come from (may be empty only when `synth` generates the records "
                "from its own seeds).",
            ),
        ),
        stages=(stages_model, Field(default_factory=stages_model, description="One section per stage.")),
        executor=(
            Literal["local", "ray"],
            Field(default="local", description="Where shards are processed: local processes, or Ray tasks."),
        ),
        ray=(RayConfig, Field(default_factory=RayConfig, description="The Ray cluster (executor: ray).")),
        workers=(int | None, Field(default=None, ge=1, description="Worker processes (default: all cores).")),
    )


def read_yaml_mapping(path: str | Path, needs: str) -> dict:
    """A YAML file holding a mapping; ConfigError naming the file (and line) otherwise. `needs` completes
    "a config must be a mapping with at least ..."."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping with at least {needs}")
    return raw


def load_config(path: str | Path, stage_sections: dict[str, type[Section]]) -> Section:
    """Read and validate a YAML config; any problem is a ConfigError naming the file and the key."""
    raw = read_yaml_mapping(path, "`run_dir` and `inputs`")
    return validate_config(raw, stage_sections, origin=str(path))


def validate_config(raw: dict, stage_sections: dict[str, type[Section]], origin: str = "config") -> Section:
    model = build_config_model(stage_sections)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_error(exc, model)}") from None


def describe_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: `key.path: message (did you mean ...?)`."""
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _field_names_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f" (did you mean `{'.'.join([*map(str, loc[:-1]), close[0]])}`?)" if close else ""
            lines.append(f"unknown key `{key}`{hint}")
        elif err["type"] == "missing":
            lines.append(f"missing required key `{key}`")
        else:
            value = err.get("input")
            shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
            lines.append(f"`{key}`: {err['msg']} (got {shown})")
    return "; ".join(lines)


def _field_names_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys a model accepts at a location, following nested models and list indices."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = _model_of(field.annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as `list[InputSpec]` or `Foo | None`."""
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def config_hash(section: BaseModel, exclude: set[str] | dict | None = None) -> str:
    """A short stable hash of the fields of a section that affect results (`exclude`: fields that do not, as
    pydantic's `model_dump` takes them: a set of names, or a dict for nested sections)."""
    data = section.model_dump(mode="json", exclude=exclude or set())
    return hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


def reference_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, description) for every leaf field of a model, nested sections flattened."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _model_of(field.annotation)
        if sub is not None and not str(field.annotation).startswith("list"):
            rows.extend(reference_rows(sub, f"{path}."))
            continue
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = f"`{json.dumps(value, default=str)}`"
        rows.append((path, default, (field.description or "").replace("|", "\\|").replace("\n", " ")))
    return rows


def reference_markdown(stage_sections: dict[str, type[Section]]) -> str:
    """The config reference table the README carries (tests keep the two equal)."""
    return key_table(build_config_model(stage_sections))


def key_table(model: type[BaseModel]) -> str:
    """A Markdown table of a config model's keys: key path, default, meaning (the README's reference tables)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | {d} | {m} |" for k, d, m in reference_rows(model)]
    return "\n".join(lines)


def load_model_config(path: str | Path, model: type[BaseModel], needs: str) -> Any:
    """Read and validate a YAML config of `model` (factory train, factory eval); any problem is a ConfigError
    naming the file and the key. `needs` completes "a config must be a mapping with at least ..."."""
    raw = read_yaml_mapping(path, needs)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_error(exc, model)}") from None
