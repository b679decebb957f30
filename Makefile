# The two commands of the README: `make demo` (main job on the phantom) and `make test`.
.PHONY: demo test install clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

demo: .venv/.installed
	.venv/bin/axilla-simulate

test: .venv/.installed
	.venv/bin/python -m pytest -q

clean:
	rm -rf runs phantom site_output .pytest_cache
