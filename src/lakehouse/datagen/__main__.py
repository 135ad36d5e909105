"""``python -m lakehouse.datagen``: see :mod:`lakehouse.datagen.cli`."""

import sys

from .cli import main

sys.exit(main())
