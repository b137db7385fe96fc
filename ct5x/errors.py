"""The exception the command line turns into a one-line message, and every command's exit codes.

Exit codes of `ct5x` and its subcommands:
- EXIT_OK (0): everything asked for was done;
- EXIT_FAILED (1): some of the work failed for a reason other than the input (a training run
  diverged or raised, a run failed in a sweep, a bug while scoring); what could be done was done
  and the failures are named;
- EXIT_BAD_INPUT (2): bad input, a `UserInputError`: a file, line or setting ct5x cannot use.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UserInputError(Exception):
    """Bad input from the user: a file, line or setting that ct5x cannot use.

    The message is a single line that names the file (and line) or setting at fault; it must never
    contain example text, which may be protected health information.
    """
