"""python -m taskdist: simulate (the default) and plan, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskdist import InvalidArgumentError, servers_for_wait
from taskdist.cli import main
from taskdist.sim import Simulation

ROOT = Path(__file__).resolve().parent.parent


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskdist", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_default_command_prints_the_platform_checklist() -> None:
    result = run("--tasks", "400")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("platform under priority, seed 1: 400 tasks")
    for check in ("distribution latency", "load variance", "completion", "priority respected"):
        assert check in result.stdout
    assert result.stdout.count(" pass") + result.stdout.count(" miss") == 8


def test_simulate_json_has_the_documented_schema() -> None:
    result = run("simulate", "--scenario", "hot_tenant", "--policy", "fair/p2c", "--tasks", "300",
                 "--seed", "3", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["scenario"] == "hot_tenant" and data["policy"] == "fair/p2c"
    assert data["seed"] == 3 and data["tasks"] == 300
    assert {
        "throughput",
        "deadline_hit_rate",
        "completion_rate",
        "utilization",
        "load_variance",
        "jain_index",
        "priority_inversions",
        "dead_by_reason",
    } <= set(data)
    assert set(data["wait"]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert {"wall_seconds", "latency_p99_ms"} <= set(data["timing"])
    assert [set(check) for check in data["checklist"]] == [
        {"name", "target", "measured", "passed"}
    ] * 8


def test_simulate_compare_prints_the_table_and_the_winners() -> None:
    result = run("simulate", "--scenario", "hot_tenant", "--compare", "fifo,fair", "--tasks",
                 "300", "--seeds", "1,2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 policies x 2 seeds" in result.stdout and "best on each metric" in result.stdout
    result = run("simulate", "--scenario", "mm_c", "--compare", "fifo,edf", "--tasks", "200",
                 "--seeds", "1", "--json")  # fmt: skip
    data = json.loads(result.stdout)
    assert [row["policy"] for row in data["table"]] == ["fifo", "edf"]


def test_simulate_compare_json_is_valid_json_when_a_figure_has_no_value(tmp_path: Path) -> None:
    trace = tmp_path / "stuck.csv"
    trace.write_text("time,requires\n0,x\n1,x\n")  # no mm_c worker has skill x
    result = run(
        "simulate",
        "--scenario",
        "mm_c",
        "--trace",
        str(trace),
        "--compare",
        "fifo,edf",
        "--seeds",
        "1,2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    data = json.loads(result.stdout)
    assert {win["value"] for win in data["wins"] if win["metric"] == "wait_p95"} == {None}


def test_simulate_replays_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "arrivals.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"time": i * 0.5, "tenant": f"u{i % 3}", "cost": 1.0}) for i in range(50)
        )
    )
    result = run("simulate", "--scenario", "mm_c", "--trace", str(trace), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tasks"] == 50 and data["completed"] == 50


def test_simulate_saves_the_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots.png"
    result = run("simulate", "--tasks", "300", "--plot", str(path))
    assert result.returncode == 0, result.stderr
    assert path.stat().st_size > 10_000 and "plots saved" in result.stdout


def test_plan_sizes_a_pool() -> None:
    result = run("plan", "--arrival-rate", "3", "--service-time", "2", "--target-wait", "0.5",
                 "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["servers"] == servers_for_wait(3.0, 2.0, 0.5)
    assert data["mean_wait"] <= 0.5
    text = run("plan", "--arrival-rate", "3", "--service-time", "2", "--servers", "7")
    assert text.returncode == 0 and "servers:           7" in text.stdout


def test_plan_evaluates_a_huge_pool_at_once() -> None:
    result = run("plan", "--arrival-rate", "1", "--service-time", "1", "--servers",
                 "99999999999999", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["wait_probability"] == 0.0 and data["mean_wait"] == 0.0


def test_plan_sizes_every_pool_of_a_scenario() -> None:
    result = run("plan", "--scenario", "platform", "--load", "0.85")
    assert result.returncode == 0, result.stderr
    assert "research" in result.stdout and "suggested" in result.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ("simulate", "--load", "-1"),
        ("simulate", "--load", "nan"),
        ("simulate", "--load", "1e-320", "--tasks", "50"),
        ("simulate", "--scenario", "mm_c", "--load", "1e-310", "--tasks", "50"),
        ("simulate", "--scenario", "flaky_api", "--load", "1e-300", "--tasks", "50"),
        ("simulate", "--load", "101"),
        ("simulate", "--tasks", "0"),
        ("simulate", "--scenario", "nope"),
        ("simulate", "--policy", "lifo"),
        ("simulate", "--compare", "fifo,bogus"),
        ("simulate", "--seeds", "a,b", "--compare"),
        ("simulate", "--trace", "/no/such/file.csv"),
        ("simulate", "--frobnicate"),
        ("plan",),
        ("plan", "--arrival-rate", "5", "--service-time", "2", "--servers", "10"),
        ("plan", "--arrival-rate", "1", "--service-time", "1", "--level", "1.5"),
        ("plan", "--arrival-rate", "3", "--service-time", "2", "--target-wait", "0"),
        ("plan", "--arrival-rate", "1e9", "--service-time", "1", "--target-wait", "1"),
        ("plan", "--scenario", "nope"),
        ("plan", "--arrival-rate", "1", "--service-time", "1", "--servers", "1" + "0" * 400),
        (
            "plan",
            "--arrival-rate",
            "3",
            "--service-time",
            "2",
            "--servers",
            "9",
            "--target-wait",
            "0.5",
        ),
        ("plan", "--arrival-rate", "3", "--service-time", "2", "--servers", "9", "--level", "0.9"),
        (
            "plan",
            "--arrival-rate",
            "3",
            "--service-time",
            "2",
            "--target-wait",
            "0.5",
            "--level",
            "0.9",
        ),
        ("plan", "--scenario", "platform", "--servers", "9"),
        ("plan", "--scenario", "platform", "--arrival-rate", "3"),
        ("plan", "--arrival-rate", "3", "--service-time", "2", "--load", "0.5"),
        ("simulate", "--trace", ""),
        ("simulate", "--plot", ""),
        ("simulate", "--compare", "fifo,fair", "--plot", "plots.png"),
        ("simulate", "--compare", "fifo,fair", "--seeds", "1,1", "--tasks", "20"),
        ("nonsense",),
    ],
)
def test_bad_arguments_exit_with_status_2(arguments: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(list(arguments))
    assert caught.value.code == 2


def test_an_error_the_run_raises_for_its_input_exits_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: Simulation) -> None:
        raise InvalidArgumentError("what the scenario asks cannot be simulated")

    monkeypatch.setattr(Simulation, "run", refuse)
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--tasks", "10"])
    assert caught.value.code == 2
    assert "cannot be simulated" in capsys.readouterr().err


def test_a_malformed_trace_is_named_with_its_line_and_field(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("time,tenant,priority\n0.5,a,1\n1.0,b,urgent\n")
    result = run("simulate", "--scenario", "mm_c", "--trace", str(trace))
    assert result.returncode == 2
    assert "bad.csv line 3, field 'priority'" in result.stderr


@pytest.mark.parametrize(
    ("content", "name", "where"),
    [
        (b'{"time": 0}\n{"time": 1, "requires": 5}\n', "bad.jsonl", "line 2, field 'requires'"),
        (b"time,tenant\n0,a\n1,caf\xe9\n", "bad.csv", "line 3, field 'tenant'"),
        (b"time,group\n0,a\n1," + b"x" * 200_000 + b"\n", "bad.csv", "bad.csv line 3:"),
        (b"time,service\n0,2e12\n", "bad.csv", "line 2, field 'service'"),
        (b"time,cost\n0,1e19\n", "bad.csv", "line 2, field 'cost'"),
        (b"time,priority\n0,1e300\n", "bad.csv", "line 2, field 'priority'"),
        # A quote left open swallowed the rest of the file into one field.
        (b'time,tenant\n0,"a\n1,b\n2,c\n', "bad.csv", "line 2: not valid CSV"),
        (b'time,tenant\n0,"1"x\n', "bad.csv", "line 2: not valid CSV"),
        # A record spanning lines: the line it starts on, the field the byte is in.
        (b'time,tenant\nx,"a\nb"\n', "bad.csv", "line 2, field 'time'"),
        (b'time,tenant\n0,"x\ny\xe9"\n', "bad.csv", "line 3, field 'tenant'"),
        # A CSV error further on, and a byte-order mark ahead, change neither.
        (b'time,tenant\n0,a\xff\n1,"open\n', "bad.csv", "line 2, field 'tenant'"),
        (b"\xef\xbb\xbftime,tenant\n0,\xe9t\xe9\n", "bad.csv", "line 2, field 'tenant'"),
        # A JSON-lines trace whatever the case of its suffix.
        (b'{"time": 0}\n{"time": 1, "requires": 5}\n', "BAD.JSONL", "line 2, field 'requires'"),
    ],
    ids=[
        "requires",
        "latin-1",
        "long field",
        "service",
        "cost",
        "priority",
        "open quote",
        "after a quote",
        "multi-line record",
        "latin-1 in a multi-line record",
        "latin-1 before a CSV error",
        "latin-1 after a BOM",
        "upper-case suffix",
    ],
)
def test_a_trace_the_simulation_cannot_take_exits_with_status_2(
    tmp_path: Path, content: bytes, name: str, where: str
) -> None:
    trace = tmp_path / name
    trace.write_bytes(content)
    result = run("simulate", "--scenario", "mm_c", "--trace", str(trace))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert where in result.stderr


@pytest.mark.parametrize("command", [(), ("simulate",), ("plan",)])
def test_help_everywhere(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_scenario_is_built_for_the_tasks_asked_for() -> None:
    # flaky_api times its API outage by its length: a short run still meets it.
    result = run("simulate", "--scenario", "flaky_api", "--tasks", "1500", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tasks"] == 1500 and data["retries"] > 50 and data["lease_expiries"] > 0


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("no/such/dir/x.png", "not a directory"),
        ("plots", "suffix"),
        ("plots.xyz", "suffix"),
        ("plots.pgf", "suffix"),  # LaTeX code: matplotlib writes it only with a TeX system
    ],
)
def test_a_plot_file_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, name: str, why: str
) -> None:
    pytest.importorskip("matplotlib")
    result = run("simulate", "--tasks", "50", "--plot", str(tmp_path / name))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert why in result.stderr and result.stdout == ""  # refused before any run


def test_json_output_has_no_infinite_figure(tmp_path: Path) -> None:
    # Arrivals 1e-320 s apart: the offered load over that window overflows to inf, which
    # JSON cannot carry (Python printed "Infinity").
    trace = tmp_path / "tight.csv"
    trace.write_text("time,service\n0,1\n1e-320,1\n")
    result = run("simulate", "--scenario", "mm_c", "--trace", str(trace), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["offered_load"] is None


def test_a_closed_pipe_ends_the_console_script_quietly() -> None:
    # The taskdist command runs cli.main directly (not __main__): a reader gone early
    # is no error there either.
    script = "import sys; from taskdist.cli import main; sys.exit(main())"
    reader = subprocess.Popen(
        [sys.executable, "-c", script, "plan", "--scenario", "platform", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert reader.stdout is not None
    reader.stdout.close()  # gone before the first line
    _, errors = reader.communicate(timeout=120)
    assert reader.returncode == 0 and b"Traceback" not in errors, errors


def test_a_progress_stream_gone_ends_the_progress_not_the_run() -> None:
    # stderr's reader gone (2>&1 >out | true): the progress bar's write ended the run,
    # and the report was lost.
    script = (
        "import sys; from taskdist.cli import main; "
        "sys.exit(main(['simulate', '--scenario', 'mm_c', '--tasks', '3000', '--progress']))"
    )
    run_ = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert run_.stderr is not None
    run_.stderr.close()
    out, _ = run_.communicate(timeout=120)
    assert run_.returncode == 0 and out.startswith(b"mm_c under priority"), out[:200]


def test_an_interrupt_ends_the_command_with_status_130_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: Simulation) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Simulation, "run", interrupted)
    assert main(["simulate", "--tasks", "10"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted"
