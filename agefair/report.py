"""A study's report from its multiruns: `python -m agefair.report STUDY`."""

import sys

from agefair.reporting.report import main

if __name__ == "__main__":
    sys.exit(main())
