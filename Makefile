# Two commands: `make run` and `make test`. Both work on a fresh Debian host as root.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DATA    ?= $(CURDIR)/.coretriage-data
APT_PKGS := gdb elfutils debuginfod zstd libc6-dbg musl-tools g++ make dpkg-dev procps \
            haproxy liblua5.3-dev lua5.3 postgresql postgresql-server-dev-all curl redis-server \
            docker.io docker-compose debootstrap iproute2 systemd python3-aiosmtpd \
            python3-dev uwsgi uwsgi-plugin-python3 nginx \
            chromium fonts-dejavu-core \
            gdb-multiarch qemu-user gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
            libc6-arm64-cross libc6-armhf-cross libc6-dev-arm64-cross libc6-dev-armhf-cross

.PHONY: run test test-unit test-integration test-system bench bench-fleet system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: system-deps $(STAMP)
	$(VENV)/bin/coretriage --data-dir $(DATA) run

test: system-deps $(STAMP)
	$(PY) -m pytest -q -ra tests/unit tests/integration tests/system tests/adversarial

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: system-deps $(STAMP)
	$(PY) bench/analysis.py
	$(PY) bench/capture.py
	$(PY) bench/stackcore.py
	$(PY) bench/python.py
	$(PY) bench/cli.py
	$(PY) bench/webui.py

# minutes, not part of `make bench`: 1,000,000 crashes on PostgreSQL, gunicorn, 20 clients over HTTP
bench-fleet: system-deps $(STAMP)
	$(PY) bench/fleetui.py

clean:
	rm -rf $(VENV) $(DATA)
