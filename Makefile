# The two commands of the README: `make demo` (main job on the phantom) and `make test`.
.PHONY: demo test install clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

demo: .venv/.installed
	.venv/bin/axilla-simulate

# The suite on 4 pytest-xdist workers, also on 2 cores: the deployment scenarios mostly wait on their
# processes while the other modules compute. --dist loadscope keeps each module (and each class of
# tests/server/test_deployment.py, one study each) on one worker, so module and class fixtures are
# built once; --no-loadscope-reorder keeps collection order, and the plugin in tests/server/processes.py
# puts the deployment classes (the longest units) first in it, so they start at once instead of last.
# The 25 slowest tests are listed.
test: .venv/.installed
	.venv/bin/python -m pytest -q -p tests.server.processes -n 4 --dist loadscope --no-loadscope-reorder --durations=25

clean:
	rm -rf runs phantom site_output .pytest_cache
