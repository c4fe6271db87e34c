# The reference server, the harness, the conformance suite and the load tests in one image.
# Containers get PostgreSQL and NATS from their own services (see docker-compose.test.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY taskstream_proto ./taskstream_proto
COPY reference_server ./reference_server
COPY harness ./harness
COPY conformance ./conformance
COPY loadtests ./loadtests
COPY broken_servers ./broken_servers
RUN pip install '.[dev]'

RUN useradd --system --uid 10001 taskstream
USER taskstream
EXPOSE 8080 50051
HEALTHCHECK --interval=5s --timeout=2s --retries=10 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2)" || exit 1
ENTRYPOINT ["reference-server", "serve", "--http-host", "0.0.0.0", "--grpc-host", "0.0.0.0"]
