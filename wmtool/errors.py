"""Errors a user can cause: the CLI shows them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input (path, file, option, key): one clear line, exit code 2."""
