"""The hooks a wmtool plugin may implement. Each hands the plugin a ``register`` callback."""

import pluggy

hookspec = pluggy.HookspecMarker("wmtool")


@hookspec
def register_embedders(register):
    """Register watermark embedders: call ``register(Embedder(...))`` once for each."""


@hookspec
def register_fingerprinters(register):
    """Register fingerprinting methods: call ``register(Fingerprinter(...))`` once for each."""


@hookspec
def register_attacks(register):
    """Register watermark-removal attacks: call ``register(Attack(...))`` once for each."""


@hookspec
def register_verifiers(register):
    """Register ownership verifiers: call ``register(Verifier(...))`` once for each."""


@hookspec
def register_architectures(register):
    """Register model architectures: call ``register(Architecture(...))`` once for each."""


@hookspec
def register_model_formats(register):
    """Register model file or folder formats: call ``register(ModelFormat(...))`` once for each."""


@hookspec
def register_commands(app):
    """Add commands to the ``wmtool`` command line: ``app`` is its typer app (``@app.command()``)."""
