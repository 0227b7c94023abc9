"""Which cimfs_cffi a benchmark times: this checkout, or another installation.

A ``python -m``/``-c`` command puts its working directory first on
``sys.path``, so a "baseline" interpreter started from the repository's root
imports this checkout, not its own installed package: it then times the
checkout twice.  The benchmarks therefore run every command from a scratch
directory, give the checkout's commands ``PYTHONPATH`` = the repository, give
a baseline's none, and check that the two import different packages.
"""
import os
import subprocess
import sys
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_env() -> Dict[str, str]:
    """The environment that makes an interpreter import this checkout's package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def installed_env() -> Dict[str, str]:
    """The environment that leaves an interpreter with its own installed package."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def cimfs_command(python: str, args: List[str], baseline: bool = False) -> List[str]:
    """``cimfs ARGS`` under ``python``; a failed build exits non-zero (it must fail the benchmark, not be
    timed as a fast one).  The checkout runs through its launcher, a baseline through ``-m cimfs_cffi``
    (releases before the launcher lack it)."""
    if baseline:
        return [python, "-m", "cimfs_cffi"] + args
    return [python, "-c", "import sys, _cimfs_launcher; sys.exit(_cimfs_launcher.main())"] + args


def package_file(python: str, env: Dict[str, str], cwd: str) -> str:
    return subprocess.run([python, "-c", "import cimfs_cffi; print(cimfs_cffi.__file__)"], env=env, cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def check_baseline(baseline_python: Optional[str], cwd: str) -> None:
    """Prints which package each side imports; stops if a baseline would time this checkout again."""
    ours = package_file(sys.executable, checkout_env(), cwd)
    print("cimfs build: %s" % ours)
    if baseline_python:
        theirs = package_file(baseline_python, installed_env(), cwd)
        print("baseline:    %s" % theirs)
        if os.path.realpath(theirs) == os.path.realpath(ours):
            raise SystemExit("the baseline interpreter imports this checkout too; give one whose own "
                             "installation is the version to compare against")
