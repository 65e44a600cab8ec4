"""The suite registry. Each suite is one module; it is imported only when asked for by name."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.data import DataSource
from harness.errors import UsageError
from harness.registry import Registry
from harness.suite import Suite, SuiteOptions

if TYPE_CHECKING:
    from suites.safety_judges import AsyncJudge


@dataclass(frozen=True)
class SuiteEntry:
    """A registered suite: `module:factory`, imported on first use. A suite that scores with a judge
    (`takes_judge`) is built with SuiteOptions.judge and the run's judge model."""

    target: str
    takes_judge: bool = False

    def create(self, options: SuiteOptions, judge_model: AsyncJudge | None = None) -> Suite:
        module_name, _, attr = self.target.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        suite: Suite = (
            factory(judge=options.judge, judge_model=judge_model) if self.takes_judge else factory()
        )
        suite.reasoning = options.reasoning
        if options.regime not in suite.regimes:
            raise UsageError(
                f"The {suite.name} suite has no '{options.regime}' regime.",
                f"Its regimes: {', '.join(suite.regimes)}.",
            )
        suite.regime = options.regime
        if options.confidence is not None:
            from harness.confidence import asking_confidence

            if options.confidence != "verbalized":
                raise UsageError(
                    f"Unknown confidence elicitation '{options.confidence}'.", "The one there is: verbalized."
                )
            return asking_confidence(suite)
        return suite


SUITES: Registry[SuiteEntry] = Registry("suite")


@dataclass(frozen=True)
class SuiteSet:
    """The suites of one run and the model judge they share (built once, closed once)."""

    suites: tuple[Suite, ...]
    judge_model: AsyncJudge | None = None

    async def aclose(self) -> None:
        if self.judge_model is not None:
            await self.judge_model.aclose()


SUITES.register("gsm8k", SuiteEntry("suites.gsm8k:GSM8K"))
SUITES.register("ifeval", SuiteEntry("suites.ifeval:IFEval"))
SUITES.register("mbpp", SuiteEntry("suites.mbpp:MBPP"))
SUITES.register("mbpp-sanitized", SuiteEntry("suites.mbpp:MBPPSanitized"))
SUITES.register("alice", SuiteEntry("suites.alice:Alice"))
SUITES.register("alice-synth", SuiteEntry("suites.alice_synth:AliceSynth"))
SUITES.register("safety", SuiteEntry("suites.safety:Safety", takes_judge=True))
SUITES.register("safety-harmbench", SuiteEntry("suites.safety:safety_harmbench", takes_judge=True))
SUITES.register("safety-xstest", SuiteEntry("suites.safety:safety_xstest", takes_judge=True))


def default_suites(source: DataSource) -> list[str]:
    """What `harness eval` runs without --suite: one entry per benchmark. The Kaggle Alice puzzles have no
    hub copy, so without the user's train.csv the generated `alice-synth` set stands in for them."""
    kaggle = source.data_dir is not None and (source.data_dir / "nemotron_kaggle" / "train.csv").is_file()
    return ["gsm8k", "ifeval", "mbpp", "safety", "alice" if kaggle else "alice-synth"]


def get_suite(name: str, options: SuiteOptions | None = None, judge_model: AsyncJudge | None = None) -> Suite:
    return SUITES.get(name).create(options or SuiteOptions(), judge_model)


def takes_judge(name: str) -> bool:
    """Whether the suite scores with SuiteOptions.judge (the safety suites)."""
    return SUITES.get(name).takes_judge


def build_suites(names: Sequence[str], options: SuiteOptions | None = None) -> SuiteSet:
    """The named suites (unknown names raise, listing the known ones). A model judge (wildguard) is
    built once, only when a suite takes it, and handed to each such suite at construction."""
    options = options or SuiteOptions()
    entries = [SUITES.get(name) for name in names]
    judge_model = None
    if options.judge != SuiteOptions().judge and any(e.takes_judge for e in entries):
        from adapters import AdapterOptions
        from suites.safety_judges import create_judge

        judge_model = create_judge(
            options.judge, options.judge_checkpoint, AdapterOptions(timeout_s=options.judge_timeout_s)
        )
    return SuiteSet(tuple(e.create(options, judge_model) for e in entries), judge_model)


def suite_names() -> list[str]:
    return SUITES.names()
