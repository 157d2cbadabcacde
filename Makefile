# The two commands of the README. Each does its own set-up on a fresh machine.
.PHONY: setup demo test

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/edgevit demo

test: setup
	@.venv/bin/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc
