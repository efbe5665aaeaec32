"""The console and `sam deploy --guided` show the template's parameters in the groups of the README's
configuration table (template.yaml, Metadata: AWS::CloudFormation::Interface)."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise

from tests.support.template import ROOT, load_template

TEMPLATE = load_template()
README = (ROOT / "README.md").read_text(encoding="utf-8")


def grouped() -> list[tuple[str, list[str]]]:
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    return [(group["Label"]["default"], list(group["Parameters"])) for group in groups]


def test_every_parameter_is_in_exactly_one_group() -> None:
    counts = Counter(name for _, names in grouped() for name in names)
    assert set(counts) == set(TEMPLATE["Parameters"])
    assert [name for name, n in counts.items() if n > 1] == []


def test_every_parameter_is_in_the_readmes_configuration_table_in_its_groups_order() -> None:
    table = README[README.index("## Configuration\n") : README.index("## Deploy to AWS\n")]
    rows = re.findall(r"^\| (.*?) \|", table, re.MULTILINE)
    row_of = {name: i for i, row in enumerate(rows) for name in re.findall(r"`(\w+)`", row)}
    assert set(TEMPLATE["Parameters"]) - set(row_of) == set()
    # Each group is a run of the table's rows, and the groups come in the table's order.
    spans = [(min(row_of[n] for n in names), max(row_of[n] for n in names), label) for label, names in grouped()]
    assert spans == sorted(spans)
    assert all(end < next_start for (_, end, _), (next_start, _, _) in pairwise(spans))
