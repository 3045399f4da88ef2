"""`mriae info` and `--help` start without the heavy libraries (issue 14: start-up under 0.5 s).

Each command runs in a fresh interpreter, which then lists the modules it imported: a test
of what is imported, not of time, so that it fails the same way on a fast or a busy machine.
"""

import json
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "monai", "nibabel", "SimpleITK")
"""Libraries that take seconds (torch, MONAI) or tenths of one (the image readers) to import."""
GOLDEN = REPO / "tests" / "golden" / "v4_mni152_2mm_nifti.mriae"
RUN_AND_LIST_MODULES = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["mriae", *sys.argv[1:]]
from mriae.cli import main
main()
"""


def imported_by(*args: str) -> set[str]:
    """Top-level packages imported by ``mriae ARGS`` (which must succeed)."""
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, *args], capture_output=True, text=True,
                            cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return {name.partition(".")[0] for name in json.loads(line.removeprefix("MODULES "))}


@pytest.mark.parametrize("args", [("info", str(GOLDEN)), ("info", "--json", str(GOLDEN)), ("--help",),
                                  ("compress", "--help"), ("decompress", "--help"), ("evaluate", "--help")])
def test_info_and_help_do_not_import_torch_monai_or_the_image_readers(args):
    assert not imported_by(*args) & set(HEAVY)


@pytest.mark.parametrize("args", [("info", str(GOLDEN)), ("info", "--json", str(GOLDEN)), ("info", str(GOLDEN), "--debug"),
                                  ("--help",), ("compress", "--help"), ("info", "--help")])
def test_info_and_help_skip_typers_slow_paths(args):
    """Typer's parameter coercion imports pydantic and its rich help rich's markdown: each a
    third of the 0.5 s budget. ``mriae info FILE`` is parsed without typer, ``mriae COMMAND
    --help`` rendered without it (typer coerces the group's unset help flag); help is plain."""
    assert not imported_by(*args) & {"pydantic", "markdown_it"}


@pytest.mark.parametrize("command", ["compress", "decompress", "test", "info", "batch", "evaluate", "train"])
def test_a_commands_help_is_the_text_typer_prints(command):
    plain = subprocess.run([sys.executable, "-m", "mriae", command, "--help"], capture_output=True, text=True,
                           cwd=REPO, timeout=120, check=False)
    # --help twice is not the two-word line plain_help renders: typer parses it and prints its help
    through_typer = subprocess.run([sys.executable, "-m", "mriae", command, "--help", "--help"], capture_output=True,
                                   text=True, cwd=REPO, timeout=120, check=False)
    assert (plain.returncode, plain.stderr) == (0, "") and plain.stdout.startswith(f"Usage: mriae {command} [OPTIONS]")
    assert plain.stdout == through_typer.stdout


def test_the_check_sees_torch_when_a_command_needs_it(tmp_path):
    """The listing is real: decompressing imports torch."""
    assert "torch" in imported_by("decompress", str(GOLDEN), "-o", str(tmp_path / "restored.nii.gz"))
