# syntax=docker/dockerfile:1
# notifyd image. It expects an external PostgreSQL (DATABASE_URL or NOTIFYD_DATABASE__URL):
# the embedded one would write its data under /app/.notifyd, which the notifyd user cannot
# write, so the root filesystem can stay read-only (`docker run --read-only`, or
# `read_only: true` in docker-compose.yml). Nothing else is written at run time.

FROM python:3.12-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock changes. Exactly
# the lock, resolved by nobody (--no-deps; the Makefile says why), then checked whole.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock && pip check

# The build backend comes from its own hash-pinned lock, not whatever is newest today.
COPY requirements-build.lock ./
RUN pip install --require-hashes --no-deps -r requirements-build.lock && pip check

# The wheel carries sql/ as notifyd/sql (hatch force-include in pyproject.toml).
COPY pyproject.toml README.md ./
COPY notifyd/ notifyd/
COPY sql/ sql/
RUN pip install --no-deps --no-build-isolation . \
    && python -c "import importlib.resources as r; assert r.files('notifyd').joinpath('sql').is_dir()"


FROM python:3.12-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 notifyd \
    && useradd --system --uid 10001 --gid notifyd --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin notifyd

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFYD_HTTP__HOST=0.0.0.0

EXPOSE 8000

# Healthy means ready to work: /readyz answers 200 only while the database answers and
# delivery runs (urlopen raises on its 503). /healthz (alive) is for liveness probes.
# No curl in slim images: ask the daemon itself through the standard library.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NOTIFYD_HTTP__PORT', '8000') + '/readyz', timeout=4)"]

USER notifyd
ENTRYPOINT ["notifyd"]
CMD ["serve"]
