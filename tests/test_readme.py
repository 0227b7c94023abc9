"""The README's examples run as written: its Python programs (in order, in one fresh folder,
against the installed package), and its set-up command's build step on examples/."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def blocks(language):
    text = open(README, encoding="utf-8").read()
    return re.findall(r"^```%s\n(.*?)^```" % language, text, flags=re.S | re.M)


def test_every_complete_python_example_runs(tmp_path):
    """Blocks that start with an import are programs; the one fragment (bulk links) is not."""
    programs = [b for b in blocks("python") if b.startswith(("import ", "from "))]
    fragments = [b for b in blocks("python") if not b.startswith(("import ", "from "))]
    assert len(programs) == 3 and len(fragments) == 1, "README examples changed: update this test"
    for i, program in enumerate(programs):
        done = subprocess.run([sys.executable, "-c", program], cwd=str(tmp_path), capture_output=True, text=True)
        assert done.returncode == 0, "README Python example %d failed:\n%s\n%s" % (i + 1, program, done.stderr)
    assert {"layer.cim", "layer2.cim", "raw.cim"} <= set(os.listdir(tmp_path / "images"))


def test_the_set_up_command_builds_examples(tmp_path):
    """The set-up line's build and verify, as written (its pip install is run by .ci/run)."""
    setup = blocks("sh")[0].strip()
    assert setup.startswith('pip install ".[fast]" && '), setup
    commands = setup.split(" && ")[1:]
    assert commands == ["cimfs build examples images/examples.cim", "cimfs verify images/examples.cim"]
    os.symlink(os.path.join(ROOT, "examples"), str(tmp_path / "examples"))
    for command in commands:
        argv = command.split()
        done = subprocess.run([sys.executable, "-m", "cimfs_cffi"] + argv[1:], cwd=str(tmp_path),
                              capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
