"""Where torch is not installed, a test that needs it is skipped, saying so; every other test runs.

``.ci/run`` runs the suite a second time with the oldest supported Slicer's Python (3.12) in a
virtual environment without torch (torch's 3.12 wheel is a CUDA build of several GB). Which tests
need torch is not listed anywhere, so the list cannot go stale: a test module, conftest or test
that fails with ``ModuleNotFoundError`` for ``torch`` (or a ``torch.*`` submodule), or whose child
Python process printed that error, is reported as skipped instead of failed. Code that handles a
missing torch itself never gets here and is tested. Where torch is installed (the main suite) the
hooks are not registered. ``Testing/test_torch_free_conftest.py`` checks each case.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

MISSING = "torch"
#: How a child Python process that could not import torch says so on its way out.
_CHILD_MISSING = re.compile(rf"ModuleNotFoundError: No module named '({MISSING}(?:\.[\w.]+)?)'")


def _absent(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ValueError:  # sys.modules[name] = None, as a test that blocks an import leaves it
        return True


def missing_module(exc: BaseException | None, name: str = MISSING) -> str | None:
    """The module of package ``name`` whose absence raised ``exc`` (or an exception it was raised
    from or while handling), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if missing is not None and (missing == name or missing.startswith(f"{name}.")):
            return missing
        exc = exc.__cause__ or exc.__context__
    return None


def missing_in_output(report: pytest.TestReport) -> str | None:
    """The torch module a child process of a failed test could not import, from the failure
    message and the captured output (the child's traceback), else None."""
    text = "\n".join((report.longreprtext, report.capstdout, report.capstderr))
    found = _CHILD_MISSING.search(text)
    return found.group(1) if found else None


def _skip_reason(missing: str) -> str:
    return f"needs {MISSING} (not installed here: no module named {missing!r})"


class _SkipWhereMissing:
    """The hooks, registered as a plugin of their own: a conftest's hooks do not reach a folder
    whose own conftest failed to import, and that failure is one of those to turn into a skip."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A test, or a fixture it uses, that imports torch, or runs a child Python that does:
        skipped."""
        report = yield
        if not report.failed:
            return report
        missing = missing_module(call.excinfo.value) if call.excinfo else None
        if missing is None and report.when == "call":
            missing = missing_in_output(report)
        if missing:
            path, line, _ = item.location
            report.outcome = "skipped"
            report.longrepr = (path, (line or 0) + 1, _skip_reason(missing))
        return report

    def pytest_exception_interact(self, node, call: pytest.CallInfo, report) -> None:
        """A test module or conftest that imports torch: its tests are skipped.

        For a collector this hook runs before the report is logged, so the report can still
        change from failed to skipped."""
        missing = missing_module(call.excinfo.value) if call.excinfo else None
        if isinstance(report, pytest.CollectReport) and report.failed and missing:
            report.outcome = "skipped"
            report.longrepr = (str(node.path), None, _skip_reason(missing))


def pytest_configure(config: pytest.Config) -> None:
    if _absent(MISSING):
        config.pluginmanager.register(_SkipWhereMissing(), "skip-where-torch-is-missing")
