"""The fair scheduler's choice (`occulta.jobs.fairness.pick`): tenants in turn, fewest in flight first,
interactive audits ahead of batch ones, a per-tenant cap; the order within a tenant's line is kept."""

from __future__ import annotations

from datetime import datetime, timedelta

from occulta.jobs.fairness import BATCH, INTERACTIVE, Waiting, pick

T0 = datetime(2026, 1, 1)


def line(tenant: str, n: int, *, priority: int = BATCH, start: int = 0) -> list[Waiting]:
    return [Waiting(f"{tenant}{i}", tenant, priority, T0 + timedelta(seconds=start + i)) for i in range(n)]


def ids(chosen: list[Waiting]) -> list[str]:
    return [w.job_id for w in chosen]


def test_a_single_audit_of_a_second_tenant_goes_before_a_big_backlog() -> None:
    heads = {"a": line("a", 500), "b": line("b", 1, start=1000)}
    # Tenant a holds every slot but one; the free slot goes to b although a's audits are older.
    assert ids(pick(heads, {"a": 7}, {"a": 10.0}, 1)) == ["b0"]


def test_tenants_alternate_and_each_line_keeps_its_order() -> None:
    heads = {"a": line("a", 5), "b": line("b", 5, start=100), "c": line("c", 1, start=200)}
    assert ids(pick(heads, {}, {}, 7)) == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def test_the_tenant_with_fewer_audits_in_flight_goes_first() -> None:
    heads = {"a": line("a", 3), "b": line("b", 3, start=100)}
    assert ids(pick(heads, {"a": 2}, {}, 3)) == ["b0", "b1", "a0"]


def test_on_a_tie_the_tenant_served_longest_ago_goes_first() -> None:
    heads = {"a": line("a", 2), "b": line("b", 2, start=100)}
    assert ids(pick(heads, {}, {"a": 5.0, "b": 3.0}, 2)) == ["b0", "a0"]


def test_interactive_audits_go_before_batch_ones_of_any_tenant() -> None:
    heads = {
        "a": line("a", 3),
        "b": line("bi", 1, priority=INTERACTIVE, start=500) + line("b", 2, start=600),
    }
    chosen = pick(heads, {"a": 0, "b": 5}, {}, 2)
    assert ids(chosen) == ["bi0", "a0"]


def test_a_per_tenant_cap_leaves_slots_free_rather_than_exceed_it() -> None:
    heads = {"a": line("a", 10)}
    assert ids(pick(heads, {"a": 1}, {}, 5, tenant_max_running=3)) == ["a0", "a1"]


def test_nothing_waiting_or_no_room_picks_nothing() -> None:
    assert pick({}, {}, {}, 4) == []
    assert pick({"a": line("a", 3)}, {}, {}, 0) == []
