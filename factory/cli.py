"""The `factory` command: parses arguments, loads the config, runs, and maps every outcome to an exit code.

Exit codes: 0 done; 2 user error (bad config key or value, bad input file, unknown stage, bad record under
--strict); 1 internal error; 130 interrupted. A user error prints one line and no traceback; `--debug` shows
tracebacks for internal errors.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial

from rich.markup import escape

from factory.errors import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
factory: a staged, resumable, auditable SFT dataset factory.

Each stage reads the Parquet shards of the stage before it and writes its own shards, its rejects (every removed
record with a reason and evidence) and a manifest to RUN_DIR/<stage>/. A finished stage is skipped on re-run; a
run that was cut off resumes at the shard where it stopped.
"""

EPILOG = """\
exit codes:
  0    done
  1    internal error (a bug: please report it with the output of --debug)
  2    user error: bad config key or value, bad input file, unknown stage, bad record under --strict
  130  interrupted (Ctrl-C); run the same command again to resume
"""

STAGES_HELP = """\
stages (run in the order given; `ingest` always runs first, implicitly):
  ingest   read `inputs` (JSONL, JSON, CSV/TSV, Parquet, `datasets` folders) into canonical records
  clean    normalise text and drop low-quality records (too short/long, empty, echoed, repetitive,
           symbol soup, refusals, truncated, needs an image/audio/file/URL), scrub PII, check code parses
  dedup    remove exact repeats and MinHash-LSH near duplicates (code compared by syntax tokens); every
           removed record names the record kept instead and the similarity
  decontam remove records that hold benchmark items (HumanEval, MBPP, GSM8K, MMLU by default; any other by
           path): word 13-gram and code-token overlap, numbers and identifiers normalised; every removed
           record names the benchmark item, the score and the matched passages (see `factory audit`)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run pipeline stages over a config's inputs",
        description="Run the named stages in order over the config's inputs.\n\n" + STAGES_HELP,
        epilog="example:\n  factory run clean -c configs/demo.yaml\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("stages", nargs="+", metavar="STAGE", help="stages to run, in order")
    run.add_argument("-c", "--config", required=True, help="YAML config (run_dir, inputs, stages.<name>)")
    run.add_argument("--run-dir", help="override the config's run_dir")
    run.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="redo STAGE even if it is up to date (repeatable)",
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="make any bad input record fatal (exit 2, naming its file:line) instead of a reject",
    )
    run.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: all cores; 1 runs in-process)"
    )
    run.add_argument(
        "--executor", choices=["local", "ray"], help="where shards run (default: the config's, local)"
    )
    _add_report_parser(sub)
    _add_audit_parser(sub)
    _add_train_parser(sub)
    _add_eval_parser(sub)
    return parser


TRAIN_HELP = """\
Fine-tune a base model on a dataset with LoRA/QLoRA (trl SFTTrainer + peft; needs the `train` extra). Reads a
mix output folder (train/ and validation/) or Parquet/JSONL in ShareGPT, Alpaca or messages format; the loss is on
assistant tokens only. Writes the adapter, tokenizer, train_config.json, metrics.json and trainer_log.jsonl to
the config's output_dir, and resumes from its last checkpoint when run again. Recipes: configs/train/.
"""


def _add_train_parser(sub) -> None:
    train = sub.add_parser(
        "train",
        help="fine-tune a model on a dataset (LoRA/QLoRA SFT)",
        description=TRAIN_HELP,
        epilog="example:\n  factory train -c configs/train/lora-cpu-tiny.yaml\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "-c", "--config", required=True, help="YAML train recipe (model, data, output_dir, ...)"
    )
    train.add_argument(
        "--merge", action="store_true", help="also write the merged model to OUTPUT_DIR/merged"
    )


EVAL_HELP = """\
Score a model, or a base model + the adapter `factory train` wrote, on HumanEval and MBPP (pass@k: every
completion runs against the benchmark's tests in a sandbox: its own process and temporary folder, CPU, memory,
file-size and process limits, a timeout, an empty environment and, where the machine allows, no network), GSM8K
(the final number) and MMLU (the answer letter). Generates with transformers in-process or through an
OpenAI-compatible endpoint (answers cached in OUTPUT_DIR/_cache, so a re-run asks nothing twice), or scores a
file of completions in human-eval's samples format (--completions). Writes OUTPUT_DIR/results.json (scores with
95% intervals, per-task outcomes, model and adapter fingerprints) and completions.jsonl, and prints a table. When
the training run's decontam stage found items of a benchmark in the data, the result carries that warning.
"""

EVAL_EXAMPLES = """\
examples:
  factory eval -c configs/eval/adapter.yaml                   # the trained adapter on all four benchmarks
  factory eval -c configs/eval/adapter.yaml --limit 20        # a quick look: 20 tasks per benchmark
  factory eval -c configs/eval/endpoint.yaml                  # a model served by vLLM / Ollama / OpenAI
  factory eval -c configs/eval/adapter.yaml --completions samples.jsonl   # score answers made elsewhere
"""


def _add_eval_parser(sub) -> None:
    ev = sub.add_parser(
        "eval",
        help="score a model or adapter: pass@k on HumanEval/MBPP in a sandbox, GSM8K/MMLU accuracy",
        description=EVAL_HELP,
        epilog=EVAL_EXAMPLES + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument(
        "-c", "--config", required=True, help="YAML eval config (model, benchmarks, output_dir, ...)"
    )
    ev.add_argument(
        "--completions",
        metavar="FILE",
        help="score this JSONL of {task_id, completion} (human-eval's samples format) instead of generating",
    )
    ev.add_argument("--limit", type=int, metavar="N", help="only the first N tasks of each benchmark")
    ev.add_argument("--output-dir", metavar="DIR", help="override the config's output_dir")


REPORT_HELP = """\
Write the data-quality report of RUN_DIR to RUN_DIR/report/: index.html (one self-contained page: no
network needed to view it) and summary.json (the same figures), and print a summary. Read with duckdb straight
from the run's shards, rejects and manifests:
  funnel            records in, out and rejected per stage; unfinished and missing stages named
  rejects           per stage and reason, with the first few examples (record text and detail)
  lengths           instruction (user) and response (assistant) tokens, before (ingest) and after (the last
                    stage before mix), and user turns per conversation
  sources           the mixture by source before and after, and mix's planned and achieved mixture
  stage figures     dedup cluster sizes, PII entities by type, contamination per benchmark, synth requests,
                    cache hits and tokens, mix format, splits and copies (for the stages that ran)
--json prints summary.json's content instead of the summary. Works on a partial run.
"""

REPORT_EXAMPLES = """\
examples:
  factory report runs/demo                      # writes runs/demo/report/index.html, prints the summary
  factory report runs/demo --json | jq '.rejects[] | {stage, reason, records}'
"""


def _add_report_parser(sub) -> None:
    report = sub.add_parser(
        "report",
        help="write RUN_DIR/report/index.html and summary.json: funnel, rejects, lengths, sources",
        description=REPORT_HELP,
        epilog=REPORT_EXAMPLES + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (any stages done so far)")
    report.add_argument("--json", action="store_true", help="print the summary as one JSON document")


AUDIT_HELP = """\
Show what the decontam stage of RUN_DIR removed and why, read from RUN_DIR/decontam/ (its manifest and the
rejects with reason `contaminated`). Three views:
  (default)         per benchmark: items in it, items found in the training data, records removed, totals
  --benchmark NAME  the items of NAME that were hit: records hitting each, best score, method, record ids
  --item ID         each record that hit item ID, its text beside the item's text with the matched spans
                    highlighted (a window of context around them; --full shows the whole texts)
--json prints the chosen view as one JSON document instead of tables; --csv FILE also writes its rows as CSV
(summary: one row per benchmark; --benchmark: one per item hit; --item: one per record).
"""

AUDIT_EXAMPLES = """\
examples:
  factory audit runs/demo                                    # summary per benchmark
  factory audit runs/demo --benchmark gsm8k                  # the gsm8k items found in the training data
  factory audit runs/demo --item gsm8k/test/17               # record text beside the item text
  factory audit runs/demo --benchmark gsm8k --csv hits.csv   # the items hit, as CSV
  factory audit runs/demo --item gsm8k/test/17 --json | jq '.rows[].spans'
"""


def _add_audit_parser(sub) -> None:
    audit = sub.add_parser(
        "audit",
        help="show what decontam removed: per benchmark, per item, record beside benchmark item",
        description=AUDIT_HELP,
        epilog=AUDIT_EXAMPLES + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("run_dir", metavar="RUN_DIR", help="a run directory with a finished decontam stage")
    audit.add_argument("--benchmark", metavar="NAME", help="list the items of benchmark NAME that were hit")
    audit.add_argument(
        "--item", metavar="ID", help="show each record that hit item ID beside the item (e.g. gsm8k/test/17)"
    )
    audit.add_argument("--json", action="store_true", help="print the view as one JSON document")
    audit.add_argument("--csv", metavar="FILE", help="also write the view's rows to FILE as CSV")
    audit.add_argument("--full", action="store_true", help="with --item: show whole texts, not a window")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER
    from factory.log import setup_console

    console = setup_console(args.debug)
    log = logging.getLogger("factory")
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "report":
            return _report(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args, console)
        return EXIT_USER
    except UserError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        log.debug("user error", exc_info=True)
        return EXIT_USER
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: run the same command again to resume")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug:
            console.print_exception()
        else:
            console.print(
                f"[red]internal error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
        return EXIT_INTERNAL


def _report(args: argparse.Namespace) -> int:
    from factory.report import report

    report(args.run_dir, as_json=args.json)
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from factory.audit import audit

    audit(args.run_dir, args.benchmark, args.item, as_json=args.json, csv_path=args.csv, full=args.full)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from trainers.config import load_train_config
    from trainers.sft import train

    train(load_train_config(args.config), merge=args.merge)
    return EXIT_OK


def _eval(args: argparse.Namespace, console) -> int:
    from evals.config import load_eval_config
    from evals.run import evaluate

    cfg = load_eval_config(args.config)
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be at least 1")
        cfg.limit = args.limit
    if args.output_dir:
        cfg.output_dir = args.output_dir
    evaluate(cfg, completions=args.completions, console=console)
    return EXIT_OK


def _run(args: argparse.Namespace, console) -> int:
    from factory import runner
    from factory.config import load_config
    from factory.executors.local import default_workers
    from factory.log import add_run_log, close_run_log, sync_run_log
    from stages import STAGES

    cfg = load_config(args.config, {name: cls.Config for name, cls in STAGES.items()})
    if args.run_dir:
        cfg.run_dir = args.run_dir
    executor = args.executor or cfg.executor
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    runner.plan(args.stages, STAGES)  # refuse unknown stages before touching the run directory
    workers = args.workers or cfg.workers or default_workers()
    run_dir = runner.prepare_run_dir(cfg.run_dir)
    handler = add_run_log(run_dir)
    try:
        sync = partial(sync_run_log, handler, run_dir)
        return _run_stages(args, cfg, run_dir, executor, workers, console, sync)
    finally:
        close_run_log(handler, run_dir)


def _run_stages(
    args: argparse.Namespace, cfg, run_dir, executor: str, workers: int, console, after_stage
) -> int:
    from factory import runner
    from stages import STAGES

    log = logging.getLogger("factory")
    where = f"ray {cfg.ray.address or 'local cluster'}" if executor == "ray" else f"{workers} workers"
    log.info("run %s -> %s (%s)", " ".join(args.stages), run_dir, where)
    # A stage may ask ingest to scrub records, and the raw text of bad lines, as they enter the run directory
    # (clean's PII settings), so that no raw PII is ever written.
    redactors = [
        r
        for name, cls in STAGES.items()
        if hasattr(cls, "ingest_redactor") and (r := cls.ingest_redactor(getattr(cfg.stages, name)))
    ]
    opts = runner.RunOptions(
        force=frozenset(args.force),
        strict=args.strict,
        workers=workers,
        console=console,
        redact=redactors[0] if redactors else None,
        executor=executor,
        ray_address=cfg.ray.address,
        after_stage=after_stage,
    )
    runner.run(cfg, args.stages, STAGES, opts)
    return EXIT_OK
