"""Operations: the metrics exporter Prometheus scrapes, and the warehouse backups."""
