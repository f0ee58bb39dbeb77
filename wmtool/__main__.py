"""``python -m wmtool``."""

from wmtool.cli import main

main()
