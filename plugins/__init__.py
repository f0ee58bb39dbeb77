"""wmtool's built-in plugins, each registered through the ``wmtool`` entry-point group like a third party's."""
