"""The trusted side of a sandboxed run: it holds the tests and decides pass or fail.

Source text for the sandbox's trusted process (see `suites.sandbox.child`), which executes it after
`suites.sandbox.wire` in a fresh interpreter; standard library only. No untrusted code ever runs in this
process: the solution lives in another process (another uid as root, no capabilities otherwise) and is
reached only through `Channel`, which carries plain data (see `suites.sandbox.wire`).

How a test list runs here (the names come worked out by `suites.sandbox.plan`, so this process imports
little: each sandboxed run starts a fresh one): the test imports run in a fresh namespace with this
process's pristine builtins; each name the task's setup code binds becomes a `Ref` (the setup runs on the
solution side, after the program, since it may use the program's classes); every other name the tests
read that nothing here binds (and that is not a builtin, unless the task declares it an entry point, e.g.
a solution function named `sum`) becomes a `SolutionFunction`, a proxy whose only ability is to be called:
the call's arguments go to the solution side by value (a `Ref` by name), and its result comes back as
fresh plain data. Every comparison, `math.isclose`, `sorted(...)` and `set(...)` of
an assertion therefore runs here, on values the solution cannot have given behaviour to.
"""

from __future__ import annotations

import builtins

from suites.sandbox.wire import (
    MAX_TEXT,
    CodecError,
    Ref,
    SolutionFailed,
    Unencodable,
    from_tree,
    receive,
    send,
    to_tree,
)

TYPE_CHECKING = False  # typing is not imported at run time: every sandboxed run pays for its imports
if TYPE_CHECKING:
    from typing import Any


class Channel:
    """Calls into the solution process: one call at a time, each answered in turn or the run fails."""

    def __init__(self, call_fd: int, reply_fd: int) -> None:
        self.call_fd, self.reply_fd = call_fd, reply_fd
        self.calls = 0
        self.gone = False  # the solution's process closed its end (it ended, most likely)

    def loaded(self) -> None:
        """Wait until the solution side has run the program; raise SolutionFailed if it did not."""
        message = self._receive("loading the program")
        if type(message) is not dict or message.get("loaded") is not True:
            raised = message.get("raised") if type(message) is dict else None
            raise SolutionFailed(
                f"the program raised {_text(raised)}" if raised else "the program did not load"
            )

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls += 1
        ident = self.calls
        try:
            message = {"id": ident, "fn": name, "args": to_tree(list(args)), "kwargs": to_tree(kwargs)}
        except Unencodable as error:
            raise SolutionFailed(
                f"an argument of {name}() cannot be sent to the solution ({error})"
            ) from None
        try:
            send(self.call_fd, message)
        except OSError:
            self.gone = True
            raise SolutionFailed(f"the solution's process ended before {name}() was called") from None
        reply = self._receive(f"{name}()")
        if type(reply) is not dict or reply.get("id") != ident:
            raise SolutionFailed(f"a reply out of turn to {name}()")
        if "ok" in reply:
            try:
                return from_tree(reply["ok"])
            except CodecError as error:
                raise SolutionFailed(f"{name}() returned malformed data ({error})") from None
        if "raised" in reply:
            raise SolutionFailed(f"{name}() raised {_text(reply['raised'])}")
        raise SolutionFailed(f"{name}() returned {_text(reply.get('bad'))}")

    def _receive(self, what: str) -> Any:
        try:
            return receive(self.reply_fd)
        except EOFError:
            self.gone = True
            raise SolutionFailed(f"the solution's process ended during {what}") from None
        except CodecError as error:
            raise SolutionFailed(f"malformed reply to {what}: {error}") from None


class SolutionFunction:
    """A name the tests call that the solution defines: callable, and nothing else."""

    __slots__ = ("_channel", "_name")

    def __init__(self, name: str, channel: Channel) -> None:
        self._name, self._channel = name, channel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<solution function {self._name}>"


def run_tests(job: dict[str, Any], call_fd: int, reply_fd: int) -> dict[str, Any]:
    """The verdict on one job: {"passed": bool, "reason": str, "calls": int, "gone": bool}."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    channel = Channel(call_fd, reply_fd)
    try:
        if job["plan_error"]:
            raise ValueError(job["plan_error"])
        exec(compile(job["prelude"], "<test imports>", "exec"), namespace)
        tests = compile(job["tests"], "<tests>", "exec")
        for name in job["refs"]:
            namespace[name] = Ref(name)
        for name in job["modules"]:
            namespace[name] = __import__(name)
        for name in job["solution"]:
            namespace[name] = SolutionFunction(name, channel)
    except Exception as error:  # the task's own code: not the solution's fault, but not a pass
        reason = f"the tests could not be set up: {_describe(error)}"
        return {"passed": False, "reason": reason, "calls": 0, "gone": False}
    passed, reason = False, ""
    try:
        channel.loaded()
        exec(tests, namespace)
        passed = True
    except SolutionFailed as error:
        reason = _text(str(error))
    except AssertionError as error:
        reason = f"assertion failed: {_test_line(error, job['tests'])}"
    except Exception as error:
        reason = f"{_describe(error)} at {_test_line(error, job['tests'])}"
    return {"passed": passed, "reason": reason, "calls": channel.calls, "gone": channel.gone}


def _test_line(error: BaseException, tests: str) -> str:
    lines, found, trace = tests.splitlines(), "?", error.__traceback__
    while trace is not None:  # the innermost line of the tests (no `traceback` import: see the docstring)
        lineno = trace.tb_lineno
        if trace.tb_frame.f_code.co_filename == "<tests>" and 0 < lineno <= len(lines):
            found = lines[lineno - 1].strip()[:300]
        trace = trace.tb_next
    return found


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if type(value) is str else "?"
