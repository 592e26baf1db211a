"""``python -m stream_app.cli``: the ``streamrec`` command without an installed entry point."""

from stream_app.cli import main

raise SystemExit(main())
