# The Airflow image for docker-compose.yml: the official Airflow 3 image plus the scrubber package.
#   docker compose build        (uses this file)
# The project is installed as a normal package (no source mount needed at run time); dags/ and
# rules/ are still mounted by docker-compose.yml so they can be edited without a rebuild.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

# Copy only what the package build needs (see .dockerignore: no .venv, no data, no tests).
COPY --chown=airflow:0 pyproject.toml README.md /opt/scrubber/
COPY --chown=airflow:0 scrubber /opt/scrubber/scrubber
COPY --chown=airflow:0 rules /opt/scrubber/rules

# Pin apache-airflow to the image's version so pip cannot up- or downgrade Airflow while resolving the
# project's dependencies (the documented way to extend the official image). The airflow extra brings
# the Amazon provider (AwsBaseHook for the aws_default connection).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/scrubber[airflow]"

ENV SCRUBBER_RULES_DIR=/opt/scrubber/rules
