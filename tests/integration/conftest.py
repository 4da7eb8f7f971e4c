import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, metric_key  # noqa: E402


@pytest.fixture(scope="session")
def stack(request):
    s = Stack(api_children=3)
    try:
        s.up()
    except Exception:
        s.down()
        s.cleanup(keep=True)
        raise
    yield s
    s.down()
    failed = request.session.testsfailed > 0
    s.cleanup(keep=failed or os.environ.get("CROSSPOST_KEEP_STACK") == "1")


@pytest.fixture(scope="module")
def nothing_crashes(stack):
    """Around a whole module of bad input: no child of the pool may crash."""
    crashed_key = metric_key("crosspost_api_child_exits_total", reason="crashed")
    crashed = stack.metrics()[crashed_key]
    children = stack.api_children()
    yield
    assert stack.metrics()[crashed_key] == crashed
    assert stack.api_children() == children
    assert stack.get("/healthz").status == 200
