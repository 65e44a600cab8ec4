"""Progress: plain lines when stderr is not a terminal (a fake clock drives them), a named bar on a
terminal, nothing with progress=False or --quiet; and the lines in a captured log of a real evaluation."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest

from harness.api.evaluate import evaluate
from harness.errors import UsageError
from harness.progress import (
    INTERVAL_ENV,
    Progress,
    ProgressBar,
    ProgressLines,
    progress_for,
    progress_interval,
    short_reference,
    showing,
)
from tests.conftest import cli_env, harness
from tests.support.cli_runs import assert_clean_error, replay_args, write_gold_replay


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines_for(
    total: int, resumed: int = 0, checkpoint: str = "hf:/models/x"
) -> tuple[ProgressLines, FakeClock, io.StringIO]:
    clock, stream = FakeClock(), io.StringIO()
    lines = ProgressLines(checkpoint, "gsm8k", total, resumed, interval_s=30, clock=clock, stream=stream)
    return lines, clock, stream


def written(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# -- the lines, with a fake clock ------------------------------------------------------------------------


def test_a_line_every_interval_or_every_tenth_whichever_first_then_a_final_line() -> None:
    lines, clock, stream = lines_for(100)
    clock.now = 5
    lines.advance()
    clock.now = 10
    lines.advance(4)
    assert written(stream) == []  # 5% after 10 s: neither is due
    clock.now = 31
    lines.advance()  # 30 s since the start
    clock.now = 40
    lines.advance(4)  # 10%
    clock.now = 45
    lines.advance()
    assert written(stream) == [
        "harness: gsm8k on hf:/models/x: 6/100 samples (6%), 0.19 samples/s, ETA 8m 06s",  # 94 / (6/31)
        "harness: gsm8k on hf:/models/x: 10/100 samples (10%), 0.25 samples/s, ETA 6m 00s",  # 90 / 0.25
    ]
    clock.now = 69
    lines.tick()
    assert lines.due_in() == 1.0 and len(written(stream)) == 2  # 29 s since the last line
    clock.now = 70
    lines.tick()  # no sample finished, but 30 s passed: the timer's line
    assert (
        written(stream)[-1]
        == "harness: gsm8k on hf:/models/x: 11/100 samples (11%), 0.16 samples/s, ETA 9m 26s"
    )
    assert lines.due_in() == 30.0
    clock.now = 100
    lines.advance(89)  # the last samples: the final line says it
    assert len(written(stream)) == 3
    lines.close(finished=True)
    lines.close(finished=True)
    assert written(stream)[3:] == [
        "harness: gsm8k on hf:/models/x: 100/100 samples done in 1m 40s (1.00 samples/s)"
    ]


def test_a_jump_over_several_tenths_is_one_line() -> None:
    lines, clock, stream = lines_for(100)
    clock.now = 1
    lines.advance(35)
    assert written(stream) == ["harness: gsm8k on hf:/models/x: 35/100 samples (35%), 35.0 samples/s, ETA 2s"]


def test_resumed_samples_count_as_done_but_not_in_the_rate() -> None:
    lines, clock, stream = lines_for(10, resumed=4)
    clock.now = 2
    lines.advance()  # 50%: one new sample in 2 s, so 0.5/s and 5 left
    clock.now = 10
    lines.advance(5)
    lines.close(finished=True)
    assert written(stream) == [
        "harness: gsm8k on hf:/models/x: 5/10 samples (50%), 0.50 samples/s, ETA 10s",
        "harness: gsm8k on hf:/models/x: 10/10 samples done in 10s (0.60 samples/s, 4 resumed)",
    ]


def test_a_fully_resumed_run_says_so_and_nothing_finished_yet_has_no_eta() -> None:
    done, _, stream = lines_for(3, resumed=3)
    done.close(finished=True)
    assert written(stream) == ["harness: gsm8k on hf:/models/x: 3/3 samples, all resumed from the run folder"]
    waiting, clock, stream = lines_for(100)
    clock.now = 30
    waiting.tick()
    waiting.close(finished=False)  # a failed run: no final line
    assert written(stream) == [
        "harness: gsm8k on hf:/models/x: 0/100 samples (0%), 0.00 samples/s, ETA unknown"
    ]


def test_long_hours_format() -> None:
    lines, clock, stream = lines_for(1000)
    clock.now = 3600
    lines.advance(100)
    assert written(stream) == [
        "harness: gsm8k on hf:/models/x: 100/1000 samples (10%), 0.03 samples/s, ETA 9h 00m"
    ]


# -- the checkpoint as shown: redacted and short ----------------------------------------------------------


def test_a_url_with_a_password_is_shown_without_it() -> None:
    lines, clock, stream = lines_for(2, checkpoint="http://alice:s3cret@example.com:8000/v1#my-model")
    clock.now = 1
    lines.advance()
    lines.advance()
    lines.close(finished=True)
    text = stream.getvalue()
    assert written(stream) == [
        "harness: gsm8k on http://example.com:8000/v1#my-model: 1/2 samples (50%), 1.00 samples/s, ETA 1s",
        "harness: gsm8k on http://example.com:8000/v1#my-model: 2/2 samples done in 1s (2.00 samples/s)",
    ]
    assert "s3cret" not in text and "alice" not in text


def test_long_references_keep_their_form_and_tail_and_stay_redacted() -> None:
    url = "http://bob:hunter2@inference.a-very-long-hostname.example.org:8000/v1#meta-llama/Llama-3.2-1B?token=zz9"
    assert short_reference(url) == "http:…:8000/v1#meta-llama/Llama-3.2-1B?token=***"
    path = "hf:/home/student/checkpoints/llama-3.2-1b/sft-tulu3-mix/final"
    assert short_reference(path) == "hf:…checkpoints/llama-3.2-1b/sft-tulu3-mix/final"
    assert len(short_reference(url)) == len(short_reference(path)) == 48
    assert short_reference("embedded") == "embedded"


# -- which reporter: bar, lines or nothing; the interval variable ------------------------------------------


def test_a_terminal_gets_a_bar_named_after_suite_and_checkpoint() -> None:
    terminal = FakeTerminal()
    bar = progress_for("http://u:pw@host:1/v1#m", "ifeval", 5, 2, True, stream=terminal)
    assert isinstance(bar, ProgressBar)
    bar.advance()
    bar.close(finished=True)
    out = terminal.getvalue()
    assert "ifeval · http://host:1/v1#m:  40%" in out and "2/5" in out  # drawn at once: the resumed samples
    assert "pw" not in out


def test_elsewhere_lines_at_the_configured_interval_and_nothing_when_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    lines = progress_for("embedded", "ifeval", 5, 0, True, stream=io.StringIO())
    assert isinstance(lines, ProgressLines) and lines.interval_s == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "never")  # not read when progress is off
    assert type(progress_for("embedded", "ifeval", 5, 0, False)) is Progress
    monkeypatch.delenv(INTERVAL_ENV)
    assert progress_interval() == 30.0


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_a_bad_interval_is_a_usage_error_naming_the_variable(value: str) -> None:
    with pytest.raises(UsageError) as error:
        progress_interval({INTERVAL_ENV: value})
    assert error.value.message == (
        f"HARNESS_PROGRESS_INTERVAL='{value}' is not a positive number of seconds. Set it to one "
        "(export HARNESS_PROGRESS_INTERVAL=10), or unset it for a progress line every 30 s."
    )


def test_the_timer_writes_a_line_while_no_sample_finishes_and_only_a_finished_body_gets_the_final_line() -> (
    None
):
    async def run(fail: bool) -> list[str]:
        lines, clock, stream = lines_for(10)
        try:
            async with showing(lines):
                clock.now = 31  # past due: the timer's first wake-up writes a line
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if stream.getvalue():
                        break
                lines.advance(10)
                if fail:
                    raise RuntimeError("generation failed")
        except RuntimeError:
            assert fail
        return written(stream)

    waiting = "harness: gsm8k on hf:/models/x: 0/10 samples (0%), 0.00 samples/s, ETA unknown"
    assert asyncio.run(run(fail=False)) == [
        waiting,
        "harness: gsm8k on hf:/models/x: 10/10 samples done in 31s (0.32 samples/s)",
    ]
    assert asyncio.run(run(fail=True)) == [waiting]


# -- end to end: a captured log, progress=False, --quiet ----------------------------------------------------

PROGRESS_LINE = re.compile(r"^harness: gsm8k on replay:.*: \d+/\d+ samples")


def test_evaluate_writes_progress_lines_to_a_captured_stderr(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    replay = write_gold_replay(data_dir, tmp_path / "gold.jsonl", 5)
    checkpoint = f"replay:{replay}"
    results = evaluate(checkpoint, "gsm8k", limit=5, runs=tmp_path / "runs", data_dir=data_dir)
    assert results["gsm8k"].n_samples == 5
    log = capsys.readouterr().err.splitlines()
    label = f"harness: gsm8k on {short_reference(checkpoint)}: "
    assert all(line.startswith(label) for line in log), log
    counts = [line[len(label) :].split(" samples")[0] for line in log]
    assert counts == [
        "1/5",
        "2/5",
        "3/5",
        "4/5",
        "5/5",
    ]  # every 20% is past a tenth; the last is the final line
    assert re.fullmatch(r"5/5 samples done in \d+s \([\d.]+ samples/s\)", log[-1][len(label) :]), log[-1]

    again = evaluate(checkpoint, "gsm8k", limit=5, runs=tmp_path / "runs", data_dir=data_dir)
    assert again["gsm8k"].invocation.resumed == 5
    assert capsys.readouterr().err.splitlines() == [f"{label}5/5 samples, all resumed from the run folder"]

    silent = evaluate(
        checkpoint, "gsm8k", limit=5, runs=tmp_path / "other", data_dir=data_dir, progress=False
    )
    assert silent["gsm8k"].invocation.generated == 5 and capsys.readouterr().err == ""


def test_a_bad_interval_fails_before_any_run_folder_is_made(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    replay = write_gold_replay(data_dir, tmp_path / "gold.jsonl", 2)
    with pytest.raises(UsageError, match="HARNESS_PROGRESS_INTERVAL='soon'"):
        evaluate(f"replay:{replay}", "gsm8k", limit=2, runs=tmp_path / "runs", data_dir=data_dir)
    assert not list(tmp_path.rglob("manifest.json"))


def test_cli_eval_prints_progress_lines_to_a_pipe_and_none_with_quiet(data_dir: Path, tmp_path: Path) -> None:
    replay = write_gold_replay(data_dir, tmp_path / "gold.jsonl", 3)
    shown = harness("eval", *replay_args(replay, 3, tmp_path / "runs"))
    assert shown.returncode == 0, shown.stderr
    progress = [line for line in shown.stderr.splitlines() if PROGRESS_LINE.match(line)]
    assert len(progress) == 3 and "3/3 samples done in" in progress[-1], shown.stderr
    quiet = harness("eval", "--quiet", *replay_args(replay, 3, tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if PROGRESS_LINE.match(line)], quiet.stderr
    bad = harness("eval", *replay_args(replay, 3, tmp_path / "bad"), env=cli_env(**{INTERVAL_ENV: "0"}))
    assert_clean_error(bad, 2, "HARNESS_PROGRESS_INTERVAL='0' is not a positive number of seconds")
