"""The Compose stack, checked without a container engine: `docker compose config` only."""
from __future__ import annotations

from typing import Any

import pytest

from swarm_checks import SwarmError, fail, static
from swarm_checks.static import Violation, compose_rules, fail_on

_MATRIX = static.service_matrix()
COMBINATIONS = compose_rules.profile_combinations(_MATRIX)


@pytest.mark.parametrize("profiles", COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def test_profile_combination_renders_with_matrix_services(
    profiles: tuple[str, ...], compose_assets: compose_rules.ComposeAssets
) -> None:
    """Every profile combination renders, and deploys exactly the matrix's services for it."""
    try:
        rendered = static.render_compose_config(compose_assets.compose_file, [compose_assets.env_example], profiles)
    except SwarmError as error:
        fail(f"profiles {'+'.join(profiles)}: rule 'renders': {error}")
    expected = compose_rules.expected_services(compose_assets.matrix, profiles)
    actual = set(rendered.get("services", {}))
    fail_on(
        [Violation(f"compose service '{n}'", "matrix-services", f"missing with profiles {'+'.join(profiles)}") for n in expected - actual]
        + [Violation(f"compose service '{n}'", "matrix-services", f"deployed with profiles {'+'.join(profiles)} but the matrix says no") for n in actual - expected]
    )


@pytest.mark.parametrize("rule", compose_rules.RULES, ids=[rule.name for rule in compose_rules.RULES])
def test_compose_rule(rule: Any, compose_assets: compose_rules.ComposeAssets) -> None:
    """One rule over every service of the file (rendered with every profile on)."""
    fail_on(rule.check(compose_assets))
