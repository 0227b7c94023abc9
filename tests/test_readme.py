"""The README's examples run as written: its Python programs (in order, in one fresh folder,
against the installed package), its set-up command's build step on examples/, and the MSIX
section's commands.  .ci/run runs the set-up and test commands themselves, pip included."""
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


def test_the_msix_example_runs_as_written(tmp_path):
    """The MSIX section's commands, on a package whose full name is the example's own (Microsoft's
    publisher gives the ID 8wekyb3d8bbwe); `pip install` is the only line not run."""
    from test_msix import MANIFEST, make_package
    manifest = MANIFEST.replace('Name="Contoso.Tool"', 'Name="MyApp"').replace('Version="2.1.0.0"', 'Version="1.2.0.0"') \
        .replace('Publisher="CN=Contoso"', 'Publisher="CN=Microsoft Corporation, O=Microsoft Corporation, '
                 'L=Redmond, S=Washington, C=US"') % ""
    block = next(b for b in blocks("sh") if "MyApp_1.2.0.0_x64__8wekyb3d8bbwe.msix" in b)
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert lines[0] == "pip install cimfs_cffi"
    package = lines[1].split()[-2]
    make_package(str(tmp_path / package), manifest=manifest)
    outputs = []
    for line in lines[1:]:
        done = subprocess.run([sys.executable, "-m", "cimfs_cffi"] + line.split()[1:], cwd=str(tmp_path),
                              capture_output=True, text=True)
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout)
    expected = block.strip().splitlines()[-1].split("#")[1].strip()  # the comment on the ls line
    assert outputs[-1].strip() == expected.split("\\")[-1]
