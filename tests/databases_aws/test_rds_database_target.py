"""The rds_database target: where the database is comes only as account, region and one identifier, each
validated; hostile values are refused naming the field before any call."""

from __future__ import annotations

import pytest

from connector.errors import InvalidJob
from connector.integrations.discovered_databases.provisioner import parse_place

GOOD = {"resource_type": "rds_database", "account_id": "210000000002", "region": "us-east-1", "instance_id": "orders"}


def test_a_target_names_one_database_and_passes_the_rest_on() -> None:
    place, rest = parse_place(GOOD | {"database": "orders", "level": "read-only"})
    assert (place.account_id, place.region, place.kind, place.identifier) == (
        "210000000002",
        "us-east-1",
        "rds_instance",
        "orders",
    )
    assert rest == {"resource_type": "database", "database": "orders", "level": "read-only"}
    assert parse_place(GOOD | {"instance_id": "", "cluster_id": "app"})[0].kind == "rds_cluster"
    assert place.target() == GOOD


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"instance_id": "orders'; DROP ROLE x; --"}, "target.instance_id"),
        ({"instance_id": "orders\x00"}, "target.instance_id"),
        ({"instance_id": "a" * 64}, "target.instance_id"),
        ({"instance_id": 7}, "target.instance_id"),
        ({"account_id": "21000000000"}, "target.account_id"),
        ({"account_id": "210000000002\n"}, "target.account_id"),
        ({"region": "us-east-1; rm"}, "target.region"),
        ({"cluster_id": "app"}, "exactly one of"),
        ({"instance_id": None}, "exactly one of"),
        ({"host": "evil.example.com"}, None),  # not a place field: the database kind refuses it (unknown field)
    ],
)
def test_hostile_places_are_refused(change: dict[str, object], field: str | None) -> None:
    target = {k: v for k, v in (GOOD | change).items() if v is not None}
    if field is None:
        _, rest = parse_place(target)
        assert rest["host"] == "evil.example.com"  # handed on, and refused there (tests/databases)
        return
    with pytest.raises(InvalidJob, match=field.replace(".", r"\.")):
        parse_place(target)


def test_settings_refuse_a_trailing_new_line() -> None:
    """`$` matches before a final new line in Python: validators use fullmatch."""
    from connector.errors import InvalidSettings
    from connector.integrations.aws_organization.settings import parse_settings

    for setting, value in (("excluded_account_ids", ["210000000002\n"]), ("region", "us-east-1\n"),
                           ("member_role_name", "ConnectorMemberRole\n"), ("database_iam_user", "apono_connector\n")):  # fmt: skip
        with pytest.raises(InvalidSettings, match=setting):
            parse_settings({setting: value})
