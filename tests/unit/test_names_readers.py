"""The shared name rule, the owned-folder marker, and the strict bounded readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import DataError, UsageError
from harness.names import check_name, claim_folder, owns, remove_owned_folder
from harness.readers import iter_jsonl, json_depth_exceeds, parse_json, read_json_object, read_text


@pytest.mark.parametrize("name", ["sft-1", "a", "Team_B.2", "x" * 64, "v1", "a..b"])
def test_valid_names(name: str) -> None:
    assert check_name(name, "checkpoint name") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../victim", "~/victim", "/tmp/x", "a/b", ".hidden", "-x", "x" * 65, "a b", "é", "a\n"],
)
def test_names_that_could_be_paths_or_tricks_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="not allowed") as caught:
        check_name(name, "checkpoint name")
    assert caught.value.fix is not None and "letters, digits" in caught.value.fix


def test_only_folders_the_harness_claimed_are_removed(tmp_path: Path) -> None:
    mine = claim_folder(tmp_path / "sft-1", "training stage", registry="r1")
    (mine / "weights.bin").write_bytes(b"w")
    theirs = tmp_path / "victim"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep")
    with pytest.raises(UsageError, match="left untouched"):
        remove_owned_folder(theirs, "training stage", registry="r1")
    assert (theirs / "precious.txt").read_text() == "keep"
    with pytest.raises(UsageError):  # made by the harness, but for another registry
        remove_owned_folder(mine, "training stage", registry="r2")
    link = tmp_path / "link"
    link.symlink_to(mine)
    assert not owns(link, "training stage", registry="r1")  # a symlink to a claimed folder is not it
    remove_owned_folder(mine, "training stage", registry="r1")
    assert not mine.exists() and theirs.exists()


def test_invalid_utf8_names_the_file_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"samples file .*samples.jsonl line 2 is not valid UTF-8 \(byte 10"):
        list(iter_jsonl(path, "samples file"))
    whole = tmp_path / "policy.yaml"
    whole.write_bytes(b"ok: 1\nbad: \xff\xfe\n")
    with pytest.raises(DataError, match=r"policy.yaml is not valid UTF-8 \(byte 11 of the file"):
        read_text(whole, "gate policy")


def test_deep_nesting_is_a_data_error_not_a_recursion_error(tmp_path: Path) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    assert json_depth_exceeds(deep) and not json_depth_exceeds('["[[[[[[" , {"a": [1]}]')
    with pytest.raises(DataError, match="nests deeper than 200 levels"):
        parse_json(deep, "bundle.json", "bundle description")
    path = tmp_path / "bundle.json"
    path.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    with pytest.raises(DataError, match="nests deeper"):
        read_json_object(path, "bundle description")


def test_size_bound_is_checked_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"x": "' + "a" * 5000 + '"}')
    with pytest.raises(DataError, match="larger than 1,000 bytes"):
        read_json_object(path, "run manifest", max_bytes=1000)
    assert read_json_object(path, "run manifest")["x"] == "a" * 5000
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(DataError, match="is not a JSON object"):
        read_json_object(tmp_path / "list.json", "run manifest")
    with pytest.raises(DataError, match=r"not valid JSON \(line 1 column 2"):
        parse_json("{oops", tmp_path / "m.json", "run manifest")


def test_user_yaml_files_invalid_bytes_are_data_errors_and_bad_syntax_usage_errors(tmp_path: Path) -> None:
    from harness.gating.policy import load_policy
    from training.config import load_stage_config

    policy = tmp_path / "gate.yaml"
    policy.write_bytes(b"default:\n  max_drop: 0.02 # caf\xe9\n")
    with pytest.raises(DataError, match=r"gate policy .*gate.yaml is not valid UTF-8 \(byte 31"):
        load_policy(str(policy))
    policy.write_text("default: [unclosed\n")
    with pytest.raises(UsageError, match="is not valid YAML"):
        load_policy(str(policy))
    config = tmp_path / "stage.yaml"
    config.write_text("a:\n" + "".join("  " * i + "- \n" for i in range(1, 3)) + "[" * 5000)
    with pytest.raises(UsageError, match=r"stage\.yaml"):
        load_stage_config(config)
    config.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match=r"config file .*stage\.yaml is not valid UTF-8"):
        load_stage_config(config)
