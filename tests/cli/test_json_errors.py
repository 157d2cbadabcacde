"""``--json`` answers with ``{"ok": false, ...}`` on stdout also where click itself reports: a usage
error (an unknown option, a bad value, a missing argument; exit 2) and Ctrl-C (exit 130). Without
--json the answer is click's usual one on stderr and stdout stays empty."""

from __future__ import annotations

import json

import pytest

from edgevit.cli import main
from tests._fixtures import assert_exit, run_cli

COMMANDS = sorted(main.commands)


def _answer(res) -> dict:
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, f"want one JSON line on stdout, got {res.stdout!r}"
    answer = json.loads(lines[0])
    assert answer["ok"] is False and set(answer) == {"ok", "error", "type", "message"}, answer
    return answer


def test_every_command_is_covered():
    assert len(COMMANDS) >= 13 and {"predict", "export", "bench", "demo"} <= set(COMMANDS), COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_with_json_prints_the_failure_object(command):
    res = run_cli(command, "--no-such-option", "--json")
    assert_exit(res, 2)
    answer = _answer(res)
    assert answer["error"] == "usage error" and "--no-such-option" in answer["message"], answer
    assert f"{command} --help" in answer["message"], answer  # where to look
    assert "--no-such-option" in res.stderr, res.stderr  # the human message stays on stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_without_json_keeps_stdout_empty(command):
    res = run_cli(command, "--no-such-option")
    assert_exit(res, 2)
    assert res.stdout == "" and "--no-such-option" in res.stderr, (res.stdout, res.stderr)


@pytest.mark.parametrize("args, option", [
    (("info", "digits-tiny", "--img-size", "abc"), "--img-size"),
    (("predict", "model.onnx", "x.png", "--topk", "many"), "--topk"),
    (("build", "out", "-o", "model.plan", "--opt-level", "9"), "--opt-level"),
])
def test_a_bad_value_with_json_prints_the_failure_object(args, option):
    res = run_cli(*args, "--json")
    assert_exit(res, 2)
    answer = _answer(res)
    assert answer["error"] == "usage error" and option in answer["message"], answer


@pytest.mark.parametrize("args", [("--no-such-option", "--json"), ("no-such-command", "--json"), ("predict", "--json")])
def test_group_level_and_missing_argument_errors_with_json(args):
    res = run_cli(*args)
    assert_exit(res, 2)
    assert _answer(res)["error"] == "usage error"


@pytest.mark.parametrize("as_json", [True, False])
def test_ctrl_c_exits_130_with_the_failure_object_under_json(monkeypatch, as_json):
    from edgevit.models import info

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "model_info", interrupted)
    res = run_cli("info", "digits-tiny", *(["--json"] if as_json else []))
    assert res.exit_code == 130 and "Traceback" not in res.output, (res.exit_code, res.output)
    if as_json:
        answer = _answer(res)
        assert answer["error"] == "interrupted" and answer["type"] == "KeyboardInterrupt", answer
    else:
        assert res.stdout == "", res.stdout
    assert res.stderr.strip(), "Ctrl-C says so on stderr"


def test_json_after_a_double_dash_is_an_argument_not_the_flag():
    res = run_cli("predict", "--no-such-option", "--", "--json")
    assert_exit(res, 2)
    assert res.stdout == "", res.stdout
