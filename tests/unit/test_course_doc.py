"""docs/course.md only shows commands that exist: every `harness ...` line of its shell blocks parses with
the real argument parser, and every YAML block is a stage config the trainer accepts."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from harness.cli import build_parser
from tests.conftest import ROOT

DOC = ROOT / "docs" / "course.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def harness_lines() -> list[str]:
    return [
        line.strip()
        for block in blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith("harness ")
    ]


def test_the_course_shows_every_step() -> None:
    lines = harness_lines()
    assert len(lines) >= 15, "the walkthrough lost its commands"
    joined = "\n".join(lines)
    for step in ("harness eval", "harness train sft", "harness train dpo", "harness gate", "harness report",
                 "harness leaderboard build", "harness leaderboard submit", "harness doctor"):  # fmt: skip
        assert step in joined, step
    assert "harness leaderboard submit sft:latest dpo:latest --team T --runs runs" in joined


@pytest.mark.parametrize("line", harness_lines())
def test_every_command_line_parses(line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]  # `# ...` after a command is a comment, as in the shell
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as error:  # argparse's verdict on an unknown flag or a missing argument
        pytest.fail(f"`{line}` does not parse (exit {error.code})")
    assert callable(args.func)


@pytest.mark.parametrize("block", blocks("yaml"))
def test_every_stage_config_is_accepted(block: str) -> None:
    from training.config import parse_stage_config

    mapping = yaml.safe_load(block)
    config = parse_stage_config(mapping, "docs/course.md")
    assert config.eval.limit == 200  # the course never evaluates full suites after every stage
