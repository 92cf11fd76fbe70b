"""``python -m remeco.models.engine [--build]``: build the fused kernel and say whether it runs here."""

from .native import main

raise SystemExit(main())
