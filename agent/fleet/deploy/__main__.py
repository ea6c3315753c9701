"""`python -m agent.fleet.deploy ...`: the deploy command without the rest of the agent's CLI."""

import argparse
import sys

from ...errors import EdgeAgentError
from . import cli


def main() -> int:
    parser = argparse.ArgumentParser(prog="edgeagent deploy", description=cli.__doc__)
    cli.add_arguments(parser)
    args = parser.parse_args()
    try:
        return cli.run(args)
    except EdgeAgentError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
