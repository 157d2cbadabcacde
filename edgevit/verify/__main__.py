"""``python -m edgevit.verify ...``: the same command as ``edgevit verify``.

An entry point, like :mod:`edgevit.__main__`: it sits on top of the CLI and nothing imports it;
the verification library itself never imports the CLI.
"""

from ..cli import verify_cmd

verify_cmd(prog_name="python -m edgevit.verify")
