"""The bounded YAML reader: ordinary documents read as `yaml.safe_load` reads them; alias bombs and
deep nesting are refused from the composed nodes, before anything expands them."""

from __future__ import annotations

import pytest
import yaml

from occulta.safe_yaml import YamlBudgetError, load_bounded


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_ordinary_document_reads_as_safe_load_reads_it() -> None:
    text = "arch: resnet50\ninput_size: [3, 224, 224]\nshared: &s {a: 1}\nagain: *s\nclass_names: [a, b]\n"
    assert load_bounded(text) == yaml.safe_load(text)


def test_a_few_aliases_within_the_budget_are_fine() -> None:
    assert len(load_bounded(_bomb(3))["a3"]) == 9  # type: ignore[index]


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_an_alias_bomb_is_refused_without_expanding_it(levels: int) -> None:
    with pytest.raises(YamlBudgetError, match="aliases"):
        load_bounded(_bomb(levels))


@pytest.mark.parametrize("depth", [40, 5_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    with pytest.raises(YamlBudgetError, match="nested deeper"):
        load_bounded("x: " + "[" * depth + "]" * depth)
