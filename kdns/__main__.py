"""``python -m kdns`` is the ``kdns`` command."""

from kdns.cli import main

if __name__ == "__main__":
    main()
