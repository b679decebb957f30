# The two commands of the README: `make demo` (main job on the phantom) and `make test`.
.PHONY: demo test install clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

demo: .venv/.installed
	.venv/bin/axilla-simulate

# The suite on 3 pytest-xdist workers (2 cores). --dist loadfile keeps each test module on one
# worker, so module and class fixtures are built once. The plugin in tests/server/processes.py puts
# the longest modules first (the two deployment scenarios, mostly waiting on Flower's polls, and
# the federations), and --no-loadscope-reorder keeps that order (xdist would otherwise hand out the
# modules with the most tests first), so they start at once, each on a worker of its own. The 25 slowest tests are listed. Every process of the suite runs torch and BLAS on one
# thread: the workers plus the deployment's site processes on 2 cores, each spinning up a thread per
# core, slowed the simulation tests about 8x (a Ray federation of 30 s took 260 s, and over 600 s on CI).
test: .venv/.installed
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pytest -q -p tests.server.processes -n 3 --dist loadfile --no-loadscope-reorder --durations=25

clean:
	rm -rf runs phantom site_output .pytest_cache
