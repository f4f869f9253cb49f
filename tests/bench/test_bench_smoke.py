"""`connector bench all --size smoke`: the harness runs end to end (sandbox, control plane and agents as real
processes) and writes sane JSON. No timing asserts: the figures themselves are for docs/performance.md."""

from __future__ import annotations

import json

import pytest

from connector.cli import main


@pytest.mark.timeout(240)
def test_bench_all_smoke_writes_sane_results(tmp_path, capsys):
    assert main(["bench", "all", "--size", "smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["size"] == "smoke"
    assert results["machine"]["cpus"] >= 1

    sync = results["sync"]
    org = sync["organisation"]
    calls = sync["calls_by_operation"]
    assert sync["wall_seconds"] > 0
    # Every cluster described once; the member role assumed once in every active account (the management
    # account included, where the seed has none: an error item per region), plus the management role itself.
    assert calls["eks:DescribeCluster"] == org["clusters"]
    assert calls["sts:AssumeRole"] == org["active_accounts"] + 1
    assert sync["job_result"]["items"]["error"] == len(sync["settings"]["regions"])
    assert calls["eks:ListClusters"] == (org["active_accounts"] - 1) * len(sync["settings"]["regions"])
    assert sync["job_result"]["items"]["eks.cluster"] == org["clusters"]
    assert sync["job_result"]["items"]["eks.access_entry"] == org["access_entries"]
    assert sync["inventory_items"] == sum(sync["job_result"]["items"].values())
    assert sync["bounds"]["total_calls"] == sum(calls.values())
    assert 0 < sync["bounds"]["limits_seconds"] <= sync["bounds"]["design_seconds"]
    assert sync["ratio_to_limits_bound"] == pytest.approx(
        sync["wall_seconds"] / sync["bounds"]["limits_seconds"], rel=0.02
    )
    assert sync["sandbox_capacity"]["calls"] > 0
    assert sync["agent_peak_rss_mb"] >= sync["agent_idle_before_sync_mb"] > 0
    # botocore's floor and the machine's bound, measured in the same run
    assert (
        sync["botocore_floor"]["calls"] > 0 and sync["botocore_floor"]["threads"] == sync["settings"]["max_parallelism"]
    )
    assert sync["agent_cpu_per_call_vs_floor"] == pytest.approx(
        sync["agent_cpu_ms_per_call"] / sync["botocore_floor"]["cpu_ms_per_call"], rel=0.02
    )
    bounds = sync["bounds"]
    assert bounds["cpu_seconds"] == pytest.approx(
        (sync["cpu_seconds"]["agent"] + sync["cpu_seconds"]["sandbox"]) / bounds["cores"], abs=0.01
    )
    assert bounds["larger_seconds"] == max(bounds["limits_seconds"], bounds["cpu_seconds"])
    # Identity Center: assignments listed only where a set is provisioned (2 sets x half the active accounts)
    provisioned_pairs = 2 * round((org["active_accounts"] - 1) * 0.5)  # the management account has none
    assert calls["sso-admin:ListAccountsForProvisionedPermissionSet"] == 4  # 2 seeded + 2 bench sets
    assert calls["sso-admin:ListAccountAssignments"] == provisioned_pairs
    assert sync["job_result"]["items"]["sso.assignment"] == provisioned_pairs
    assert bounds["identity_center"]["calls"] == sum(n for op, n in calls.items() if op.startswith("sso-admin:"))

    dispatch = results["dispatch"]
    assert [run["offered_per_second"] for run in dispatch["loads"]][:1] == [10]
    for run in dispatch["loads"]:
        assert run["jobs"] >= 10
        assert 0 <= run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert dispatch["drain"][0]["jobs"] == 20 and dispatch["drain"][0]["jobs_per_second"] > 0

    grant = results["grant"]
    assert grant["grants"] == 3
    assert grant["aws_calls_per_grant"] >= 3  # describe/create entry, associate policy, ...
    assert grant["cold"]["calls"] > grant["aws_calls_per_grant"]  # the first grant also assumes the roles
    assert grant["sandbox_ms_per_grant"]["p50"] > 0
    assert grant["agent_ms_per_grant"]["p50"] >= grant["sandbox_ms_per_grant"]["p50"] * 0.5

    memory = results["memory"]
    assert memory["idle_rss_mb"] > 10
    assert memory["sync_peak_rss_mb"] == sync["agent_peak_rss_mb"]

    split = results["sync_split"]
    one, two = split["runs"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert one["inventory_items"] == two["inventory_items"] > 0  # the same organisation, split the same way
    assert one["aws_calls"] == pytest.approx(two["aws_calls"], abs=2) and one["aws_calls"] > 0
    for run in split["runs"]:
        assert 0 < run["discovery_seconds"] < run["wall_seconds"]
        assert run["children"] >= 1
        assert run["free_core_estimate_seconds"] == pytest.approx(
            run["discovery_seconds"] + max(run["agent_process_seconds"], run["latency_bound_seconds"]), abs=0.02
        )
    assert split["two_replicas_vs_one"] == pytest.approx(two["wall_seconds"] / one["wall_seconds"], rel=0.02)
    assert split["two_replicas_vs_one_free_cores"] == pytest.approx(
        two["free_core_estimate_seconds"] / one["free_core_estimate_seconds"], rel=0.02
    )

    names = {t["name"] for t in results["targets"]}
    assert "agent idle RSS" in names and "sync ratio to lower bound" in names
    assert any(name.startswith("split sync, two replicas") for name in names)
    assert "wall " in printed and "[" in printed
    for name in ("sync", "sync_split", "dispatch", "grant", "memory"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["size"] == "smoke"


@pytest.mark.timeout(240)
def test_bench_sync_sweep_smoke_syncs_once_per_parallelism(tmp_path, capsys):
    assert main(["bench", "sync_sweep", "--size", "smoke", "--out", str(tmp_path)]) == 0
    sweep = json.loads((tmp_path / "sync_sweep.json").read_text())
    assert [p["max_parallelism"] for p in sweep["points"]] == [2, 8]
    low, high = sweep["points"]
    assert low["total_calls"] == high["total_calls"] > 0  # the same organisation, the same call graph
    assert low["limits_seconds"] > high["limits_seconds"] > 0  # the bound follows parallelism
    for point in sweep["points"]:
        assert point["ratio_to_limits_bound"] == pytest.approx(
            point["wall_seconds"] / point["limits_seconds"], rel=0.02
        )
        assert set(point["busy_share_of_wall"]) == {"agent", "controlplane", "sandbox"}
    assert "max_parallelism 8: wall" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert "sync_sweep" in results and "dispatch" not in results  # run on its own, not part of `all`


@pytest.mark.timeout(240)
def test_bench_discovery_smoke_same_inventory_fewer_calls(tmp_path, capsys):
    assert main(["bench", "discovery", "--size", "smoke", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "discovery.json").read_text())["runs"][0]
    assert run["same_inventory"] and run["service_apis"]["items"] > 0
    assert run["resource_explorer_cold"]["resource_explorer"]["used"]
    assert run["resource_explorer_warm"]["aws_calls"] < run["service_apis"]["aws_calls"]
    assert "sns:ListTopics" not in run["resource_explorer_warm"]["calls_by_operation"]
    assert "load average" in capsys.readouterr().out
