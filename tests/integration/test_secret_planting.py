"""Secrets planted in every input channel never reach anything the harness writes or prints.

Channels: URL userinfo (user:password -> Basic, a lone token -> Bearer), the variable named by
`?api_key_env=VAR`, the variable named by `--api-key-env VAR`, a wrong password (an error path), an invalid
reference, a training config's `base:` and `--base`, a gate policy file and gate references, a registry
entry (`harness checkpoints add`). Every server REQUIRES its credentials (401 otherwise), so the runs also
prove that they are sent. Then everything written is searched, as bytes: the runs folder (manifests, samples,
metrics, the SQLite response cache, folder and file names), reports (md + html), the leaderboard site
(pages, data files, file names), the submission bundle (entry names, bundle.json, every entry's bytes), gate
outputs, and stdout/stderr of every command.
"""

from __future__ import annotations

import base64
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import cli_env, harness
from tests.support.stub_openai import StubOpenAIServer

SECRET_BASIC = "pw-pl4nted-Basic-91ab"
SECRET_TOKEN = "tok-pl4nted-Bearer-52cd"
SECRET_REF_ENV = "key-pl4nted-RefEnv-73ef"
SECRET_FLAG_ENV = "key-pl4nted-FlagEnv-04aa"
SECRET_WRONG = "pw-pl4nted-Wrong-38bb"
SECRET_CONFIG = "pw-pl4nted-Config-66cc"
SECRET_POLICY = "pl4nted-Policy-15dd"
SECRETS = (
    SECRET_BASIC,
    SECRET_TOKEN,
    SECRET_REF_ENV,
    SECRET_FLAG_ENV,
    SECRET_WRONG,
    SECRET_CONFIG,
    SECRET_POLICY,
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# The Basic header value is a secret as well (base64 of user:password): it must not be stored either.
NEEDLES = tuple(s.encode() for s in SECRETS) + tuple(
    basic("alice", s).split()[1].encode() for s in (SECRET_BASIC, SECRET_WRONG, SECRET_CONFIG)
)


def leaks_in(data: bytes) -> list[str]:
    return [needle.decode() for needle in NEEDLES if needle in data]


@dataclass
class Planted:
    tmp: Path
    written: list[Path]  # folders and files the harness wrote (inputs are kept apart, under tmp/inputs)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (label, stdout + stderr)
    servers: dict[str, StubOpenAIServer] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)  # channel -> reference given
    codes: dict[str, int] = field(default_factory=dict)  # command label -> exit code
    stdout: dict[str, str] = field(default_factory=dict)  # command label -> stdout


def run_cli(planted: Planted, label: str, *args: str) -> str:
    env = cli_env(
        PLANT_KEY_REF=SECRET_REF_ENV,
        PLANT_KEY_FLAG=SECRET_FLAG_ENV,
        HARNESS_RUNS_DIR=str(planted.tmp / "runs"),
    )
    proc = harness(*args, env=env)
    planted.outputs.append((label, proc.stdout + proc.stderr))  # the label: the command line holds secrets
    planted.codes[label] = proc.returncode
    planted.stdout[label] = proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    tmp = tmp_path_factory.mktemp("planting")
    runs, inputs = tmp / "runs", tmp / "inputs"
    inputs.mkdir()
    p = Planted(tmp, [runs, tmp / "runs-wrong", tmp / "report", tmp / "report-by-ref", tmp / "site", tmp / "bundle.zip",
                      tmp / "gate.md", tmp / "checkpoints"])  # fmt: skip
    with (
        StubOpenAIServer(require_authorization=basic("alice", SECRET_BASIC)) as s_basic,
        StubOpenAIServer(require_authorization=f"Bearer {SECRET_TOKEN}") as s_token,
        StubOpenAIServer(require_authorization=f"Bearer {SECRET_REF_ENV}") as s_ref_env,
        StubOpenAIServer(require_authorization=f"Bearer {SECRET_FLAG_ENV}") as s_flag_env,
    ):
        p.servers = {"basic": s_basic, "token": s_token, "ref_env": s_ref_env, "flag_env": s_flag_env}
        host = "127.0.0.1"
        p.checkpoints = {
            "basic": f"http://alice:{SECRET_BASIC}@{host}:{s_basic.port}/v1#stub",
            "token": f"http://{SECRET_TOKEN}@{host}:{s_token.port}/v1#stub",
            "ref_env": f"http://{host}:{s_ref_env.port}/v1#stub?api_key_env=PLANT_KEY_REF",
            "flag_env": f"http://{host}:{s_flag_env.port}/v1#stub",
        }
        common = ("--suite", "gsm8k", "--limit", "3", "--out", str(runs))
        for channel, ref in p.checkpoints.items():
            extra = ("--api-key-env", "PLANT_KEY_FLAG") if channel == "flag_env" else ()
            run_cli(p, f"eval-{channel}", "eval", "--checkpoint", ref, *common, *extra)
        run_cli(p, "eval-again", "eval", "--checkpoint", p.checkpoints["basic"], *common, "--json", "--fresh")
        wrong = f"http://alice:{SECRET_WRONG}@{host}:{s_basic.port}/v1#stub"
        # --limit 4: one sample is not cached yet, so the server is asked (and refuses the password). Its
        # own runs folder: a failed run would stop `leaderboard submit` below.
        run_cli(p, "eval-wrong-password", "eval", "--checkpoint", wrong, *common, "--limit", "4",
                "--runs", str(tmp / "runs-wrong"))  # fmt: skip
        invalid = f"http://alice:{SECRET_BASIC}@{host}:{s_basic.port}/v1"  # no #MODEL
        run_cli(p, "eval-invalid-ref", "eval", "--checkpoint", invalid, *common)

        run_cli(p, "runs", "runs", "--runs", str(runs))
        run_dirs = sorted(m.parent for m in runs.rglob("manifest.json"))
        for run_dir in run_dirs:
            run_cli(p, f"show-{run_dir.parent.name}", "show", str(run_dir), "--runs", str(runs))
        run_cli(p, "report", "report", *map(str, run_dirs[:2]), "--out", str(tmp / "report"))
        run_cli(p, "report-by-ref", "report", p.checkpoints["basic"], "--runs", str(runs),
                "--out", str(tmp / "report-by-ref"))  # fmt: skip

        policy = inputs / "gate.yaml"
        policy.write_text(f"# token for the CI bot: {SECRET_POLICY}\nmin_samples: 1\n")
        run_cli(p, "gate", "gate", "--baseline", p.checkpoints["basic"], "--candidate", p.checkpoints["token"],
                "--policy", str(policy), "--runs", str(runs), "--markdown", str(tmp / "gate.md"))  # fmt: skip
        run_cli(p, "gate-json", "gate", "--baseline", p.checkpoints["basic"], "--candidate",
                p.checkpoints["token"], "--policy", str(policy), "--runs", str(runs), "--json")  # fmt: skip

        no_runs = f"http://alice:{SECRET_BASIC}@{host}:{s_token.port}/v2#other"  # never evaluated
        run_cli(p, "gate-no-runs", "gate", "--baseline", no_runs, "--candidate", p.checkpoints["token"],
                "--runs", str(runs))  # fmt: skip
        # --eval-missing evaluates a side given with credentials: they must reach the server, not the files.
        fresh = f"http://{SECRET_TOKEN}@{host}:{s_token.port}/v1#fresh"
        run_cli(p, "gate-eval-missing", "gate", "--baseline", p.checkpoints["basic"], "--candidate", fresh,
                "--eval-missing", "--policy", str(policy), "--runs", str(runs))  # fmt: skip

        config_ref = f"http://alice:{SECRET_CONFIG}@{host}:{s_basic.port}/v1#stub"
        config = inputs / "sft.yaml"
        config.write_text(f"base: {config_ref}\noutput_dir: {tmp / 'checkpoints'}\n")
        run_cli(p, "train-config-base", "train", "sft", "--config", str(config), "--runs", str(runs),
                "--no-eval", "--quiet")  # fmt: skip
        run_cli(p, "train-flag-base", "train", "sft", "--config", str(config), "--base", p.checkpoints["basic"],
                "--runs", str(runs), "--no-eval", "--quiet")  # fmt: skip
        run_cli(p, "checkpoints-add", "checkpoints", "--runs", str(runs), "add", "served", p.checkpoints["token"],
                "--stage", "base")  # fmt: skip
        run_cli(p, "checkpoints-list", "checkpoints", "--runs", str(runs), "--json")

        run_cli(p, "leaderboard-build", "leaderboard", "build", str(runs), "--out", str(tmp / "site"),
                "--references", "none")  # fmt: skip
        run_cli(p, "leaderboard-submit", "leaderboard", "submit", str(runs), "--team", "planted",
                "--out", str(tmp / "bundle.zip"))  # fmt: skip
        yield p


def test_every_command_did_its_work(planted: Planted) -> None:
    """Guards the searches below: a command that failed early would have written nothing to search."""
    expected = dict.fromkeys(
        ("eval-basic", "eval-token", "eval-ref_env", "eval-flag_env", "eval-again", "runs", "report",
         "report-by-ref", "leaderboard-build", "leaderboard-submit", "checkpoints-add", "checkpoints-list"),
        (0,),
    )  # fmt: skip
    expected.update({
        "eval-wrong-password": (3,),  # the server refuses the password
        "eval-invalid-ref": (2,),
        "gate": (0, 10, 11), "gate-json": (0, 10, 11), "gate-eval-missing": (0, 10, 11),  # a verdict
        "gate-no-runs": (4,),
        "train-config-base": (2,), "train-flag-base": (2,),  # an endpoint has no weights to train
    })  # fmt: skip
    wrong = {label: (planted.codes[label], _output(planted, label)) for label, codes in expected.items()
             if planted.codes[label] not in codes}  # fmt: skip
    assert not wrong, wrong
    assert "rejected the credentials from the URL" in _output(planted, "eval-wrong-password")
    assert "model name is missing" in _output(planted, "eval-invalid-ref")
    runs = planted.tmp / "runs"
    assert (
        len(list(runs.rglob("manifest.json"))) == 5 and (runs / ".cache" / "responses.sqlite").stat().st_size
    )
    assert (planted.tmp / "report" / "report.html").is_file() and (
        planted.tmp / "report" / "report.md"
    ).is_file()
    assert (planted.tmp / "report-by-ref" / "report.md").is_file()
    assert len(list((planted.tmp / "site").rglob("*.html"))) > 1 and (planted.tmp / "gate.md").is_file()
    assert zipfile.ZipFile(planted.tmp / "bundle.zip").namelist()


def test_credentials_were_sent_as_the_server_requires(planted: Planted) -> None:
    for name, server in planted.servers.items():
        assert len(server.requests) >= 3, name
        assert server.authorization[0] == server.require_authorization, name
    assert planted.servers["basic"].rejected >= 1  # the wrong password (and only it)
    for name in ("token", "ref_env", "flag_env"):
        assert planted.servers[name].rejected == 0, name
    again = json.loads(planted.stdout["eval-again"])
    # --fresh with the same key: the cache answered, so its key (the adapter identity) has no secret in it
    # that could differ; the run folder is the first run's.
    assert again[0]["invocation"]["cache_hits"] == 3 and again[0]["invocation"]["generated"] == 0
    assert len(planted.servers["basic"].requests) == 3


def _output(planted: Planted, label: str) -> str:
    return dict(planted.outputs)[label]


def test_stored_references_are_redacted(planted: Planted) -> None:
    stored = {json.loads(m.read_text())["checkpoint"] for m in (planted.tmp / "runs").rglob("manifest.json")}
    ports = {name: s.port for name, s in planted.servers.items()}
    assert stored == {
        f"http://127.0.0.1:{ports['basic']}/v1#stub",
        f"http://127.0.0.1:{ports['token']}/v1#stub",
        f"http://127.0.0.1:{ports['token']}/v1#fresh",  # evaluated by gate --eval-missing
        f"http://127.0.0.1:{ports['ref_env']}/v1#stub?api_key_env=PLANT_KEY_REF",
        f"http://127.0.0.1:{ports['flag_env']}/v1#stub",
    }


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
    elif root.is_dir():
        yield from (p for p in root.rglob("*") if p.is_file())


def test_no_file_or_file_name_written_holds_a_secret(planted: Planted) -> None:
    found: list[str] = []
    searched = 0
    for root in planted.written:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            found += [f"name {path}: {s}" for s in leaks_in(str(path.relative_to(planted.tmp)).encode())]
        for path in _files(root):
            searched += 1
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in leaks_in(data)]
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as bundle:
                    for entry in bundle.infolist():
                        found += [
                            f"{path} entry name {entry.filename}: {s}"
                            for s in leaks_in(entry.filename.encode())
                        ]
                        found += [f"{path}!{entry.filename}: {s}" for s in leaks_in(bundle.read(entry))]
    assert searched > 20
    assert not found, "\n".join(found)


def test_no_command_output_holds_a_secret(planted: Planted) -> None:
    found = [f"{command}: {s}" for command, out in planted.outputs for s in leaks_in(out.encode())]
    assert len(planted.outputs) > 15
    assert not found, "\n".join(found)
