"""``python -m ncsn STAGE``: the same as the ``ncsn`` console script."""

import sys

from ncsn.cli import main

sys.exit(main())
