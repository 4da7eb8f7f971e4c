import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack  # noqa: E402


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
