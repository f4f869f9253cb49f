"""Properties of the grant-derived names and of the aws-auth text edits (hypothesis)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.k8s import names
from connector.k8s.aws_auth_map import append_entry, parse_map_roles, remove_entries

pytestmark = pytest.mark.timeout(120)

grant_ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=256)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(grant_ids, grant_ids)
def test_names_and_labels_are_always_valid_and_distinct(a: str, b: str) -> None:
    for grant_id in (a, b):
        assert names.is_dns_label(names.binding_name(grant_id))
        assert names.is_label_value(names.label_value(grant_id))
        assert names.binding_name(grant_id) == names.binding_name(grant_id)  # deterministic
    if a != b:
        assert names.binding_name(a) != names.binding_name(b)
        assert names.label_value(a) != names.label_value(b)


def test_simple_ids_stay_readable() -> None:
    assert names.binding_name("req-2024-0001") == "ac-grant-req-2024-0001"
    assert names.label_value("Req_2024.0001") == "Req_2024.0001"
    long_id = "x" * 200
    assert len(names.binding_name(long_id)) == 63 and names.binding_name(long_id) != names.binding_name("x" * 201)


role_arns = st.from_regex(r"arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_-]{1,20}", fullmatch=True)
entries = st.fixed_dictionaries(
    {"rolearn": role_arns},
    optional={
        "username": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        "groups": st.lists(st.from_regex(r"[a-z:-]{1,12}", fullmatch=True), max_size=3),
    },
)


@st.composite
def map_roles_texts(draw: st.DrawFn) -> str:
    items = draw(st.lists(entries, max_size=5))
    style = draw(st.sampled_from(["block", "indented", "flow", "comments"]))
    if not items:
        return draw(st.sampled_from(["", "\n", "[]\n"]))
    if style == "flow":
        return yaml.safe_dump(items, default_flow_style=True)
    text = yaml.safe_dump(items, default_flow_style=False, sort_keys=False, indent=4)
    if style == "indented":
        text = "".join("  " + line + "\n" for line in text.splitlines())
    if style == "comments":
        text = "# owned by platform\n" + text.replace("\n- ", "\n# next\n- ")
    return text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(map_roles_texts(), entries)
def test_append_then_remove_restores_the_entries_and_keeps_block_text(text: str, entry: dict[str, object]) -> None:
    ours = {"rolearn": entry["rolearn"], "username": "access-connector:g-1:{{SessionName}}", "groups": ["readers"]}
    before = parse_map_roles(text)
    added = append_entry(text, ours)
    assert parse_map_roles(added) == [*before, ours]
    restored, removed = remove_entries(added, lambda e: e.get("username") == ours["username"])
    assert removed == [ours]
    assert parse_map_roles(restored) == before
    if before and not text.lstrip().startswith("["):
        # block style: the foreign text survives byte-for-byte, both ways
        assert added.startswith(text if text.endswith("\n") else text + "\n")
        assert restored == (text if text.endswith("\n") else text + "\n")
