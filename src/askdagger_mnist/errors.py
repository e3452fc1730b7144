"""One exception type for problems a user can fix; CLIs print its message and exit 1."""


class UserError(Exception):
    """An error whose message is one sentence naming the file or key and what to do."""
