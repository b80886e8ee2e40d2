"""``python -m launcher`` is ``python -m launcher.agent``."""

from launcher.agent import main

raise SystemExit(main())
