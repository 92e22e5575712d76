"""A rich progress bar that the runner's `progress(fraction, message)` callback drives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[float, str], None]]:
    """Yields `update(fraction, message)`; the bar appears on the first update, so errors raised
    while loading inputs print alone, without an empty bar above them."""
    bar = Progress(
        TextColumn("[bold]{task.fields[title]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    task = bar.add_task("", total=1.0, title=title)
    started = False

    def update(fraction: float, message: str) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=fraction, description=message[:60])

    try:
        yield update
        if started:
            bar.update(task, completed=1.0, description="done")
    finally:
        if started:
            bar.stop()
