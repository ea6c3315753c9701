"""Where results, health and status go: the output hub, reporter, health, snapshots, remote commands and dashboards."""
