"""Logging: a `rich` console on stderr for people, a plain `RUN_DIR/factory.log` that keeps every run's story, and
the one progress bar style of long work."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from factory import store
from factory.shards import RunPath

LOGGER = "factory"


def setup_console(debug: bool = False) -> Console:
    console = Console(stderr=True)
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    handler = _ConsoleHandler(console)
    handler.setFormatter(_ConsoleFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    return console


class _ConsoleHandler(logging.Handler):
    """Print through the rich console, so lines land above a live progress bar, unwrapped, with no markup."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def add_run_log(run_dir: RunPath) -> logging.Handler:
    """Append this run's log lines to RUN_DIR/factory.log. A run directory on an object store (where nothing can
    be appended to) gets them in a local copy (`store.local_dir`), fetched first and uploaded by `sync_run_log`."""
    local = store.local_dir(run_dir, "factory.log")
    local.parent.mkdir(parents=True, exist_ok=True)
    remote = run_dir / "factory.log"
    if isinstance(remote, store.StorePath) and not local.exists():
        try:
            local.write_bytes(remote.read_bytes())
        except FileNotFoundError:
            pass
    handler = logging.FileHandler(local, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger(LOGGER).addHandler(handler)
    return handler


def sync_run_log(handler: logging.Handler, run_dir: RunPath) -> None:
    """Upload the log's local copy when the run directory is on a store (after each stage, and at the end, so a
    driver killed mid-run leaves the store's log at most one stage behind)."""
    if isinstance(run_dir, store.StorePath):
        handler.flush()
        (run_dir / "factory.log").write_bytes(store.local_dir(run_dir, "factory.log").read_bytes())


def close_run_log(handler: logging.Handler, run_dir: RunPath) -> None:
    """Stop writing the run's log; upload it when the run directory is on a store."""
    logging.getLogger(LOGGER).removeHandler(handler)
    handler.close()
    sync_run_log(handler, run_dir)


def progress_bar(console: Console | None, *extra: ProgressColumn) -> Progress:
    """The one progress bar style: spinner, description, bar, done/total, `extra` columns, elapsed. Shown only on
    a terminal, and gone when finished (the log line that follows says what happened)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=console is None or not console.is_terminal,
    )
