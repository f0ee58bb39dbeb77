"""The click package typer runs on: vendored as ``typer._click`` since typer 0.28, a dependency before."""

try:
    from typer import _click as click
except ImportError:  # typer < 0.28
    import click  # type: ignore[no-redef]

__all__ = ["click"]
