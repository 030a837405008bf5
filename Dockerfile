# mail-proxy container image: the environment-only node (`mail-proxy serve`), configured by
# GMP_* variables alone, its data in the /data volume.
#
#   docker build -t mail-proxy .
#   docker run -p 8000:8000 -e GMP_API_TOKEN=… -v mail-data:/data --stop-timeout 60 mail-proxy
#
# EXTRAS picks the optional dependencies installed in the image: postgresql (the default),
# large-files (fsspec with the S3, GCS and Azure backends), or s3 / gcs / azure alone,
# e.g. --build-arg EXTRAS=postgresql,large-files.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir build \
 && python -m build --wheel --outdir /wheels .

FROM python:3.11-slim
ARG EXTRAS=postgresql
COPY --from=build /wheels /wheels
RUN set -eu; \
    wheel="$(ls /wheels/mail_proxy-*.whl)"; \
    pip install --no-cache-dir "${wheel}[${EXTRAS}]"; \
    rm -rf /wheels; \
    useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin mail-proxy; \
    install -d -o mail-proxy -g mail-proxy -m 0700 /data

# The whole configuration: every other setting keeps its default unless a GMP_* variable is
# given to `docker run -e`. GMP_API_TOKEN has no default: the node refuses to start without it.
# With SQLite the database and its secret.key live next to each other in /data; with
# GMP_DATABASE_URL the key is /data/secret.key (MAIL_PROXY_HOME). Keep the volume.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAIL_PROXY_HOME=/data \
    GMP_HOST=0.0.0.0 \
    GMP_PORT=8000 \
    GMP_DB_PATH=/data/mail_service.db

USER mail-proxy
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# SIGTERM starts the ordered shutdown: the API stops accepting, in-flight SMTP transactions get
# GMP_SHUTDOWN_GRACE_SECONDS (30 s), the reporter pushes what it can, then the node exits 0.
# Give `docker stop` more than that: --stop-timeout 60 (compose: stop_grace_period: 60s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('GMP_PORT', '8000'), timeout=4)"]
CMD ["mail-proxy", "serve"]
