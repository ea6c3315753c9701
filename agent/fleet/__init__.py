"""The workstation side (Python 3.8+): deploy, monitor and ingest. Importable without the device's runtime packages."""
