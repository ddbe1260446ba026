# One image for every process of the service: web (the default command), worker, beat and the
# release step choose their command (compose.yaml, Procfile). Python comes from Debian's packages,
# so the base image can be any Debian bookworm, including one built locally with debootstrap
# (docs/operations.md, "Containers"): docker build --build-arg BASE_IMAGE=... .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# Dependencies first: a code change does not reinstall them.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

WORKDIR /app
COPY . /app
# Static files are part of the image (WhiteNoise serves them); var/ holds beat's schedule and,
# without a database URL, SQLite.
RUN DJANGO_SECRET_KEY=collectstatic-only STATIC_ROOT=/app/static python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R app:app /app/var

# Inside a container gunicorn listens on every address (GUNICORN_CMD_ARGS adds to gunicorn.conf.py).
ENV STATIC_ROOT=/app/static \
    VAR_DIR=/app/var \
    GUNICORN_CMD_ARGS="--bind 0.0.0.0:8000"
USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "fulfillment_site.wsgi"]
