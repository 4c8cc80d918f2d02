# The image every Kidjamo container runs: Airflow (api-server, scheduler, dag-processor, triggerer,
# Celery workers) and the ingestion service. Built on the Airflow tag that requirements.txt pins.
FROM apache/airflow:3.3.2-python3.11

ENV KIDJAMO_PROJECT_DIR=/opt/kidjamo \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/kidjamo/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/kidjamo/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    KIDJAMO_HOME=/opt/airflow/kidjamo \
    GX_ANALYTICS_ENABLED=false

# Dependencies first (their layer is reused until requirements.txt changes). Pinning apache-airflow
# beside the file keeps pip from replacing the image's own Airflow.
COPY --chown=airflow:0 requirements.txt requirements-nodeps.txt /opt/kidjamo/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/kidjamo/requirements.txt \
    && pip install --no-cache-dir --no-deps -r /opt/kidjamo/requirements-nodeps.txt

# The project: an editable install so that sql/, dags/ and expectations/ stay beside the code.
COPY --chown=airflow:0 pyproject.toml README.md /opt/kidjamo/
COPY --chown=airflow:0 kidjamo /opt/kidjamo/kidjamo
COPY --chown=airflow:0 ingestion /opt/kidjamo/ingestion
COPY --chown=airflow:0 transforms /opt/kidjamo/transforms
COPY --chown=airflow:0 expectations /opt/kidjamo/expectations
COPY --chown=airflow:0 plugins /opt/kidjamo/plugins
COPY --chown=airflow:0 care /opt/kidjamo/care
COPY --chown=airflow:0 sql /opt/kidjamo/sql
COPY --chown=airflow:0 dags /opt/kidjamo/dags
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/kidjamo

WORKDIR /opt/airflow
