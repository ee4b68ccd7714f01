"""``python -m service.cli``: the ``vitalstream`` command."""

import sys

from service.cli import main

sys.exit(main())
