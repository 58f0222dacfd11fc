FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventhunting ./eventhunting
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["eventhunting", "api", "--host", "0.0.0.0", "--port", "8000"]
