"""The endpoint map (CONNECTOR_DATABASE_ENDPOINTS): parsed and refused at start-up, naming the variable."""

from __future__ import annotations

import pytest

from connector.config import ConfigError, load_config
from connector.integrations.endpoints import EndpointMap, EndpointMapError

BASE = {"CONNECTOR_ID": "c1", "CONTROL_PLANE_URL": "https://cp.example.com:443", "CONNECTOR_TOKEN": "t0ken-value"}


def test_maps_an_endpoint_and_leaves_others_alone() -> None:
    m = EndpointMap.parse(
        "orders.aaaaaaaaaa.eu-west-1.rds.amazonaws.com:5432=127.0.0.1:15432,\n wh.x.redshift.amazonaws.com:5439=[::1]:5439"
    )
    assert m.resolve("orders.aaaaaaaaaa.eu-west-1.rds.amazonaws.com", 5432) == ("127.0.0.1", 15432)
    assert m.resolve("ORDERS.aaaaaaaaaa.eu-west-1.rds.amazonaws.com.", 5432) == ("127.0.0.1", 15432)
    assert m.resolve("wh.x.redshift.amazonaws.com", 5439) == ("::1", 5439)
    assert m.resolve("orders.aaaaaaaaaa.eu-west-1.rds.amazonaws.com", 5433) == (
        "orders.aaaaaaaaaa.eu-west-1.rds.amazonaws.com",
        5433,
    )
    assert not EndpointMap.parse("") and EndpointMap.parse("").resolve("h", 1) == ("h", 1)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("db.example.com:5432", "expected address:port=host:port"),
        ("db.example.com=127.0.0.1:1", "needs a :port"),
        ("db.example.com:0=127.0.0.1:1", "from 1 to 65535"),
        ("db.example.com:5432=127.0.0.1:99999", "from 1 to 65535"),
        ("db.example.com:5432=evil host;:1", "not a host name"),
        ("db.example.com:5432=a:1,db.example.com:5432=b:2", "mapped twice"),
        ("db.example.com:5432=[::1:5432", "[ipv6]:port"),
    ],
)
def test_refuses_a_malformed_entry(text: str, says: str) -> None:
    with pytest.raises(EndpointMapError, match=says.replace("[", r"\[").replace("]", r"\]")):
        EndpointMap.parse(text)


def test_start_up_fails_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"CONNECTOR_DATABASE_ENDPOINTS.*needs a :port"):
        load_config(BASE | {"CONNECTOR_DATABASE_ENDPOINTS": "db.example.com=127.0.0.1:1"})
    config = load_config(BASE | {"CONNECTOR_DATABASE_ENDPOINTS": "db.example.com:5432=127.0.0.1:15432"})
    assert config.endpoint_map.resolve("db.example.com", 5432) == ("127.0.0.1", 15432)
