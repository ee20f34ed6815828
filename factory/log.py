"""Logging: a `rich` console on stderr for people, a plain `RUN_DIR/factory.log` that keeps every run's story, and
the one progress bar style of long work."""

from __future__ import annotations

import logging
from pathlib import Path

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


def add_run_log(run_dir: Path) -> logging.Handler:
    """Append this run's log lines to RUN_DIR/factory.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "factory.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger(LOGGER).addHandler(handler)
    return handler


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
