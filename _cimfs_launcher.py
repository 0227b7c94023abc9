"""The ``cimfs`` command's entry point, outside the package on purpose.

Importing ``cimfs_cffi`` loads the compiled module and most of the package, which takes a
noticeable moment; a Ctrl-C in that moment would end in a traceback.  So the signal handlers
are installed here first, and only then is the package imported.  SIGINT ends the command
with exit status 130, SIGTERM with 143, each with one line on stderr; the first signal also
makes the command ignore further ones, so the cleanup it triggers (removing temporary files,
keeping the previous image) runs to its end.  Only the interpreter's own start-up, before this
module runs, is outside their reach.
"""
import signal
import sys

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(SystemExit):
    """Raised by the SIGTERM handler: it unwinds like an interrupt (``finally`` blocks run)."""


def _on_signal(signum, frame):
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)  # one signal is enough: let the cleanup finish
    if signum == signal.SIGTERM:
        raise Terminated(EXIT_SIGTERM)
    raise KeyboardInterrupt


def install() -> None:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def main() -> int:
    install()
    try:
        from cimfs_cffi.cli import main as cli_main
        return cli_main()
    except KeyboardInterrupt:
        print("cimfs: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print("cimfs: terminated", file=sys.stderr)
        return EXIT_SIGTERM


if __name__ == "__main__":
    sys.exit(main())
