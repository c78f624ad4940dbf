"""Fewer Hypothesis examples in CI for the slowest property tests (branch tidy16).

CI runs the suite with Hypothesis's `ci` settings profile (`--hypothesis-profile=ci` in .ci/run; Hypothesis
also loads it by itself where the environment says CI): examples derandomized (each CI run tries the same
ones), no deadline, no example database. On top of it, while that profile is loaded, each test named in
`CI_EXAMPLES` runs that many examples instead of its own `max_examples`: every property still runs in CI,
only the slowest ones run fewer examples. A plain `make test` (the default profile) runs every test's own
number, as do the tests not named here.

The numbers come from measured times (docs/benchmarks.md "tidy16"): a test named here takes seconds of CPU
in CI, and the number kept is what still explores its strategy (each one's note says what it was). A name
that no longer matches a collected Hypothesis test, or a number not below the test's own, fails the collection.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

PROFILE = "ci"

CI_EXAMPLES: dict[str, int] = {
    # The slowest property tests of the suite: wall seconds in a --db-independent=only run at load 6-11
    # (2026-12-03) with the test's own number of examples; the value is the number CI runs. Each is a privacy
    # invariant of the sandbox (k units behind every released cell, seeded and staged answers equal to the
    # naive ones): CI keeps at least 20 examples of each, and half or more of the test's own number but for
    # post_aggregate's 250 (100 kept).
    # 154 s with its own 30 examples
    "tests/sandbox/test_sbx_red15_strategies.py::test_one_hidden_unit_changes_no_answer_on_any_strategy": 20,
    # 124 s with its own 40 examples
    "tests/sandbox/test_outer_join_cells_property.py::"
    "test_cells_nulled_by_an_outer_join_need_k_units_of_every_table": 20,
    # 84 s with its own 250 examples
    "tests/sandbox/test_post_aggregate.py::test_every_post_aggregate_expression_is_refused_or_runs": 100,
    # 58 s with its own 30 examples
    "tests/sandbox/test_join_keys_property.py::test_a_join_key_is_bare_columns_and_its_work_does_not_route": 20,
    # 41 s with its own 40 examples
    "tests/sandbox/test_flagkey.py::test_seeded_answers_are_the_naive_answers": 20,
    # 38 s with its own 40 examples
    "tests/sandbox/test_red13_seeding.py::test_seeded_answers_are_the_unseeded_answers": 20,
    # 33 s with its own 80 examples
    "tests/sandbox/test_two_level_property.py::test_two_level_answers_exactly_as_the_exact_statement": 40,
    # 29 s with its own 40 examples
    "tests/sandbox/test_null_cells_property.py::test_every_released_cell_covers_k_units_with_known_arguments": 20,
    # 21 s with its own 60 examples
    "tests/sandbox/test_red10_two_level.py::test_two_level_matches_exact_and_reference": 30,
    # 20 s with its own 80 examples
    "tests/sandbox/test_bits_property.py::test_bits_answer_exactly_as_the_exact_strategies": 40,
    # 17 s with its own 30 examples
    "tests/sandbox/test_recheck_rows_property.py::test_the_recheck_works_only_on_rows_that_pass_the_filter": 20,
    # Session 18 (red18, 2026-12-04, this machine, load ~1): 52 s and 32 s with their own 300 examples each
    "tests/sandbox/test_red18_lean_property.py::test_the_lean_cube_answers_key_filters_as_the_single_statement": 100,
    "tests/sandbox/test_red18_lean_property.py::test_the_lean_cube_answers_as_the_single_statement": 100,
    # 10 s with its own 300 examples
    "tests/sandbox/test_row_level_property.py::test_row_level_expressions_are_refused_or_never_raise": 150,
}
"""node id without parameters -> examples in CI (the test's own `max_examples` is in its decorator)."""


def _hypothesis_function(item: pytest.Item) -> Any:
    function = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
    return function if getattr(function, "is_hypothesis_test", False) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.get_current_profile_name() != PROFILE:
        return
    modules: dict[str, Any] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], getattr(item, "module", None))
        name = item.nodeid.split("[")[0]
        if name not in CI_EXAMPLES:
            continue
        function = _hypothesis_function(item)
        assert function is not None, f"CI_EXAMPLES names {name}, which is not a Hypothesis test"
        if getattr(function, "_ci_examples", False):  # another parameter of the same test
            continue
        own: settings = function._hypothesis_internal_use_settings
        assert CI_EXAMPLES[name] < own.max_examples, f"{name}: {CI_EXAMPLES[name]} examples is not fewer"
        # As Hypothesis's pytest plugin does for parametrized tests: the test's own settings, one of them changed.
        function._hypothesis_internal_use_settings = settings(own, max_examples=CI_EXAMPLES[name])
        function._ci_examples = True
    for name in CI_EXAMPLES:  # a name in a collected module that no longer holds it: renamed or removed
        path, *qualified = name.split("::")
        if path in modules:
            found: Any = modules[path]
            for part in qualified:
                found = getattr(found, part, None)
            assert getattr(found, "is_hypothesis_test", False), f"CI_EXAMPLES names {name}: no such Hypothesis test"
