FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY suqiu suqiu
COPY schemas schemas
COPY streams streams
COPY projections projections
COPY replay replay
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["suqiu"]
