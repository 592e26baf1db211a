# syntax=docker/dockerfile:1
# One image for every StreamRec role (worker, topics, producer, trainer, api): the role is the
# `streamrec` subcommand given as the container's command, as in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The package metadata first, then the code: only `pip install .` needs both.
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY models ./models
RUN pip install . && rm -rf /src/build

# Not root; the state and model dirs exist in the image so that named volumes mounted there
# start out owned by this user.
RUN useradd --create-home --uid 10001 streamrec \
    && mkdir -p /var/lib/streamrec/state /var/lib/streamrec/models \
    && chown -R streamrec /var/lib/streamrec
USER streamrec
WORKDIR /home/streamrec
ENV STREAMREC_STATE_DIR=/var/lib/streamrec/state \
    STREAMREC_MODEL_DIR=/var/lib/streamrec/models

ENTRYPOINT ["streamrec"]
CMD ["worker"]
