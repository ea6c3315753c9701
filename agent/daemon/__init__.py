"""The daemon shell: the composition root (service, assemble), lifecycle, systemd notify, logging and validate's pre-checks."""
