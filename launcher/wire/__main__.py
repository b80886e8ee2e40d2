"""``python -m launcher.wire``: see :mod:`launcher.wire`."""

from launcher.wire.main import main

if __name__ == "__main__":
    raise SystemExit(main())
