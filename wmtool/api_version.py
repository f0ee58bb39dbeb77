"""The plugin API's version: a plugin module may declare ``WMTOOL_API_VERSION``; a different one is not loaded."""

API_VERSION = 1
