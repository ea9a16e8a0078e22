# The README's two commands: `make demo` (set up + run the main job on the embedded
# default) and `make test` (set up + run the tests). `.ci/run` calls `make test`.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench stop clean

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/run_all.py --quick

stop:  ## stop the embedded Redis of ./data
	$(PY) -c "from crawler.connection import stop_embedded; stop_embedded()"

clean: stop
	rm -rf data
