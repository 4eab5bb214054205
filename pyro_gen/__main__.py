"""``python -m pyro_gen`` runs the command line (also the way ``torchrun`` starts it)."""

import sys

from .cli import main

sys.exit(main())
