"""`python -m tunnel` is the `tunnel` console script."""

from tunnel.cli import main

raise SystemExit(main())
