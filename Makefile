# The README's commands. `make test` is the one CI runs (.ci/run).
SHELL := /bin/bash
# Use the project's virtual environment when it exists, activated or not.
ifneq ($(wildcard .venv/bin/python),)
export PATH := $(CURDIR)/.venv/bin:$(PATH)
endif

.PHONY: test export clean readme nbs sync docs

test:            ## check notebooks == library, run every notebook and the test suite, time each phase
	bash tools/test.sh

export:          ## notebooks -> crvae/*.py
	nbdev-export

clean:           ## strip notebook metadata the way CI expects
	nbdev-clean

readme:          ## README.md <- nbs/index.ipynb
	python tools/readme.py

sync: export clean readme

nbs:             ## run every notebook and save its outputs (the course material), then clean
	CRVAE_DATA=$${CRVAE_DATA:-$(CURDIR)/.cache/crvae-test} CRVAE_PLOTS=0 OMP_NUM_THREADS=1 python tools/nbsave.py --save --timing --n-workers 2 && \
	CRVAE_DATA=$${CRVAE_DATA:-$(CURDIR)/.cache/crvae-test} python tools/nbout.py && nbdev-clean   # `#| slow` cells keep their outputs

docs:            ## nbs/*.ipynb -> _site/: the course as a static offline site (home: the notebook map)
	python tools/site.py
