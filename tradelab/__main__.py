"""``python -m tradelab`` runs the CLI."""

import sys

from tradelab.cli.main import main

sys.exit(main())
