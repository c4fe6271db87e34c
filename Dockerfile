# Two images from one file.
#
# The conformance suite alone (the base install: no server, no embedded services), for a team
# without Python. Point it at your server with a target file (conformance/targets/example.toml):
#
#   docker build --target conformance -t task-streaming-conformance .
#   docker run --rm --network host -e TASKSTREAM_ADMIN_TOKEN \
#     -v "$PWD/targets:/targets:ro" -v "$PWD/report:/report" \
#     task-streaming-conformance --target /targets/mine.toml --report /report
#
# The reference server with the harness, the suite and the load tests (the default, last stage;
# docker-compose.test.yml builds it). Containers get PostgreSQL and NATS from their own services.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 10001 taskstream
WORKDIR /app

FROM base AS conformance
COPY pyproject.toml README.md ./
COPY taskstream_proto ./taskstream_proto
COPY harness ./harness
COPY conformance ./conformance
RUN pip install . && rm -rf /app/*
# Reports go to a mounted directory; the working directory only holds pytest's scratch files.
WORKDIR /work
RUN chown taskstream /work
USER taskstream
ENTRYPOINT ["python", "-m", "conformance"]
CMD ["--help"]

FROM base AS server
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY taskstream_proto ./taskstream_proto
COPY reference_server ./reference_server
COPY harness ./harness
COPY conformance ./conformance
COPY loadtests ./loadtests
COPY broken_servers ./broken_servers
RUN pip install '.[dev]'

USER taskstream
EXPOSE 8080 50051
HEALTHCHECK --interval=5s --timeout=2s --retries=10 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2)" || exit 1
ENTRYPOINT ["reference-server", "serve", "--http-host", "0.0.0.0", "--grpc-host", "0.0.0.0"]
