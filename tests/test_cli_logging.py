"""The CLI's diagnostics: logged to stderr once configured, at the level --verbose / --quiet ask for; a failed
run ends with one plain line."""

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
