"""``python -m ikecore``: the ``ikecore`` command."""

from ikecore.cli import main

raise SystemExit(main())
