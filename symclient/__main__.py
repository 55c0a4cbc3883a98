"""``python -m symclient``: the ``symbolicate`` command."""

import sys

from symclient.cli import main

sys.exit(main())
