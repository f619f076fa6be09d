# slowburn Airflow image: the official Apache Airflow 3.3.2 image (Python 3.11)
# extended with the pinned project requirements and the slowburn package.
#
# Build via docker compose (`docker compose build`) or directly:
#   docker build -t slowburn-airflow:3.3.2 .
#
# The build context is the repository root; see .dockerignore for what is
# kept out of it (.venv, .git, .env, caches, ...).
FROM apache/airflow:3.3.2-python3.11

# Pinned runtime requirements. requirements.txt pins apache-airflow==3.3.2
# itself, which keeps pip from up- or downgrading the Airflow that ships in
# the base image (the pattern recommended by the Airflow docker-stack docs).
COPY --chown=airflow:0 requirements.txt /tmp/slowburn-requirements.txt
RUN pip install --no-cache-dir -r /tmp/slowburn-requirements.txt \
    && rm -f /tmp/slowburn-requirements.txt

# The slowburn package itself (plugins/slowburn, packaged by pyproject.toml).
# --no-deps: every dependency is already pinned by requirements.txt above.
# README.m[d] is a wildcard so the build does not fail while README.md is
# absent (pyproject.toml names it, but setuptools only warns if it is missing).
COPY --chown=airflow:0 pyproject.toml README.m[d] /tmp/slowburn-src/
COPY --chown=airflow:0 plugins/slowburn /tmp/slowburn-src/plugins/slowburn
RUN pip install --no-cache-dir --no-deps /tmp/slowburn-src \
    && rm -rf /tmp/slowburn-src
