"""The CLI's diagnostics: logged to stderr once configured, at the level --verbose / --quiet ask for; a failed
run ends with one plain line, a bug's too, and only -v adds the traceback."""

from __future__ import annotations

import logging

import pytest

from cqrs_orders.cli import build_parser, logs
from cqrs_orders.exit_codes import ExitCode


@pytest.mark.parametrize(
    ("verbosity", "shown", "hidden"),
    [(-1, ["warn"], ["info", "debug"]), (0, ["info", "warn"], ["debug"]), (1, ["debug", "info", "warn"], [])],
)
def test_the_level_follows_verbose_and_quiet(capsys, verbosity, shown, hidden):
    logs.configure(verbosity)
    logger = logging.getLogger("cqrs_orders.some_module")
    logger.debug("debug line")
    logger.info("info line")
    logger.warning("warn line")

    out, err = capsys.readouterr()
    assert out == ""  # diagnostics never mix with results
    for word in shown:
        assert f"{word} line" in err
    for word in hidden:
        assert f"{word} line" not in err
    assert ("cqrs_orders.some_module" in err) == (verbosity == 1)


def test_configuring_twice_prints_each_line_once(capsys):
    logs.configure(0)
    logs.configure(0)
    logging.getLogger("cqrs_orders.x").info("once")
    assert capsys.readouterr().err.count("once") == 1


def test_every_subcommand_takes_verbose_and_quiet():
    parser = build_parser()
    assert parser.parse_args(["relay", "-q"]).verbosity == -1
    assert parser.parse_args(["relay", "--verbose"]).verbosity == 1
    assert parser.parse_args(["relay"]).verbosity == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["relay", "-q", "-v"])  # one or the other


def test_a_configuration_error_is_one_logged_line_and_exit_2(cli, monkeypatch):
    monkeypatch.setenv("CQRS_WRITE_STORE", "mongodb")
    result = cli("relay")
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cqrs-orders relay: CQRS_WRITE_STORE='mongodb'")


def _a_bug(args, settings):
    raise KeyError("order-7 (an internal detail)")


@pytest.fixture
def buggy_relay(monkeypatch):
    """``relay`` with a bug: it raises an error no CqrsOrdersError describes."""
    from cqrs_orders.cli import command_side

    monkeypatch.setattr(command_side, "run_relay", _a_bug)


def test_a_bug_is_one_line_saying_what_to_do_without_a_traceback(cli, buggy_relay):
    result = cli("relay")

    assert result.exit_code == ExitCode.INTERNAL_ERROR and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "cqrs-orders relay: unexpected error (KeyError: 'order-7 (an internal detail)'); this is a bug: "
        "run it again with -v for the traceback, and report it with that traceback"
    )
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback_above_the_one_line(cli, buggy_relay):
    result = cli("relay", "-v")

    assert result.exit_code == ExitCode.INTERNAL_ERROR
    assert "Traceback (most recent call last)" in result.stderr and "in _a_bug" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("cqrs-orders relay: unexpected error (KeyError: ") and "the traceback above" in last
    )


def test_quiet_still_ends_with_the_one_line(cli, buggy_relay):
    result = cli("relay", "-q")
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cqrs-orders relay: unexpected error (KeyError: ")


def test_an_expected_error_shows_where_it_was_raised_only_with_verbose(cli, monkeypatch):
    monkeypatch.setenv("CQRS_WRITE_STORE", "mongodb")
    assert "Traceback" not in cli("relay").stderr
    verbose = cli("relay", "-v").stderr
    assert "Traceback (most recent call last)" in verbose
    assert verbose.strip().splitlines()[-1].startswith("cqrs-orders relay: CQRS_WRITE_STORE='mongodb'")
