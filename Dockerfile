# One slim image for every process: web (gunicorn + uvicorn workers: HTTP and WebSocket),
# billing_consumer, billing_periodic and the Evolution sandbox; each service picks its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 app && chown app:app /app

# Runtime dependencies only: requirements.txt lists them above its "# Tests" line.
COPY requirements.txt .
RUN sed '/^# Tests/,$d' requirements.txt > /tmp/runtime-requirements.txt \
    && pip install -r /tmp/runtime-requirements.txt \
    && rm /tmp/runtime-requirements.txt

COPY --chown=app:app . .
USER app

# Static files (admin, progress page) collected into the image and served by WhiteNoise.
# collectstatic needs settings that load; these values exist only during the build.
RUN DEBUG=0 SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build \
    python manage.py collectstatic --noinput

EXPOSE 8000
# The web process; Procfile/railway/compose give the other services their own command.
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py"]
