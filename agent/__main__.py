import sys

try:
    from .cli import main
except KeyboardInterrupt:          # Ctrl-C while Python is still importing: one line too
    sys.stderr.write("edgeagent: interrupted\n")
    sys.exit(130)

sys.exit(main())
