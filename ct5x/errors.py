"""The one exception type the command line turns into a one-line message and exit code 2."""


class UserInputError(Exception):
    """Bad input from the user: a file, line or setting that ct5x cannot use.

    The message is a single line that names the file (and line) or setting at fault; it must never
    contain example text, which may be protected health information.
    """
