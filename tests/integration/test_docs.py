"""The documentation matches the code it describes."""
import os
import re
import subprocess

from stack import BUILDDIR, ROOT


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def test_configuration_reference_lists_the_real_defaults():
    defaults = subprocess.run([os.path.join(BUILDDIR, "crosspostctl"), "config", "--defaults"],
                              capture_output=True, text=True, check=True,
                              env={"PATH": os.environ["PATH"]}).stdout
    doc = read("docs/CONFIGURATION.md")
    block = doc.split("## Keys", 1)[1].split("```", 2)[1].lstrip("\n")
    assert block.strip() == defaults.strip(), \
        "docs/CONFIGURATION.md is stale: paste `crosspostctl config --defaults` into its Keys block"


def test_every_route_is_documented_in_operations_or_readme():
    routes = re.findall(r'\{\s*[A-Z_| ]+,\s*"([^"]+)"', read("fcgi/routes.c"))
    assert routes, "no routes parsed from fcgi/routes.c"
    docs = read("docs/OPERATIONS.md") + read("README.md") + read("docs/API.md")
    for route in routes:
        assert route in docs, "route %s is not documented" % route


def test_readme_names_the_two_commands_first():
    readme = read("README.md")
    first_block = readme.split("```", 2)[1]
    assert "scripts/up" in first_block and "scripts/test" in first_block
    assert "scripts/test" in read(".ci/run")
