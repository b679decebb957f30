# The two commands of the README: `make demo` (main job on the phantom) and `make test`.
.PHONY: demo test install clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

demo: .venv/.installed
	.venv/bin/axilla-simulate

# The suite on 3 pytest-xdist workers (2 cores): the two deployment classes of
# tests/server/test_deployment.py (one worker each; they partly wait on Flower's polls and
# heartbeats) and one worker for the other modules; a 4th worker only oversubscribes the CPU, and a
# starved SuperLink then fails its SQLite writes. --dist loadscope keeps each module and each
# deployment class on one worker, so module and class fixtures are built once; --no-loadscope-reorder
# keeps collection order, and the plugin in tests/server/processes.py puts the deployment classes
# (the longest units) first in it, so they start at once instead of last. The 25 slowest tests are listed.
test: .venv/.installed
	.venv/bin/python -m pytest -q -p tests.server.processes -n 3 --dist loadscope --no-loadscope-reorder --durations=25

clean:
	rm -rf runs phantom site_output .pytest_cache
