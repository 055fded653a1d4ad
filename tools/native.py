"""Build the compiled hot path for today's source (`make native`), or say which one runs.

python tools/native.py build    # compile, unless a build for this source exists
python tools/native.py status   # compiled or plain Python, and why
"""

from __future__ import annotations

import sys

from tollmon import native


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "build":
        print(f"native build: {native.build()}")
    elif command == "status":
        print(native.status())
    else:
        raise SystemExit(f"usage: python tools/native.py build|status (not {command!r})")


if __name__ == "__main__":
    main()
