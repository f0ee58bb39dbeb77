"""One module per ``wmtool`` command."""
